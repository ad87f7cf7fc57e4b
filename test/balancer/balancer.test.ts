/**
 * The balancer daemon against a real nexus and PostgreSQL. Until runners exist, the test plays the scheduler and the
 * runner: it writes the app, a runner node, a release and a ready instance straight into the database with their
 * events (one transaction), and heartbeats as that runner so the leader keeps the instance.
 */
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { Balancer } from '../../src/balancer/balancer.js';
import { randomId } from '../../src/core/ids.js';
import { silentLogger } from '../../src/core/logger.js';
import { addHostname, appendEvent, createApp, createOwner, getInstance, withTransaction } from '../../src/db/index.js';
import { AccessMessage, decode } from '../../src/protocol/index.js';
import { HeartbeatPublisher } from '../../src/transport/index.js';
import { testConfig } from '../helpers/config.js';
import { onCleanup, startNexus, testSockets, type NexusHandle } from '../helpers/daemons.js';
import { testDatabase, testPool } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';
import { send, startBackend } from './helpers.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);

async function startBalancer(nexus: NexusHandle, stats: Array<{ intake: string; tail: string }> = []): Promise<Balancer> {
  const config = testConfig({
    cluster: { nexus: [{ control: nexus.control, events: nexus.events, heartbeats: nexus.heartbeats, api: nexus.api }], stats },
    balancer: { id: `balancer-${randomId()}`, host: '127.0.0.1', port: 0, shutdownGraceMs: 2000 },
  });
  const balancer = new Balancer({ config, log: silentLogger() });
  onCleanup(() => balancer.stop());
  await balancer.start();
  return balancer;
}

/** Heartbeats as a runner, so the leader's scheduler sees it alive and keeps its instances. */
function fakeRunnerHeartbeats(nexus: NexusHandle, runnerId: string): void {
  const heartbeat = new HeartbeatPublisher({ nodeId: runnerId, kind: 'runner', endpoints: [nexus.heartbeats], intervalMs: 50, sockets: testSockets() });
  heartbeat.start();
  onCleanup(async () => heartbeat.stop());
}

interface Deployed {
  app: string;
  instanceId: string;
}

/** Creates an app with a live release v1 and one ready instance at `port`, with every event, in one transaction. */
async function deployByHand(db: pg.Pool, runnerId: string, port: number): Promise<Deployed> {
  const app = `app-${randomId()}`;
  const instanceId = `${app}-v1-${randomId(3)}`;
  await withTransaction(db, async (tx) => {
    const { owner } = await createOwner(tx, `own-${randomId()}`, true);
    const ownerId = (await tx.query<{ id: number }>('SELECT id FROM owners WHERE name = $1', [owner.name])).rows[0]!.id;
    await createApp(tx, { ownerId, name: owner.name, isAdmin: true }, app); // appends app.created
    const appId = (await tx.query<{ id: number }>('SELECT id FROM apps WHERE name = $1', [app])).rows[0]!.id;
    await addHostname(tx, { id: appId, name: app }, `www.${app}.example.com`); // appends host.added
    const sha = randomId(32);
    await tx.query('INSERT INTO artifacts (sha256, size_bytes, bytes) VALUES ($1, 0, $2)', [sha, Buffer.alloc(0)]);
    const release = await tx.query<{ id: number }>(
      "INSERT INTO releases (app_id, version, sha256, status) VALUES ($1, 1, $2, 'live') RETURNING id", [appId, sha],
    );
    const releaseId = release.rows[0]!.id;
    await tx.query('UPDATE apps SET release_id = $2, live_release_id = $2, web_scale = 1 WHERE id = $1', [appId, releaseId]);
    await tx.query(
      `INSERT INTO nodes (id, kind, address, status, last_heartbeat_at) VALUES ($1, 'runner', '127.0.0.1', 'alive', now())
       ON CONFLICT (id) DO NOTHING`, [runnerId],
    );
    await tx.query(
      "INSERT INTO instances (id, app_id, release_id, runner_id, state, port) VALUES ($1, $2, $3, $4, 'ready', $5)",
      [instanceId, appId, releaseId, runnerId, port],
    );
    const instance = await getInstance(tx, instanceId);
    await appendEvent(tx, 'instance.changed', app, instance as unknown as Record<string, unknown>);
    await appendEvent(tx, 'release.live', app, { release: 1 });
  });
  return { app, instanceId };
}

