/**
 * Attack 6 and 12 of issue #10, played against a real nexus and a real stats collector with CURVE on: a local
 * process with no key, with a key nobody allowed, or with an allowed key of the wrong role, connects to every
 * ZeroMQ port the platform binds (nexus control ROUTER, events PUB, heartbeats SUB; collector intake PULL, live
 * tail PUB, query ROUTER) and gets nothing accepted — while allowed keys of the right role, on the same sockets at
 * the same time, are served (so each silence is the refusal, not a dead socket).
 */
import * as zmq from 'zeromq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import { silentLogger } from '../../src/core/logger.js';
import { Nexus } from '../../src/nexus/nexus.js';
import { decode, decodeReply, decodeToRunner, encode, LogLines, tailTopic, type HeartbeatMessage, type LogMessage } from '../../src/protocol/index.js';
import { StatsDaemon } from '../../src/stats/stats.js';
import { closeQuietly, curveKeyPair, HeartbeatPublisher, StatsClient } from '../../src/transport/index.js';
import { testConfig } from '../helpers/config.js';
import { testKeys, type KeyPair } from '../helpers/curve.js';
import { collectorAddress } from '../helpers/daemons.js';
import { testDatabase } from '../helpers/postgres.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { searchableTempDir } from '../helpers/data-dir.js';
import { rmSync } from 'node:fs';

const dbUrl = await testDatabase();
const keys = testKeys();
const statsId = `ky-stats-${randomId()}`;
const runner = keys.node('runner', 'ky-runner-1');
const balancer = keys.node('balancer', 'ky-balancer-1');
const nexusKey = keys.node('nexus', 'ky-nexus-1');
const statsKey = keys.node('stats', statsId);
const stranger = curveKeyPair();
/** How long a refused peer is given to get anything through. */
const SILENCE_MS = 700;

let nexus: Nexus;
let stats: StatsDaemon;
let dataDir: string;
const sockets: zmq.Socket[] = [];

beforeAll(async () => {
  dataDir = searchableTempDir('pier-ky-keyless-');
  nexus = new Nexus({
    config: testConfig({ nexus: { id: `ky-nexus-${randomId()}` } }), dbUrl, log: silentLogger(), curve: keys.nexusCurve(nexusKey), keyring: keys.keyring,
  });
  await nexus.start();
  const address = await collectorAddress();
  stats = new StatsDaemon({
    config: testConfig({
      dataDir,
      cluster: { nexus: [{ ...nexus.endpoints!, api: 'http://127.0.0.1:9' }], stats: [address] },
      stats: { id: statsId, intakeBind: address.intake, tailBind: address.tail, queryBind: address.query },
    }),
    dbUrl, log: silentLogger(), curve: keys.statsCurve(statsKey), keyring: keys.keyring,
  });
  await stats.start();
}, 30_000);

