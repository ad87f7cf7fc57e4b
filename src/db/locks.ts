/**
 * Leases with fencing tokens (the `locks` table): a holder gets a strictly increasing token (sequence
 * `lock_tokens`) valid until its lease runs out; it renews at half the lease. Every write made on behalf of a
 * lock passes its token to `checkFence`, which refuses a token that is no longer the lock's current one — so a
 * holder that paused past its lease (GC, partition, a stopped process) cannot write after someone else took over.
 * Taking, releasing and expiring are events, which wake waiters.
 */
import { PierError } from '../core/errors.js';
import { appendEvent } from './events.js';
import type { Queryable } from './pool.js';

export interface LockHeld {
  name: string;
  holder: string;
  token: number;
  expiresAt: number;
}

/** Longest lease: a holder that stops renewing frees the lock within this. */
export const MAX_LEASE_MS = 10 * 60_000;

/** The lock as it is, or undefined when free (an expired row counts as free). */
export async function getLock(q: Queryable, name: string): Promise<LockHeld | undefined> {
  const { rows } = await q.query<{ holder: string; token: string; expires_at: Date }>(
    'SELECT holder, token, expires_at FROM locks WHERE name = $1 AND expires_at > now()', [name],
  );
  const row = rows[0];
  return row ? { name, holder: row.holder, token: Number(row.token), expiresAt: row.expires_at.getTime() } : undefined;
}

/**
 * Takes `name` for `holder` for `leaseMs`, or throws PIER_LOCKED naming who holds it. Taking over an expired lock
 * records its expiry first.
 */
export async function acquireLock(tx: Queryable, name: string, holder: string, leaseMs: number): Promise<LockHeld> {
  await expireLock(tx, name);
  const { rows } = await tx.query<{ token: string; expires_at: Date }>(
    `INSERT INTO locks (name, holder, token, expires_at) VALUES ($1, $2, nextval('lock_tokens'), now() + $3 * interval '1 millisecond')
     ON CONFLICT (name) DO NOTHING RETURNING token, expires_at`,
    [name, holder, leaseMs],
  );
  if (!rows[0]) {
    const held = await getLock(tx, name);
    throw lockedError(name, held);
  }
  const lock = { name, holder, token: Number(rows[0].token), expiresAt: rows[0].expires_at.getTime() };
  await appendEvent(tx, 'lock.acquired', appOf(name), { ...lock });
  return lock;
}

/** Extends the lease of the holder of `token`. @throws PIER_FENCED when the token is no longer current */
export async function renewLock(tx: Queryable, name: string, token: number, leaseMs: number): Promise<LockHeld> {
  const { rows } = await tx.query<{ holder: string; expires_at: Date }>(
    `UPDATE locks SET expires_at = now() + $3 * interval '1 millisecond' WHERE name = $1 AND token = $2 AND expires_at > now()
     RETURNING holder, expires_at`,
    [name, token, leaseMs],
  );
  if (!rows[0]) throw await fencedError(tx, name, token);
  return { name, holder: rows[0].holder, token, expiresAt: rows[0].expires_at.getTime() };
}

/** Releases the lock if `token` still holds it; returns whether it did (a lost lock is not an error here). */
export async function releaseLock(tx: Queryable, name: string, token: number): Promise<boolean> {
  const { rowCount } = await tx.query('DELETE FROM locks WHERE name = $1 AND token = $2', [name, token]);
  if ((rowCount ?? 0) === 0) return false;
  await appendEvent(tx, 'lock.released', appOf(name), { name, token });
  return true;
}

/**
 * Refuses a write made with a stale token: the lock must still be held with exactly `token` and unexpired. Takes
 * the row lock, so the lock cannot change hands before the caller's transaction commits.
 */
export async function checkFence(tx: Queryable, name: string, token: number): Promise<void> {
  const { rows } = await tx.query('SELECT 1 FROM locks WHERE name = $1 AND token = $2 AND expires_at > now() FOR UPDATE', [name, token]);
  if (!rows[0]) throw await fencedError(tx, name, token);
}

/** Deletes `name` (or every lock) whose lease ran out, recording `lock.expired`; returns how many. */
export async function expireLock(tx: Queryable, name?: string): Promise<number> {
  const { rows } = await tx.query<{ name: string; holder: string; token: string }>(
    `DELETE FROM locks WHERE expires_at <= now()${name === undefined ? '' : ' AND name = $1'} RETURNING name, holder, token`,
    name === undefined ? [] : [name],
  );
  for (const row of rows) await appendEvent(tx, 'lock.expired', appOf(row.name), { name: row.name, holder: row.holder, token: Number(row.token) });
  return rows.length;
}

/** Locks named `deploy:<app>` concern that app (their events carry it). */
function appOf(name: string): string | null {
  const match = /^deploy:([a-z][a-z0-9-]{0,29})$/.exec(name);
  return match ? match[1]! : null;
}

function lockedError(name: string, held: LockHeld | undefined): PierError {
  const who = held ? `${held.holder} (token ${held.token}, lease ends in ${Math.max(0, Math.ceil((held.expiresAt - Date.now()) / 1000))} s)` : 'another holder';
  return new PierError('PIER_LOCKED', `lock '${name}' is held by ${who}`, { details: held ? { ...held } : {} });
}

async function fencedError(tx: Queryable, name: string, token: number): Promise<PierError> {
  const held = await getLock(tx, name);
  const now = held ? `it is now held by ${held.holder} with token ${held.token}` : 'it is no longer held';
  return new PierError('PIER_FENCED', `fencing token ${token} for '${name}' is stale: ${now}`, { details: { name, token, current: held?.token ?? null } });
}
