/** PostgreSQL connection pool, transactions, and the mapping of driver errors onto Pier's codes. */
import pg from 'pg';
import type { Logger } from 'pino';
import { PierError } from '../core/errors.js';

export type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;
export type Pool = pg.Pool;

export interface PoolOptions {
  url: string;
  max: number;
  connectTimeoutMs: number;
  /** Name shown in pg_stat_activity. */
  applicationName?: string;
}

// bigint columns (ids, counts) fit in a JS number for Pier's sizes; parse them as numbers.
pg.types.setTypeParser(20, (v) => Number(v));

export function createPool(options: PoolOptions, log: Logger): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.max,
    connectionTimeoutMillis: options.connectTimeoutMs,
    application_name: options.applicationName ?? 'pier',
    idleTimeoutMillis: 30_000,
  });
  // An idle client losing its connection (server restart) must not crash the process.
  pool.on('error', (err) => log.warn({ err }, 'idle database connection lost'));
  // A query straight on the pool (no transaction) fails as PIER_DB_UNAVAILABLE too when the server is away, not
  // as a raw driver error the API would answer as an internal error.
  const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
  pool.query = ((...args: unknown[]) => {
    const result = query(...args);
    return result instanceof Promise ? result.catch((err: unknown) => Promise.reject(mapDbError(err))) : result;
  }) as typeof pool.query;
  return pool;
}

/** Runs `fn` in a transaction; commits on success, rolls back and rethrows on failure. */
export async function withTransaction<T>(
  pool: pg.Pool,
  fn: (tx: pg.PoolClient) => Promise<T>,
  mode: 'read write' | 'repeatable read only' = 'read write',
): Promise<T> {
  const client = await connect(pool);
  let isBroken = false;
  // A checked-out client has no listener of the pool's: a connection lost between two queries (server restart,
  // database dropped) would be an uncaught 'error'. The next query fails with it instead.
  const onError = (): void => {
    isBroken = true;
  };
  client.on('error', onError);
  try {
    await client.query(mode === 'read write' ? 'BEGIN' : 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    try {
      await client.query('ROLLBACK');
    } catch {
      isBroken = true; // the connection is gone; release it as broken below
    }
    throw mapDbError(err);
  } finally {
    client.off('error', onError);
    client.release(isBroken);
  }
}

async function connect(pool: pg.Pool): Promise<pg.PoolClient> {
  try {
    return await pool.connect();
  } catch (err) {
    throw mapDbError(err);
  }
}

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', '57P01', '57P02', '57P03', '08000', '08003', '08006', '08001', '08004']);

/** Connection failures become PIER_DB_UNAVAILABLE; PierErrors pass through; other errors stay as they are. */
export function mapDbError(err: unknown): unknown {
  if (err instanceof PierError) return err;
  const code = (err as { code?: string } | null)?.code;
  const message = String((err as Error | null)?.message ?? '');
  if ((code && CONNECTION_CODES.has(code)) || /Connection terminated|timeout exceeded when trying to connect|connection timeout|connection error and is not queryable|not queryable/i.test(message)) {
    return new PierError('PIER_DB_UNAVAILABLE', 'the database is unavailable; Pier retries by itself, try again in a moment', { cause: err });
  }
  return err;
}

/** True for a unique-constraint violation, optionally on a given constraint. */
export function isUniqueViolation(err: unknown, constraint?: string): boolean {
  const e = err as { code?: string; constraint?: string } | null;
  return e?.code === '23505' && (constraint === undefined || e.constraint === constraint);
}

/** Keys of Pier's advisory locks: (PIER, n) pairs, visible in pg_locks as classid/objid. */
export const ADVISORY = { namespace: 0x50494552, leader: 1, events: 2, migrate: 3, scheduler: 4 } as const;
