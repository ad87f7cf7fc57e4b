/**
 * Add-ons attached to apps (migration 0016): the rows and their reads. Provisioning lives with each kind
 * (src/nexus/addons/); Redis placement columns are written by src/db/addon-placements.ts only.
 */
import { NotFoundError } from '../core/errors.js';
import type { AppRef } from './apps.js';
import type { Queryable } from './pool.js';

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
