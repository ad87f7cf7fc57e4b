/**
 * At least 10,000 random and malformed frames at the control ROUTER (plus raw TCP garbage at the port): every
 * request that can be answered gets an `error` reply with a known code, nothing crashes, and the nexus answers
 * correctly afterwards. The JSON API rejects malformed bodies with 400.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { connect } from 'node:net';
import * as zmq from 'zeromq';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/core/errors.js';
import { createOwner, withTransaction } from '../../src/db/index.js';
import { ControlReply, decode, encode } from '../../src/protocol/index.js';
import { closeQuietly } from '../../src/transport/index.js';
import { controlClient, startNexus } from '../helpers/daemons.js';
import { testDatabase, testPool } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);
const LIMIT = 64 * 1024;

/** One malformed message, as a list of frames. */
function badMessage(i: number): Buffer[] {
  switch (i % 12) {
    case 0: return [randomBytes(randomInt(1, 200))];
    case 1: return [Buffer.alloc(0)];
    case 2: return [encode([1, 2, 3])];
    case 3: return [encode({ v: 2, type: 'ping', id: `x${i}` })];
    case 4: return [encode({ v: 1, type: `no.such.${i}`, id: `x${i}` })];
    case 5: return [encode({ v: 1, type: 'app.create', id: `x${i}`, token: 't', name: 'Bad Name!' })];
    case 6: return [encode({ v: 1, type: 'ping', id: `x${i}`, extra: true })];
    case 7: return [encode({ v: 1, type: 'events.since', id: `x${i}`, after: -5 })];
    case 8: return [encode({ v: 1, type: 'ping' })];
    case 9: return [randomBytes(8), randomBytes(8), randomBytes(8)];
    case 10: return [encode({ v: 1, type: 'config.set', id: `x${i}`, token: 't', app: 'a', vars: { 'BAD KEY': 1 } })];
    default: return [Buffer.from([0xc1, 0xff, 0x00, randomInt(256)])]; // never-used / truncated msgpack
  }
}

describe('control port under malformed input', () => {
  it('answers 10,000 malformed frames with errors and still serves correct requests', async () => {
    const n = await startNexus(dbUrl, { cluster: { maxMessageBytes: LIMIT } });
    const { token } = await withTransaction(pool, (tx) => createOwner(tx, 'fuzz-owner'));
    const dealer = new zmq.Dealer({ linger: 0, receiveHighWaterMark: 0, sendHighWaterMark: 0 });
    dealer.connect(n.control);
    const replies: Array<{ type: string; code?: string }> = [];
    const reader = (async () => {
      try {
        for await (const [frame] of dealer) {
          const reply = decode(frame!, ControlReply) as ControlReply;
          replies.push(reply.type === 'error' ? { type: reply.type, code: reply.code } : { type: reply.type });
        }
      } catch {
        // closed below
      }
    })();

    const TOTAL = 10_000;
    for (let i = 0; i < TOTAL; i++) await dealer.send(badMessage(i));
    // Near and over the size limit: the codec answers with an error (libzmq's own limit sits above ours).
    await dealer.send(encode({ v: 1, type: 'ping', id: 'big', pad: 'x'.repeat(LIMIT + 10) }));
    await dealer.send(encode({ v: 1, type: 'ping', id: 'almost', pad: 'x'.repeat(LIMIT - 100) }));
    // Raw bytes at the ZMTP port: the handshake fails and the connection is dropped.
    for (let i = 0; i < 20; i++) {
      await new Promise<void>((resolve) => {
        const socket = connect(Number(n.control.split(':').pop()), '127.0.0.1', () => socket.write(randomBytes(randomInt(1, 2000))));
        // libzmq may wait for the rest of a greeting that never comes: hang up after a moment.
        const timer = setTimeout(() => socket.destroy(), 100);
        socket.on('error', () => undefined);
        socket.on('close', () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    await waitFor(() => replies.length >= TOTAL + 2, { name: 'error replies', timeoutMs: 12_000, intervalMs: 100 });
    expect(replies.every((r) => r.type === 'error')).toBe(true);
    const codes = new Set(replies.map((r) => r.code));
    for (const code of codes) expect(Object.keys(ERROR_CODES)).toContain(code);
    expect(codes).toContain('PIER_PROTOCOL');
    expect(codes).toContain('PIER_UNKNOWN_TYPE');
    expect(codes).toContain('PIER_TOO_LARGE');
    expect(n.nexus.control!.stats.invalid).toBeGreaterThanOrEqual(TOTAL);
    expect(n.nexus.control!.stats.failed).toBe(0);
    closeQuietly(dealer);
    await reader;

    const client = controlClient([n.control], 1000);
    await expect(client.call('ping', {})).resolves.toMatchObject({ nexusId: n.nexus.id });
    const created = await client.call('app.create', { token, name: 'after-fuzz' });
    expect(created.app.name).toBe('after-fuzz');
  }, 30_000);

  it('rejects malformed API bodies with 400 and a one-line JSON error', async () => {
    const n = await startNexus(dbUrl);
    const { token } = await withTransaction(pool, (tx) => createOwner(tx, 'fuzz-api-owner'));
    const post = (body: string, type = 'application/json') =>
      fetch(`${n.api}/v1/apps`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': type }, body });
    const cases: Array<[string, number, string]> = [
      ['{"name": "x",', 400, 'PIER_BAD_REQUEST'],
      ['not json', 400, 'PIER_BAD_REQUEST'],
      ['[]', 400, 'PIER_VALIDATION'],
      ['{"name": 5}', 400, 'PIER_VALIDATION'],
      ['{"name": "ok-name", "extra": 1}', 400, 'PIER_VALIDATION'],
      ['{}', 400, 'PIER_VALIDATION'],
      [randomBytes(64).toString('latin1'), 400, 'PIER_BAD_REQUEST'],
    ];
    for (const [body, status, code] of cases) {
      const res = await post(body);
      const json = (await res.json()) as { error: { code: string; message: string } };
      expect(res.status, body).toBe(status);
      expect(json.error.code, body).toBe(code);
      expect(json.error.message).not.toContain('\n');
      expect(Object.keys(json)).toEqual(['error']);
    }
    const wrongType = await post('name=x', 'application/x-www-form-urlencoded');
    expect(wrongType.status).toBe(415);
    const apps = (await (await fetch(`${n.api}/v1/apps`, { headers: { authorization: `Bearer ${token}` } })).json()) as { apps: unknown[] };
    expect(apps.apps).toEqual([]);

    expect((await post('{"name":"cfg-app"}')).status).toBe(201);
    for (const body of ['{"BAD KEY":"x"}', '{"OK":5}', '{}', '{"1ST":"x"}', '{"A":"two\\nlines"}', '{"A":"x%(y)s"}', '{"A":"trailing "}']) {
      const res = await fetch(`${n.api}/v1/apps/cfg-app/config`, { method: 'PATCH', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body });
      expect(res.status, body).toBe(400);
    }
    const config = await (await fetch(`${n.api}/v1/apps/cfg-app/config`, { headers: { authorization: `Bearer ${token}` } })).json();
    expect(config).toEqual({ vars: {} });
  });
});
