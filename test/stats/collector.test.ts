import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/logger.js';
import { encode, type AccessMessage, type LogMessage } from '../../src/protocol/index.js';
import { RequestAggregator } from '../../src/stats/aggregator.js';
import { Collector } from '../../src/stats/collector.js';
import { LogStore } from '../../src/stats/log-store.js';

const AT = Date.UTC(2026, 10, 25, 4, 0, 0, 123);
const STAMP = '2026-11-25T04:00:00.123Z';

let dir: string;
let store: LogStore;
let aggregator: RequestAggregator;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pier-collector-'));
  store = new LogStore({ dir, chunkBytes: 1024 * 1024, retainChunks: 2, log: silentLogger() });
  await store.start();
  aggregator = new RequestAggregator(1000);
});

afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

function collector(routerLogs = true): Collector {
  return new Collector({ store, aggregator, routerLogs, maxMessageBytes: 64 * 1024, log: silentLogger() });
}

function log(overrides: Partial<LogMessage> = {}): LogMessage {
  return { v: 1, type: 'log', app: 'web', source: 'app', origin: 'web.1', line: 'hello', at: AT, ...overrides };
}

function access(overrides: Partial<AccessMessage> = {}): AccessMessage {
  return {
    v: 1, type: 'access', app: 'web', host: 'web.example.com', method: 'GET', path: '/', status: 200, bytes: 10,
    durationMs: 5, backend: '127.0.0.1:8001', requestId: 'req-1', balancerId: 'balancer-1', at: AT, ...overrides,
  };
}

async function lines(app: string): Promise<string[]> {
  await store.flush();
  return (await store.tail(app, 1000)).lines;
}

describe('Collector.intake', () => {
  it('cannot be made to forge a second log line through the backend field', async () => {
    const c = collector(true);
    c.intake([encode(access({ backend: '10.0.0.1:80\n2026-11-25T04:00:00.000Z app[web.1]: forged' }))]);
    const stored = await lines('web');
    expect(stored).toHaveLength(1);
    expect(stored[0]).toContain('backend=10.0.0.1:80_2026-11-25T04:00:00.000Z_app[web.1]:_forged request_id=');
  });

  it('stores a log message as formatted lines, one per line of text', async () => {
    const c = collector();
    c.intake([encode(log({ line: 'first\nsecond\r\n' }))]);
    c.intake([encode(log({ source: 'pier', origin: 'nexus-1', line: 'deployed v2' }))]);
    expect(await lines('web')).toEqual([
      `${STAMP} app[web.1]: first`,
      `${STAMP} app[web.1]: second`,
      `${STAMP} pier[nexus-1]: deployed v2`,
    ]);
    expect(c.stats).toMatchObject({ received: 2, invalid: 0, logs: 2, access: 0 });
  });

  it('stores nothing for an empty log message but counts it', async () => {
    const c = collector();
    c.intake([encode(log({ line: '' }))]);
    expect(await lines('web')).toEqual([]);
    expect(c.stats).toMatchObject({ received: 1, invalid: 0, logs: 1 });
  });

  it('feeds access records to the aggregator and writes router lines', async () => {
    const c = collector(true);
    c.intake([encode(access({ status: 200, bytes: 100 }))]);
    c.intake([encode(access({ status: 503, bytes: 7, requestId: 'req-2' }))]);
    const stored = await lines('web');
    expect(stored).toHaveLength(2);
    expect(stored[0]).toMatch(new RegExp(`^${STAMP} router\\[balancer-1\\]: method=GET path="/" host=web.example.com status=200 bytes=100 `));
    expect(stored[1]).toContain('status=503');
    expect(stored[1]).toContain('request_id=req-2');
    const [delta] = aggregator.take();
    expect(delta).toMatchObject({ app: 'web', requests: 2, s2xx: 1, s5xx: 1, bytes: 107 });
    expect(c.stats).toMatchObject({ received: 2, access: 2, invalid: 0, unrouted: 0 });
  });

  it('aggregates without writing router lines when routerLogs is off', async () => {
    const c = collector(false);
    c.intake([encode(access())]);
    expect(await lines('web')).toEqual([]);
    expect(aggregator.take()).toHaveLength(1);
    expect(c.stats.access).toBe(1);
  });

  it('counts an access record for no app as unrouted and stores nothing', async () => {
    const c = collector(true);
    c.intake([encode(access({ app: null, status: 404 }))]);
    expect(aggregator.size).toBe(0);
    expect(c.stats).toMatchObject({ received: 1, access: 1, unrouted: 1, invalid: 0 });
    await store.flush();
    expect(store.stats.written).toBe(0);
  });

  it.each([
    ['garbage bytes', [Buffer.from([0xc1, 0xff, 0x00])]],
    ['an empty frame', [Buffer.alloc(0)]],
    ['no frame', []],
    ['two frames', [encode(log()), encode(log())]],
    ['an unknown type', [encode({ v: 1, type: 'metrics', app: 'web' })]],
    ['no type', [encode({ v: 1, app: 'web' })]],
    ['a MessagePack array', [encode([1, 2, 3])]],
    ['a MessagePack string', [encode('log' as unknown as object)]],
    ['a bad version', [encode({ ...log(), v: 2 })]],
    ['an invalid app name', [encode(log({ app: '../etc' }))]],
    ['an unknown log source', [encode({ ...log(), source: 'kernel' })]],
    ['an extra field', [encode({ ...log(), extra: true })]],
    ['a negative time', [encode(log({ at: -1 }))]],
    ['a line over the limit', [encode(log({ line: 'x'.repeat(16 * 1024 + 1) }))]],
    ['a status out of range', [encode(access({ status: 999 }))]],
    ['a negative duration', [encode(access({ durationMs: -1 }))]],
    ['a bad balancer id', [encode(access({ balancerId: 'Bad Id' }))]],
    ['a frame over maxMessageBytes', [Buffer.concat([encode(log()), Buffer.alloc(64 * 1024)])]],
  ])('counts %s as invalid without throwing', async (_why, frames) => {
    const c = collector(true);
    expect(() => c.intake(frames as Buffer[])).not.toThrow();
    expect(c.stats).toMatchObject({ received: 1, invalid: 1, logs: 0, access: 0 });
    expect(aggregator.size).toBe(0);
    await store.flush();
    expect(store.stats.written).toBe(0);
  });

  it('keeps working after invalid messages', async () => {
    const c = collector();
    c.intake([Buffer.from('not msgpack at all')]);
    c.intake([encode({ v: 1, type: 'log' })]);
    c.intake([encode(log({ line: 'still here' }))]);
    expect(await lines('web')).toEqual([`${STAMP} app[web.1]: still here`]);
    expect(c.stats).toMatchObject({ received: 3, invalid: 2, logs: 1 });
  });
});