afterAll(async () => {
  for (const socket of sockets) closeQuietly(socket);
  await stats?.stop();
  await nexus?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

type Who = 'no key' | 'unknown key' | 'runner key' | 'balancer key' | 'nexus key';
const PAIRS: Record<Exclude<Who, 'no key'>, KeyPair> = { 'unknown key': stranger, 'runner key': runner, 'balancer key': balancer, 'nexus key': nexusKey };

/** Socket options of a raw attacker socket: plain, or CURVE with `who`'s key pinning `serverKey`. */
function as(who: Who, serverKey: string): zmq.SocketOptions<zmq.Dealer> {
  if (who === 'no key') return { linger: 0 };
  const pair = PAIRS[who];
  return { linger: 0, curveServerKey: serverKey, curvePublicKey: pair.publicKey, curveSecretKey: pair.secretKey };
}

function track<S extends zmq.Socket>(socket: S): S {
  sockets.push(socket);
  return socket;
}

/** Sends `payload` on a fresh DEALER and resolves with the first reply, or undefined after SILENCE_MS. */
async function ask(endpoint: string, options: zmq.SocketOptions<zmq.Dealer>, payload: Buffer, proof?: (p: Buffer) => Buffer | undefined): Promise<unknown> {
  const dealer = track(new zmq.Dealer({ ...options, receiveTimeout: SILENCE_MS, sendTimeout: SILENCE_MS }));
  dealer.connect(endpoint);
  try {
    const signed = proof?.(payload);
    await dealer.send(signed ? [signed, payload] : [payload]);
    const frames = await dealer.receive();
    return decodeReply(frames[frames.length - 1]!);
  } catch {
    return undefined; // EAGAIN: nothing came back in time
  } finally {
    closeQuietly(dealer);
  }
}

/** Subscribes to `topic` and collects what arrives while `during` runs (and 100 ms more). */
async function listen(endpoint: string, options: zmq.SocketOptions<zmq.Subscriber>, topic: string, during: () => Promise<void>): Promise<Buffer[][]> {
  const sub = track(new zmq.Subscriber(options));
  sub.subscribe(topic);
  sub.connect(endpoint);
  const received: Buffer[][] = [];
  const loop = (async () => {
    try {
      for await (const frames of sub) received.push(frames);
    } catch {
      // closed below
    }
  })();
  await during();
  await sleep(100);
  closeQuietly(sub);
  await loop;
  return received;
}

const logLine = (app: string, line: string): LogMessage => ({ v: 1, type: 'log', app, source: 'app', origin: `${app}-v1-x`, line, at: Date.now() });

describe('a keyless ZeroMQ peer on every port the platform binds', () => {
  it('binds only the intake, tail and query sockets on the collector: the plain uWSGI intake (7503) is gone', () => {
    expect(Object.keys(stats.endpoints!).sort()).toEqual(['intake', 'query', 'tail']);
    expect(Object.keys(nexus.endpoints!).sort()).toEqual(['api', 'control', 'events', 'heartbeats', 'sessions']);
  });

  it("gets no welcome from the nexus sessions ROUTER without a runner's key; the runner's own key does", async () => {
    const sessionsEndpoint = nexus.endpoints!.sessions!;
    /** Says hello as `ky-runner-1` and resolves with the decoded first answer, or undefined after SILENCE_MS. */
    const hello = async (who: Who): Promise<unknown> => {
      const dealer = track(new zmq.Dealer({ ...as(who, keys.server.publicKey), receiveTimeout: SILENCE_MS, sendTimeout: SILENCE_MS }));
      dealer.connect(sessionsEndpoint);
      const payload = encode({ v: 1, type: 'session.hello', nodeId: 'ky-runner-1', running: [] });
      const signer = who === 'no key' ? undefined : keys.sockets(who === 'unknown key' ? stranger : PAIRS[who]);
      try {
        const proof = signer?.proof(payload);
        await dealer.send(proof ? [proof, payload] : [payload]);
        const frames = await dealer.receive();
        return decodeToRunner(frames[frames.length - 1]!);
      } catch {
        return undefined;
      } finally {
        closeQuietly(dealer);
      }
    };
    const answers = await Promise.all((['no key', 'unknown key', 'balancer key', 'nexus key', 'runner key'] as const).map(hello));
    expect(answers.slice(0, 4)).toEqual([undefined, undefined, undefined, undefined]);
    expect(answers[4]).toMatchObject({ type: 'session.welcome' });
  });

  it("gets no answer to 'ping' from the nexus control ROUTER without an allowed key; a runner key does", async () => {
    const ping = encode({ v: 1, type: 'ping', id: 'ky-ping' });
    const control = nexus.endpoints!.control;
    const runnerSockets = keys.sockets(runner);
    const [plain, unknown, allowed] = await Promise.all([
      ask(control, as('no key', keys.server.publicKey), ping),
      ask(control, as('unknown key', keys.server.publicKey), ping, keys.sockets(stranger).proof.bind(keys.sockets(stranger))),
      ask(control, as('runner key', keys.server.publicKey), ping, runnerSockets.proof.bind(runnerSockets)),
    ]);
    expect(plain).toBeUndefined();
    expect(unknown).toBeUndefined();
    expect(allowed).toMatchObject({ type: 'reply', re: 'ky-ping' });
  });

  it("gets no answer from the collector's query ROUTER without a key of the nexus's role", async () => {
    const query = stats.endpoints!.query;
    const tail = (id: string) => encode({ v: 1, type: 'logs.tail', id, app: 'ky-victim', lines: 10 });
    const answers = await Promise.all((['no key', 'unknown key', 'runner key', 'balancer key', 'nexus key'] as const).map((who) => ask(query, as(who, keys.stats.publicKey), tail(who.replace(' ', '-')))));
    expect(answers.slice(0, 4)).toEqual([undefined, undefined, undefined, undefined]);
    expect(answers[4]).toMatchObject({ type: 'reply', re: 'nexus-key' });
  });

  it("stores no line a keyless, unknown or wrong-role PUSH sends into an app's log; a runner key's line is stored", async () => {
    const intake = stats.endpoints!.intake;
    const app = `ky-victim-${randomId()}`.slice(0, 30);
    const before = stats.collector!.stats.received;
    await Promise.all((['no key', 'unknown key', 'nexus key', 'runner key'] as const).map(async (who) => {
      const push = track(new zmq.Push({ ...as(who, keys.stats.publicKey), sendTimeout: 0 }));
      push.connect(intake);
      const deadline = Date.now() + SILENCE_MS;
      while (Date.now() < deadline) {
        await push.send(encode(logLine(app, `written with ${who}`))).catch(() => undefined); // EAGAIN until (unless) connected
        await sleep(20);
      }
      closeQuietly(push);
    }));
    const client = new StatsClient({ collectors: [{ query: stats.endpoints!.query, tail: stats.endpoints!.tail }], sockets: keys.sockets(nexusKey), timeoutMs: 2000, log: silentLogger() });
    const lines = await waitFor(async () => {
      const { lines: got } = await client.tail(app, 1000);
      return got.length > 0 ? got : undefined;
    }, { name: 'runner line stored' });
    await stats.store!.flush();
    const all = (await client.tail(app, 1000)).lines;
    expect(new Set(all.map((l) => l.replace(/^.*: /, '')))).toEqual(new Set(['written with runner key']));
    expect(lines.length).toBeGreaterThan(0);
    // Only the runner's frames reached the collector at all.
    expect(stats.collector!.stats.received - before).toBe(all.length);
    expect(stats.collector!.stats.invalid).toBe(0);
  });

  it('delivers no live tail line or event to a keyless, unknown or wrong-role SUB; keys of the right role get them', async () => {
    const app = `ky-tail-${randomId()}`.slice(0, 30);
    const runnerPush = track(new zmq.Push({ ...as('runner key', keys.stats.publicKey), sendTimeout: 0 }));
    runnerPush.connect(stats.endpoints!.intake);
    const keepWriting = async () => {
      const deadline = Date.now() + SILENCE_MS;
      while (Date.now() < deadline) {
        await runnerPush.send(encode(logLine(app, 'live'))).catch(() => undefined);
        await sleep(25);
      }
    };
    const tails = await Promise.all((['no key', 'unknown key', 'runner key', 'nexus key'] as const).map((who) =>
      listen(stats.endpoints!.tail, as(who, keys.stats.publicKey), tailTopic(app), keepWriting)));
    expect(tails.slice(0, 3).map((t) => t.length)).toEqual([0, 0, 0]);
    expect(tails[3]!.length).toBeGreaterThan(0);
    expect(decode(tails[3]![0]![1]!, LogLines).lines[0]).toContain('live');

    // The nexus publishes a tick every 100 ms (testConfig): only the follower roles hear them.
    const events = await Promise.all((['no key', 'unknown key', 'nexus key', 'runner key', 'balancer key'] as const).map((who) =>
      listen(nexus.endpoints!.events, as(who, keys.server.publicKey), '', () => sleep(SILENCE_MS))));
    expect(events.map((e) => e.length > 0)).toEqual([false, false, false, true, true]);
  });

  it('lets no forged heartbeat mark a node alive: keyless, unknown key, or an allowed key speaking for another node', async () => {
    const ghost = `ky-ghost-${randomId()}`;
    const beat = (nodeId: string, seq: number): Buffer => encode({ v: 1, type: 'heartbeat', nodeId, kind: 'runner', seq, intervalMs: 50, sentAt: Date.now() } satisfies HeartbeatMessage);
    const heartbeats = nexus.endpoints!.heartbeats;
    const forgers = (['no key', 'unknown key', 'balancer key'] as const).map((who) => {
      const pub = track(new zmq.Publisher({ ...as(who, keys.server.publicKey) }));
      pub.connect(heartbeats);
      return pub;
    });
    // The honest runner beats through Pier's own publisher (signed), at the same time.
    const honest = new HeartbeatPublisher({ nodeId: 'ky-runner-1', kind: 'runner', endpoints: [heartbeats], intervalMs: 50, sockets: keys.sockets(runner) });
    honest.start();
    try {
      const deadline = Date.now() + SILENCE_MS;
      for (let seq = 0; Date.now() < deadline; seq++) {
        const balancerSockets = keys.sockets(balancer);
        await Promise.all(forgers.map((pub, i) => {
          const payload = beat(ghost, seq);
          // The balancer signs its forgery with its own (valid) key.
          return pub.send(i === 2 ? [balancerSockets.proof(payload)!, payload] : [payload]).catch(() => undefined);
        }));
        await sleep(20);
      }
      await waitFor(() => nexus.heartbeats!.lastSeen.has('ky-runner-1'), { name: 'honest heartbeat seen' });
      expect(nexus.heartbeats!.lastSeen.has(ghost)).toBe(false);
    } finally {
      honest.stop();
      for (const pub of forgers) closeQuietly(pub);
    }
  });
});
