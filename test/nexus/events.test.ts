/**
 * The nexus event stream as subscribers see it: raw PUB/SUB messages with gapless versions, and EventFollower
 * recovering what it missed (replica restart, gap, tick, trimmed history) over the control protocol.
 */
import { describe, expect, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import { silentLogger } from '../../src/core/logger.js';
import { ensureAdmin, eventsSince, takeSnapshot, withTransaction } from '../../src/db/index.js';
import { NodeLiveness } from '../../src/core/liveness.js';
import {
  decode, encode, PubMessage, TOPIC_EVENT_PREFIX, TOPIC_TICK,
  type EventMessage, type Snapshot, type StateEvent, type TickMessage,
} from '../../src/protocol/index.js';
import { closeQuietly, EventFollower, SerialSender, type ControlClient } from '../../src/transport/index.js';
import { controlClient, onCleanup, startNexus, testSockets, type NexusHandle } from '../helpers/daemons.js';
import { testDatabase, testPool } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);
const adminToken = `pier_admin_${randomId(16)}`;
await withTransaction(pool, (tx) => ensureAdmin(tx, 'admin', adminToken));

const name = (prefix: string) => `${prefix}-${randomId()}`;

/** Creates an app owner through the control protocol (as an operator would) and returns its token. */
async function newOwner(client: ControlClient): Promise<string> {
  const { token } = await client.call('owner.create', { token: adminToken, name: name('owner') });
  return token!; // a first answer always has it (only a retried request id answers without)
}

interface Received {
  topic: string;
  message: PubMessage;
}

/** A raw SUB socket (from the SocketFactory) on `endpoints`, recording every decoded message; closed after the test. */
function subscribe(endpoints: string[]): Received[] {
  const socket = testSockets().subscriber('client');
  socket.subscribe();
  for (const endpoint of endpoints) socket.connect(endpoint);
  const received: Received[] = [];
  const loop = (async () => {
    try {
      for await (const [topic, payload] of socket) {
        received.push({ topic: topic!.toString(), message: decode(payload!, PubMessage) as PubMessage });
      }
    } catch {
      // closed by the cleanup below
    }
  })();
  onCleanup(async () => {
    closeQuietly(socket);
    await loop;
  });
  return received;
}

const eventsOf = (received: Received[]) =>
  received.filter((r) => r.message.type === 'event').map((r) => ({ topic: r.topic, event: (r.message as EventMessage).event }));

/** App name → sorted hostnames: the part of the state these tests change. */
type Model = Map<string, string[]>;

function modelOf(snapshot: Snapshot): Model {
  return new Map(snapshot.apps.map((app) => [app.name, [...app.hostnames].sort()]));
}

function applyTo(model: Model, event: StateEvent): void {
  const app = event.app!;
  if (event.type === 'app.created') model.set(app, []);
  else if (event.type === 'app.destroyed') model.delete(app);
  else if (event.type === 'host.added') model.set(app, [...model.get(app)!, String(event.data.hostname)].sort());
  else if (event.type === 'host.removed') model.set(app, model.get(app)!.filter((h) => h !== event.data.hostname));
}

interface FollowerHandle {
  follower: EventFollower;
  applied: StateEvent[];
  snapshots: Snapshot[];
  model: Model;
}

/** An EventFollower on `eventEndpoints` (control calls through `control`), keeping a model of the state; stopped after the test. */
async function follow(eventEndpoints: string[], control: ControlClient): Promise<FollowerHandle> {
  const handle: FollowerHandle = { follower: undefined as unknown as EventFollower, applied: [], snapshots: [], model: new Map() };
  handle.follower = new EventFollower({
    eventEndpoints, control, sockets: testSockets(), log: silentLogger(),
    onSnapshot: (snapshot) => {
      handle.snapshots.push(snapshot);
      handle.model = modelOf(snapshot);
    },
    onEvent: (event) => {
      handle.applied.push(event);
      applyTo(handle.model, event);
    },
  });
  onCleanup(() => handle.follower.stop());
  await handle.follower.start();
  return handle;
}

/** Asserts the follower applied each event once, in order, with no hole, up to the database's newest event. */
async function expectCaughtUp(handle: FollowerHandle): Promise<void> {
  const snapshot = await takeSnapshot(pool, new NodeLiveness(1500));
  expect(handle.follower.version).toBe(snapshot.version);
  const base = handle.snapshots.at(-1)!.version;
  const versions = handle.applied.filter((e) => e.version > base).map((e) => e.version);
  expect(versions).toEqual(Array.from({ length: snapshot.version - base }, (_, i) => base + 1 + i));
  expect(Object.fromEntries(handle.model)).toEqual(Object.fromEntries(modelOf(snapshot)));
}

