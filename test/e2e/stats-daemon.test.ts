/**
 * The stats collector daemon on real sockets, files and PostgreSQL: hostile intake is counted and dropped while
 * good lines keep flowing; a config still naming the removed plain uWSGI intake is refused; chunks rotate and old ones go; a restarted
 * collector still has its lines; aggregates are written at stop.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as zmq from 'zeromq';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import type { PierError } from '../../src/core/errors.js';
import { randomId } from '../../src/core/ids.js';
import { silentLogger } from '../../src/core/logger.js';
import { requestStatsSince } from '../../src/db/index.js';
import { encode, type AccessMessage, type LogMessage } from '../../src/protocol/index.js';
import { StatsDaemon } from '../../src/stats/stats.js';
import { StatsClient, closeQuietly } from '../../src/transport/index.js';
import { testConfig } from '../helpers/config.js';
import { onCleanup, testSockets } from '../helpers/daemons.js';
import { freePort } from '../helpers/ports.js';
import { testDatabase, testPool } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);
const dir = mkdtempSync(join(tmpdir(), 'pier-stats-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function startCollector(stats: Record<string, unknown> = {}): Promise<{ daemon: StatsDaemon; client: StatsClient; push: zmq.Push }> {
  const ports = await Promise.all([freePort(), freePort(), freePort()]);
  const [intake, tail, query] = ports.map((p) => `tcp://127.0.0.1:${p}`) as [string, string, string];
  const config = testConfig({
    dataDir: dir, cluster: { nexus: [{ control: 'tcp://127.0.0.1:9', events: 'tcp://127.0.0.1:9', heartbeats: 'tcp://127.0.0.1:9', api: 'http://127.0.0.1:9' }] },
    stats: { id: `stats-${randomId()}`, intakeBind: intake, tailBind: tail, queryBind: query, flushIntervalMs: 100, ...stats },
  });
  const daemon = new StatsDaemon({ config, dbUrl, log: silentLogger() });
  await daemon.start();
  onCleanup(() => daemon.stop());
  const client = new StatsClient({ collectors: [{ query, tail }], sockets: testSockets(), timeoutMs: 2000, log: silentLogger() });
  const push = new zmq.Push({ linger: 0 });
  push.connect(intake);
  onCleanup(async () => {
    closeQuietly(push);
  });
  return { daemon, client, push };
}

const AT = Date.now();
function log(line: string, app = 'web'): LogMessage {
  return { v: 1, type: 'log', app, source: 'app', origin: 'web-v1-abc', line, at: AT };
}
function access(status: number, durationMs: number): AccessMessage {
  return {
    v: 1, type: 'access', app: 'web', host: 'web.localhost', method: 'GET', path: '/', status, bytes: 10, durationMs,
    backend: '127.0.0.1:20000', requestId: randomId(), balancerId: 'balancer-1', at: AT,
  };
}

describe('stats collector daemon', () => {
  it('counts and drops hostile intake frames while good lines keep flowing', async () => {
    const { daemon, client, push } = await startCollector();
    await push.send(Buffer.from('not msgpack at all \xc1'));
    await push.send(encode({ v: 1, type: 'nonsense' }));
    await push.send(encode({ ...log('x'), app: '../../etc' }));
    await push.send(encode({ ...log('x'), line: 'y'.repeat(20_000) }));
    await push.send([encode(log('two frames')), Buffer.from('extra')]);
    await push.send(encode(log('good line')));
    const { lines } = await waitFor(async () => {
      const tail = await client.tail('web', 10);
      return tail.lines.length > 0 ? tail : undefined;
    }, { name: 'good line stored' });
    expect(lines).toEqual([`${new Date(AT).toISOString()} app[web-v1-abc]: good line`]);
    expect(daemon.collector!.stats).toMatchObject({ received: 6, invalid: 5, logs: 1 });
  });

  it('refuses a config file that still sets the removed plain uWSGI intake, in one line', () => {
    for (const [name, text] of [
      ['bind.toml', '[stats]\nuwsgiLogBind = "tcp://127.0.0.1:7503"\n'],
      ['address.toml', '[[cluster.stats]]\nintake = "tcp://127.0.0.1:7500"\nuwsgiLog = "tcp://127.0.0.1:7503"\n'],
    ] as const) {
      const file = join(dir, name);
      writeFileSync(file, text);
      const err = (() => {
        try {
          loadConfig({ file });
        } catch (e) {
          return e as PierError;
        }
        return undefined;
      })();
      expect(err?.code).toBe('PIER_CONFIG');
      expect(err?.message).toMatch(new RegExp(`^file ${file}: (stats\\.uwsgiLogBind|cluster\\.stats\\.0\\.uwsgiLog) was removed: the plain uWSGI log intake was removed`));
      expect(err?.message).not.toContain('\n');
    }
  });

  it('rotates chunks at chunkBytes, keeps retainChunks of them, and answers tails across chunks', async () => {
    const { client, push } = await startCollector({ chunkBytes: 4096, retainChunks: 2, dir: join(dir, 'rotating') });
    for (let i = 0; i < 200; i++) await push.send(encode(log(`line ${String(i).padStart(3, '0')} ${'z'.repeat(60)}`, 'chatty')));
    const { lines } = await waitFor(async () => {
      const tail = await client.tail('chatty', 3);
      return tail.lines.at(-1)?.includes('line 199') ? tail : undefined;
    }, { name: 'last line stored' });
    expect(lines.map((l) => / line (\d+) /.exec(l)![1])).toEqual(['197', '198', '199']);
    const chunks = readdirSync(join(dir, 'rotating', 'logs', 'chatty')).sort();
    expect(chunks).toHaveLength(2);
    expect(chunks[0]).toMatch(/^\d{6}\.log$/);
    expect(Number(chunks[0]!.slice(0, 6))).toBeGreaterThan(1); // older chunks were deleted
    const all = (await client.tail('chatty', 10_000)).lines;
    expect(all.length).toBeLessThan(200);
    expect(all.length).toBeGreaterThan(50);
  });

  it('keeps its lines across a restart and writes the last aggregates at stop', async () => {
    const storeDir = join(dir, 'restart');
    const first = await startCollector({ dir: storeDir, flushIntervalMs: 600_000 });
    await first.push.send(encode(log('before restart', 'keeper')));
    for (const [status, ms] of [[200, 5], [200, 7], [404, 3], [503, 40]] as const) {
      await first.push.send(encode({ ...access(status, ms), app: 'keeper' }));
    }
    await waitFor(() => first.daemon.aggregator!.stats.recorded === 4, { name: 'access records counted' });
    expect(await requestStatsSince(pool, 'keeper', AT - 60_000)).toEqual([]); // not flushed yet
    await first.daemon.stop();
    const [row] = await requestStatsSince(pool, 'keeper', AT - 60_000);
    expect(row).toMatchObject({ requests: 4, s2xx: 2, s4xx: 1, s5xx: 1, bytes: 40 });
    expect(row!.p50Ms).toBeGreaterThan(4);
    expect(row!.p99Ms).toBeGreaterThan(35);

    const second = await startCollector({ dir: storeDir });
    const { lines } = await second.client.tail('keeper', 100);
    expect(lines.filter((l) => l.endsWith('before restart'))).toHaveLength(1);
  });
});
