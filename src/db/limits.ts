/**
 * Per-app limits (apps.limits): read by owners and runners, changed by operators only (the API checks) through
 * `patchAppLimits` (release-changes.ts).
 */
import { LIMIT_NAMES, type AppLimits } from '../protocol/index.js';
import type { AppRef } from './apps.js';
import type { Queryable } from './pool.js';

/** The limits an operator set for the app (the rest are the runners' defaults). */
export async function getAppLimits(q: Queryable, app: AppRef): Promise<AppLimits> {
  const { rows } = await q.query<{ limits: AppLimits }>('SELECT limits FROM apps WHERE id = $1', [app.id]);
  return pickLimits(rows[0]?.limits ?? {});
}

/** Known limit fields only (a row written by a newer version may hold more). */
export function pickLimits(raw: Record<string, unknown>): AppLimits {
  const limits: AppLimits = {};
  for (const name of LIMIT_NAMES) if (Number.isInteger(raw[name])) limits[name] = raw[name] as number;
  return limits;
}
