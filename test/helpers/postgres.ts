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