async function removeByHand(db: pg.Pool, deployed: Deployed): Promise<void> {
  await withTransaction(db, async (tx) => {
    await tx.query('UPDATE apps SET web_scale = 0 WHERE name = $1', [deployed.app]);
    await tx.query('DELETE FROM instances WHERE id = $1', [deployed.instanceId]);
    await appendEvent(tx, 'instance.removed', deployed.app, { id: deployed.instanceId });
  });
}

describe('Balancer', () => {
  it('routes to an instance within a second of its events and answers 503 once it is removed, without reloading', async () => {
    const nexus = await startNexus(dbUrl);
    const backend = await startBackend('real');
    const runnerId = `runner-${randomId()}`;
    fakeRunnerHeartbeats(nexus, runnerId);
    const balancer = await startBalancer(nexus);
    const port = balancer.port!;

    const deployed = await deployByHand(pool, runnerId, backend.port);
    const host = `www.${deployed.app}.example.com`;
    const started = Date.now();
    await waitFor(async () => (await send(port, host)).status === 200, { timeoutMs: 1000, intervalMs: 20, name: 'route to the new instance' });
    const routedMs = Date.now() - started;
    expect(routedMs).toBeLessThan(1000);
    const reply = await send(port, `${deployed.app}.localhost:8080`);
    expect(reply.status).toBe(200);
    expect(reply.headers['x-backend']).toBe('real');

    await removeByHand(pool, deployed);
    await waitFor(async () => (await send(port, host)).status === 503, { timeoutMs: 1000, intervalMs: 20, name: '503 after removal' });
    expect(balancer.follower!.stats.snapshots).toBe(1);
    expect(balancer.follower!.stats.applied).toBeGreaterThanOrEqual(7);
    expect((await send(port, 'unknown.example.com')).status).toBe(404);
  });

  it('registers and heartbeats as a balancer node, and pushes one access record per request to stats', async () => {
    const nexus = await startNexus(dbUrl);
    const intake = testSockets().pull();
    await intake.bind('tcp://127.0.0.1:*');
    onCleanup(async () => intake.close());
    const balancer = await startBalancer(nexus, [{ intake: intake.lastEndpoint!, tail: 'tcp://127.0.0.1:1' }]);

    const { rows } = await pool.query<{ kind: string; address: string }>('SELECT kind, address FROM nodes WHERE id = $1', [balancer.id]);
    expect(rows[0]).toEqual({ kind: 'balancer', address: `127.0.0.1:${balancer.port}` });
    await waitFor(() => nexus.nexus.heartbeats!.lastSeen.has(balancer.id), { timeoutMs: 2000, name: 'balancer heartbeat' });

    // The PUSH socket connects asynchronously; records sent before that are dropped (and counted), by design.
    await waitFor(async () => {
      await send(balancer.port!, 'nobody.example.com', { headers: { 'x-request-id': 'stats-probe' } });
      return balancer.accessLog!.stats.sent > 0;
    }, { timeoutMs: 3000, name: 'first access record sent' });
    const [frame] = await intake.receive();
    const message = decode(frame!, AccessMessage);
    expect(message).toMatchObject({ v: 1, type: 'access', app: null, host: 'nobody.example.com', status: 404, requestId: 'stats-probe', balancerId: balancer.id });
  });

  it('lets an in-flight request finish on stop, then refuses connections; stop is idempotent', async () => {
    const nexus = await startNexus(dbUrl);
    const slow = await startBackend('slow', (req, res) => setTimeout(() => res.end('done'), 300));
    const runnerId = `runner-${randomId()}`;
    fakeRunnerHeartbeats(nexus, runnerId);
    const balancer = await startBalancer(nexus);
    const deployed = await deployByHand(pool, runnerId, slow.port);
    const host = `${deployed.app}.localhost`;
    await waitFor(async () => (await send(balancer.port!, host)).status === 200, { timeoutMs: 2000, name: 'route ready' });

    const inflight = send(balancer.port!, host);
    await waitFor(() => balancer.proxyServer!.proxy.inflight === 1, { timeoutMs: 1000, name: 'request in flight' });
    const stops = [balancer.stop(), balancer.stop()];
    const reply = await inflight;
    expect(reply).toMatchObject({ status: 200, body: 'done' });
    await Promise.all(stops);
    await expect(send(balancer.port!, host)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await expect(balancer.start()).rejects.toMatchObject({ code: 'PIER_ILLEGAL_STATE' });
  });
});
