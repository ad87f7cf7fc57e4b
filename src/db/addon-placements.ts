/**
 * Where Redis add-on servers run (the placement columns of `addons`, migration 0016): the leader places them on
 * live runners, runners pull their assignments and report, and REDIS_URL follows each (re)start on a new runner.
 * The only writer of runner_id, host, port, generation, started_at and note.
 */
import type { AddonAssignment } from '../protocol/index.js';
import { addonFromRow, type Addon } from './addons.js';
import type { AppRef } from './apps.js';
import { appendEvent } from './events.js';
import { ADVISORY, type Queryable } from './pool.js';
import { changeConfigVars } from './release-changes.js';
import { getConfigVars } from './config-vars.js';

/** The config var a Redis add-on sets on its app (Heroku's name). */
export const REDIS_CONFIG_VAR = 'REDIS_URL';

/** A runner as the placement sees it: its address, add-on port range and how much it runs already. */
export interface AddonRunner {
  id: string;
  address: string;
  lastHeartbeatAtMs: number | null;
  portMin: number;
  portMax: number;
  /** Add-on servers and instances it runs now (the placement takes the runner with the fewest). */
  load: number;
  /** Ports its add-on servers hold now. */
  usedPorts: Set<number>;
  /** An operator drains it (`pier nodes:drain`): no add-on server goes there, the ones there move. */
  isDraining: boolean;
}

/** `redis://:PASSWORD@host:port/0`, as Heroku's REDIS_URL. */
export function redisUrl(host: string, port: number, password: string): string {
  const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return `redis://:${encodeURIComponent(password)}@${h}:${port}/0`;
}

/** Every Redis add-on row (the leader tends them all; a platform runs few enough). */
export async function redisAddons(q: Queryable): Promise<Addon[]> {
  const { rows } = await q.query<Parameters<typeof addonFromRow>[0]>("SELECT * FROM addons WHERE kind = 'redis' ORDER BY id");
  return rows.map(addonFromRow);
}

/** Runners with their add-on port ranges (from registration; `defaults` for an older runner) and their load. */
export async function addonRunners(q: Queryable, defaults: { portMin: number; portMax: number }): Promise<AddonRunner[]> {
  const { rows } = await q.query<{
    id: string; address: string; info: Record<string, unknown>; beat: Date | null; instances: string; addons: string; ports: number[] | null; is_draining: boolean;
  }>(
    `SELECT n.id, n.address, n.info, n.last_heartbeat_at AS beat, n.draining_since IS NOT NULL AS is_draining,
       (SELECT count(*) FROM instances i WHERE i.runner_id = n.id) AS instances,
       (SELECT count(*) FROM addons a WHERE a.runner_id = n.id) AS addons,
       (SELECT array_agg(a.port) FROM addons a WHERE a.runner_id = n.id AND a.port IS NOT NULL) AS ports
     FROM nodes n WHERE n.kind = 'runner' ORDER BY n.id`,
  );
  return rows.map((r) => {
    const min = Number.isInteger(r.info.addonPortMin) ? (r.info.addonPortMin as number) : defaults.portMin;
    const max = Number.isInteger(r.info.addonPortMax) ? (r.info.addonPortMax as number) : defaults.portMax;
    return {
      id: r.id, address: r.address, lastHeartbeatAtMs: r.beat ? r.beat.getTime() : null, portMin: min, portMax: max,
      load: Number(r.instances) + Number(r.addons), usedPorts: new Set(r.ports ?? []), isDraining: r.is_draining,
    };
  });
}

/**
 * Places add-on `id` on a runner (again): generation + 1, no start time until its runner reports it up, and the
 * reason it starts empty in `note`. A ready add-on becomes 'moving'. Both runners learn it from `addon.placed`.
 */
export async function placeRedisAddon(tx: Queryable, addon: Addon, to: { runnerId: string; host: string; port: number }, note: string): Promise<void> {
  await tx.query(
    `UPDATE addons SET runner_id = $2, host = $3, port = $4, generation = generation + 1, started_at = NULL, note = $5,
       state = CASE WHEN state = 'ready' THEN 'moving' ELSE state END, updated_at = now() WHERE id = $1`,
    [addon.id, to.runnerId, to.host, to.port, note],
  );
  await appendEvent(tx, 'addon.placed', addon.appName, {
    name: addon.name, kind: addon.kind, runnerId: to.runnerId, previousRunnerId: addon.runnerId, generation: addon.generation + 1,
  });
}

