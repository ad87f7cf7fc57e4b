/**
 * The JSON API over real HTTP (fetch) against a nexus on PostgreSQL: the app owner's flow, isolation between
 * owners, authentication and authorization, validation, conflicts, idempotency and the one error shape.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import { ensureAdmin, eventsSince, withTransaction } from '../../src/db/index.js';
import { APP_NAME_PATTERN, PATTERN_HINTS } from '../../src/protocol/index.js';
import { startNexus, type NexusHandle } from '../helpers/daemons.js';
import { testDatabase, testPool } from '../helpers/postgres.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);
const BODY_LIMIT = 4096;
const adminToken = `pier_admin_${randomId(16)}`;
let n: NexusHandle;
let alice: string;
let bob: string;

interface Answer {
  status: number;
  body: any;
  headers: Headers;
}

/** One HTTP request to the nexus API; `body` is sent as JSON unless it is already a string. */
async function api(method: string, path: string, options: { token?: string; body?: unknown; headers?: Record<string, string> } = {}): Promise<Answer> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  let body: string | undefined;
  if (options.body !== undefined) {
    headers['content-type'] ??= 'application/json';
    body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
  }
  const res = await fetch(`${n.api}${path}`, { method, headers, body });
  const text = await res.text();
  return { status: res.status, body: text === '' ? undefined : JSON.parse(text), headers: res.headers };
}

/** Asserts the one error shape: exactly {"error":{"code","message"}}, JSON, one line. */
function expectError(answer: Answer, status: number, code: string): string {
  expect(answer.status, JSON.stringify(answer.body)).toBe(status);
  expect(answer.headers.get('content-type')).toMatch(/^application\/json/);
  expect(Object.keys(answer.body)).toEqual(['error']);
  expect(Object.keys(answer.body.error).sort()).toEqual(['code', 'message']);
  expect(answer.body.error.code).toBe(code);
  const message = answer.body.error.message as string;
  expect(typeof message).toBe('string');
  expect(message.length).toBeGreaterThan(0);
  expect(message).not.toContain('\n');
  return message;
}

async function createOwner(name: string): Promise<string> {
  const answer = await api('POST', '/v1/owners', { token: adminToken, body: { name } });
  expect(answer.status, JSON.stringify(answer.body)).toBe(201);
  return answer.body.token as string;
}

async function createApp(token: string, name = `app-${randomId()}`): Promise<string> {
  const answer = await api('POST', '/v1/apps', { token, body: { name } });
  expect(answer.status, JSON.stringify(answer.body)).toBe(201);
  return name;
}

beforeAll(async () => {
  await withTransaction(pool, (tx) => ensureAdmin(tx, 'admin', adminToken));
  n = await startNexus(dbUrl, { nexus: { apiBodyLimitBytes: BODY_LIMIT } }, 'file');
  alice = await createOwner('alice');
  bob = await createOwner('bob');
});

