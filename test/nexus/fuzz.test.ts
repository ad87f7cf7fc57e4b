/**
 * The control ROUTER under a flood of random and malformed input: every message gets an `error` reply with a
 * known code (and the request id when one was readable), nothing crashes, and the nexus serves correctly after.
 */
import { connect } from 'node:net';
import * as zmq from 'zeromq';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, type ErrorCode } from '../../src/core/errors.js';
import { randomId } from '../../src/core/ids.js';
import { createOwner, eventsSince, withTransaction } from '../../src/db/index.js';
import { ControlReply, decode, encode } from '../../src/protocol/index.js';
import { closeQuietly } from '../../src/transport/index.js';
import { controlClient, onCleanup, startNexus } from '../helpers/daemons.js';
import { testDatabase, testPool } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);
/** The nexus's message limit (cluster.maxMessageBytes); libzmq's own limit sits 1 KiB above it. */
const LIMIT = 64 * 1024;
const TOTAL = 10_000;
const SEED = Number(process.env.PIER_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));

/** mulberry32: a small seeded PRNG, so a failing run can be repeated with PIER_FUZZ_SEED. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const random = prng(SEED);
const int = (max: number) => Math.floor(random() * max);
const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));

interface Case {
  frames: Buffer[];
  /** The expected error code; undefined when any known code will do. */
  code?: ErrorCode;
  /** The expected `re`; undefined when not predictable. */
  re?: string | null;
}

const WRONG_VERSIONS = [0, 2, '1', null, 1.5, [1], { v: 1 }, true, -1];
const WRONG_SHAPES = [[1, 2, 3], [], 42, -7, 3.14, 'ping', '', null, true, false, [{ v: 1, type: 'ping', id: 'x' }], [[[[]]]]];
const BAD_IDS = [42, '', 'i'.repeat(200), { id: 'x' }, null, ['a'], true];
/** Requests of known types whose fields are wrong: answered PIER_PROTOCOL naming the field. */
const BAD_FIELDS: Array<Record<string, unknown>> = [
  { type: 'app.create', token: 't', name: 'Bad Name!' },
  { type: 'app.create', token: 't', name: '9starts-with-digit' },
  { type: 'app.create', token: 't', name: 'a'.repeat(31) },
  { type: 'app.create', token: 't' },
  { type: 'app.create', token: '', name: 'ok' },
  { type: 'ping', extra: true },
  { type: 'ping', __proto__x: 1 },
  { type: 'events.since', after: -5 },
  { type: 'events.since', after: '5' },
  { type: 'events.since', after: 1, limit: 0 },
  { type: 'events.since', after: 1, limit: 1_000_000 },
  { type: 'host.add', token: 't', app: 'a', hostname: 'UPPER.example.com' },
  { type: 'host.add', token: 't', app: 'a', hostname: `${'a'.repeat(64)}.example.com` },
  { type: 'config.set', token: 't', app: 'a', vars: { 'BAD KEY': 'x' } },
  { type: 'config.set', token: 't', app: 'a', vars: { OK: 1 } },
  { type: 'config.set', token: 't', app: 'a', vars: { OK: 'two\nlines' } },
  { type: 'config.set', token: 't', app: 'a', vars: { OK: 'x%(y)s' } },
  { type: 'config.unset', token: 't', app: 'a', keys: [] },
  { type: 'artifact.fetch', sha256: 'zz', offset: 0, length: 1 },
  { type: 'instance.report', nodeId: 'r1', instanceId: 'i1', state: 'exploded' },
  { type: 'node.register', nodeId: 'Not Valid', kind: 'runner', address: 'x' },
];

