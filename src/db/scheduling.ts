/** What the scheduler reads and the changes it writes (each with its event), plus runners' instance reports. */
import { randomId } from '../core/ids.js';
import type { InstanceState } from '../protocol/index.js';
import { appendEvent } from './events.js';
import { getInstance } from './instances.js';
import { expireLock, getLock, renewLock } from './locks.js';
import { deployLockName, lostLockReason } from './deploy-lock.js';
import { ADVISORY, type Queryable } from './pool.js';

export interface SchedulingState {
  apps: Array<{
    id: number; name: string; scale: number; targetReleaseId: number | null; liveReleaseId: number | null;
    stageReleaseId: number | null; isStagePending: boolean; keptReleaseId: number | null; isRolling: boolean;
    /** The target release's release phase (release-states.ts). */
    releasePhase: 'pending' | 'done' | 'failed' | null;
  }>;
  instances: Array<{
    id: string; appId: number; releaseId: number; runnerId: string; state: InstanceState; error: string | null; ageMs: number; isRouted: boolean;
    processType: string; name: string | null;
  }>;
  /** Every node but the nexus replicas (read once per pass): stored heartbeat time, and whether the last node event recorded it down. */
  nodes: Array<{ id: string; kind: string; lastHeartbeatAt: number | null; isMarkedDown: boolean; isDraining: boolean }>;
}

export async function loadSchedulingState(q: Queryable): Promise<SchedulingState> {
  const apps = await q.query<{
    id: number; name: string; web_scale: number; release_id: number | null; live_release_id: number | null; stage_release_id: number | null;
    stage_status: string | null; verdict_previous_id: number | null; strategy: string | null; release_phase: 'pending' | 'done' | 'failed' | null;
  }>(
    `SELECT a.id, a.name, a.web_scale, a.release_id, a.live_release_id, a.stage_release_id, s.status AS stage_status,
            CASE WHEN a.verdict_until > now() THEN a.verdict_previous_id END AS verdict_previous_id, t.strategy, t.release_phase
     FROM apps a LEFT JOIN releases s ON s.id = a.stage_release_id LEFT JOIN releases t ON t.id = a.release_id ORDER BY a.id`,
  );
  const instances = await q.query<{
    id: string; app_id: number; release_id: number; runner_id: string; state: InstanceState; error: string | null; age_ms: number; routed: boolean;
    process_type: string; process_name: string | null;
  }>(
    `SELECT id, app_id, release_id, runner_id, state, error, (extract(epoch FROM now() - created_at) * 1000)::bigint AS age_ms, routed,
            process_type, process_name
     FROM instances ORDER BY created_at, id`,
  );
  const nodes = await q.query<{ id: string; kind: string; status: string; last_heartbeat_at: Date | null; is_draining: boolean }>(
    "SELECT id, kind, status, last_heartbeat_at, draining_since IS NOT NULL AS is_draining FROM nodes WHERE kind <> 'nexus' ORDER BY id",
  );
  return {
    apps: apps.rows.map((r) => ({
      id: r.id, name: r.name, scale: r.web_scale, targetReleaseId: r.release_id, liveReleaseId: r.live_release_id,
      stageReleaseId: r.stage_release_id, isStagePending: r.stage_status === 'pending', keptReleaseId: r.verdict_previous_id,
      isRolling: r.strategy === 'rolling', releasePhase: r.release_phase,
    })),
    instances: instances.rows.map((r) => ({
      id: r.id, appId: r.app_id, releaseId: r.release_id, runnerId: r.runner_id, state: r.state, error: r.error, ageMs: r.age_ms, isRouted: r.routed,
      processType: r.process_type, name: r.process_name,
    })),
    nodes: nodes.rows.map((r) => ({
      id: r.id, kind: r.kind, lastHeartbeatAt: r.last_heartbeat_at?.getTime() ?? null, isMarkedDown: r.status === 'dead', isDraining: r.is_draining,
    })),
  };
}

/** Records a node going down or coming back, with its event (status is only the memory of that event, see core/liveness.ts). */
export async function setNodeDown(tx: Queryable, id: string, kind: string, isDown: boolean): Promise<void> {
  await tx.query('UPDATE nodes SET status = $2 WHERE id = $1', [id, isDown ? 'dead' : 'alive']);
  await appendEvent(tx, isDown ? 'node.down' : 'node.up', null, { id, kind });
}

