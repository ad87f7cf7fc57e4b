/**
 * A deploy's claim on its app's deploy lock (`deploy:<app>`): taken when the release is made (or the caller's own
 * lock, checked by its fencing token), recorded on the release, checked before it goes live, released when it settles.
 */
import type { AppRef } from './apps.js';
import { acquireLock, checkFence, getLock, releaseLock, type LockHeld } from './locks.js';
import type { Queryable } from './pool.js';

/** How a deploy claims its app's deploy lock: taken now for `holder`, or the caller's own lock (`fenceToken`). */
export interface DeployClaim {
  holder: string;
  leaseMs: number;
  /** The token of a deploy lock the caller already holds; checked, never taken. */
  fenceToken?: number;
}

export function deployLockName(app: string): string {
  return `deploy:${app}`;
}

/**
 * Claims the deploy lock for release `releaseId`: checks the caller's fencing token, or takes the lock (PIER_LOCKED
 * when another deploy holds it). The token is recorded on the release.
 */
export async function claimDeploy(tx: Queryable, app: AppRef, releaseId: number, claim: DeployClaim): Promise<void> {
  const name = deployLockName(app.name);
  let token: number;
  if (claim.fenceToken !== undefined) {
    await checkFence(tx, name, claim.fenceToken);
    token = claim.fenceToken;
  } else {
    token = (await acquireLock(tx, name, claim.holder, claim.leaseMs)).token;
  }
  await tx.query('UPDATE releases SET lock_token = $2, owns_lock = $3 WHERE id = $1', [releaseId, token, claim.fenceToken === undefined]);
}

/** The deploy lock a release was made under, if any. */
async function releaseLockOf(tx: Queryable, releaseId: number): Promise<{ name: string; token: number; ownsLock: boolean } | undefined> {
  const { rows } = await tx.query<{ app: string; lock_token: string | null; owns_lock: boolean }>(
    'SELECT a.name AS app, r.lock_token, r.owns_lock FROM releases r JOIN apps a ON a.id = r.app_id WHERE r.id = $1', [releaseId],
  );
  const row = rows[0];
  return row && row.lock_token !== null ? { name: deployLockName(row.app), token: Number(row.lock_token), ownsLock: row.owns_lock } : undefined;
}

/** Why a deploy whose lock token is `token` may not go on, given who holds its lock now. */
export function lostLockReason(token: number, held: LockHeld | undefined): string {
  return `deploy lock lost: fencing token ${token} refused (${held ? `now held by ${held.holder}, token ${held.token}` : 'its lease ran out'})`;
}

/** Releases the deploy lock a settled release owned (no-op when it did not own one, or lost it). */
export async function releaseDeployLock(tx: Queryable, releaseId: number): Promise<void> {
  const lock = await releaseLockOf(tx, releaseId);
  if (!lock?.ownsLock) return;
  await releaseLock(tx, lock.name, lock.token);
  await tx.query('UPDATE releases SET owns_lock = false WHERE id = $1', [releaseId]);
}

/** Whether the release's deploy lock (if it has one) is still current: a stale one must not go live. */
export async function deployLockIsCurrent(tx: Queryable, releaseId: number): Promise<{ isCurrent: boolean; reason?: string }> {
  const lock = await releaseLockOf(tx, releaseId);
  if (!lock) return { isCurrent: true };
  const held = await getLock(tx, lock.name);
  if (held?.token === lock.token) return { isCurrent: true };
  // A caller-held lock released by its holder after the switch was asked for is fine; one taken over is not.
  if (!held && !lock.ownsLock) return { isCurrent: true };
  return { isCurrent: false, reason: lostLockReason(lock.token, held) };
}