describe('api', () => {
  it('creates an owner with a fresh token when an admin asks', async () => {
    const answer = await api('POST', '/v1/owners', { token: adminToken, body: { name: 'carol' } });
    expect(answer.status).toBe(201);
    expect(answer.body.owner).toMatchObject({ name: 'carol', isAdmin: false });
    expect(answer.body.token).toMatch(/^pier_[A-Za-z0-9_-]{43}$/);
    const me = await api('GET', '/v1/status', { token: answer.body.token });
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ owner: 'carol', isAdmin: false, apps: [], nodes: [] });
    const owners = await api('GET', '/v1/owners', { token: adminToken });
    expect(owners.body.owners.map((o: { name: string }) => o.name)).toEqual(expect.arrayContaining(['admin', 'alice', 'bob', 'carol']));
    expectError(await api('POST', '/v1/owners', { token: adminToken, body: { name: 'carol' } }), 409, 'PIER_CONFLICT');
  });

  it('lets an owner create, list and show an app, attach hostnames, set and unset config, and destroy it', async () => {
    const name = `shop-${randomId()}`;
    const created = await api('POST', '/v1/apps', { token: alice, body: { name } });
    expect(created.status).toBe(201);
    expect(created.body).toEqual({ app: { name, owner: 'alice', webScale: 1, hostnames: [], createdAt: expect.any(Number) }, url: `http://${name}.localhost:8080/` });

    const list = await api('GET', '/v1/apps', { token: alice });
    expect(list.status).toBe(200);
    expect(list.body.apps).toContainEqual(created.body.app);

    const host = `www.${name}.example.com`;
    const added = await api('POST', `/v1/apps/${name}/hostnames`, { token: alice, body: { hostname: host } });
    expect(added.status).toBe(201);
    expect(added.body).toEqual({ hostnames: [host] });
    await api('POST', `/v1/apps/${name}/hostnames`, { token: alice, body: { hostname: `*.${name}.example.com` } });
    expect((await api('GET', `/v1/apps/${name}/hostnames`, { token: alice })).body).toEqual({ hostnames: [`*.${name}.example.com`, host].sort() });

    const set = await api('PATCH', `/v1/apps/${name}/config`, { token: alice, body: { K: 'v', DATABASE_URL: 'postgres://db/x' } });
    expect(set.status).toBe(200);
    expect(set.body).toEqual({ vars: { DATABASE_URL: 'postgres://db/x', K: 'v' } });
    const unset = await api('PATCH', `/v1/apps/${name}/config`, { token: alice, body: { K: null, NEW: 'n' } });
    expect(unset.body).toEqual({ vars: { DATABASE_URL: 'postgres://db/x', NEW: 'n' } });
    expect((await api('GET', `/v1/apps/${name}/config`, { token: alice })).body).toEqual({ vars: { DATABASE_URL: 'postgres://db/x', NEW: 'n' } });
    // Unsetting a var that is not set names it.
    expect(expectError(await api('PATCH', `/v1/apps/${name}/config`, { token: alice, body: { GONE: null } }), 404, 'PIER_NOT_FOUND')).toContain("'GONE'");

    const shown = await api('GET', `/v1/apps/${name}`, { token: alice });
    expect(shown.body.app.hostnames).toEqual([`*.${name}.example.com`, host].sort());
    const removed = await api('DELETE', `/v1/apps/${name}/hostnames/${host}`, { token: alice });
    expect(removed.body).toEqual({ hostnames: [`*.${name}.example.com`] });

    expect((await api('DELETE', `/v1/apps/${name}`, { token: alice })).body).toEqual({ ok: true });
    expectError(await api('GET', `/v1/apps/${name}`, { token: alice }), 404, 'PIER_NOT_FOUND');
    expect((await api('GET', '/v1/apps', { token: alice })).body.apps.map((a: { name: string }) => a.name)).not.toContain(name);
  });

  it("answers another owner's app exactly like a missing one (404) and changes nothing", async () => {
    const app = await createApp(alice);
    const host = `${app}.example.com`;
    expect((await api('POST', `/v1/apps/${app}/hostnames`, { token: alice, body: { hostname: host } })).status).toBe(201);
    expect((await api('PATCH', `/v1/apps/${app}/config`, { token: alice, body: { SECRET: 's3cret' } })).status).toBe(200);
    const before = (await api('GET', `/v1/apps/${app}`, { token: alice })).body;
    const eventsBefore = (await eventsSince(pool, 0, 100_000)).length;

    const attempts: Array<[string, string, unknown?]> = [
      ['GET', `/v1/apps/${app}`],
      ['DELETE', `/v1/apps/${app}`],
      ['GET', `/v1/apps/${app}/hostnames`],
      ['POST', `/v1/apps/${app}/hostnames`, { hostname: `bob.${app}.example.com` }],
      ['DELETE', `/v1/apps/${app}/hostnames/${host}`],
      ['GET', `/v1/apps/${app}/config`],
      ['PATCH', `/v1/apps/${app}/config`, { SECRET: 'stolen' }],
      ['PATCH', `/v1/apps/${app}/config`, { SECRET: null }],
      ['GET', `/v1/apps/${app}/releases`],
      ['PATCH', `/v1/apps/${app}/formation`, { web: 3 }],
    ];
    const missing = `gone-${randomId()}`;
    for (const [method, path, body] of attempts) {
      const message = expectError(await api(method, path, { token: bob, body }), 404, 'PIER_NOT_FOUND');
      // Same words as for an app that does not exist at all: nothing about alice's app leaks.
      const other = expectError(await api(method, path.replace(app, missing), { token: bob, body }), 404, 'PIER_NOT_FOUND');
      expect(message.replaceAll(app, missing), `${method} ${path}`).toBe(other);
      expect(message).not.toContain('alice');
    }
    expect((await api('GET', '/v1/apps', { token: bob })).body.apps.map((a: { name: string }) => a.name)).not.toContain(app);

    expect((await api('GET', `/v1/apps/${app}`, { token: alice })).body).toEqual(before);
    expect((await api('GET', `/v1/apps/${app}/config`, { token: alice })).body).toEqual({ vars: { SECRET: 's3cret' } });
    expect((await api('GET', `/v1/apps/${app}/formation`, { token: alice })).body).toEqual({ web: 1 });
    expect((await eventsSince(pool, 0, 100_000)).length).toBe(eventsBefore);
  });

  it('refuses with 401 when the token is missing, unknown or not a bearer token', async () => {
    expect(expectError(await api('GET', '/v1/apps'), 401, 'PIER_UNAUTHORIZED')).toContain('missing API token');
    expect(expectError(await api('GET', '/v1/apps', { token: 'pier_not-a-real-token' }), 401, 'PIER_UNAUTHORIZED')).toContain('invalid API token');
    expectError(await api('GET', '/v1/apps', { headers: { authorization: `Token ${alice}` } }), 401, 'PIER_UNAUTHORIZED');
    expectError(await api('POST', '/v1/apps', { body: { name: `x-${randomId()}` } }), 401, 'PIER_UNAUTHORIZED');
    expectError(await api('DELETE', '/v1/apps/whatever', { token: 'wrong' }), 401, 'PIER_UNAUTHORIZED');
  });

  it('refuses with 403 when an owner who is not an admin calls an operator endpoint', async () => {
    const answer = await api('POST', '/v1/owners', { token: alice, body: { name: `eve-${randomId()}` } });
    expect(expectError(answer, 403, 'PIER_FORBIDDEN')).toContain('admin');
    expectError(await api('GET', '/v1/owners', { token: alice }), 403, 'PIER_FORBIDDEN');
    expectError(await api('GET', '/v1/nodes', { token: bob }), 403, 'PIER_FORBIDDEN');
    expectError(await api('GET', '/v1/events', { token: bob }), 403, 'PIER_FORBIDDEN');
    const owners = (await api('GET', '/v1/owners', { token: adminToken })).body.owners.map((o: { name: string }) => o.name);
    expect(owners.some((o: string) => o.startsWith('eve-'))).toBe(false);
  });

  it('refuses an invalid app name with 400 PIER_VALIDATION naming body.name and the rule', async () => {
    for (const name of ['Bad_Name', '1abc', 'a'.repeat(31), '', 'white space']) {
      const message = expectError(await api('POST', '/v1/apps', { token: alice, body: { name } }), 400, 'PIER_VALIDATION');
      expect(message, name).toContain('body.name');
    }
    const message = expectError(await api('POST', '/v1/apps', { token: alice, body: { name: 'Bad_Name' } }), 400, 'PIER_VALIDATION');
    expect(message).toBe(`body.name ${PATTERN_HINTS[APP_NAME_PATTERN]}`);
    expect(expectError(await api('POST', '/v1/apps', { token: alice, body: { name: 5 } }), 400, 'PIER_VALIDATION')).toBe('body.name must be string');
    expect(expectError(await api('POST', '/v1/apps', { token: alice, body: {} }), 400, 'PIER_VALIDATION')).toBe('body.name is required');
  });

  it('refuses an unknown field with 400', async () => {
    const name = `x-${randomId()}`;
    const message = expectError(await api('POST', '/v1/apps', { token: alice, body: { name, region: 'eu' } }), 400, 'PIER_VALIDATION');
    expect(message).toBe("body has an unknown field 'region'");
    expectError(await api('POST', '/v1/owners', { token: adminToken, body: { name: 'dave', role: 'root' } }), 400, 'PIER_VALIDATION');
    expectError(await api('GET', `/v1/apps/${name}`, { token: alice }), 404, 'PIER_NOT_FOUND');
  });

  it("refuses a malformed JSON body with 400 PIER_BAD_REQUEST 'malformed JSON body'", async () => {
    for (const body of ['{"name": "x",', 'not json', '{"name": "x"}}', '\u0000\u0001']) {
      const message = expectError(await api('POST', '/v1/apps', { token: alice, body }), 400, 'PIER_BAD_REQUEST');
      expect(message, body).toBe('malformed JSON body');
    }
    const app = await createApp(alice);
    expect(expectError(await api('PATCH', `/v1/apps/${app}/config`, { token: alice, body: '{"K":' }), 400, 'PIER_BAD_REQUEST')).toBe('malformed JSON body');
  });

  it('refuses a hostname already attached to any app with 409, even across owners', async () => {
    const mine = await createApp(alice);
    const theirs = await createApp(bob);
    const host = `shared-${randomId()}.example.com`;
    expect((await api('POST', `/v1/apps/${mine}/hostnames`, { token: alice, body: { hostname: host } })).status).toBe(201);
    const message = expectError(await api('POST', `/v1/apps/${theirs}/hostnames`, { token: bob, body: { hostname: host } }), 409, 'PIER_CONFLICT');
    // The owner of the hostname is not revealed.
    expect(message).not.toContain(mine);
    expectError(await api('POST', `/v1/apps/${mine}/hostnames`, { token: alice, body: { hostname: host } }), 409, 'PIER_CONFLICT');
    expect((await api('GET', `/v1/apps/${theirs}/hostnames`, { token: bob })).body).toEqual({ hostnames: [] });
  });

  it('refuses an app name that is taken with 409, even across owners', async () => {
    const name = await createApp(alice);
    expect(expectError(await api('POST', '/v1/apps', { token: alice, body: { name } }), 409, 'PIER_CONFLICT')).toContain(`'${name}'`);
    expectError(await api('POST', '/v1/apps', { token: bob, body: { name } }), 409, 'PIER_CONFLICT');
    expect((await api('GET', `/v1/apps/${name}`, { token: alice })).body.app.owner).toBe('alice');
  });

  it('answers an unknown route with a 404 JSON error', async () => {
    expect(expectError(await api('GET', '/v1/nope', { token: alice }), 404, 'PIER_NOT_FOUND')).toBe('no such endpoint: GET /v1/nope');
    expect(expectError(await api('PUT', '/v1/apps', { token: alice }), 404, 'PIER_NOT_FOUND')).toBe('no such endpoint: PUT /v1/apps');
    expectError(await api('GET', '/v2/apps?x=1'), 404, 'PIER_NOT_FOUND');
  });

  it('creates one app and gives the same answer when a POST is repeated with the same Idempotency-Key', async () => {
    const name = `idem-${randomId()}`;
    const key = randomId(16);
    const first = await api('POST', '/v1/apps', { token: alice, body: { name }, headers: { 'idempotency-key': key } });
    const second = await api('POST', '/v1/apps', { token: alice, body: { name }, headers: { 'idempotency-key': key } });
    expect(first.status).toBe(201);
    expect(second.status).toBe(201);
    expect(second.body).toEqual(first.body);
    const apps = (await api('GET', '/v1/apps', { token: alice })).body.apps.filter((a: { name: string }) => a.name === name);
    expect(apps).toHaveLength(1);
    const created = (await eventsSince(pool, 0, 100_000)).filter((e) => e.type === 'app.created' && e.app === name);
    expect(created).toHaveLength(1);
  });

  it("keeps one owner's Idempotency-Key from returning another owner's answer", async () => {
    const key = `order-${randomId()}`;
    const alices = `idem-a-${randomId()}`;
    const bobs = `idem-b-${randomId()}`;
    const first = await api('POST', '/v1/apps', { token: alice, body: { name: alices }, headers: { 'idempotency-key': key } });
    expect(first.status).toBe(201);
    const second = await api('POST', '/v1/apps', { token: bob, body: { name: bobs }, headers: { 'idempotency-key': key } });
    expect(second.status).toBe(201);
    expect(second.body.app).toMatchObject({ name: bobs, owner: 'bob' });
    expect((await api('GET', `/v1/apps/${bobs}`, { token: bob })).status).toBe(200);
  });

  it('refuses a body over the limit with 413 PIER_TOO_LARGE', async () => {
    const body = JSON.stringify({ name: 'big', pad: 'x'.repeat(BODY_LIMIT * 2) });
    const message = expectError(await api('POST', '/v1/apps', { token: alice, body }), 413, 'PIER_TOO_LARGE');
    expect(message).toBe('request body is too large');
    const vars = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`K${i}`, 'v'.repeat(40)]));
    const app = await createApp(alice);
    expectError(await api('PATCH', `/v1/apps/${app}/config`, { token: alice, body: vars }), 413, 'PIER_TOO_LARGE');
    expect((await api('GET', `/v1/apps/${app}/config`, { token: alice })).body).toEqual({ vars: {} });
  });

  it('refuses a body that is not JSON with 415', async () => {
    const answer = await api('POST', '/v1/apps', { token: alice, body: 'name=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expectError(answer, 415, 'PIER_BAD_REQUEST');
  });
});
