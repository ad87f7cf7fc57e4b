/**
 * The lazy-pirate control client against dead, silent and reply-losing endpoints in front of real nexus
 * replicas, and the once-only application of retried mutations.
 */
import { describe, expect, it } from 'vitest';
import { PierError } from '../../src/core/errors.js';
import { randomId } from '../../src/core/ids.js';
import { createOwner, withTransaction } from '../../src/db/index.js';
import { ControlClient } from '../../src/transport/index.js';
import { controlClient, startNexus, testSockets } from '../helpers/daemons.js';
import { freePort } from '../helpers/ports.js';
import { testDatabase, testPool } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';
import { lossyRelay, silentRouter } from '../helpers/zmq.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);
const { token } = await withTransaction(pool, (tx) => createOwner(tx, `cc-${randomId()}`));

/** Slack for scheduling, socket set-up and a database round trip on a busy 2-core machine. */
const MARGIN_MS = 500;

const appName = () => `app-${randomId()}`;
const deadEndpoint = async () => `tcp://127.0.0.1:${await freePort()}`;

async function failure(promise: Promise<unknown>): Promise<PierError> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(PierError);
  return err as PierError;
}

/** `app.created` events for `app`, read through the control protocol. */
async function createdEvents(client: ControlClient, app: string): Promise<number> {
  const { events } = await client.call('events.since', { after: 0, limit: 10_000 });
  return events.filter((e) => e.type === 'app.created' && e.app === app).length;
}

