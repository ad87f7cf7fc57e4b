/**
 * Attack 11 of #10, "secrets kept too long": a new owner's token must never sit in the requests table (the
 * idempotency store), nor config values; tokens can be rotated (owners their own, operators anyone's) and the old
 * token is refused at once by every nexus replica (no replica caches tokens: each request looks its hash up).
 */
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { hashToken, newToken, randomId } from '../../src/core/ids.js';
import { ensureAdmin, eventsSince, withTransaction } from '../../src/db/index.js';
import { createLogger } from '../../src/core/logger.js';
import { Nexus } from '../../src/nexus/nexus.js';
import { controlClient, onCleanup, startNexus, type NexusHandle } from '../helpers/daemons.js';
import { testConfig } from '../helpers/config.js';
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

/** Rows of the requests table whose stored reply holds `secret` (as text, anywhere in the JSON). */
async function requestsHolding(secret: string): Promise<number> {
  const { rows } = await pool.query<{ n: string }>("SELECT count(*) AS n FROM requests WHERE strpos(coalesce(reply::text, ''), $1) > 0", [secret]);
  return Number(rows[0]!.n);
}

describe('api tokens', () => {
  it('keeps no token in the requests table after owners:create, and a retry answers the owner without it', async () => {
    const n = await startNexus(dbUrl);
    const name = `ap-o-${randomId(6)}`;
    const key = { 'idempotency-key': `ap-${randomId(12)}` };
    const first = await call(n, adminToken, 'POST', '/v1/owners', { name }, key);
    expect(first.status).toBe(201);
    const token = first.body.token as string;
    expect(token).toMatch(/^pier_/);
    // The request was remembered (so a retry is not applied twice), but not its token.
    const { rows } = await pool.query<{ reply: unknown }>('SELECT reply FROM requests WHERE id LIKE $1', [`%:${key['idempotency-key']}`]);
    expect(rows).toHaveLength(1);
    expect(JSON.stringify(rows[0]!.reply)).not.toContain(token);
    expect(await requestsHolding(token)).toBe(0);
    expect(await requestsHolding(hashToken(token))).toBe(0);
    const retry = await call(n, adminToken, 'POST', '/v1/owners', { name }, key);
    expect(retry.status).toBe(201);
    expect(retry.body).toEqual({
      owner: first.body.owner,
      message: `owner '${name}' was created by the first answer to this request, which alone showed its API token; if that token was lost, run 'pier tokens:rotate --owner ${name}'`,
    });
    expect((await call(n, token, 'GET', '/v1/status')).body.owner).toBe(name);

    // The control protocol's owner.create: same rule.
    const client = controlClient([n.control], 2000);
    const id = `ap-${randomId(12)}`;
    const other = `ap-c-${randomId(6)}`;
    const created = await client.call('owner.create', { token: adminToken, name: other }, { id });
    expect(created.token).toMatch(/^pier_/);
    expect(await requestsHolding(created.token!)).toBe(0);
    expect(await client.call('owner.create', { token: adminToken, name: other }, { id })).toEqual({ name: other, message: expect.stringContaining('tokens:rotate --owner') });
  });

  it('keeps no config value in the requests table, and a retried config change answers the vars as they are', async () => {
    const n = await startNexus(dbUrl);
    const app = `ap-${randomId(6)}`;
    expect((await call(n, adminToken, 'POST', '/v1/apps', { name: app })).status).toBe(201);
    const secret = `s3cret-${randomId(16)}`;
    const key = { 'idempotency-key': `ap-${randomId(12)}` };
    const first = await call(n, adminToken, 'PATCH', `/v1/apps/${app}/config`, { DATABASE_PASSWORD: secret }, key);
    expect(first.body).toEqual({ vars: { DATABASE_PASSWORD: secret } });
    expect(await requestsHolding(secret)).toBe(0);
    expect((await call(n, adminToken, 'PATCH', `/v1/apps/${app}/config`, { DATABASE_PASSWORD: secret }, key)).body).toEqual(first.body);

    const client = controlClient([n.control], 2000);
    const other = `o-${randomId(16)}`;
    const id = `ap-${randomId(12)}`;
    expect((await client.call('config.set', { token: adminToken, app, vars: { OTHER: other } }, { id })).vars.OTHER).toBe(other);
    expect(await requestsHolding(other)).toBe(0);
    expect((await client.call('config.set', { token: adminToken, app, vars: { OTHER: other } }, { id })).vars).toEqual({ DATABASE_PASSWORD: secret, OTHER: other });
  });

  it('rotates an owner token: the old one is refused at once by both replicas, the new one works on both', async () => {
    const [a, b] = [await startNexus(dbUrl), await startNexus(dbUrl)];
    const name = `ap-r-${randomId(6)}`;
    const old = (await call(a, adminToken, 'POST', '/v1/owners', { name })).body.token as string;
    expect((await call(b, old, 'GET', '/v1/apps')).status).toBe(200); // both replicas know it
    const rotated = await call(a, old, 'POST', '/v1/tokens/rotate', {});
    expect(rotated.status).toBe(200);
    expect(Object.keys(rotated.body).sort()).toEqual(['owner', 'token']);
    expect(rotated.body.owner).toBe(name);
    const fresh = rotated.body.token as string;
    expect(fresh).toMatch(/^pier_/);
    expect(fresh).not.toBe(old);
    for (const n of [a, b]) {
      const refused = await call(n, old, 'GET', '/v1/apps');
      expect(refused.status).toBe(401);
      expect(refused.body.error.code).toBe('PIER_UNAUTHORIZED');
      expect((await call(n, fresh, 'GET', '/v1/status')).body.owner).toBe(name);
    }
    // The old token cannot rotate again (a replay of the rotation is a 401, not a second new token).
    expect((await call(b, old, 'POST', '/v1/tokens/rotate')).status).toBe(401);
    expect(await requestsHolding(fresh)).toBe(0);
    // A POST with no body at all (curl -X POST) rotates the caller's own token too.
    const again = await call(b, fresh, 'POST', '/v1/tokens/rotate');
    expect(again.status).toBe(200);
    expect((await call(a, fresh, 'GET', '/v1/status')).status).toBe(401);
    expect((await call(a, again.body.token, 'GET', '/v1/status')).status).toBe(200);
    const events = (await eventsSince(pool, 0, 100_000)).filter((e) => e.type === 'owner.token_rotated' && e.data.owner === name);
    expect(events.map((e) => e.data)).toEqual([{ owner: name, by: name }, { owner: name, by: name }]);
  });

  it("lets an operator rotate another owner's token, and refuses owners that try (403) or name nobody (404)", async () => {
    const n = await startNexus(dbUrl);
    const carol = `ap-c-${randomId(6)}`;
    const dave = `ap-d-${randomId(6)}`;
    const carolToken = (await call(n, adminToken, 'POST', '/v1/owners', { name: carol })).body.token as string;
    const daveToken = (await call(n, adminToken, 'POST', '/v1/owners', { name: dave })).body.token as string;
    const denied = await call(n, carolToken, 'POST', '/v1/tokens/rotate', { owner: dave });
    expect(denied.status).toBe(403);
    expect(denied.body.error.code).toBe('PIER_FORBIDDEN');
    expect((await call(n, daveToken, 'GET', '/v1/status')).status).toBe(200);
    const byAdmin = await call(n, adminToken, 'POST', '/v1/tokens/rotate', { owner: dave });
    expect(byAdmin.status).toBe(200);
    expect(byAdmin.body.owner).toBe(dave);
    expect((await call(n, daveToken, 'GET', '/v1/status')).status).toBe(401);
    expect((await call(n, byAdmin.body.token, 'GET', '/v1/status')).body.owner).toBe(dave);
    expect((await call(n, adminToken, 'GET', '/v1/status')).status).toBe(200); // the operator's own token is untouched
    expect((await call(n, carolToken, 'POST', '/v1/tokens/rotate', { owner: carol })).status).toBe(200); // naming yourself is fine

    const nobody = await call(n, adminToken, 'POST', '/v1/tokens/rotate', { owner: 'ap-nobody' });
    expect(nobody.status).toBe(404);
    expect(nobody.body.error.message).toBe("owner 'ap-nobody' not found; GET /v1/owners lists them");
    const bad = await call(n, adminToken, 'POST', '/v1/tokens/rotate', { owner: 'Not_A_Name' });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toContain('body.owner');
    const extra = await call(n, adminToken, 'POST', '/v1/tokens/rotate', { owner: dave, ttl: 5 });
    expect(extra.body.error.message).toBe("body has an unknown field 'ttl'");
    expect((await call(n, undefined, 'POST', '/v1/tokens/rotate', {})).status).toBe(401);
  });

  it('scrubs tokens and config values from replies remembered before the upgrade (migration 0008)', async () => {
    const id = (what: string) => `ap-old-${what}-${randomId(8)}`;
    const rows: Array<[string, string, unknown]> = [
      [id('owner'), 'owner.create', { owner: { name: 'x', isAdmin: false, createdAt: 1 }, token: 'pier_old_api_secret' }],
      [id('control'), 'owner.create', { name: 'y', token: 'pier_old_control_secret' }],
      [id('config'), 'config.change', { K: 'old-config-secret' }],
      [id('set'), 'config.set', { vars: { K: 'old-set-secret' } }],
      [id('app'), 'app.create', { app: { name: 'kept' } }],
    ];
    for (const [rid, type, reply] of rows) await pool.query('INSERT INTO requests (id, type, reply) VALUES ($1, $2, $3)', [rid, type, JSON.stringify(reply)]);
    await pool.query(readFileSync(new URL('../../src/db/migrations/0008_no_secrets_in_requests.sql', import.meta.url), 'utf8'));
    for (const secret of ['pier_old_api_secret', 'pier_old_control_secret', 'old-config-secret', 'old-set-secret']) expect(await requestsHolding(secret), secret).toBe(0);
    const { rows: kept } = await pool.query<{ id: string; reply: unknown }>('SELECT id, reply FROM requests WHERE id = ANY($1) ORDER BY id', [rows.map((r) => r[0])]);
    expect(Object.fromEntries(kept.map((r) => [r.id.split('-')[2], r.reply]))).toEqual({
      owner: { owner: { name: 'x', isAdmin: false, createdAt: 1 } }, control: { name: 'y' }, config: null, set: null, app: { app: { name: 'kept' } },
    });
  });

  it('writes no token to the log, even at trace level, whatever the requests do', async () => {
    let logged = '';
    const sink = new Writable({ write: (chunk, _enc, done) => { logged += String(chunk); done(); } });
    const nexus = new Nexus({ config: testConfig({ nexus: { id: `nexus-${randomId()}` } }), dbUrl, log: createLogger({ level: 'trace', name: 'nexus' }, sink) });
    onCleanup(() => nexus.stop());
    await nexus.start();
    const n = { nexus, ...nexus.endpoints! } as NexusHandle;
    const name = `ap-l-${randomId(6)}`;
    const created = await call(n, adminToken, 'POST', '/v1/owners', { name }, { 'idempotency-key': randomId(12) });
    const token = created.body.token as string;
    const rotated = (await call(n, token, 'POST', '/v1/tokens/rotate', {})).body.token as string;
    await call(n, token, 'POST', '/v1/apps', { name: 'refused' }); // the old token, refused
    await call(n, `${token}x`, 'GET', '/v1/apps');
    const client = controlClient([n.control], 2000);
    await expect(client.call('app.list', { token })).rejects.toMatchObject({ code: 'PIER_UNAUTHORIZED' });
    await client.call('app.list', { token: rotated });
    await client.call('owner.create', { token: adminToken, name: `ap-m-${randomId(6)}` });
    expect(logged).toContain('api request'); // the log did see every request
    for (const secret of [adminToken, token, rotated]) expect(logged.includes(secret), 'a token in the log').toBe(false);
    expect(logged).not.toMatch(/pier_[A-Za-z0-9_-]{20,}/);
  });
});
