/**
 * The formation: how many instances of each process type an app runs (Heroku's `ps:scale`). The one owner of
 * desired counts: `web` stays in `apps.web_scale` (read by the rest of the code as before), every background type
 * is a `formation` row (no row = 0). What a release can run is recorded on its artifact at upload
 * (`artifacts.processes`, `artifacts.has_web`), so rollbacks and config changes of the same bytes run the same types.
 */
import { ValidationError } from '../core/errors.js';
import type { AppRef } from './apps.js';
import { appendEvent } from './events.js';
import { stopInstance } from './scheduling.js';
import type { Queryable } from './pool.js';

/** Most instances of one type. */
export const MAX_QUANTITY = 100;

/** What an artifact runs: its background types (type → command) and whether it has a web process. */
export interface ArtifactProcesses {
  processes: Record<string, string>;
  hasWeb: boolean;
}

/** Records what the uploaded bytes run (their Procfile, checked at upload). */
export async function recordArtifactProcesses(tx: Queryable, sha256: string, spec: ArtifactProcesses): Promise<void> {
  await tx.query('UPDATE artifacts SET processes = $2, has_web = $3 WHERE sha256 = $1', [sha256, JSON.stringify(spec.processes), spec.hasWeb]);
}

/**
 * A new release's types enter the formation: types it brings that the app has no row for start at 0, except that
 * a release with no web process and no background type scaled up yet starts its first type at 1 (Heroku's rule for
 * a Procfile with no `web:`), so a first deploy of a worker-only app runs something.
 */