/** A rolling deploy's new instance is ready: balancers route to it before its release is live. */
export async function routeInstance(tx: Queryable, id: string): Promise<void> {
  const { rowCount } = await tx.query("UPDATE instances SET routed = true WHERE id = $1 AND state = 'ready' AND NOT routed", [id]);
  if ((rowCount ?? 0) > 0) await instanceChanged(tx, id);
}

/**
 * The leader's lock keeping: expired locks are recorded (`lock.expired`) and dropped; deploy locks owned by a
 * pending release are renewed once half their lease is gone. Returns the releases whose lock was lost.
 */
export async function tendDeployLocks(tx: Queryable, leaseMs: number): Promise<Array<{ appId: number; releaseId: number; reason: string }>> {
  await expireLock(tx);
  const { rows } = await tx.query<{ app_id: number; id: number; app: string; lock_token: string }>(
    `SELECT r.app_id, r.id, a.name AS app, r.lock_token FROM releases r JOIN apps a ON a.id = r.app_id
     WHERE r.owns_lock AND r.status = 'pending' AND r.lock_token IS NOT NULL`,
  );
  const lost: Array<{ appId: number; releaseId: number; reason: string }> = [];
  for (const row of rows) {
    const name = deployLockName(row.app);
    const held = await getLock(tx, name);
    if (held?.token !== Number(row.lock_token)) {
      lost.push({ appId: row.app_id, releaseId: row.id, reason: lostLockReason(Number(row.lock_token), held) });
      await tx.query('UPDATE releases SET owns_lock = false WHERE id = $1', [row.id]);
      continue;
    }
    if (held.expiresAt - Date.now() < leaseMs / 2) await renewLock(tx, name, held.token, leaseMs);
  }
  return lost;
}

/** A release whose live-traffic verdict is pending. */
export interface PendingVerdict {
  appId: number;
  app: string;
  releaseId: number;
  release: number;
  previousId: number;
  previous: number;
  sinceMs: number;
  untilMs: number;
}

export async function pendingVerdicts(q: Queryable): Promise<PendingVerdict[]> {
  const { rows } = await q.query<{ id: number; name: string; release_id: number; release: number; previous_id: number; previous: number; since: Date; until: Date }>(
    `SELECT a.id, a.name, a.live_release_id AS release_id, r.version AS release, p.id AS previous_id, p.version AS previous,
            a.verdict_since AS since, a.verdict_until AS until
     FROM apps a JOIN releases r ON r.id = a.live_release_id JOIN releases p ON p.id = a.verdict_previous_id
     WHERE a.verdict_until IS NOT NULL ORDER BY a.id`,
  );
  return rows.map((r) => ({
    appId: r.id, app: r.name, releaseId: r.release_id, release: r.release, previousId: r.previous_id, previous: r.previous,
    sinceMs: r.since.getTime(), untilMs: r.until.getTime(),
  }));
}

/** The window passed without a bad verdict: the previous release is let go (the scheduler drains it). */
export async function acceptVerdict(tx: Queryable, verdict: PendingVerdict, summary: Record<string, unknown>): Promise<void> {
  const { rowCount } = await tx.query(
    'UPDATE apps SET verdict_previous_id = NULL, verdict_since = NULL, verdict_until = NULL WHERE id = $1 AND live_release_id = $2 AND verdict_until IS NOT NULL',
    [verdict.appId, verdict.releaseId],
  );
  if ((rowCount ?? 0) > 0) await appendEvent(tx, 'release.verdict', verdict.app, { release: verdict.release, ...summary });
}

/** Serializes schedulers across replicas (a second leader for a moment must not double-place). */
export async function lockScheduling(tx: Queryable): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock($1, $2)', [ADVISORY.namespace, ADVISORY.scheduler]);
}

async function instanceChanged(tx: Queryable, id: string): Promise<void> {
  const instance = await getInstance(tx, id);
  if (instance) await appendEvent(tx, 'instance.changed', instance.app, instance as unknown as Record<string, unknown>);
}

