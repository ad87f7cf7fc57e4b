/**
 * The control client against dead, silent and lossy nexus endpoints (lazy pirate), and a retried mutation
 * applied once — all over real ZeroMQ sockets and a real nexus on PostgreSQL.
 */
import * as zmq from 'zeromq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PierError } from '../../src/core/errors.js';
import { withTransaction, createOwner, eventsSince } from '../../src/db/index.js';
import { closeQuietly } from '../../src/transport/index.js';
import { controlClient, startNexus, type NexusHandle } from '../helpers/daemons.js';
import { freePort } from '../helpers/ports.js';
import { testDatabase, testPool } from '../helpers/postgres.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);
let nexus: NexusHandle;
let token: string;
let silent: zmq.Router;
let silentEndpoint: string;

beforeAll(async () => {
  ({ token } = await withTransaction(pool, (tx) => createOwner(tx, 'failover-owner')));
  // A peer that accepts connections and requests but never answers.
  silent = new zmq.Router({ linger: 0 });
  await silent.bind('tcp://127.0.0.1:*');
  silentEndpoint = silent.lastEndpoint!;
  void (async () => {
    try {
      for await (const _ of silent) {
        // swallow every request
      }
    } catch {
      // closed at the end of the file
    }
  })();
});

afterAll(() => closeQuietly(silent));

async function deadEndpoint(): Promise<string> {
  return `tcp://127.0.0.1:${await freePort()}`;
}

describe('control client', () => {
  it('succeeds on the second endpoint within its timeout when nothing listens on the first', async () => {
    nexus = await startNexus(dbUrl);
    const client = controlClient([await deadEndpoint(), nexus.control], 300);
    const started = Date.now();
    const pong = await client.call('ping', {});
    expect(pong.nexusId).toBe(nexus.nexus.id);
    expect(Date.now() - started).toBeLessThan(300 + 500);
  });

  it('succeeds on the second endpoint when the first accepts but never replies', async () => {
    nexus = await startNexus(dbUrl);
    const client = controlClient([silentEndpoint, nexus.control], 300);
    const started = Date.now();
    await expect(client.call('ping', {})).resolves.toMatchObject({ nexusId: nexus.nexus.id });
    expect(Date.now() - started).toBeLessThan(300 + 500);
    // The client now prefers the endpoint that answered: the next call does not wait on the silent one.
    const again = Date.now();
    await client.call('ping', {});
    expect(Date.now() - again).toBeLessThan(200);
  });

  it('fails with one clear error naming every endpoint when all are dead', async () => {
    const dead = await deadEndpoint();
    const client = controlClient([dead, silentEndpoint], 200);
    const started = Date.now();
    const err = (await client.call('ping', {}).catch((e: unknown) => e)) as PierError;
    expect(err).toBeInstanceOf(PierError);
    expect(err.code).toBe('PIER_NEXUS_UNAVAILABLE');
    expect(err.message).not.toContain('\n');
    expect(err.message).toContain(dead);
    expect(err.message).toContain(silentEndpoint);
    expect(Date.now() - started).toBeLessThan(2 * 200 + 500);
  });

  it('applies a retried mutation once when the first nexus applied it but the reply was lost', async () => {
    nexus = await startNexus(dbUrl);
    // A relay that forwards requests to the real nexus and drops its replies: the mutation is applied, the
    // client hears nothing, times out, and retries the same request id on the next endpoint.
    const front = new zmq.Router({ linger: 0 });
    await front.bind('tcp://127.0.0.1:*');
    const back = new zmq.Dealer({ linger: 0 });
    back.connect(nexus.control);
    let forwarded = 0;
    const relay = (async () => {
      try {
        for await (const [, payload] of front) {
          forwarded += 1;
          await back.send(payload!);
        }
      } catch {
        // closed below
      }
    })();
    const drain = (async () => {
      try {
        for await (const _ of back) {
          // replies dropped on purpose
        }
      } catch {
        // closed below
      }
    })();
    try {
      const before = (await eventsSince(pool, 0, 10_000)).filter((e) => e.type === 'app.created').length;
      const client = controlClient([front.lastEndpoint!, nexus.control], 400);
      const result = await client.call('app.create', { token, name: 'once-only' });
      expect(result.app.name).toBe('once-only');
      expect(forwarded).toBe(1);
      const created = (await eventsSince(pool, 0, 10_000)).filter((e) => e.type === 'app.created');
      expect(created.length - before).toBe(1);
      const { rows } = await pool.query("SELECT count(*)::int AS n FROM apps WHERE name = 'once-only'");
      expect(rows[0].n).toBe(1);
    } finally {
      closeQuietly(front);
      closeQuietly(back);
      await Promise.all([relay, drain]);
    }
  });

  it('answers a repeated request id with the first result, and refuses the id for another command', async () => {
    nexus = await startNexus(dbUrl);
    const client = controlClient([nexus.control], 1000);
    const first = await client.call('app.create', { token, name: 'retried-app' }, { id: 'fixed-id-1' });
    const second = await client.call('app.create', { token, name: 'retried-app' }, { id: 'fixed-id-1' });
    expect(second).toEqual(first);
    const err = (await client.call('config.set', { token, app: 'retried-app', vars: { A: '1' } }, { id: 'fixed-id-1' }).catch((e: unknown) => e)) as PierError;
    expect(err.code).toBe('PIER_CONFLICT');
    const fresh = (await client.call('app.create', { token, name: 'retried-app' }).catch((e: unknown) => e)) as PierError;
    expect(fresh.code).toBe('PIER_CONFLICT');
  });
});
