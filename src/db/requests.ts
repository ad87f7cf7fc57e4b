/** Mutations remembered by request id: a retried request gets the first answer instead of a second application. */
import type pg from 'pg';
import { ConflictError } from '../core/errors.js';
import { withTransaction } from './pool.js';

/**
 * How a result with a secret in it is remembered: `store` keeps only what may sit in the table (never a token,
 * never a config value), and `replay` rebuilds the answer to a retry from that (in the retry's transaction).
 */
export interface OnceOptions<T> {
  store: (result: T) => unknown;
  replay: (stored: unknown, tx: pg.PoolClient) => T | Promise<T>;
}

/**
 * Runs mutation `fn` in a transaction keyed by `requestId`. If that id was already applied, returns the stored
 * result (through `options.replay` when given); a concurrent duplicate waits on the row lock and then reads the
 * first result.
 */
export async function runOnce<T>(pool: pg.Pool, requestId: string, type: string, fn: (tx: pg.PoolClient) => Promise<T>, options?: OnceOptions<T>): Promise<T> {
  return withTransaction(pool, async (tx) => {
    const inserted = await tx.query('INSERT INTO requests (id, type) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING RETURNING id', [requestId, type]);
    if (inserted.rowCount === 0) {
      const { rows } = await tx.query<{ type: string; reply: T }>('SELECT type, reply FROM requests WHERE id = $1', [requestId]);
      const first = rows[0]!;
      if (first.type !== type) {
        throw new ConflictError(`request id '${requestId}' was already used for '${first.type}'; use a new id`);
      }
      return options ? options.replay(first.reply, tx) : first.reply;
    }
    const result = await fn(tx);
    const stored = options ? options.store(result) : result;
    await tx.query('UPDATE requests SET reply = $2 WHERE id = $1', [requestId, JSON.stringify(stored ?? null)]);
    return result;
  });
}

/** Forgets request ids older than `retentionMs`; returns how many. */
export async function pruneRequests(pool: pg.Pool, retentionMs: number): Promise<number> {
  const result = await pool.query("DELETE FROM requests WHERE created_at < now() - ($1 || ' milliseconds')::interval", [String(retentionMs)]);
  return result.rowCount ?? 0;
}

/** A mutation: idempotent by `requestId` when the caller gave one, a plain transaction otherwise. */
export function mutate<T>(pool: pg.Pool, requestId: string | undefined, type: string, fn: (tx: pg.PoolClient) => Promise<T>, options?: OnceOptions<T>): Promise<T> {
  return requestId === undefined ? withTransaction(pool, fn) : runOnce(pool, requestId, type, fn, options);
}

/** The stored answer of a mutation already applied under `requestId` as `type`, if any (checked before slow work). */
export async function appliedRequest(q: Pick<pg.Pool, 'query'>, requestId: string, type: string): Promise<{ reply: unknown } | undefined> {
  const { rows } = await q.query<{ type: string; reply: unknown }>('SELECT type, reply FROM requests WHERE id = $1', [requestId]);
  const first = rows[0];
  if (!first) return undefined;
  if (first.type !== type) throw new ConflictError(`request id '${requestId}' was already used for '${first.type}'; use a new id`);
  return { reply: first.reply };
}