/** A PUB socket this test controls, for feeding a follower chosen events and ticks; closed after the test. */
async function fakePublisher(): Promise<{ endpoint: string; publish: (message: EventMessage | TickMessage) => Promise<void> }> {
  const socket = testSockets().publisher('server');
  await socket.bind('tcp://127.0.0.1:*');
  const sender = new SerialSender(socket);
  onCleanup(async () => {
    await sender.drain();
    closeQuietly(socket);
  });
  return {
    endpoint: socket.lastEndpoint!,
    publish: (message) => sender.send([message.type === 'event' ? `${TOPIC_EVENT_PREFIX}${message.event.type}` : TOPIC_TICK, encode(message)]),
  };
}

const tick = (version: number): TickMessage => ({ v: 1, type: 'tick', nexusId: 'fake-nexus', version, isLeader: false, at: Date.now() });

/**
 * Publishes a stale copy of the follower's newest event until it counts a duplicate. Then the subscription is
 * live (later messages are not lost to a slow join), and the catch-up the follower runs on connecting is done:
 * it works through its queue in order, and that catch-up was queued before any message.
 */
async function waitJoined(handle: FollowerHandle, publish: (m: EventMessage) => Promise<void>, q = pool): Promise<void> {
  const [newest] = await eventsSince(q, handle.follower.version - 1, 1);
  expect(newest?.version).toBe(handle.follower.version);
  await waitFor(async () => {
    await publish({ v: 1, type: 'event', event: newest! });
    return handle.follower.stats.duplicates > 0;
  }, { name: 'follower subscribed', timeoutMs: 5000 });
}

