/**
 * Per-app limits (apps.limits): read by owners and runners, changed by operators only (the API checks). A change
 * is a new release of the same code and config (as a config change is), so the app rolls onto instances that
 * have the new limits.
 */
import { LIMIT_NAMES, type AppLimits, type PatchLimitsBody } from '../protocol/index.js';
import type { AppRef } from './apps.js';
import type { Queryable } from './pool.js';
import { createRelease, currentReleaseSha, type DeployClaim } from './releases.js';

/** The limits an operator set for the app (the rest are the runners' defaults). */
export async function getAppLimits(q: Queryable, app: AppRef): Promise<AppLimits> {
  const { rows } = await q.query<{ limits: AppLimits }>('SELECT limits FROM apps WHERE id = $1', [app.id]);
  return pickLimits(rows[0]?.limits ?? {});
}

/**
 * Sets the given limits (null returns one to the default) and, when the app has a release, deploys it again
 * with them (the caller holds the app row lock). Returns the result.
 */
export async function patchAppLimits(tx: Queryable, app: AppRef, patch: PatchLimitsBody, ownerId: number | null = null, claim?: DeployClaim): Promise<AppLimits> {
  const { rows } = await tx.query<{ limits: AppLimits }>(
    'UPDATE apps SET limits = jsonb_strip_nulls(limits || $2::jsonb) WHERE id = $1 RETURNING limits',
    [app.id, JSON.stringify(patch)],
  );
  const sha256 = await currentReleaseSha(tx, app);
  if (sha256 !== undefined) {
    const changed = Object.entries(patch).map(([k, v]) => `${k}=${v ?? 'default'}`).join(', ');
    await createRelease(tx, app, sha256, ownerId, `limits: ${changed}`, { ...(claim ? { claim } : {}) });
  }
  return pickLimits(rows[0]?.limits ?? {});
}

/** Known limit fields only (a row written by a newer version may hold more). */
export function pickLimits(raw: Record<string, unknown>): AppLimits {
  const limits: AppLimits = {};
  for (const name of LIMIT_NAMES) if (Number.isInteger(raw[name])) limits[name] = raw[name] as number;
  return limits;
}
