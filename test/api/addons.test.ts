/**
 * PostgreSQL add-ons over the JSON API against a real nexus and the real test server: an app's DATABASE_URL reaches
 * its own database only (issue #13, Must show 2), bad input creates nothing (Must show 5), and whatever fails midway
 * leaves no row, role, database nor config var behind.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import { silentLogger } from '../../src/core/logger.js';
import { createOwner, withTransaction } from '../../src/db/index.js';
import { postgresqlKind } from '../../src/nexus/addons/postgresql.js';
import type { AddonView } from '../../src/protocol/index.js';
import { apiCaller, type ApiCall } from '../helpers/api.js';
import { testConfig } from '../helpers/config.js';
import { startNexus, type NexusHandle } from '../helpers/daemons.js';
import { dropAddonLeftovers, testDatabase, testPool } from '../helpers/postgres.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);
const adminUrl = inject('pgAdminUrl');
const CONNECTION_LIMIT = 3;
let n: NexusHandle;
let alice: ApiCall;
let bob: ApiCall;
const apps: string[] = [];

/** A fresh app name of this file (prefix 'ad'), created by alice. */
async function newApp(label: string): Promise<string> {
  const name = `ad-${label}-${randomId(3)}`;
  apps.push(name);
  expect((await alice('POST', '/v1/apps', { name })).status).toBe(201);
  return name;
}

/** The app's roles and databases on the server (catalog), by the platform's naming rule. */
async function catalogOf(app: string): Promise<{ roles: string[]; databases: string[] }> {
  const prefix = `addon_${app.replace(/-/g, '_')}_`;
  const roles = await pool.query<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)', [prefix]);
  const dbs = await pool.query<{ datname: string }>('SELECT datname FROM pg_database WHERE starts_with(datname, $1)', [prefix]);
  return { roles: roles.rows.map((r) => r.rolname), databases: dbs.rows.map((r) => r.datname) };
}

async function rowsOf(app: string): Promise<number> {
  const { rows } = await pool.query('SELECT 1 FROM addons WHERE app_name = $1', [app]);
  return rows.length;
}

async function configOf(app: string): Promise<Record<string, string>> {
  return (await alice<{ vars: Record<string, string> }>('GET', `/v1/apps/${app}/config`)).json.vars;
}

/** Connects as the app would, with its DATABASE_URL (or that URL pointed at another database). */
async function connectAs(url: string, database?: string): Promise<pg.Client> {
  const target = new URL(url);
  if (database !== undefined) target.pathname = `/${database}`;
  const client = new pg.Client({ connectionString: target.toString(), connectionTimeoutMillis: 5000 });
  client.on('error', () => undefined); // terminated by a destroy: the test looks at the next query
  await client.connect();
  return client;
}

async function pgError(run: () => Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await run();
  } catch (err) {
    return { code: (err as { code?: string }).code ?? '', message: (err as Error).message };
  }
  throw new Error('expected a PostgreSQL error');
}

beforeAll(async () => {
  n = await startNexus(dbUrl, { services: { postgresConnectionLimit: CONNECTION_LIMIT } }, 'file');
  const a = await withTransaction(pool, (tx) => createOwner(tx, `ad-alice-${randomId()}`));
  const b = await withTransaction(pool, (tx) => createOwner(tx, `ad-bob-${randomId()}`));
  alice = apiCaller(() => n.api, a.token);
  bob = apiCaller(() => n.api, b.token);
});

// Whatever a failed test left: this file's roles and databases go, so the shared server stays clean.
afterAll(() => dropAddonLeftovers(adminUrl, apps));

