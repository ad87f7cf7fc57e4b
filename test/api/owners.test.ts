/** The JSON API's authentication and owner scoping: tokens, admin-only endpoints, 404 for another owner's app. */
import { describe, expect, it } from 'vitest';
import { ensureAdmin, withTransaction } from '../../src/db/index.js';
import { newToken } from '../../src/core/ids.js';
import { startNexus, type NexusHandle } from '../helpers/daemons.js';
import { apiCaller } from '../helpers/api.js';
import { testDatabase, testPool } from '../helpers/postgres.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);
const adminToken = newToken();
await withTransaction(pool, (tx) => ensureAdmin(tx, 'admin', adminToken));

async function call(n: NexusHandle, token: string | undefined, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const { status, json } = await apiCaller(() => n.api, token || undefined)<Record<string, any>>(method, path, body, headers);
  return { status, body: json };
}

describe('API owners and scoping', () => {
  it('creates owners with tokens, and keeps each owner to its own apps', async () => {
    const n = await startNexus(dbUrl);
    const alice = await call(n, adminToken, 'POST', '/v1/owners', { name: 'alice' });
    const bob = await call(n, adminToken, 'POST', '/v1/owners', { name: 'bob' });
    expect(alice.status).toBe(201);
    expect(alice.body.token).toMatch(/^pier_/);
    const a = alice.body.token as string;
    const b = bob.body.token as string;
    expect((await call(n, a, 'POST', '/v1/apps', { name: 'alices-app' })).status).toBe(201);
    expect((await call(n, a, 'POST', '/v1/apps/alices-app/hostnames', { hostname: 'alice.example.test' })).status).toBe(201);
    expect((await call(n, a, 'PATCH', '/v1/apps/alices-app/config', { SECRET: 's3' })).status).toBe(200);

    const attempts: Array<[string, string, unknown?]> = [
      ['GET', '/v1/apps/alices-app'],
      ['DELETE', '/v1/apps/alices-app'],
      ['GET', '/v1/apps/alices-app/config'],
      ['PATCH', '/v1/apps/alices-app/config', { SECRET: 'stolen' }],
      ['POST', '/v1/apps/alices-app/hostnames', { hostname: 'bob.example.test' }],
      ['DELETE', '/v1/apps/alices-app/hostnames/alice.example.test'],
      ['GET', '/v1/apps/alices-app/releases'],
      ['PATCH', '/v1/apps/alices-app/formation', { web: 5 }],
    ];
    for (const [method, path, body] of attempts) {
      const res = await call(n, b, method, path, body);
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(res.body).toEqual({ error: { code: 'PIER_NOT_FOUND', message: "app 'alices-app' not found; run 'pier apps' to list your apps" } });
    }
    expect((await call(n, b, 'GET', '/v1/apps')).body.apps).toEqual([]);
    const info = (await call(n, a, 'GET', '/v1/apps/alices-app')).body.app;
    expect(info).toMatchObject({ name: 'alices-app', owner: 'alice', webScale: 1, hostnames: ['alice.example.test'] });
    expect((await call(n, a, 'GET', '/v1/apps/alices-app/config')).body.vars).toEqual({ SECRET: 's3' });
    // A taken name or hostname is a conflict, and says nothing about who holds it.
    const taken = await call(n, b, 'POST', '/v1/apps', { name: 'alices-app' });
    expect(taken.status).toBe(409);
    expect((await call(n, b, 'POST', '/v1/apps', { name: 'bobs-app' })).status).toBe(201);
    const host = await call(n, b, 'POST', '/v1/apps/bobs-app/hostnames', { hostname: 'alice.example.test' });
    expect(host.status).toBe(409);
    expect(host.body.error.message).toBe("hostname 'alice.example.test' is already in use");
  });

  it('answers 401 without or with a wrong token and 403 to owners on operator endpoints', async () => {
    const n = await startNexus(dbUrl);
    expect((await call(n, undefined, 'GET', '/v1/apps')).status).toBe(401);
    expect((await call(n, 'pier_wrong', 'GET', '/v1/apps')).body.error.code).toBe('PIER_UNAUTHORIZED');
    const carol = (await call(n, adminToken, 'POST', '/v1/owners', { name: 'carol' })).body.token as string;
    for (const [method, path, body] of [['GET', '/v1/nodes'], ['GET', '/v1/owners'], ['POST', '/v1/owners', { name: 'dave' }], ['GET', '/v1/events']] as const) {
      expect((await call(n, carol, method, path, body)).status, path).toBe(403);
    }
    expect((await call(n, adminToken, 'GET', '/v1/events?after=0&limit=5')).body.events.length).toBeGreaterThan(0);
    expect((await call(n, adminToken, 'GET', '/v1/events?after=-1')).status).toBe(400);
  });

  it('applies a retried POST with the same Idempotency-Key once', async () => {
    const n = await startNexus(dbUrl);
    const key = { 'idempotency-key': 'same-key-1' };
    const first = await call(n, adminToken, 'POST', '/v1/apps', { name: 'once' }, key);
    const second = await call(n, adminToken, 'POST', '/v1/apps', { name: 'once' }, key);
    expect(first.status).toBe(201);
    expect(second.status).toBe(201);
    expect(second.body).toEqual(first.body);
    expect((await call(n, adminToken, 'GET', '/v1/apps')).body.apps.filter((a: { name: string }) => a.name === 'once')).toHaveLength(1);
  });
});