describe('nexus events', () => {
  it('publishes one event per state change on topic ev.<type>, versions increasing by exactly one, when mutations go through the control socket', async () => {
    const n = await startNexus(dbUrl);
    const client = controlClient([n.control], 2000);
    const token = await newOwner(client);
    const received = subscribe([n.events]);
    // The first tick proves the subscription is live; PUB drops what it sends before that.
    await waitFor(() => received.some((r) => r.message.type === 'tick'), { name: 'first tick', timeoutMs: 5000 });
    const before = eventsOf(received).length;

    const app = name('evt');
    await client.call('app.create', { token, name: app });
    await client.call('host.add', { token, app, hostname: `${app}.example.test` });
    await client.call('config.set', { token, app, vars: { A: '1', B: '2' } });
    await client.call('config.unset', { token, app, keys: ['A'] });
    await client.call('host.remove', { token, app, hostname: `${app}.example.test` });
    await client.call('app.destroy', { token, app });
    // A last change marks the end: everything published before it has arrived once it has.
    const sentinel = name('sentinel');
    await client.call('app.create', { token, name: sentinel });
    await waitFor(() => eventsOf(received).some((r) => r.event.app === sentinel), { name: 'sentinel event', timeoutMs: 5000 });

    const got = eventsOf(received).slice(before, -1);
    expect(got.map((r) => r.event.type)).toEqual(['app.created', 'host.added', 'config.changed', 'config.changed', 'host.removed', 'app.destroyed']);
    expect(got.every((r) => r.event.app === app)).toBe(true);
    expect(got.map((r) => r.topic)).toEqual(got.map((r) => `ev.${r.event.type}`));
    for (let i = 1; i < got.length; i++) expect(got[i]!.event.version).toBe(got[i - 1]!.event.version + 1);
    expect(got[1]!.event.data).toEqual({ hostname: `${app}.example.test` });
    expect(got[2]!.event.data).toEqual({ set: ['A', 'B'], unset: [] });
    expect(got[3]!.event.data).toEqual({ set: [], unset: ['A'] });
    // What was published is exactly what the events table holds.
    const stored = await eventsSince(pool, got[0]!.event.version - 1, got.length);
    expect(got.map((r) => r.event)).toEqual(stored);
  });

  it('publishes ticks carrying the nexus id and its latest published version when idle', async () => {
    const n = await startNexus(dbUrl);
    const received = subscribe([n.events]);
    const ticks = await waitFor(() => {
      const found = received.filter((r) => r.message.type === 'tick');
      return found.length >= 2 ? found : undefined;
    }, { name: 'two ticks', timeoutMs: 5000 });
    expect(ticks.every((t) => t.topic === TOPIC_TICK)).toBe(true);
    const message = ticks.at(-1)!.message as TickMessage;
    expect(message.nexusId).toBe(n.nexus.id);
    expect(message.version).toBe(n.nexus.relay!.published);
  });

  it('applies each event once when the follower hears it from two replicas', async () => {
    const a = await startNexus(dbUrl);
    const b = await startNexus(dbUrl);
    const client = controlClient([a.control, b.control], 2000);
    const token = await newOwner(client);
    const f = await follow([a.events, b.events], client);
    // Both subscriptions are live once a change arrives twice.
    await waitFor(async () => {
      if (f.follower.stats.duplicates > 0) return true;
      await client.call('app.create', { token, name: name('probe') });
      return false;
    }, { name: 'both replicas heard', timeoutMs: 5000, intervalMs: 100 });
    const duplicatesBefore = f.follower.stats.duplicates;
    const replayedBefore = f.follower.stats.replayed;
    const appliedBefore = f.applied.length;

    const app = name('dup');
    await client.call('app.create', { token, name: app });
    await client.call('host.add', { token, app, hostname: `${app}.example.test` });
    await client.call('config.set', { token, app, vars: { K: 'v' } });
    // Each of the three changes arrives twice (a probe's late copy may add one more duplicate).
    await waitFor(() => f.applied.some((e) => e.type === 'config.changed' && e.app === app) && f.follower.stats.duplicates - duplicatesBefore >= 3,
      { name: 'three changes heard twice', timeoutMs: 5000 });
    expect(f.applied.slice(appliedBefore).map((e) => e.type)).toEqual(['app.created', 'host.added', 'config.changed']);
    expect(f.follower.stats.replayed).toBe(replayedBefore);
    await expectCaughtUp(f);
  });

  it('replays the missed events in order when its only nexus died and a new replica took over its endpoint', async () => {
    const a = await startNexus(dbUrl);
    const b = await startNexus(dbUrl);
    const client = controlClient([b.control], 2000);
    const token = await newOwner(client);
    // The follower hears events from A only, but can call either replica.
    const f = await follow([a.events], controlClient([a.control, b.control], 300));
    const live = name('live');
    await client.call('app.create', { token, name: live });
    await waitFor(() => f.applied.some((e) => e.app === live), { name: 'live event', timeoutMs: 5000 });
    // Whatever the follower replayed on connecting to A was done before it applied the live event.
    const replayedBefore = f.follower.stats.replayed;

    // A dies; four changes go through B while the follower hears nothing.
    const aEvents = a.events;
    await a.nexus.stop();
    const missed = name('missed');
    await client.call('app.create', { token, name: missed });
    await client.call('host.add', { token, app: missed, hostname: `${missed}.example.test` });
    await client.call('host.add', { token, app: missed, hostname: `www.${missed}.example.test` });
    await client.call('app.destroy', { token, app: live });
    const target = (await takeSnapshot(pool, new NodeLiveness(1500))).version;
    expect(f.applied.some((e) => e.app === missed)).toBe(false);

    // A fresh replica C binds A's former events endpoint: the follower's SUB reconnects and learns it is behind.
    const c = await startNexus(dbUrl, { nexus: { eventsBind: aEvents } });
    expect(c.events).toBe(aEvents);
    await waitFor(() => f.follower.version === target, { name: 'replay to the newest version', timeoutMs: 8000 });
    expect(f.follower.stats.replayed - replayedBefore).toBe(4);
    expect(f.follower.stats.snapshots).toBe(1);
    expect(f.applied.filter((e) => e.app === missed).map((e) => e.type)).toEqual(['app.created', 'host.added', 'host.added']);
    await expectCaughtUp(f);
    expect(f.model.has(live)).toBe(false);
    expect(f.model.get(missed)).toEqual([`${missed}.example.test`, `www.${missed}.example.test`].sort());

    // Events after the recovery arrive live again, from C.
    const after = name('after');
    await client.call('app.create', { token, name: after });
    await waitFor(() => f.applied.some((e) => e.app === after), { name: 'event from the new replica', timeoutMs: 5000 });
    await expectCaughtUp(f);
  });

  it('starts a late follower from a snapshot that already holds the changes it never heard', async () => {
    const n = await startNexus(dbUrl);
    const client = controlClient([n.control], 2000);
    const token = await newOwner(client);
    const early = name('early');
    await client.call('app.create', { token, name: early });
    await client.call('host.add', { token, app: early, hostname: `${early}.example.test` });
    const f = await follow([n.events], client);
    expect(f.follower.stats.snapshots).toBe(1);
    expect(f.snapshots[0]!.apps.find((app) => app.name === early)?.hostnames).toEqual([`${early}.example.test`]);
    expect(f.applied).toEqual([]);
    await expectCaughtUp(f);
  });

  it('detects a gap when an event arrives ahead of its version and replays the missing ones with events.since', async () => {
    const n = await startNexus(dbUrl);
    const client = controlClient([n.control], 2000);
    const token = await newOwner(client);
    const pub = await fakePublisher();
    const f = await follow([pub.endpoint], client);
    await waitJoined(f, pub.publish);
    const start = f.follower.version;
    const { duplicates } = f.follower.stats;

    const app = name('gap');
    await client.call('app.create', { token, name: app });
    await client.call('host.add', { token, app, hostname: `${app}.example.test` });
    await client.call('config.set', { token, app, vars: { K: 'v' } });
    const [first, second, third] = await eventsSince(pool, start, 3);
    // Only the third change reaches the follower: it is two versions ahead.
    await pub.publish({ v: 1, type: 'event', event: third! });
    await waitFor(() => f.follower.version === third!.version, { name: 'gap replayed', timeoutMs: 5000 });
    expect(f.follower.stats.gaps).toBe(1);
    expect(f.follower.stats.replayed).toBe(3);
    expect(f.follower.stats.snapshots).toBe(1);
    expect(f.applied).toEqual([first, second, third]);

    // A late copy of an event already applied is dropped as a duplicate.
    await pub.publish({ v: 1, type: 'event', event: first! });
    await waitFor(() => f.follower.stats.duplicates === duplicates + 1, { name: 'duplicate counted', timeoutMs: 5000 });
    expect(f.applied).toHaveLength(3);
    await expectCaughtUp(f);
  });

  it('catches up when a tick shows a newer version than the follower has applied', async () => {
    const n = await startNexus(dbUrl);
    const client = controlClient([n.control], 2000);
    const token = await newOwner(client);
    const pub = await fakePublisher();
    const f = await follow([pub.endpoint], client);
    await waitJoined(f, pub.publish);

    const app = name('tick');
    await client.call('app.create', { token, name: app });
    await client.call('app.destroy', { token, app });
    const target = (await takeSnapshot(pool, new NodeLiveness(1500))).version;
    expect(f.applied).toEqual([]);
    await pub.publish(tick(target));
    await waitFor(() => f.follower.version === target, { name: 'tick replay', timeoutMs: 5000 });
    expect(f.follower.stats.gaps).toBe(0);
    expect(f.follower.stats.replayed).toBe(f.applied.length);
    expect(f.applied.filter((e) => e.app === app).map((e) => e.type)).toEqual(['app.created', 'app.destroyed']);
    await expectCaughtUp(f);
  });

  it('counts an invalid message and keeps following when a publisher sends garbage', async () => {
    const n = await startNexus(dbUrl);
    const client = controlClient([n.control], 2000);
    const token = await newOwner(client);
    const socket = testSockets().publisher('server');
    await socket.bind('tcp://127.0.0.1:*');
    onCleanup(async () => closeQuietly(socket));
    const f = await follow([socket.lastEndpoint!, n.events], client);
    await waitFor(async () => {
      await socket.send(['ev.app.created', Buffer.from([0xc1, 0x00, 0xff])]);
      return f.follower.stats.invalid > 0;
    }, { name: 'garbage counted', timeoutMs: 5000 });
    const app = name('still');
    await client.call('app.create', { token, name: app });
    await waitFor(() => f.applied.some((e) => e.app === app), { name: 'event after garbage', timeoutMs: 5000 });
    await expectCaughtUp(f);
  });
});

