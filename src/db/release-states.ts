/**
 * The one home of a release's life: its statuses, the transitions between them (a typed table, checked by every
 * status change), its release phase, and the changes that move a release (go live, stage, fail, supersede,
 * revert, promote). Every other module changes a release's status through here.
 *
 *   pending ──live──▶ live ──supersede──▶ superseded ──restore──▶ live     (a verdict's switch back)
 *      │  └─stage──▶ staged ──promote──▶ pending                           (promote; a superseded one too)
 *      └──fail──▶ failed ◀──revert── live                                  (the live-traffic verdict)
 *
 * A release with a `release:` command also has a release phase: `pending` (to run, once, before any of its
 * instances is placed) → `done` | `failed`; `null` when there is none (or it is not rerun, as on a rollback).
 */
import type { ReleaseStatus } from '../protocol/index.js';
import { IllegalStateError } from '../core/errors.js';
import { appendEvent } from './events.js';
import { deployLockIsCurrent, releaseDeployLock } from './deploy-lock.js';
import type { Queryable } from './pool.js';

export type { ReleaseStatus };

/** The ways a release's status changes. */
export type ReleaseTransition = 'live' | 'stage' | 'fail' | 'supersede' | 'promote' | 'revert' | 'restore';

/** From which statuses each transition may start, and where it ends. */
export const RELEASE_TRANSITIONS: { readonly [T in ReleaseTransition]: { readonly from: readonly ReleaseStatus[]; readonly to: ReleaseStatus } } = {
  /** All its instances are ready (or a rolling deploy finished): balancers route to it. */
  live: { from: ['pending'], to: 'live' },
  /** Its stage instance is ready: stage.<app>.<domain> routes to it. */
  stage: { from: ['pending'], to: 'staged' },
  /** It did not start (an instance failed, the build or release phase failed, its deploy lock was lost). */
  fail: { from: ['pending'], to: 'failed' },
  /** A newer release went live. */
  supersede: { from: ['live'], to: 'superseded' },
  /** The stage release (or the previous live one on the stage slot) becomes the deploy target again. */
  promote: { from: ['staged', 'superseded'], to: 'pending' },
  /** The live-traffic verdict found it worse than the previous release. */
  revert: { from: ['live'], to: 'failed' },
  /** The previous release, still running, is live again after a revert. */
  restore: { from: ['superseded'], to: 'live' },
};

/** Statuses nothing moves out of. */
export const FINAL_STATUSES: readonly ReleaseStatus[] = (['pending', 'staged', 'live', 'superseded', 'failed'] as const)
  .filter((s) => !Object.values(RELEASE_TRANSITIONS).some((t) => t.from.includes(s)));

/** Where `transition` takes a release in status `from`, or undefined when it may not. */
export function nextStatus(from: ReleaseStatus, transition: ReleaseTransition): ReleaseStatus | undefined {
  const rule = RELEASE_TRANSITIONS[transition];
  return rule.from.includes(from) ? rule.to : undefined;
}

/** @throws IllegalStateError naming the status when `transition` may not start from `from` */
export function assertTransition(from: ReleaseStatus, transition: ReleaseTransition): ReleaseStatus {
  const to = nextStatus(from, transition);
  if (to === undefined) throw new IllegalStateError(`a ${from} release cannot ${transition}; only a ${RELEASE_TRANSITIONS[transition].from.join(' or ')} one can`);
  return to;
}

/** A release's release phase: null when it has none to run. */
export type ReleasePhase = 'pending' | 'done' | 'failed' | null;

/** The release phase's own transitions: it runs once, then is done or failed. */
export const PHASE_TRANSITIONS: { readonly [P in 'done' | 'failed']: { readonly from: readonly ReleasePhase[] } } = {
  done: { from: ['pending'] },
  failed: { from: ['pending'] },
};

/**
 * Moves release `releaseId` by `transition` when its status allows it (otherwise nothing changes), setting its
 * error (`undefined` keeps it). Returns its version and app, or undefined when the transition was refused.
 */
export async function moveRelease(tx: Queryable, releaseId: number, transition: ReleaseTransition, error?: string | null): Promise<{ version: number; app: string } | undefined> {
  const rule = RELEASE_TRANSITIONS[transition];
  const { rows } = await tx.query<{ version: number; app: string }>(
    `UPDATE releases r SET status = $2, error = CASE WHEN $4::boolean THEN $5 ELSE r.error END
     FROM apps a WHERE r.id = $1 AND a.id = r.app_id AND r.status = ANY($3::text[]) RETURNING r.version, a.name AS app`,
    [releaseId, rule.to, rule.from, error !== undefined, error === undefined || error === null ? null : error.slice(0, 8000)],
  );
  return rows[0];
}

