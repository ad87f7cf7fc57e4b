/** A fresh database per test file, cloned from the migrated template (CREATE DATABASE … TEMPLATE). */
import pg from 'pg';
import { afterAll, inject } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import { silentLogger } from '../../src/core/logger.js';
import { createPool } from '../../src/db/index.js';

/** Creates a database for the calling file and drops it after the file's tests; returns its URL. */
export async function testDatabase(): Promise<string> {
  const adminUrl = inject('pgAdminUrl');
  const name = `pier_t_${process.env.VITEST_POOL_ID ?? '0'}_${randomId()}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  // CREATE DATABASE … TEMPLATE needs the template to have no other sessions; retry briefly if a clone races.
  for (let attempt = 0; ; attempt++) {
    try {
      await admin.query(`CREATE DATABASE ${name} TEMPLATE ${inject('pgTemplate')}`);
      break;
    } catch (err) {
      if (attempt >= 20 || (err as { code?: string }).code !== '55006') throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  await admin.end();
  afterAll(async () => {
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await client.end();
  });
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/** A pool on a test database, closed after the file. */
export function testPool(url: string): pg.Pool {
  const pool = createPool({ url, max: 4, connectTimeoutMs: 5000 }, silentLogger());
  afterAll(() => pool.end());
  return pool;
}

/**
 * Drops whatever add-on databases and roles of `apps` a failed test left on the shared server (the platform names
 * them `addon_<app, dashes as underscores>_…`), so the server stays clean. For an afterAll.
 */
export async function dropAddonLeftovers(adminUrl: string, apps: readonly string[]): Promise<void> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    for (const app of apps) {
      const prefix = `addon_${app.replace(/-/g, '_')}_`;
      const { rows } = await admin.query<{ datname: string }>('SELECT datname FROM pg_database WHERE starts_with(datname, $1)', [prefix]);
      for (const { datname } of rows) await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
      const roles = await admin.query<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)', [prefix]);
      for (const { rolname } of roles.rows) await admin.query(`DROP ROLE IF EXISTS "${rolname}"`);
    }
  } finally {
    await admin.end();
  }
}
