/**
 * Changes that make a new release of the same code when the app is deployed (as on Heroku): a config change and
 * a limits change. Every instance rolls onto the new release; its release phase runs again (see createRelease).
 */
import type { PatchLimitsBody, AppLimits } from '../protocol/index.js';
import type { AppRef } from './apps.js';
import { getConfigVars, storeConfigChange } from './config-vars.js';
import type { DeployClaim } from './deploy-lock.js';
import { pickLimits } from './limits.js';
import type { Queryable } from './pool.js';
import { createRelease, currentReleaseSha } from './releases.js';

/** Sets and unsets vars in one change (see storeConfigChange) and, when the app is deployed, makes the new release. */
export async function changeConfigVars(
  tx: Queryable,
  app: AppRef,
  set: Record<string, string>,
  unset: string[],
  ownerId: number | null = null,
  claim?: DeployClaim,
): Promise<Record<string, string>> {
  await storeConfigChange(tx, app, set, unset);
  const sha256 = await currentReleaseSha(tx, app);
  if (sha256 !== undefined) {
    const changed = [...Object.keys(set).map((k) => `set ${k}`), ...unset.map((k) => `unset ${k}`)].join(', ');
    await createRelease(tx, app, sha256, ownerId, changed, { ...(claim ? { claim } : {}), releasePhase: 'same-code' });
  }
  return getConfigVars(tx, app);
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
    await createRelease(tx, app, sha256, ownerId, `limits: ${changed}`, { ...(claim ? { claim } : {}), releasePhase: 'same-code' });
  }
  return pickLimits(rows[0]?.limits ?? {});
}
