/**
 * Add-ons attached to apps (migration 0016): the rows and their reads. Provisioning lives with each kind
 * (src/nexus/addons/); Redis placement columns are written by src/db/addon-placements.ts only.
 */
import { ConflictError, NotFoundError } from '../core/errors.js';
import { isUniqueViolation, type Queryable } from './pool.js';

/** An app as add-ons name it (apps.ts's AppRef; apps.ts imports this module, so not imported back). */
interface AppRef {
  id: number;
  name: string;
}

export const ADDON_KINDS = ['postgresql', 'redis'] as const;
export type AddonKind = (typeof ADDON_KINDS)[number];
export type AddonState = 'provisioning' | 'ready' | 'moving' | 'destroying';

export interface Addon {
  id: number;
  name: string;
  appId: number | null;
  appName: string;
  kind: AddonKind;
  state: AddonState;
  configVar: string;
  plan: Record<string, unknown>;
  secret: string;
  runnerId: string | null;
  host: string | null;
  port: number | null;
  generation: number;
  startedAt: Date | null;
  note: string | null;
  createdAt: Date;
  updatedAt: Date;
}

interface AddonRow {
  id: string | number; name: string; app_id: string | number | null; app_name: string; kind: AddonKind; state: AddonState;
  config_var: string; plan: Record<string, unknown>; secret: string; runner_id: string | null; host: string | null;
  port: number | null; generation: number; started_at: Date | null; note: string | null; created_at: Date; updated_at: Date;
}

export function addonFromRow(r: AddonRow): Addon {
  return {
    id: Number(r.id), name: r.name, appId: r.app_id === null ? null : Number(r.app_id), appName: r.app_name, kind: r.kind,
    state: r.state, configVar: r.config_var, plan: r.plan, secret: r.secret, runnerId: r.runner_id, host: r.host,
    port: r.port, generation: r.generation, startedAt: r.started_at, note: r.note, createdAt: r.created_at, updatedAt: r.updated_at,
  };
}

/** An app's add-ons, oldest first. */
export async function listAddons(q: Queryable, app: AppRef): Promise<Addon[]> {
  const { rows } = await q.query<AddonRow>('SELECT * FROM addons WHERE app_id = $1 ORDER BY id', [app.id]);
  return rows.map(addonFromRow);
}

/** One add-on of the app by name; another app's (or a missing) name is not found. */
export async function getAddon(q: Queryable, app: AppRef, name: string, forUpdate = false): Promise<Addon> {
  const { rows } = await q.query<AddonRow>(`SELECT * FROM addons WHERE app_id = $1 AND name = $2${forUpdate ? ' FOR UPDATE' : ''}`, [app.id, name]);
  if (rows.length === 0) throw new NotFoundError(`add-on '${name}' is not attached to app '${app.name}'; run 'pier addons -a ${app.name}'`);
  return addonFromRow(rows[0]!);
}

/** A new add-on row (its resource already made by its kind); a second of the same kind on the app is a conflict. */
export async function insertAddon(
  tx: Queryable,
  app: AppRef,
  row: { name: string; kind: AddonKind; state: 'provisioning' | 'ready'; configVar: string; plan: Record<string, unknown>; secret: string },
): Promise<Addon> {
  try {
    const { rows } = await tx.query<AddonRow>(
      `INSERT INTO addons (name, app_id, app_name, kind, state, config_var, plan, secret)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *`,
      [row.name, app.id, app.name, row.kind, row.state, row.configVar, JSON.stringify(row.plan), row.secret],
    );
    return addonFromRow(rows[0]!);
  } catch (err) {
    if (isUniqueViolation(err, 'addons_app_kind_idx')) {
      throw new ConflictError(`app '${app.name}' already has a ${row.kind} add-on; run 'pier addons -a ${app.name}' to see it`);
    }
    throw err;
  }
}

/** One add-on by its platform-wide name (any app, or none), if it exists. */
export async function findAddonByName(q: Queryable, name: string): Promise<Addon | undefined> {
  const { rows } = await q.query<AddonRow>('SELECT * FROM addons WHERE name = $1', [name]);
  return rows[0] ? addonFromRow(rows[0]) : undefined;
}

/** Whether an add-on name is taken (by any app, or by a row still being destroyed). */
export async function isAddonNameTaken(q: Queryable, name: string): Promise<boolean> {
  const { rows } = await q.query('SELECT 1 FROM addons WHERE name = $1', [name]);
  return rows.length > 0;
}

/**
 * Detaches an add-on: state 'destroying' and no app, so the app may get a new one of the kind at once while this
 * one's resource is removed (by the nexus now, or the leader's retry).
 */
export async function markAddonDestroying(tx: Queryable, id: number): Promise<void> {
  await tx.query("UPDATE addons SET state = 'destroying', app_id = NULL, updated_at = now() WHERE id = $1", [id]);
}

/** In destroyApp's transaction: every add-on of the app goes 'destroying' (app_id then goes NULL with the app row). */
export async function markAppAddonsDestroying(tx: Queryable, appId: number): Promise<Addon[]> {
  const { rows } = await tx.query<AddonRow>(
    "UPDATE addons SET state = 'destroying', updated_at = now() WHERE app_id = $1 RETURNING *",
    [appId],
  );
  return rows.map(addonFromRow);
}

/** Add-ons left 'destroying' (oldest first), optionally of one kind only. */
export async function listDestroyingAddons(q: Queryable, kind?: AddonKind): Promise<Addon[]> {
  const { rows } = kind === undefined
    ? await q.query<AddonRow>("SELECT * FROM addons WHERE state = 'destroying' ORDER BY id")
    : await q.query<AddonRow>("SELECT * FROM addons WHERE state = 'destroying' AND kind = $1 ORDER BY id", [kind]);
  return rows.map(addonFromRow);
}

/** Forgets an add-on whose resource is gone. Only a 'destroying' row is deleted; returns whether one was. */
export async function deleteDestroyedAddon(q: Queryable, id: number): Promise<boolean> {
  const result = await q.query("DELETE FROM addons WHERE id = $1 AND state = 'destroying'", [id]);
  return (result.rowCount ?? 0) > 0;
}

/**
 * The config vars the app's add-ons own, as they are now (`null`: not set, e.g. a Redis not placed yet). A rollback
 * restores a release's vars but keeps these: an add-on's URL points at where its data is now (a Redis that moved, a
 * database created after that release), as on Heroku, where a rollback does not roll back add-ons.
 */
export async function addonVarsNow(q: Queryable, app: AppRef): Promise<Array<{ key: string; value: string | null }>> {
  const { rows } = await q.query<{ key: string; value: string | null }>(
    `SELECT a.config_var AS key, c.value FROM addons a LEFT JOIN config_vars c ON c.app_id = a.app_id AND c.key = a.config_var
     WHERE a.app_id = $1 ORDER BY a.id`,
    [app.id],
  );
  return rows;
}
