/**
 * A lost database is "database unavailable", never an internal error: a refused connection and a terminated one
 * fail as PIER_DB_UNAVAILABLE, on the pool and in a transaction. And the embedded PostgreSQL's watchdog: a server
 * killed with -9 comes back on the same folder, port and password, and stop() leaves no process behind.
 */
import { readdirSync, readlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { PierError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/logger.js';
import { EmbeddedPostgres, createPool, withTransaction } from '../../src/db/index.js';
import { isAlive } from '../../src/up/index.js';
import { searchableTempDir } from '../helpers/data-dir.js';
import { freePort } from '../helpers/ports.js';
import { testDatabase } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function failure(promise: Promise<unknown>): Promise<PierError> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(PierError);
  return err as PierError;
}

/** Processes working in `dir` (a server and its backends). */
function processesIn(dir: string): number[] {
  return readdirSync('/proc').filter((e) => /^\d+$/.test(e)).filter((e) => {
    try {
      return readlinkSync(`/proc/${e}/cwd`) === dir;
    } catch {
      return false;
    }
  }).map(Number);
}

describe('database unavailable', () => {
  it('a refused connection fails as PIER_DB_UNAVAILABLE, on the pool and in a transaction', async () => {
    const port = await freePort(); // nothing listens there
    const pool = createPool({ url: `postgres://postgres:x@127.0.0.1:${port}/pier`, max: 2, connectTimeoutMs: 2000 }, silentLogger());
    try {
      for (const attempt of [pool.query('SELECT 1'), withTransaction(pool, (tx) => tx.query('SELECT 1'))]) {
        const err = await failure(attempt);
        expect(err.code).toBe('PIER_DB_UNAVAILABLE');
        expect(err.message).toBe('the database is unavailable; Pier retries by itself, try again in a moment');
      }
    } finally {
      await pool.end();
    }
  });

  it('a connection the server terminates fails as PIER_DB_UNAVAILABLE; the pool works again next', async () => {
    const pool = createPool({ url: await testDatabase(), max: 1, connectTimeoutMs: 5000 }, silentLogger());
    try {
      const err = await failure(pool.query('SELECT pg_terminate_backend(pg_backend_pid())'));
      expect(err.code).toBe('PIER_DB_UNAVAILABLE');
      // Other errors stay what they are (a syntax error is no outage).
      const syntax = await pool.query('SELEC 1').then(() => undefined, (e: unknown) => e);
      expect(syntax).not.toBeInstanceOf(PierError);
      expect((await pool.query<{ n: number }>('SELECT 1 AS n')).rows[0]!.n).toBe(1);
    } finally {
      await pool.end();
    }
  });
});

describe('embedded PostgreSQL watchdog', () => {
  it('restarts a server killed with -9 on the same port and password; stop() leaves no process', async () => {
    const dir = searchableTempDir('pier-sv-pg-');
    dirs.push(dir);
    const dataDir = join(dir, 'pg');
    const server = new EmbeddedPostgres({ dataDir, port: await freePort(), log: silentLogger() });
    let restarts = 0;
    server.onRestart = () => (restarts += 1);
    await server.start();
    try {
      const url = server.url;
      const first = server.pid!;
      process.kill(first, 'SIGKILL');
      const killedAt = Date.now();
      const second = await waitFor(async () => (server.pid !== undefined && server.pid !== first && restarts === 1 ? server.pid : undefined), {
        name: 'a restarted server', timeoutMs: 15_000, intervalMs: 25,
      });
      const backMs = Date.now() - killedAt;
      console.log(`[supervised] embedded PostgreSQL back after ${backMs} ms (pid ${first} -> ${second})`);
      expect(server.url).toBe(url);
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      expect((await client.query<{ n: number }>('SELECT 1 AS n')).rows[0]!.n).toBe(1);
      await client.end();
      expect(isAlive(first)).toBe(false);
      expect(backMs).toBeLessThan(5000);
    } finally {
      await server.stop();
    }
    expect(processesIn(dataDir)).toEqual([]);
  }, 30_000);
});