/** Takes an add-on off its runner without a new one (its start failed there): the next pass places it again. */
export async function unplaceRedisAddon(tx: Queryable, addon: Addon, note: string): Promise<void> {
  await tx.query('UPDATE addons SET runner_id = NULL, host = NULL, port = NULL, started_at = NULL, note = $2, updated_at = now() WHERE id = $1', [addon.id, note]);
}

/** Deletes a destroyed add-on's row (its server is stopped, or its runner is gone). */
export async function deleteAddonRow(tx: Queryable, id: number): Promise<void> {
  await tx.query('DELETE FROM addons WHERE id = $1', [id]);
}

/** The Redis servers runner `runnerId` must run (or, being destroyed, stop and report). */
export async function redisAssignments(q: Queryable, runnerId: string): Promise<AddonAssignment[]> {
  const { rows } = await q.query<{ name: string; app_name: string; generation: number; state: string; app_id: string | null; port: number; secret: string; plan: Record<string, unknown> }>(
    "SELECT name, app_name, generation, state, app_id, port, secret, plan FROM addons WHERE kind = 'redis' AND runner_id = $1 AND port IS NOT NULL ORDER BY id",
    [runnerId],
  );
  return rows.map((r) => ({
    name: r.name, kind: 'redis' as const, app: r.app_name, generation: r.generation, run: r.state !== 'destroying' && r.app_id !== null,
    port: r.port, password: r.secret, maxmemoryMb: Number.isInteger(r.plan.maxmemoryMb) ? (r.plan.maxmemoryMb as number) : 64,
  }));
}

export type AddonReport = 'up' | 'failed' | 'stopped';

/**
 * A runner's report on add-on `name` at `generation`. Applied only when the row still names that runner and
 * generation (an older server's word changes nothing). up: ready since now, REDIS_URL set to where it runs (a new
 * release when it changed); failed: taken off the runner, placed again by the next pass; stopped: a destroyed
 * add-on's row is deleted.
 */
export async function reportRedisAddon(tx: Queryable, runnerId: string, name: string, generation: number, state: AddonReport, note?: string): Promise<boolean> {
  // The app row first, as every config change takes it (then the add-on's): one lock order, no deadlock.
  await tx.query("SELECT 1 FROM apps WHERE id = (SELECT app_id FROM addons WHERE name = $1) FOR UPDATE", [name]);
  const { rows } = await tx.query<Parameters<typeof addonFromRow>[0]>(
    "SELECT * FROM addons WHERE kind = 'redis' AND name = $1 AND runner_id = $2 AND generation = $3 FOR UPDATE", [name, runnerId, generation],
  );
  if (!rows[0]) return false;
  const addon = addonFromRow(rows[0]);
  const isDestroying = addon.state === 'destroying' || addon.appId === null;
  if (state === 'stopped') {
    if (!isDestroying) return false;
    await deleteAddonRow(tx, addon.id);
    return true;
  }
  if (isDestroying) return false;
  if (state === 'failed') {
    await unplaceRedisAddon(tx, addon, `failed to start on runner ${runnerId}: ${note ?? 'no reason given'}`.slice(0, 2000));
    return true;
  }
  await tx.query(
    `UPDATE addons SET state = 'ready', started_at = now(), note = coalesce($2, note), updated_at = now() WHERE id = $1`,
    [addon.id, note ?? null],
  );
  const app: AppRef = { id: addon.appId!, name: addon.appName };
  const url = redisUrl(addon.host!, addon.port!, addon.secret);
  if ((await getConfigVars(tx, app))[addon.configVar] !== url) await changeConfigVars(tx, app, { [addon.configVar]: url }, []);
  return true;
}

/** Second key of the advisory lock that serializes placement passes (first: ADVISORY.namespace). */
const PLACEMENT_LOCK = 18;

/** Serializes placement passes until the transaction ends (a leader hand-over may overlap two). */
export async function lockAddonPlacement(tx: Queryable): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock($1, $2)', [ADVISORY.namespace, PLACEMENT_LOCK]);
}
