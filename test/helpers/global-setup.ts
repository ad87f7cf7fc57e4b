/**
 * Starts one PostgreSQL server for the whole run (PIER_TEST_DB_URL if set, else the embedded server in a temp
 * folder on a free port), migrates a template database once, and hands its URL to the test files.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { createLogger } from '../../src/core/logger.js';
import { EmbeddedPostgres, createPool, migrate } from '../../src/db/index.js';
import { searchableTempDir } from './data-dir.js';
import { freePort } from './ports.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** URL of the server's maintenance database; workers create their own databases from the template. */
    pgAdminUrl: string;
    pgTemplate: string;
  }
}

const TEMPLATE = 'pier_template';

/** System users the platform creates (app users `p-<app>`, and `pier` for the daemons that drop root). */
function platformUsers(): Set<string> {
  const names = readFileSync('/etc/passwd', 'utf8').split('\n').map((line) => line.split(':')[0]!);
  return new Set(names.filter((name) => name.startsWith('p-') || name === 'pier'));
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const log = createLogger({ level: 'warn' });
  // Users that exist before the run are someone's (a `pier up` on this machine): only the run's own go at the end.
  const usersBefore = platformUsers();
  let server: EmbeddedPostgres | undefined;
  let dir: string | undefined;
  let adminUrl = process.env.PIER_TEST_DB_URL;
  if (!adminUrl) {
    // Searchable by others: as root the server runs as `postgres`, which must walk down to its cluster (mkdtemp
    // makes a 0700 folder). The binaries are copied beside the cluster, so the checkout's place does not matter.
    dir = searchableTempDir('pier-test-pg-');
    server = new EmbeddedPostgres({ dataDir: join(dir, 'postgres'), port: await freePort(), database: 'postgres', log });
    await server.start();
    adminUrl = server.url;
  }
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${TEMPLATE} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${TEMPLATE}`);
  await admin.end();
  const templateUrl = new URL(adminUrl);
  templateUrl.pathname = `/${TEMPLATE}`;
  const pool = createPool({ url: templateUrl.toString(), max: 1, connectTimeoutMs: 5000 }, log);
  await migrate(pool, log);
  await pool.end();
  project.provide('pgAdminUrl', adminUrl);
  project.provide('pgTemplate', TEMPLATE);
  return async () => {
    // Test files remove the users of their apps; this catches what one left (a failed test, a killed runner).
    for (const name of platformUsers()) {
      if (!usersBefore.has(name)) spawnSync('userdel', [name], { stdio: 'ignore' });
    }
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  };
}
