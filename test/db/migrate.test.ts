/** Migrations: each applied once, on a cloned database and on a fresh one migrated by two replicas at once. */
import pg from 'pg';
import { describe, expect, inject, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import { silentLogger } from '../../src/core/logger.js';
import { createPool, listMigrations, migrate } from '../../src/db/index.js';
import { onCleanup } from '../helpers/daemons.js';
import { testDatabase, testPool } from '../helpers/postgres.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);
const log = silentLogger();
const MIGRATIONS = listMigrations();

async function adminQuery(sql: string): Promise<void> {
  const admin = new pg.Client({ connectionString: inject('pgAdminUrl') });
  await admin.connect();
  try {
    await admin.query(sql);
  } finally {
    await admin.end();
  }
}

/** An empty database (not cloned from the migrated template), dropped after the test; returns its URL. */
async function emptyDatabase(): Promise<string> {
  const name = `pier_empty_${randomId()}`;
  await adminQuery(`CREATE DATABASE ${name}`);
  onCleanup(() => adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
  const url = new URL(inject('pgAdminUrl'));
  url.pathname = `/${name}`;
  return url.toString();
}

/** A pool closed after the test (registered after the database, so it closes first). */
function poolFor(url: string, max = 2): pg.Pool {
  const p = createPool({ url, max, connectTimeoutMs: 5000 }, log);
  onCleanup(() => p.end());
  return p;
}

async function appliedVersions(q: pg.Pool): Promise<number[]> {
  const { rows } = await q.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
  return rows.map((r) => r.version);
}

describe('migrate', () => {
  it('finds numbered migrations in order', () => {
    expect(MIGRATIONS.length).toBeGreaterThan(0);
    const versions = MIGRATIONS.map((m) => m.version);
    expect(versions).toEqual([...versions].sort((a, b) => a - b));
    expect(new Set(versions).size).toBe(versions.length);
    for (const m of MIGRATIONS) expect(m.name).toMatch(/^\d{4}_[a-z0-9_]+$/);
  });

  it('applies nothing when the database is already migrated, however often it runs', async () => {
    expect(await migrate(pool, log)).toEqual([]);
    expect(await migrate(pool, log)).toEqual([]);
    expect(await appliedVersions(pool)).toEqual(MIGRATIONS.map((m) => m.version));
  });

  it('applies every migration on an empty database, then nothing the second time', async () => {
    const fresh = poolFor(await emptyDatabase());
    expect(await migrate(fresh, log)).toEqual(MIGRATIONS.map((m) => m.name));
    expect(await migrate(fresh, log)).toEqual([]);
    expect(await appliedVersions(fresh)).toEqual(MIGRATIONS.map((m) => m.version));
    // The schema is really there: the tables the app needs exist.
    const { rows } = await fresh.query<{ name: string }>("SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'");
    expect(rows.map((r) => r.name)).toEqual(expect.arrayContaining(['owners', 'apps', 'hostnames', 'config_vars', 'events', 'requests', 'nodes']));
  });

  it('applies each migration exactly once when two replicas migrate an empty database at the same time', async () => {
    const url = await emptyDatabase();
    // Two pools, as two nexus replicas starting together would have.
    const first = poolFor(url);
    const second = poolFor(url);
    const [a, b] = await Promise.all([migrate(first, log), migrate(second, log)]);
    // One of them did all the work under the lock; the other found nothing left to do.
    expect([...a, ...b].sort()).toEqual(MIGRATIONS.map((m) => m.name).sort());
    expect([a.length, b.length].sort((x, y) => x - y)).toEqual([0, MIGRATIONS.length]);
    const { rows } = await first.query<{ version: number; n: number }>('SELECT version, count(*)::int AS n FROM schema_migrations GROUP BY version ORDER BY version');
    expect(rows).toEqual(MIGRATIONS.map((m) => ({ version: m.version, n: 1 })));
    // The advisory lock was released: a third run neither blocks nor applies anything.
    expect(await migrate(first, log)).toEqual([]);
  });
});