/** One random malformed message, with what its reply must say where that is predictable. */
function badCase(i: number): Case {
  const id = `fz-${i}`;
  switch (i % 12) {
    case 0:
      return { frames: [bytes(1 + int(256))] };
    case 1:
      return { frames: [Buffer.alloc(0)], code: 'PIER_PROTOCOL', re: null };
    case 2:
      return { frames: [encode(pick(WRONG_SHAPES) as object)], code: 'PIER_PROTOCOL', re: null };
    case 3: {
      const message: Record<string, unknown> = { type: 'ping', id };
      const v = pick([...WRONG_VERSIONS, undefined]);
      if (v !== undefined) message.v = v;
      return { frames: [encode(message)], code: 'PIER_PROTOCOL', re: id };
    }
    case 4: {
      const type = pick([`no.such.${int(1000)}`, 42, null, '', 'PING', 'app.create ', 'x'.repeat(5000), undefined]);
      const message: Record<string, unknown> = { v: 1, id };
      if (type !== undefined) message.type = type;
      return { frames: [encode(message)], code: 'PIER_UNKNOWN_TYPE', re: id };
    }
    case 5: {
      const message: Record<string, unknown> = { v: 1, type: 'ping' };
      const bad = pick([...BAD_IDS, undefined]);
      if (bad !== undefined) message.id = bad;
      return { frames: [encode(message)], code: 'PIER_PROTOCOL', re: null };
    }
    case 6:
      return { frames: [encode({ v: 1, id, ...pick(BAD_FIELDS) })], code: 'PIER_PROTOCOL', re: id };
    case 7: {
      // Two or three payload frames (the first non-empty, so it is not read as a REQ delimiter).
      const frames = [bytes(1 + int(32)), ...Array.from({ length: 1 + int(2) }, () => bytes(int(32)))];
      return { frames, code: 'PIER_PROTOCOL', re: null };
    }
    case 8:
      // REQ-style envelope (empty delimiter) around an unknown type: answered behind the same delimiter.
      return { frames: [Buffer.alloc(0), encode({ v: 1, type: 'nope', id })], code: 'PIER_UNKNOWN_TYPE', re: id };
    case 9: {
      // A valid request cut short.
      const whole = encode({ v: 1, type: 'app.create', id, token: 'tok', name: 'cut-short' });
      return { frames: [whole.subarray(0, 1 + int(whole.length - 1))], code: 'PIER_PROTOCOL', re: null };
    }
    case 10:
      if (i % 500 === 10) {
        // Near the size limit: just under is read (and refused for its unknown field); just over is refused unread.
        return i % 1000 === 10
          ? { frames: [encode({ v: 1, type: 'ping', id, pad: 'x'.repeat(LIMIT - 100) })], code: 'PIER_PROTOCOL', re: id }
          : { frames: [encode({ v: 1, type: 'ping', id, pad: 'x'.repeat(LIMIT + 1 + int(500)) })], code: 'PIER_TOO_LARGE', re: null };
      }
      // Nesting deep enough to overflow a recursive decoder: refused as malformed.
      if (i % 100 === 22) return { frames: [Buffer.concat([Buffer.alloc(60_000, 0x91), Buffer.from([0xc0])])], code: 'PIER_PROTOCOL', re: null };
      return { frames: [encode({ v: 1, type: 'ping', id, nested: { a: [1, { b: bytes(16) }] } })], code: 'PIER_PROTOCOL', re: id };
    default:
      // Reserved and truncated MessagePack headers.
      return { frames: [Buffer.from([pick([0xc1, 0xd9, 0xda, 0xdb, 0xc4, 0xdc, 0xde, 0xdf]), 0xff, int(256)])], code: 'PIER_PROTOCOL' };
  }
}