describe('ControlClient', () => {
  it('succeeds on the second endpoint within its timeout when nothing listens on the first', async () => {
    const n = await startNexus(dbUrl);
    const timeoutMs = 300;
    const client = controlClient([await deadEndpoint(), n.control], timeoutMs);
    const started = Date.now();
    const pong = await client.call('ping', {});
    expect(pong.nexusId).toBe(n.nexus.id);
    expect(Date.now() - started).toBeLessThan(timeoutMs + MARGIN_MS);
  });

  it('succeeds on the second endpoint when the first accepts requests but never replies', async () => {
    const n = await startNexus(dbUrl);
    const silent = await silentRouter();
    const timeoutMs = 300;
    const client = controlClient([silent.endpoint, n.control], timeoutMs);
    const started = Date.now();
    await expect(client.call('ping', {})).resolves.toMatchObject({ nexusId: n.nexus.id });
    const elapsed = Date.now() - started;
    expect(silent.received).toBe(1);
    expect(elapsed).toBeGreaterThanOrEqual(timeoutMs - 10);
    expect(elapsed).toBeLessThan(timeoutMs + MARGIN_MS);

    // The endpoint that answered is tried first from now on: no more waiting on the silent one.
    const again = Date.now();
    await client.call('ping', {});
    expect(Date.now() - again).toBeLessThan(timeoutMs);
    expect(silent.received).toBe(1);
  });

  it('rejects with PIER_NEXUS_UNAVAILABLE and one line naming every endpoint when all are dead', async () => {
    const silent = await silentRouter();
    const endpoints = [await deadEndpoint(), silent.endpoint, await deadEndpoint()];
    const timeoutMs = 200;
    const client = controlClient(endpoints, timeoutMs);
    const started = Date.now();
    const err = await failure(client.call('ping', {}));
    const elapsed = Date.now() - started;
    expect(err.code).toBe('PIER_NEXUS_UNAVAILABLE');
    expect(err.message).not.toContain('\n');
    expect(err.message).toContain("no nexus answered 'ping' (tried 3:");
    for (const endpoint of endpoints) expect(err.message).toContain(endpoint);
    expect(err.details).toEqual({ endpoints });
    expect(elapsed).toBeGreaterThanOrEqual(endpoints.length * timeoutMs - 10);
    expect(elapsed).toBeLessThan(endpoints.length * timeoutMs + MARGIN_MS);
  });

  it('honours a per-call timeout when one is given', async () => {
    const silent = await silentRouter();
    const client = controlClient([silent.endpoint], 5000);
    const started = Date.now();
    const err = await failure(client.call('ping', {}, { timeoutMs: 150 }));
    expect(err.code).toBe('PIER_NEXUS_UNAVAILABLE');
    expect(err.message).toContain('no reply in 150 ms');
    expect(Date.now() - started).toBeLessThan(150 + MARGIN_MS);
  });

  it('passes the nexus error through instead of trying the next endpoint when a nexus refuses the call', async () => {
    const a = await startNexus(dbUrl);
    const b = await startNexus(dbUrl);
    const client = controlClient([a.control, b.control], 1000);
    const err = await failure(client.call('app.info', { token, app: 'no-such-app' }));
    expect(err.code).toBe('PIER_NOT_FOUND');
    expect(b.nexus.control!.stats.received).toBe(0);
  });

  it('answers a repeated request id with the first result and applies the mutation once', async () => {
    const n = await startNexus(dbUrl);
    const client = controlClient([n.control], 2000);
    const app = appName();
    const id = `retry-${randomId()}`;
    const first = await client.call('app.create', { token, name: app }, { id });
    const second = await client.call('app.create', { token, name: app }, { id });
    expect(second).toEqual(first);
    expect(first.app.name).toBe(app);
    expect(await createdEvents(client, app)).toBe(1);
    // Without the id, the same request is a new one and is refused: the name is taken.
    expect((await failure(client.call('app.create', { token, name: app }))).code).toBe('PIER_CONFLICT');
  });

  it('applies a mutation once when the first endpoint applied it but lost the reply', async () => {
    const n = await startNexus(dbUrl);
    const relay = await lossyRelay(n.control);
    const client = controlClient([relay.endpoint, n.control], 400);
    const app = appName();
    const result = await client.call('app.create', { token, name: app });
    expect(result.app.name).toBe(app);
    // The request did reach the nexus through the relay, and its reply was thrown away.
    expect(relay.forwarded).toBe(1);
    await waitFor(() => relay.dropped === 1, { name: 'dropped reply', timeoutMs: 2000 });
    expect(n.nexus.control!.stats.received).toBe(2);
    expect(await createdEvents(client, app)).toBe(1);
    const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM apps WHERE name = $1', [app]);
    expect(rows[0]!.n).toBe(1);
  });

  it('applies a mutation once when the same id reaches two replicas at the same time', async () => {
    const a = await startNexus(dbUrl);
    const b = await startNexus(dbUrl);
    const id = `race-${randomId()}`;
    const app = appName();
    const vars = { K: randomId() };
    const created = await controlClient([a.control], 2000).call('app.create', { token, name: app });
    expect(created.app.name).toBe(app);
    const [fromA, fromB] = await Promise.all([
      controlClient([a.control], 2000).call('config.set', { token, app, vars }, { id }),
      controlClient([b.control], 2000).call('config.set', { token, app, vars }, { id }),
    ]);
    expect(fromA).toEqual({ vars });
    expect(fromB).toEqual(fromA);
    const { events } = await controlClient([a.control], 2000).call('events.since', { after: 0, limit: 10_000 });
    expect(events.filter((e) => e.type === 'config.changed' && e.app === app)).toHaveLength(1);
  });

  it('refuses with PIER_CONFLICT when a request id is reused for a different command', async () => {
    const n = await startNexus(dbUrl);
    const client = controlClient([n.control], 2000);
    const app = appName();
    const id = `reuse-${randomId()}`;
    await client.call('app.create', { token, name: app }, { id });
    const err = await failure(client.call('config.set', { token, app, vars: { A: '1' } }, { id }));
    expect(err.code).toBe('PIER_CONFLICT');
    expect(err.message).toBe(`request id '${id}' was already used for 'app.create'; use a new id`);
    expect(await client.call('config.get', { token, app })).toEqual({ vars: {} });
  });

  it('rejects calls with PIER_ILLEGAL_STATE once closed', async () => {
    const n = await startNexus(dbUrl);
    const client = new ControlClient({ endpoints: [n.control], timeoutMs: 500, sockets: testSockets() });
    await client.call('ping', {});
    await client.close();
    expect((await failure(client.call('ping', {}))).code).toBe('PIER_ILLEGAL_STATE');
  });

  it('does not move on to the next endpoint when it is closed during a call', async () => {
    const n = await startNexus(dbUrl);
    const silent = await silentRouter();
    const client = new ControlClient({ endpoints: [silent.endpoint, n.control], timeoutMs: 1000, sockets: testSockets() });
    const pending = failure(client.call('app.create', { token, name: appName() }));
    await waitFor(() => silent.received === 1, { name: 'request at the silent endpoint', timeoutMs: 2000 });
    await client.close();
    expect((await pending).code).toBe('PIER_ILLEGAL_STATE');
    // Nothing reached the second endpoint after close: no mutation was applied behind the caller's back.
    expect(n.nexus.control!.stats.received).toBe(0);
  });

  it('refuses to be built without endpoints', () => {
    expect(() => new ControlClient({ endpoints: [], timeoutMs: 100, sockets: testSockets() }))
      .toThrow(expect.objectContaining({ code: 'PIER_ILLEGAL_STATE' }));
  });
});