describe('nexus events with trimmed history', () => {
  it('reloads a snapshot when the events it missed are no longer kept', async () => {
    // Its own database: trimming the events table must not disturb the other tests.
    const trimmedUrl = await testDatabase();
    const trimmedPool = testPool(trimmedUrl);
    const token = `pier_admin_${randomId(16)}`;
    await withTransaction(trimmedPool, (tx) => ensureAdmin(tx, 'admin', token));
    const n: NexusHandle = await startNexus(trimmedUrl);
    const client = controlClient([n.control], 2000);
    const pub = await fakePublisher();
    const f = await follow([pub.endpoint], client);
    await waitJoined(f, pub.publish, trimmedPool);
    const start = f.follower.version;

    const apps = [name('trim'), name('trim'), name('trim')];
    for (const app of apps) await client.call('app.create', { token, name: app });
    const target = start + 3;
    await waitFor(() => n.nexus.relay!.published === target, { name: 'relay published', timeoutMs: 5000 });
    // The retention job ran: the first missed event is gone.
    await trimmedPool.query('DELETE FROM events WHERE id <= $1', [start + 1]);
    await pub.publish(tick(target));
    await waitFor(() => f.follower.version === target, { name: 'resync', timeoutMs: 5000 });
    expect(f.follower.stats.snapshots).toBe(2);
    expect(f.follower.stats.replayed).toBe(0);
    expect(f.applied).toEqual([]);
    expect(f.snapshots[1]!.apps.map((app) => app.name)).toEqual(expect.arrayContaining(apps));
  });
});