/** Routes the app to `releaseId`: it becomes live, the previous live release is superseded. */
export async function makeLive(tx: Queryable, appId: number, releaseId: number, verdictWindowMs = 0): Promise<void> {
  // A deploy whose lock was taken over (its holder paused past the lease) must not go live.
  const fence = await deployLockIsCurrent(tx, releaseId);
  if (!fence.isCurrent) return failRelease(tx, appId, releaseId, fence.reason!);
  await releaseDeployLock(tx, releaseId);
  const moved = await moveRelease(tx, releaseId, 'live', null);
  if (!moved) return; // not pending any more (failed meanwhile): nothing to switch to
  // The previous live release stays up for the verdict window (its instances are not drained meanwhile).
  await tx.query(
    `UPDATE apps SET verdict_previous_id = CASE WHEN $3::int > 0 AND live_release_id IS NOT NULL AND live_release_id <> $2 THEN live_release_id END,
       verdict_since = now(), verdict_until = CASE WHEN $3::int > 0 AND live_release_id IS NOT NULL AND live_release_id <> $2 THEN now() + $3 * interval '1 millisecond' END
     WHERE id = $1`,
    [appId, releaseId, verdictWindowMs],
  );
  const { rows } = await tx.query<{ id: number }>("SELECT id FROM releases WHERE app_id = $1 AND status = 'live' AND id <> $2", [appId, releaseId]);
  for (const row of rows) await moveRelease(tx, row.id, 'supersede');
  await tx.query('UPDATE apps SET live_release_id = $2 WHERE id = $1', [appId, releaseId]);
  await appendEvent(tx, 'release.live', moved.app, { release: moved.version });
}

/** Marks the target release failed and points the app back at its live release (nothing public changes). */
export async function failRelease(tx: Queryable, appId: number, releaseId: number, error: string): Promise<void> {
  await releaseDeployLock(tx, releaseId);
  const moved = await moveRelease(tx, releaseId, 'fail', error);
  const app = await tx.query<{ name: string }>('UPDATE apps SET release_id = live_release_id WHERE id = $1 AND release_id = $2 RETURNING name', [appId, releaseId]);
  if (moved && app.rows[0]) await appendEvent(tx, 'release.failed', app.rows[0].name, { release: moved.version, error: error.slice(0, 2000) });
}

/** A stage release's instance is ready: the release is 'staged' and stage.<app>.<domain> routes to it. */
export async function markStaged(tx: Queryable, _appId: number, releaseId: number): Promise<void> {
  await releaseDeployLock(tx, releaseId);
  const moved = await moveRelease(tx, releaseId, 'stage');
  if (moved) await appendEvent(tx, 'release.staged', moved.app, { release: moved.version });
}

/** A stage release failed to start: it is marked failed and leaves the stage slot (nothing public changes). */
export async function failStage(tx: Queryable, appId: number, releaseId: number, error: string): Promise<void> {
  await releaseDeployLock(tx, releaseId);
  const moved = await moveRelease(tx, releaseId, 'fail', error);
  const app = await tx.query<{ name: string }>('UPDATE apps SET stage_release_id = NULL WHERE id = $1 AND stage_release_id = $2 RETURNING name', [appId, releaseId]);
  if (moved && app.rows[0]) await appendEvent(tx, 'release.failed', app.rows[0].name, { release: moved.version, error: error.slice(0, 2000), stage: true });
}

/** The release on the stage slot becomes the deploy target again (promote). */
export async function promoteRelease(tx: Queryable, releaseId: number): Promise<void> {
  await moveRelease(tx, releaseId, 'promote');
}

/**
 * The verdict found the live release clearly worse: the previous one (still running) is live again, at once.
 * False when another deploy moved on meanwhile.
 */
export async function revertRelease(tx: Queryable, verdict: { appId: number; app: string; releaseId: number; release: number; previousId: number; previous: number }, reason: string): Promise<boolean> {
  const { rowCount } = await tx.query(
    `UPDATE apps SET live_release_id = $3, release_id = $3, verdict_previous_id = NULL, verdict_since = NULL, verdict_until = NULL
     WHERE id = $1 AND live_release_id = $2 AND verdict_previous_id = $3`,
    [verdict.appId, verdict.releaseId, verdict.previousId],
  );
  if ((rowCount ?? 0) === 0) return false;
  await moveRelease(tx, verdict.releaseId, 'revert', `reverted by the live-traffic verdict: ${reason}`);
  await moveRelease(tx, verdict.previousId, 'restore');
  await appendEvent(tx, 'release.live', verdict.app, { release: verdict.previous });
  await appendEvent(tx, 'release.reverted', verdict.app, { release: verdict.release, previous: verdict.previous, reason });
  return true;
}

/** The release phase's task exited 0: the phase is done (the scheduler now places the release's instances) and the task is stopped. */
export async function finishReleasePhase(tx: Queryable, releaseId: number): Promise<void> {
  await tx.query("UPDATE releases SET release_phase = 'done' WHERE id = $1 AND release_phase = ANY($2::text[])", [releaseId, PHASE_TRANSITIONS.done.from]);
}

/** The release phase failed (non-zero exit, time-out): the phase and the release are failed; nothing public changes. */
export async function failReleasePhase(tx: Queryable, appId: number, releaseId: number, error: string): Promise<void> {
  await tx.query("UPDATE releases SET release_phase = 'failed' WHERE id = $1 AND release_phase = ANY($2::text[])", [releaseId, PHASE_TRANSITIONS.failed.from]);
  await failRelease(tx, appId, releaseId, error);
}