export async function placeInstance(tx: Queryable, appId: number, releaseId: number, runnerId: string, processType = 'web', name: string | null = null): Promise<string> {
  const { rows } = await tx.query<{ name: string; version: number }>(
    'SELECT a.name, r.version FROM apps a JOIN releases r ON r.id = $2 WHERE a.id = $1', [appId, releaseId],
  );
  const id = `${rows[0]!.name}-v${rows[0]!.version}-${processType === 'web' ? '' : `${processType}-`}${randomId(3)}`;
  // Lowest free `type.N` of the app (the scheduler names background instances itself; web ones are named here).
  name ??= (await tx.query<{ name: string }>(
    `SELECT $2 || '.' || n AS name FROM generate_series(1, 10000) n
     WHERE NOT EXISTS (SELECT 1 FROM instances WHERE app_id = $1 AND process_name = $2 || '.' || n) ORDER BY n LIMIT 1`,
    [appId, processType],
  )).rows[0]!.name;
  await tx.query('INSERT INTO instances (id, app_id, release_id, runner_id, process_type, process_name) VALUES ($1, $2, $3, $4, $5, $6)', [id, appId, releaseId, runnerId, processType, name]);
  await instanceChanged(tx, id);
  return id;
}

export async function stopInstance(tx: Queryable, id: string): Promise<void> {
  const result = await tx.query("UPDATE instances SET state = 'stopping', updated_at = now() WHERE id = $1 AND state <> 'stopping'", [id]);
  if (result.rowCount) await instanceChanged(tx, id);
}

export async function forgetInstance(tx: Queryable, id: string): Promise<void> {
  const { rows } = await tx.query<{ app: string }>('DELETE FROM instances i USING apps a WHERE i.id = $1 AND a.id = i.app_id RETURNING a.name AS app', [id]);
  // forgotten: removed while it may still serve (its runner was declared dead), not stopped (see route-table.ts).
  if (rows[0]) await appendEvent(tx, 'instance.removed', rows[0].app, { id, forgotten: true });
}

/** How far back (in events) a forgotten instance is looked for when its runner reports its vassal stopped. */
const RELEASE_LOOKBACK_EVENTS = 20_000;

/**
 * A runner reports stopped an instance the state no longer has: when the state forgot it recently (its runner was
 * declared dead while it served), balancers may still hold it — `instance.released` tells them to let go now.
 */
async function releaseForgotten(tx: Queryable, runnerId: string, id: string): Promise<void> {
  const { rows } = await tx.query<{ app: string }>(
    `SELECT app FROM events
     WHERE id > (SELECT coalesce(max(id), 0) FROM events) - $2 AND type = 'instance.removed' AND data->>'id' = $1 AND data->>'forgotten' = 'true'
     ORDER BY id DESC LIMIT 1`,
    [id, RELEASE_LOOKBACK_EVENTS],
  );
  if (rows[0] && !(await tx.query('SELECT 1 FROM instances WHERE id = $1', [id])).rowCount) {
    await appendEvent(tx, 'instance.released', rows[0].app, { id, runnerId });
  }
}

export type ReportedState = 'starting' | 'ready' | 'failed' | 'stopped';

/**
 * Applies a runner's report about one of its instances. Reports from another runner are ignored (the instance
 * moved); `stopped` removes the row; a stopping instance never goes back to ready.
 */
export async function reportInstance(
  tx: Queryable, runnerId: string, id: string, state: ReportedState, port: number | null, error: string | null, capacity: number | null = null,
): Promise<boolean> {
  if (state === 'stopped') {
    const { rows } = await tx.query<{ app: string }>(
      'DELETE FROM instances i USING apps a WHERE i.id = $1 AND i.runner_id = $2 AND a.id = i.app_id RETURNING a.name AS app', [id, runnerId],
    );
    if (rows[0]) await appendEvent(tx, 'instance.removed', rows[0].app, { id });
    else await releaseForgotten(tx, runnerId, id);
    return rows.length > 0;
  }
  const result = await tx.query(
    `UPDATE instances SET state = $3, port = coalesce($4, port), error = $5, capacity = coalesce($6, capacity), updated_at = now()
     WHERE id = $1 AND runner_id = $2 AND state NOT IN ('stopping', 'failed') AND state <> $3`,
    [id, runnerId, state, port, error, capacity],
  );
  if (result.rowCount) await instanceChanged(tx, id);
  return (result.rowCount ?? 0) > 0;
}