describe('postgresql add-ons', () => {
  it('confines each app to its own database, and destroying the add-on or the app drops database and role', async () => {
    const appA = await newApp('a');
    const appB = await newApp('b');
    const created = await alice<{ addon: AddonView }>('POST', `/v1/apps/${appA}/addons`, { kind: 'postgresql' });
    expect(created.status, JSON.stringify(created.json)).toBe(201);
    expect(created.json.addon).toMatchObject({ kind: 'postgresql', app: appA, state: 'ready', configVar: 'DATABASE_URL' });
    expect(created.json.addon.name).toMatch(/^postgresql-[a-z]+-\d{5}$/);
    expect((await alice('POST', `/v1/apps/${appB}/addons`, { kind: 'postgresql' })).status).toBe(201);

    const urlA = (await configOf(appA)).DATABASE_URL!;
    const urlB = (await configOf(appB)).DATABASE_URL!;
    expect(urlA).toMatch(/^postgres:\/\/addon_ad_a_[0-9a-f]+_[0-9a-f]{8}:[A-Za-z0-9_-]{32}@127\.0\.0\.1:\d+\/addon_ad_a_/);
    const password = new URL(urlA).password;
    // The password is in the config var only: not in any API answer nor event.
    const listed = await alice<{ addons: AddonView[] }>('GET', `/v1/apps/${appA}/addons`);
    const info = await alice<{ addon: AddonView }>('GET', `/v1/apps/${appA}/addons/${created.json.addon.name}`);
    expect(listed.json.addons.map((a) => a.name)).toEqual([created.json.addon.name]);
    expect(info.json.addon.details).toMatchObject({ database: new URL(urlA).pathname.slice(1), role: decodeURIComponent(new URL(urlA).username), connectionLimit: CONNECTION_LIMIT });
    const events = await pool.query<{ data: unknown }>('SELECT data FROM events');
    for (const text of [JSON.stringify(created.json), JSON.stringify(listed.json), JSON.stringify(info.json), JSON.stringify(events.rows)]) {
      expect(text).not.toContain(password);
    }

    const dbB = new URL(urlB).pathname.slice(1);
    const a = await connectAs(urlA);
    // Its own database: tables work.
    await a.query('CREATE TABLE notes (id serial PRIMARY KEY, body text)');
    await a.query("INSERT INTO notes (body) VALUES ('hello')");
    expect((await a.query('SELECT body FROM notes')).rows).toEqual([{ body: 'hello' }]);
    // Not B's database, nor the platform's, nor the maintenance database.
    for (const other of [dbB, new URL(dbUrl).pathname.slice(1), 'postgres', 'template1']) {
      const refused = await pgError(() => connectAs(urlA, other));
      expect(refused.code, `${other}: ${refused.message}`).toBe('42501');
      expect(refused.message).toMatch(/permission denied for database/);
    }
    // No roles, no databases, no server files or programs.
    for (const sql of [
      `CREATE ROLE intruder_${randomId()} LOGIN SUPERUSER`,
      `CREATE ROLE intruder_${randomId()}`,
      `CREATE DATABASE intruder_${randomId()}`,
      "SELECT pg_read_file('/etc/passwd')",
      "SELECT pg_ls_dir('.')",
      "COPY notes (body) FROM PROGRAM 'id'",
      "SELECT lo_import('/etc/passwd')",
      'ALTER ROLE CURRENT_USER SUPERUSER',
      'ALTER ROLE CURRENT_USER CONNECTION LIMIT -1',
      // Other roles' password verifiers, their identity, the server's files and settings.
      'SELECT rolpassword FROM pg_authid',
      `SET ROLE ${decodeURIComponent(new URL(urlB).username)}`,
      'SET ROLE postgres',
      "COPY notes TO '/tmp/ad-stolen'",
      "SELECT lo_export(lo_creat(-1), '/tmp/ad-stolen')",
      "ALTER SYSTEM SET log_statement = 'all'",
      'SELECT pg_reload_conf()',
      `ALTER DATABASE ${dbB} OWNER TO CURRENT_USER`,
    ]) {
      const refused = await pgError(() => a.query(sql));
      expect(refused.code, `${sql}: ${refused.message}`).toBe('42501');
    }
    // The connection limit holds: the limit's worth of sessions, and no more.
    const extra: pg.Client[] = [];
    for (let i = 1; i < CONNECTION_LIMIT; i++) extra.push(await connectAs(urlA));
    const over = await pgError(() => connectAs(urlA));
    expect(over.code).toBe('53300');
    expect(over.message).toMatch(/too many connections for role/);
    for (const c of extra) await c.end();

    // Destroying A's add-on: its sessions are cut, database and role go, DATABASE_URL is unset, the row goes.
    const destroyed = await alice<{ addon: AddonView }>('DELETE', `/v1/apps/${appA}/addons/${created.json.addon.name}`);
    expect(destroyed.status, JSON.stringify(destroyed.json)).toBe(200);
    expect(destroyed.json.addon.state).toBe('destroyed');
    expect(await catalogOf(appA)).toEqual({ roles: [], databases: [] });
    expect(await configOf(appA)).not.toHaveProperty('DATABASE_URL');
    expect(await rowsOf(appA)).toBe(0);
    expect((await pgError(() => a.query('SELECT 1'))).message).toMatch(/terminat|Connection|closed/i);
    await a.end().catch(() => undefined);
    expect((await pgError(() => connectAs(urlA))).code).toMatch(/^(28P01|28000)$/);

    // Destroying app B drops B's.
    expect((await catalogOf(appB)).databases).toHaveLength(1);
    expect((await alice('DELETE', `/v1/apps/${appB}`)).status).toBe(200);
    expect(await catalogOf(appB)).toEqual({ roles: [], databases: [] });
    expect(await rowsOf(appB)).toBe(0);
  });

  it('answers bad input with one-line errors and creates nothing', async () => {
    const app = await newApp('bad');
    const nothing = async () => {
      expect(await rowsOf(app)).toBe(0);
      expect(await catalogOf(app)).toEqual({ roles: [], databases: [] });
      expect(await configOf(app)).toEqual({});
    };
    const unknown = await alice<{ error: { code: string; message: string } }>('POST', `/v1/apps/${app}/addons`, { kind: 'mysql' });
    expect(unknown.status).toBe(422);
    expect(unknown.json.error).toEqual({ code: 'PIER_UNSUPPORTED', message: expect.stringMatching(/^add-on kind 'mysql' is unknown; choose one of: postgresql/) });
    for (const body of [{}, { kind: 1 }, { kind: 'postgresql', plan: 'big' }, { kind: '' }]) {
      const bad = await alice<{ error: { code: string; message: string } }>('POST', `/v1/apps/${app}/addons`, body);
      expect(bad.status, JSON.stringify(body)).toBe(400);
      expect(bad.json.error.message).not.toContain('\n');
    }
    // Another owner's app is not found, whatever the verb; a missing app too.
    for (const [method, path, body] of [
      ['POST', `/v1/apps/${app}/addons`, { kind: 'postgresql' }], ['GET', `/v1/apps/${app}/addons`, undefined],
      ['GET', `/v1/apps/${app}/addons/postgresql-amber-12345`, undefined], ['DELETE', `/v1/apps/${app}/addons/postgresql-amber-12345`, undefined],
    ] as const) {
      const refused = await bob<{ error: { code: string; message: string } }>(method, path, body);
      expect(refused.status, `${method} ${path}`).toBe(404);
      expect(refused.json.error.message).toBe(`app '${app}' not found; run 'pier apps' to list your apps`);
    }
    expect((await alice('POST', '/v1/apps/ad-nosuch-app/addons', { kind: 'postgresql' })).status).toBe(404);
    const missing = await alice<{ error: { message: string } }>('GET', `/v1/apps/${app}/addons/postgresql-amber-12345`);
    expect(missing.status).toBe(404);
    expect(missing.json.error.message).toBe(`add-on 'postgresql-amber-12345' is not attached to app '${app}'; run 'pier addons -a ${app}'`);
    expect((await alice('DELETE', `/v1/apps/${app}/addons/postgresql-amber-12345`)).status).toBe(404);
    await nothing();

    // A duplicate: the second postgresql on the app is a conflict and makes nothing more.
    expect((await alice('POST', `/v1/apps/${app}/addons`, { kind: 'postgresql' })).status).toBe(201);
    const before = await catalogOf(app);
    const duplicate = await alice<{ error: { code: string; message: string } }>('POST', `/v1/apps/${app}/addons`, { kind: 'postgresql' });
    expect(duplicate.status).toBe(409);
    expect(duplicate.json.error.message).toBe(`app '${app}' already has a postgresql add-on; run 'pier addons -a ${app}' to see it`);
    expect(await catalogOf(app)).toEqual(before);
    expect(before.roles).toHaveLength(1);
    expect(await rowsOf(app)).toBe(1);
    // Recorded add-ons and refused creates leave no pending database behind for the sweep.
    expect((await pool.query('SELECT 1 FROM addon_pending_databases WHERE starts_with(name, $1)', [`addon_${app.replace(/-/g, '_')}_`])).rows).toHaveLength(0);
  });

  it('lets one of two concurrent creates win and leaves one database', async () => {
    const app = await newApp('race');
    const answers = await Promise.all([1, 2].map(() => alice('POST', `/v1/apps/${app}/addons`, { kind: 'postgresql' })));
    expect(answers.map((a) => a.status).sort()).toEqual([201, 409]);
    expect(await rowsOf(app)).toBe(1);
    const left = await catalogOf(app);
    expect(left.roles).toHaveLength(1);
    expect(left.databases).toEqual(left.roles);
    expect(new URL((await configOf(app)).DATABASE_URL!).pathname).toBe(`/${left.databases[0]}`);
  });

  it("keeps a DATABASE_URL the owner put in place of the add-on's when the add-on is destroyed", async () => {
    const app = await newApp('own');
    const created = await alice<{ addon: AddonView }>('POST', `/v1/apps/${app}/addons`, { kind: 'postgresql' });
    expect(created.status).toBe(201);
    const mine = 'postgres://me:secret@db.example.test:5432/mine';
    expect((await alice('PATCH', `/v1/apps/${app}/config`, { DATABASE_URL: mine })).status).toBe(200);
    expect((await alice('DELETE', `/v1/apps/${app}/addons/${created.json.addon.name}`)).status).toBe(200);
    expect(await configOf(app)).toEqual({ DATABASE_URL: mine });
    expect(await catalogOf(app)).toEqual({ roles: [], databases: [] });
  });

  it('applies a retried create once (Idempotency-Key)', async () => {
    const app = await newApp('idem');
    const key = { 'idempotency-key': `ad-${randomId()}` };
    const first = await alice<{ addon: AddonView }>('POST', `/v1/apps/${app}/addons`, { kind: 'postgresql' }, key);
    const again = await alice<{ addon: AddonView }>('POST', `/v1/apps/${app}/addons`, { kind: 'postgresql' }, key);
    expect(first.status).toBe(201);
    expect(again.status).toBe(201);
    expect(again.json.addon.name).toBe(first.json.addon.name);
    expect(await rowsOf(app)).toBe(1);
    expect((await catalogOf(app)).roles).toHaveLength(1);
  });

  it('leaves no role, database, row nor config var when the recording transaction fails', async () => {
    const app = await newApp('fail');
    // A real failure inside the transaction, after the database was made: the row's insert is refused.
    const fn = `ad_refuse_${randomId()}`;
    await pool.query(`CREATE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by test'; END $$`);
    await pool.query(`CREATE TRIGGER ${fn} BEFORE INSERT ON addons FOR EACH ROW WHEN (NEW.app_name = '${app}') EXECUTE FUNCTION ${fn}()`);
    try {
      const failed = await alice<{ error: { code: string } }>('POST', `/v1/apps/${app}/addons`, { kind: 'postgresql' });
      expect(failed.status).toBe(500);
      expect(failed.json.error.code).toBe('PIER_INTERNAL');
    } finally {
      await pool.query(`DROP TRIGGER ${fn} ON addons`);
      await pool.query(`DROP FUNCTION ${fn}()`);
    }
    expect(await rowsOf(app)).toBe(0);
    expect(await catalogOf(app)).toEqual({ roles: [], databases: [] });
    expect(await configOf(app)).toEqual({});
  });

  it("drops the database and role a create that died midway left, on the leader's sweep", async () => {
    const app = await newApp('crash');
    const driver = postgresqlKind({ pool, platformDbUrl: dbUrl, config: testConfig(), log: silentLogger() });
    // What a nexus killed right after making the database leaves: no row, no config var, the database and role.
    const made = await driver.provision({ app: { id: 0, name: app }, name: `postgresql-crash-${randomId(3)}` });
    const database = made.plan.database as string;
    expect(await catalogOf(app)).toEqual({ roles: [database], databases: [database] });
    // A create still in flight (recorded a moment ago) is left alone.
    await n.nexus.addonReaper!.tick();
    expect((await catalogOf(app)).databases).toEqual([database]);
    await pool.query("UPDATE addon_pending_databases SET created_at = now() - interval '11 minutes' WHERE name = $1", [database]);
    await n.nexus.addonReaper!.tick();
    expect(await catalogOf(app)).toEqual({ roles: [], databases: [] });
    expect((await pool.query('SELECT 1 FROM addon_pending_databases WHERE name = $1', [database])).rows).toHaveLength(0);
  });

  it("drops an add-on left 'destroying' by a nexus that died midway, on the leader's retry", async () => {
    const app = await newApp('reap');
    expect((await alice('POST', `/v1/apps/${app}/addons`, { kind: 'postgresql' })).status).toBe(201);
    expect((await catalogOf(app)).databases).toHaveLength(1);
    // What a nexus killed right after the destroy's commit leaves: the row detached and 'destroying', its database there.
    await pool.query("UPDATE addons SET state = 'destroying', app_id = NULL WHERE app_name = $1", [app]);
    expect(n.nexus.isLeader).toBe(true);
    await n.nexus.addonReaper!.tick();
    expect(await catalogOf(app)).toEqual({ roles: [], databases: [] });
    expect(await rowsOf(app)).toBe(0);
  });
});