export async function admitReleaseTypes(tx: Queryable, app: AppRef, spec: ArtifactProcesses): Promise<void> {
  const types = Object.keys(spec.processes);
  if (types.length === 0) return;
  const current = await backgroundFormation(tx, app.id);
  const isAnyUp = Object.values(current).some((q) => q > 0);
  for (const [index, type] of types.entries()) {
    if (Object.hasOwn(current, type)) continue;
    const quantity = !spec.hasWeb && index === 0 && !isAnyUp ? 1 : 0;
    await tx.query('INSERT INTO formation (app_id, process_type, quantity) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [app.id, type, quantity]);
  }
}

/** Background type → quantity, as stored. */
async function backgroundFormation(q: Queryable, appId: number): Promise<Record<string, number>> {
  const { rows } = await q.query<{ process_type: string; quantity: number }>('SELECT process_type, quantity FROM formation WHERE app_id = $1', [appId]);
  return Object.fromEntries(rows.map((r) => [r.process_type, r.quantity]));
}

/** The types the app's target release (else its newest release) has, web first; null before any release. */
export async function releaseTypes(q: Queryable, appId: number): Promise<{ types: string[]; version: number } | null> {
  const { rows } = await q.query<{ version: number; processes: Record<string, string> | null; has_web: boolean }>(
    `SELECT r.version, ar.processes, ar.has_web FROM releases r JOIN artifacts ar ON ar.sha256 = r.sha256
     WHERE r.app_id = $1 ORDER BY (r.id = (SELECT release_id FROM apps WHERE id = $1)) DESC, r.version DESC LIMIT 1`,
    [appId],
  );
  const row = rows[0];
  if (!row) return null;
  return { types: [...(row.has_web ? ['web'] : []), ...Object.keys(row.processes ?? {})], version: row.version };
}

/** The app's formation for the types its current release has (web first), e.g. `{ web: 2, worker: 1 }`. */
export async function getFormation(q: Queryable, app: AppRef): Promise<Record<string, number>> {
  const { rows } = await q.query<{ web_scale: number }>('SELECT web_scale FROM apps WHERE id = $1', [app.id]);
  const stored = await backgroundFormation(q, app.id);
  const current = await releaseTypes(q, app.id);
  const types = current?.types ?? ['web'];
  return Object.fromEntries(types.map((type) => [type, type === 'web' ? rows[0]!.web_scale : (stored[type] ?? 0)]));
}

/**
 * Sets counts by type. Every type must be one the app's current release has (else a ValidationError naming it and
 * the types there are), so nothing is half applied. Returns the whole formation after the change.
 */
export async function setFormation(
  tx: Queryable, app: AppRef, changes: Record<string, number>, options: { singleton?: boolean } = {},
): Promise<Record<string, number>> {
  const entries = Object.entries(changes);
  if (entries.length === 0) throw new ValidationError('nothing to scale; send counts by type, for example {"web": 2, "worker": 1}');
  const current = await releaseTypes(tx, app.id);
  const types = current?.types ?? ['web'];
  for (const [type, quantity] of entries) {
    if (!types.includes(type)) {
      const where = current ? `v${current.version} has ${types.join(', ')}` : 'the app has no release yet, so only web';
      throw new ValidationError(`unknown process type '${type}'; ${where}`, { details: { path: type } });
    }
    if (!Number.isInteger(quantity) || quantity < 0 || quantity > MAX_QUANTITY) {
      throw new ValidationError(`${type}=${quantity} must be a whole number 0..${MAX_QUANTITY}`, { details: { path: type } });
    }
    if (options.singleton && type === 'web') throw new ValidationError("web cannot be a singleton (it is served by as many instances as you scale it to); name a background type", { details: { path: type } });
  }
  const singletons = new Set((await tx.query<{ process_type: string }>('SELECT process_type FROM formation WHERE app_id = $1 AND singleton', [app.id])).rows.map((r) => r.process_type));
  for (const [type, quantity] of entries) {
    const isSingleton = options.singleton ?? singletons.has(type);
    if (isSingleton && quantity > 1) throw new ValidationError(`${type} is a singleton: it runs at most once (${type}=0 or ${type}=1; --no-singleton to scale it out)`, { details: { path: type } });
  }
  for (const [type, quantity] of entries) {
    if (type === 'web') await tx.query('UPDATE apps SET web_scale = $2 WHERE id = $1', [app.id, quantity]);
    else {
      await tx.query(
        `INSERT INTO formation (app_id, process_type, quantity, singleton) VALUES ($1, $2, $3, coalesce($4, false))
         ON CONFLICT (app_id, process_type) DO UPDATE SET quantity = EXCLUDED.quantity, singleton = coalesce($4, formation.singleton)`,
        [app.id, type, quantity, options.singleton ?? null],
      );
    }
  }
  // A type that just became a singleton may be running without a lease: those instances are stopped, and the
  // scheduler starts its one instance, lease first, once they are gone.
  const fresh = options.singleton ? entries.map(([type]) => type).filter((type) => !singletons.has(type)) : [];
  if (fresh.length > 0) {
    const { rows } = await tx.query<{ id: string }>("SELECT id FROM instances WHERE app_id = $1 AND process_type = ANY($2::text[]) AND state <> 'stopping'", [app.id, fresh]);
    for (const row of rows) await stopInstance(tx, row.id);
  }
  const formation = await getFormation(tx, app);
  await appendEvent(tx, 'formation.changed', app.name, formation);
  return formation;
}

/** Per app: background type → quantity, for the scheduler. */
export async function loadBackgroundFormations(q: Queryable): Promise<Map<number, Record<string, number>>> {
  const { rows } = await q.query<{ app_id: number; process_type: string; quantity: number }>('SELECT app_id, process_type, quantity FROM formation');
  const byApp = new Map<number, Record<string, number>>();
  for (const row of rows) {
    const formation = byApp.get(row.app_id) ?? {};
    formation[row.process_type] = row.quantity;
    byApp.set(row.app_id, formation);
  }
  return byApp;
}

/** Per release id: what it runs (releases of artifacts from before process types run web only). */
export async function loadReleaseProcesses(q: Queryable, releaseIds: number[]): Promise<Map<number, ArtifactProcesses>> {
  if (releaseIds.length === 0) return new Map();
  const { rows } = await q.query<{ id: number; processes: Record<string, string> | null; has_web: boolean }>(
    'SELECT r.id, ar.processes, ar.has_web FROM releases r JOIN artifacts ar ON ar.sha256 = r.sha256 WHERE r.id = ANY($1::bigint[])',
    [releaseIds],
  );
  return new Map(rows.map((r) => [Number(r.id), { processes: r.processes ?? {}, hasWeb: r.has_web }]));
}
