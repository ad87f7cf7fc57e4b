/**
 * services.postgresUrl: add-on databases on an operator's server through a role that is no superuser (CREATEDB and
 * CREATEROLE only), on a second server (Debian PostgreSQL 15, started here and stopped after) and on the test
 * server itself (PostgreSQL 18, where role grants work differently since 16).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import { createOwner, withTransaction } from '../../src/db/index.js';
import type { AddonView } from '../../src/protocol/index.js';
import { apiCaller, type ApiCall } from '../helpers/api.js';
import { searchableTempDir } from '../helpers/data-dir.js';
import { startNexus } from '../helpers/daemons.js';
import { freePort } from '../helpers/ports.js';
import { testDatabase, testPool } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';

const PG15 = '/usr/lib/postgresql/15/bin';
const dbUrl = await testDatabase();
const pool = testPool(dbUrl);

/** A Debian PostgreSQL 15 server on a free loopback port, run as `postgres` from a temp folder; stopped by pid. */
async function startPg15(): Promise<{ url: (user: string, password: string, db?: string) => string; superPassword: string; stop: () => Promise<void> }> {
  const dir = searchableTempDir('pier-ad-pg15-');
  const data = join(dir, 'data');
  const superPassword = randomId(12);
  const pwFile = join(dir, 'pw');
  writeFileSync(pwFile, superPassword, { mode: 0o600 });
  const user = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim();
  const group = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim();
  chownSync(dir, Number(user), Number(group));
  chownSync(pwFile, Number(user), Number(group));
  const init = spawnSync('runuser', ['-u', 'postgres', '--', `${PG15}/initdb`, '-D', data, '-U', 'postgres', '--auth=scram-sha-256', `--pwfile=${pwFile}`, '-E', 'UTF8'], { encoding: 'utf8' });
  if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr}`);
  const port = await freePort();
  const server: ChildProcess = spawn('runuser', ['-u', 'postgres', '--', `${PG15}/postgres`, '-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1'], { stdio: 'ignore' });
  const url = (u: string, p: string, db = 'postgres') => `postgres://${u}:${encodeURIComponent(p)}@127.0.0.1:${port}/${db}`;
  await waitFor(async () => {
    const c = new pg.Client({ connectionString: url('postgres', superPassword) });
    try {
      await c.connect();
      return true;
    } catch {
      return undefined;
    } finally {
      await c.end().catch(() => undefined);
    }
  }, { name: 'PostgreSQL 15 up', timeoutMs: 20_000, intervalMs: 100 });
  return {
    url, superPassword,
    stop: async () => {
      // runuser's child is the postmaster: a fast shutdown (SIGINT) of it by its pid in postmaster.pid.
      const pid = Number(spawnSync('head', ['-1', join(data, 'postmaster.pid')], { encoding: 'utf8' }).stdout.trim());
      if (pid > 0) process.kill(pid, 'SIGINT');
      await new Promise<void>((resolve) => (server.exitCode !== null ? resolve() : server.once('exit', () => resolve())));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function owner(): Promise<string> {
  return (await withTransaction(pool, (tx) => createOwner(tx, `ad-svc-${randomId()}`))).token;
}

async function refusedCode(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
  } catch (err) {
    return (err as { code?: string }).code ?? (err as Error).message;
  }
  return 'not refused';
}

/** Connects with `url`, optionally to another database. */
async function connect(url: string, database?: string): Promise<pg.Client> {
  const target = new URL(url);
  if (database) target.pathname = `/${database}`;
  const client = new pg.Client({ connectionString: target.toString() });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/** Creates an app with a postgresql add-on; returns its DATABASE_URL and add-on name. */
async function appWithDatabase(api: ApiCall, app: string): Promise<{ url: string; name: string }> {
  expect((await api('POST', '/v1/apps', { name: app })).status).toBe(201);
  const created = await api<{ addon: AddonView }>('POST', `/v1/apps/${app}/addons`, { kind: 'postgresql' });
  expect(created.status, JSON.stringify(created.json)).toBe(201);
  const { vars } = (await api<{ vars: Record<string, string> }>('GET', `/v1/apps/${app}/config`)).json;
  return { url: vars.DATABASE_URL!, name: created.json.addon.name };
}

/** The confinement and lifecycle checks, on whichever server `admin` is a superuser of. */
async function exercise(api: ApiCall, admin: pg.Client, expectedPort: number): Promise<void> {
  const appA = `ad-sa-${randomId(3)}`;
  const appB = `ad-sb-${randomId(3)}`;
  const a = await appWithDatabase(api, appA);
  const b = await appWithDatabase(api, appB);
  expect(Number(new URL(a.url).port)).toBe(expectedPort);
  const client = await connect(a.url);
  await client.query('CREATE TABLE t (x int)');
  await client.query('INSERT INTO t VALUES (1)');
  expect((await client.query('SELECT x FROM t')).rows).toEqual([{ x: 1 }]);
  expect(await refusedCode(() => connect(a.url, new URL(b.url).pathname.slice(1)))).toBe('42501');
  expect(await refusedCode(() => client.query(`CREATE DATABASE x_${randomId()}`))).toBe('42501');
  expect(await refusedCode(() => client.query(`CREATE ROLE x_${randomId()}`))).toBe('42501');
  expect(await refusedCode(() => client.query("SELECT pg_read_file('/etc/passwd')"))).toBe('42501');
  const { rows } = await admin.query<{ rolsuper: boolean; rolcreatedb: boolean; rolcreaterole: boolean }>(
    'SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = $1', [decodeURIComponent(new URL(a.url).username)],
  );
  expect(rows).toEqual([{ rolsuper: false, rolcreatedb: false, rolcreaterole: false }]);

  // Destroy (with the app still connected) and apps:destroy drop them on that server, through the services role.
  const destroyed = await api<{ addon: AddonView }>('DELETE', `/v1/apps/${appA}/addons/${a.name}`);
  expect(destroyed.json.addon?.state, JSON.stringify(destroyed.json)).toBe('destroyed');
  await client.end().catch(() => undefined);
  expect((await api('DELETE', `/v1/apps/${appB}`)).status).toBe(200);
  for (const url of [a.url, b.url]) {
    const name = decodeURIComponent(new URL(url).username);
    const left = await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1 UNION ALL SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    expect(left.rows, name).toHaveLength(0);
  }
  expect((await pool.query('SELECT 1 FROM addons WHERE app_name = ANY($1)', [[appA, appB]])).rows).toHaveLength(0);
}

describe('services.postgresUrl', () => {
  let pg15: Awaited<ReturnType<typeof startPg15>>;
  let admin15: pg.Client;
  beforeAll(async () => {
    pg15 = await startPg15();
    admin15 = await connect(pg15.url('postgres', pg15.superPassword));
  }, 30_000);
  afterAll(async () => {
    await admin15?.end();
    await pg15?.stop();
    // What a failed run left of this file's apps on the shared PostgreSQL 18 server.
    const admin18 = await connect(inject('pgAdminUrl'));
    for (const { datname } of (await admin18.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datname ~ '^addon_ad_s[ab]_'")).rows) {
      await admin18.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
    }
    for (const { rolname } of (await admin18.query<{ rolname: string }>("SELECT rolname FROM pg_roles WHERE rolname ~ '^addon_ad_s[ab]_'")).rows) {
      await admin18.query(`DROP ROLE IF EXISTS "${rolname}"`);
    }
    await admin18.end();
  }, 30_000);

  it('makes app databases on a second server (PostgreSQL 15) through a CREATEDB CREATEROLE role', async () => {
    const password = randomId(12);
    await admin15.query(`CREATE ROLE pier_addons LOGIN CREATEDB CREATEROLE PASSWORD '${password}'`);
    const port = Number(new URL(pg15.url('x', 'y')).port);
    const n = await startNexus(dbUrl, { services: { postgresUrl: pg15.url('pier_addons', password) } });
    await exercise(apiCaller(() => n.api, await owner()), admin15, port);
  });

  it('makes them on a PostgreSQL 18 server through a role that is no superuser', async () => {
    const adminUrl = inject('pgAdminUrl');
    const role = `ad_services_${randomId()}`;
    const password = randomId(12);
    const admin18 = await connect(adminUrl);
    await admin18.query(`CREATE ROLE ${role} LOGIN CREATEDB CREATEROLE PASSWORD '${password}'`);
    // Its own database to connect to: a platform that provisioned here before closed 'postgres' to PUBLIC.
    await admin18.query(`CREATE DATABASE ${role} OWNER ${role}`);
    try {
      const url = new URL(adminUrl);
      url.username = role;
      url.password = password;
      url.pathname = `/${role}`;
      const n = await startNexus(dbUrl, { services: { postgresUrl: url.toString(), postgresHost: '127.0.0.1' } });
      await exercise(apiCaller(() => n.api, await owner()), admin18, Number(url.port));
    } finally {
      await admin18.query(`DROP DATABASE IF EXISTS ${role} WITH (FORCE)`);
      await admin18.query(`DROP ROLE IF EXISTS ${role}`);
      await admin18.end();
    }
  });

  it('answers one line and creates nothing when the services server is away or its role may not create', async () => {
    const closed = await freePort();
    const weakPassword = randomId(12);
    await admin15.query(`CREATE ROLE pier_weak LOGIN PASSWORD '${weakPassword}'`);
    await admin15.query('GRANT CONNECT ON DATABASE postgres TO pier_weak');
    const cases = [
      { url: `postgres://nobody:x@127.0.0.1:${closed}/postgres`, status: 503, code: 'PIER_DB_UNAVAILABLE', message: /^cannot create the database: the platform's PostgreSQL for add-ons is unreachable; try again later or ask the operator to check services.postgresUrl$/ },
      { url: pg15.url('pier_weak', weakPassword), status: 500, code: 'PIER_CONFIG', message: /^cannot create the database: the add-ons PostgreSQL role may not create roles or databases; ask the operator to give services.postgresUrl's role CREATEDB and CREATEROLE$/ },
    ];
    for (const c of cases) {
      const n = await startNexus(dbUrl, { services: { postgresUrl: c.url } });
      const api = apiCaller(() => n.api, await owner());
      const app = `ad-sx-${randomId(3)}`;
      expect((await api('POST', '/v1/apps', { name: app })).status).toBe(201);
      const refused = await api<{ error: { code: string; message: string } }>('POST', `/v1/apps/${app}/addons`, { kind: 'postgresql' });
      expect(refused.status, c.url).toBe(c.status);
      expect(refused.json.error.code).toBe(c.code);
      expect(refused.json.error.message).toMatch(c.message);
      expect((await pool.query('SELECT 1 FROM addons WHERE app_name = $1', [app])).rows).toHaveLength(0);
      expect((await api<{ vars: Record<string, string> }>('GET', `/v1/apps/${app}/config`)).json.vars).toEqual({});
      const left = await admin15.query("SELECT 1 FROM pg_roles WHERE rolname ~ '^addon_ad_sx_' UNION ALL SELECT 1 FROM pg_database WHERE datname ~ '^addon_ad_sx_'");
      expect(left.rows).toHaveLength(0);
    }
  });
});
