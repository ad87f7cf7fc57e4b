/**
 * State changes reach ZeroMQ subscribers as versioned events (strictly increasing by one), and a follower that
 * missed events — its nexus died while changes went through another replica — recovers them by replay.
 */
import { describe, expect, it } from 'vitest';
import { withTransaction, createOwner, takeSnapshot } from '../../src/db/index.js';
import { silentLogger } from '../../src/core/logger.js';
import { decode, PubMessage, type StateEvent, type Snapshot } from '../../src/protocol/index.js';
import { EventFollower, closeQuietly } from '../../src/transport/index.js';
import { controlClient, onCleanup, startNexus, testSockets } from '../helpers/daemons.js';
import { testDatabase, testPool } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);
const { token } = await withTransaction(pool, (tx) => createOwner(tx, 'events-owner'));

describe('events', () => {
  it('publishes each state change once, in order, with versions increasing by exactly one', async () => {
    const n = await startNexus(dbUrl);
    const sub = testSockets().subscriber('client');
    onCleanup(async () => closeQuietly(sub));
    sub.subscribe('ev.');
    sub.connect(n.events);
    const received: Array<{ topic: string; event: StateEvent }> = [];
    const loop = (async () => {
      try {
        for await (const [topic, payload] of sub) {
          const message = decode(payload!, PubMessage) as PubMessage;
          if (message.type === 'event') received.push({ topic: topic!.toString(), event: message.event });
        }
      } catch {
        // closed
      }
    })();
    const client = controlClient([n.control]);
    // The SUB connects asynchronously; wait until it hears a first change before counting.
    let probes = 0;
    await waitFor(async () => {
      if (received.length > 0) return true;
      await client.call('app.create', { token, name: `probe-${probes++}` });
      return false;
    }, { name: 'subscriber connected', timeoutMs: 5000, intervalMs: 100 });
    await waitFor(() => received.length === probes, { name: 'probe events', timeoutMs: 5000 });
    const start = received.length;
    await client.call('app.create', { token, name: 'evt-app' });
    await client.call('host.add', { token, app: 'evt-app', hostname: 'evt.example.test' });
    await client.call('config.set', { token, app: 'evt-app', vars: { A: '1', B: '2' } });
    await client.call('config.unset', { token, app: 'evt-app', keys: ['A'] });
    await client.call('host.remove', { token, app: 'evt-app', hostname: 'evt.example.test' });
    await client.call('app.destroy', { token, app: 'evt-app' });
    await waitFor(() => received.length >= start + 6, { name: 'six events', timeoutMs: 5000 });
    const got = received.slice(start);
    expect(got.map((r) => r.event.type)).toEqual(['app.created', 'host.added', 'config.changed', 'config.changed', 'host.removed', 'app.destroyed']);
    expect(got.map((r) => r.topic)).toEqual(got.map((r) => `ev.${r.event.type}`));
    for (let i = 1; i < got.length; i++) expect(got[i]!.event.version).toBe(got[i - 1]!.event.version + 1);
    expect(got[2]!.event.data).toEqual({ set: ['A', 'B'], unset: [] });
    closeQuietly(sub);
    await loop;
  });

  it('lets a follower that missed events while its nexus was down recover them by replay', async () => {
    const a = await startNexus(dbUrl);
    const b = await startNexus(dbUrl);
    const applied: StateEvent[] = [];
    let snapshot: Snapshot | undefined;
    const follower = new EventFollower({
      eventEndpoints: [a.events],
      control: controlClient([a.control, b.control], 300),
      sockets: testSockets(),
      log: silentLogger(),
      onSnapshot: (s) => {
        snapshot = s;
      },
      onEvent: (e) => {
        applied.push(e);
      },
    });
    onCleanup(() => follower.stop());
    await follower.start();
    expect(snapshot).toBeDefined();
    const client = controlClient([b.control]);
    await client.call('app.create', { token, name: 'before-gap' });
    await waitFor(() => applied.some((e) => e.app === 'before-gap'), { name: 'live event', timeoutMs: 5000 });

    // Nexus A dies: the follower hears nothing while three changes go through nexus B.
    const eventsEndpoint = a.events;
    await a.nexus.stop();
    await client.call('app.create', { token, name: 'in-gap' });
    await client.call('host.add', { token, app: 'in-gap', hostname: 'gap.example.test' });
    await client.call('config.set', { token, app: 'in-gap', vars: { K: 'v' } });
    expect(applied.some((e) => e.app === 'in-gap')).toBe(false);

    // A replacement replica comes up where A was; its first tick shows the follower it is behind.
    await startNexus(dbUrl, { nexus: { eventsBind: eventsEndpoint } });
    await waitFor(() => applied.filter((e) => e.app === 'in-gap').length === 3, { name: 'replayed events', timeoutMs: 5000 });
    expect(follower.stats.replayed).toBeGreaterThanOrEqual(3);
    const versions = applied.map((e) => e.version);
    for (let i = 1; i < versions.length; i++) expect(versions[i]).toBe(versions[i - 1]! + 1);
    expect(follower.version).toBe((await takeSnapshot(pool, 1500)).version);
  });

  it('starts a late follower from a snapshot that already holds earlier changes', async () => {
    const n = await startNexus(dbUrl);
    const client = controlClient([n.control]);
    await client.call('app.create', { token, name: 'early-bird' });
    let snapshot: Snapshot | undefined;
    const follower = new EventFollower({
      eventEndpoints: [n.events], control: client, sockets: testSockets(), log: silentLogger(),
      onSnapshot: (s) => {
        snapshot = s;
      },
      onEvent: () => undefined,
    });
    onCleanup(() => follower.stop());
    await follower.start();
    expect(snapshot!.apps.map((app) => app.name)).toContain('early-bird');
    expect(follower.version).toBe(snapshot!.version);
    expect(follower.stats.snapshots).toBe(1);
  });
});