/** Writes `data` to the TCP port behind a ZMTP endpoint and hangs up. */
function tcpGarbage(endpoint: string, data: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect(Number(endpoint.split(':').pop()), '127.0.0.1', () => socket.end(data));
    // libzmq may keep waiting for the rest of a greeting: hang up after a moment.
    const timer = setTimeout(() => socket.destroy(), 200);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

describe('nexus control port fuzz', () => {
  it('answers 10,000 malformed messages with known error codes and still serves correct requests', async () => {
    const n = await startNexus(dbUrl, { cluster: { maxMessageBytes: LIMIT } });
    const stats = n.nexus.control!.stats;
    const before = { ...stats };
    const dealer = new zmq.Dealer({ linger: 0, receiveHighWaterMark: 0, sendHighWaterMark: 0, maxMessageSize: 4 * LIMIT });
    onCleanup(async () => closeQuietly(dealer));
    dealer.connect(n.control);
    const replies: Array<{ frames: number; reply: ControlReply | undefined; raw: Buffer }> = [];
    const reader = (async () => {
      try {
        for await (const frames of dealer) {
          const raw = frames[frames.length - 1]!;
          let reply: ControlReply | undefined;
          try {
            reply = decode(raw, ControlReply) as ControlReply;
          } catch {
            reply = undefined;
          }
          replies.push({ frames: frames.length, reply, raw });
        }
      } catch {
        // closed below
      }
    })();

    const cases: Case[] = [];
    const started = Date.now();
    for (let i = 0; i < TOTAL; i++) {
      const c = badCase(i);
      cases.push(c);
      await dealer.send(c.frames); // queued, not waiting for the reply
      if (i % 2000 === 0) await tcpGarbage(n.control, bytes(1 + int(4096)));
    }
    // More raw TCP garbage at the ZMTP port, including a plausible greeting followed by nonsense.
    const greeting = Buffer.concat([Buffer.from([0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 0]), Buffer.from('NULL'), Buffer.alloc(48)]);
    await Promise.all([
      ...Array.from({ length: 10 }, () => tcpGarbage(n.control, bytes(1 + int(2000)))),
      tcpGarbage(n.control, Buffer.concat([greeting, bytes(1000)])),
      tcpGarbage(n.control, bytes(512 * 1024)),
      tcpGarbage(n.control, Buffer.alloc(0)),
    ]);
    await waitFor(() => replies.length >= TOTAL, { name: `${TOTAL} replies (have ${replies.length})`, timeoutMs: 12_000, intervalMs: 50 });
    expect(Date.now() - started).toBeLessThan(15_000);

    const known = Object.keys(ERROR_CODES);
    // Replies to refused messages are sent as they are read, so they come back in order.
    expect(replies).toHaveLength(TOTAL);
    for (let i = 0; i < TOTAL; i++) {
      const { reply, frames, raw } = replies[i]!;
      const c = cases[i]!;
      const what = `message ${i} (seed ${SEED}): ${c.frames.map((f) => f.subarray(0, 24).toString('hex')).join(' | ')} → ${raw.subarray(0, 200).toString()}`;
      expect(reply, what).toBeDefined();
      expect(reply!.type, what).toBe('error');
      if (reply!.type !== 'error') continue;
      expect(known, what).toContain(reply!.code);
      expect(reply!.message, what).not.toContain('\n');
      if (c.code !== undefined) expect(reply!.code, what).toBe(c.code);
      if (c.re !== undefined) expect(reply!.re, what).toBe(c.re);
      // A REQ-style request is answered behind its empty delimiter.
      expect(frames, what).toBe(c.frames.length === 2 && c.frames[0]!.length === 0 ? 2 : 1);
    }
    const codes = new Set(replies.map((r) => (r.reply as { code: string }).code));
    expect([...codes].sort()).toEqual(['PIER_PROTOCOL', 'PIER_TOO_LARGE', 'PIER_UNKNOWN_TYPE']);
    // Every message the ROUTER read was refused and answered; raw TCP bytes that libzmq parsed as (ZMTP 1.0)
    // frames count too, so there may be more than TOTAL.
    const invalid = stats.invalid - before.invalid;
    expect(invalid).toBeGreaterThanOrEqual(TOTAL);
    expect(invalid + stats.dropped - before.dropped).toBe(stats.received - before.received);
    expect(stats.replied - before.replied).toBe(invalid);
    expect(stats.failed - before.failed).toBe(0);
    closeQuietly(dealer);
    await reader;

    // The nexus is unharmed: it answers ping and applies a real mutation.
    const client = controlClient([n.control], 2000);
    await expect(client.call('ping', {})).resolves.toMatchObject({ nexusId: n.nexus.id });
    const { token } = await withTransaction(pool, (tx) => createOwner(tx, `fuzz-${randomId()}`));
    const app = `after-fuzz-${randomId()}`;
    const created = await client.call('app.create', { token, name: app });
    expect(created.app).toMatchObject({ name: app, hostnames: [] });
    const events = await eventsSince(pool, 0, 10_000);
    expect(events.filter((e) => e.type === 'app.created').map((e) => e.app)).toEqual([app]);
  }, 20_000);

  it('never reads a frame over the socket size limit and keeps serving others', async () => {
    const n = await startNexus(dbUrl, { cluster: { maxMessageBytes: LIMIT } });
    const received = n.nexus.control!.stats.received;
    const dealer = new zmq.Dealer({ linger: 0 });
    onCleanup(async () => closeQuietly(dealer));
    dealer.connect(n.control);
    // Over libzmq's maxMessageSize (LIMIT + 1 KiB): the nexus's socket disconnects the peer before the codec sees it.
    await dealer.send(encode({ v: 1, type: 'ping', id: 'huge', pad: 'x'.repeat(LIMIT * 4) }));
    const client = controlClient([n.control], 2000);
    await expect(client.call('ping', {})).resolves.toMatchObject({ nexusId: n.nexus.id });
    expect(n.nexus.control!.stats.received).toBe(received + 1);
    expect(n.nexus.control!.stats.invalid).toBe(0);
  });
});
