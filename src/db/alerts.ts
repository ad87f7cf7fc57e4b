/**
 * Alerts (open and cleared, each with its event) and the remediation ladder's rows: what the leader reads to decide
 * (instances with their newest health) and the rungs it writes, each an event.
 */
import type { Alert, Rung } from '../protocol/index.js';
import { DEFAULT_CHECK } from '../protocol/index.js';
import type { Principal } from './owners.js';
import { appendEvent } from './events.js';
import { getInstance } from './instances.js';
import type { Queryable } from './pool.js';
import { placeInstance, stopInstance } from './scheduling.js';
import { NotFoundError } from '../core/errors.js';

type AlertRow = { id: number; app: string; instance: string | null; reason: string; since: Date; cleared_at: Date | null };
const toAlert = (r: AlertRow): Alert => ({
  id: Number(r.id), app: r.app, instance: r.instance, reason: r.reason, since: r.since.getTime(), clearedAt: r.cleared_at?.getTime() ?? null,
});

/** Alerts of the principal's apps (or of `app`): open ones first, then the most recent cleared ones (≤ 100 in all). */
export async function listAlerts(q: Queryable, principal: Principal, app?: string): Promise<Alert[]> {
  if (app !== undefined) {
    const { rows } = await q.query<{ owner_id: number }>('SELECT owner_id FROM apps WHERE name = $1', [app]);
    if (!rows[0] || (rows[0].owner_id !== principal.ownerId && !principal.isAdmin)) {
      throw new NotFoundError(`app '${app}' not found; run 'pier apps' to list your apps`);
    }
  }
  const { rows } = await q.query<AlertRow>(
    `SELECT al.id, a.name AS app, al.instance, al.reason, al.since, al.cleared_at FROM alerts al JOIN apps a ON a.id = al.app_id
     WHERE ($1::boolean OR a.owner_id = $2) AND ($3::text IS NULL OR a.name = $3)
     ORDER BY (al.cleared_at IS NULL) DESC, coalesce(al.cleared_at, al.since) DESC, al.id DESC LIMIT 100`,
    [principal.isAdmin, principal.ownerId, app ?? null],
  );
  return rows.map(toAlert);
}

/** Opens an alert (at most one open per instance) with its `alert.raised` event; undefined when one is open already. */
export async function raiseAlert(tx: Queryable, app: string, instance: string | null, reason: string): Promise<Alert | undefined> {
  const { rows } = await tx.query<AlertRow>(
    `INSERT INTO alerts (app_id, instance, reason) SELECT id, $2, $3 FROM apps WHERE name = $1
     ON CONFLICT (instance) WHERE cleared_at IS NULL AND instance IS NOT NULL DO NOTHING
     RETURNING id, $1::text AS app, instance, reason, since, cleared_at`,
    [app, instance, reason.slice(0, 2000)],
  );
  if (!rows[0]) return undefined;
  const alert = toAlert(rows[0]);
  await appendEvent(tx, 'alert.raised', app, { id: alert.id, app, instance, reason: alert.reason, since: alert.since });
  return alert;
}

/** Closes an open alert with its `alert.cleared` event (`why` says what ended it); undefined when it was closed. */
export async function clearAlert(tx: Queryable, id: number, why: string): Promise<Alert | undefined> {
  const { rows } = await tx.query<AlertRow>(
    `UPDATE alerts al SET cleared_at = now() FROM apps a WHERE al.id = $1 AND a.id = al.app_id AND al.cleared_at IS NULL
     RETURNING al.id, a.name AS app, al.instance, al.reason, al.since, al.cleared_at`,
    [id],
  );
  if (!rows[0]) return undefined;
  const alert = toAlert(rows[0]);
  await appendEvent(tx, 'alert.cleared', alert.app, { ...alert, why });
  return alert;
}

/** An app's own alert webhook (null: none). */
export async function getAlertWebhook(q: Queryable, appId: number): Promise<string | null> {
  const { rows } = await q.query<{ alert_webhook: string | null }>('SELECT alert_webhook FROM apps WHERE id = $1', [appId]);
  return rows[0]?.alert_webhook ?? null;
}

export async function setAlertWebhook(q: Queryable, appId: number, url: string | null): Promise<void> {
  await q.query('UPDATE apps SET alert_webhook = $2 WHERE id = $1', [appId, url]);
}

/** One web instance as the ladder sees it. */
export interface LadderInstanceRow {
  id: string;
  runnerId: string;
  processType: string;
  state: string;
  /** Newest result from its runner: null while none. */
  healthy: boolean | null;
  /** The newest result got an HTTP answer (any status). */
  answers: boolean;
  reason: string | null;
  isOutOfRotation: boolean;
  rung: number;
  rungAt: number | null;
  /** Its open alert, and what that alert says. */
  alertId: number | null;
  alertReason?: string | null;
}

export interface LadderAppRow {
  appId: number;
  name: string;
  intervalMs: number;
  /** A deploy is under way (target ≠ live): the ladder waits. */
  isDeploying: boolean;
  liveReleaseId: number | null;
  instances: LadderInstanceRow[];
  /** Open alerts of instances that no longer exist or are stopping. */
  strayAlerts: number[];
  webhook: string | null;
}

/** Whether the ladder has anything to look at: an unhealthy target, an open alert, or an instance on the ladder (one cheap query). */
export async function hasHealthWork(q: Queryable): Promise<boolean> {
  const { rows } = await q.query<{ work: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM health_last WHERE NOT ok AND kind = 'instance')
         OR EXISTS (SELECT 1 FROM alerts WHERE cleared_at IS NULL)
         OR EXISTS (SELECT 1 FROM instances WHERE out_of_rotation OR remediation_rung > 0) AS work`,
  );
  return rows[0]?.work === true;
}

/** Every app with serving instances or open alerts, for the leader's ladder pass. */
export async function loadLadderState(q: Queryable): Promise<LadderAppRow[]> {
  const apps = await q.query<{ id: number; name: string; interval_ms: number | null; release_id: number | null; live_release_id: number | null; alert_webhook: string | null }>(
    `SELECT a.id, a.name, c.interval_ms, a.release_id, a.live_release_id, a.alert_webhook FROM apps a LEFT JOIN app_checks c ON c.app_id = a.id
     WHERE EXISTS (SELECT 1 FROM instances i WHERE i.app_id = a.id) OR EXISTS (SELECT 1 FROM alerts al WHERE al.app_id = a.id AND al.cleared_at IS NULL)
     ORDER BY a.id`,
  );
  const instances = await q.query<{
    id: string; app_id: number; runner_id: string; process_type: string; state: string; release_id: number; routed: boolean;
    ok: boolean | null; status: number | null; error: string | null; out_of_rotation: boolean; remediation_rung: number; remediation_at: Date | null; alert_id: number | null; alert_reason: string | null;
    answered_lately: boolean;
  }>(
    // answered_lately: some probe of its runner got an answer within the last two check intervals, so one probe lost
    // to a respawn or a busy moment does not make an app's last serving instance look dead.
    `SELECT i.id, i.app_id, i.runner_id, i.process_type, i.state, i.release_id, i.routed, h.ok, h.status, h.error, i.out_of_rotation,
            i.remediation_rung, i.remediation_at, al.id AS alert_id, al.reason AS alert_reason,
            EXISTS (SELECT 1 FROM health_results r WHERE r.app_id = i.app_id AND r.target = i.id AND r.from_node = i.runner_id AND r.status > 0
                    AND r.at > now() - make_interval(secs => 2 * coalesce(c.interval_ms, $1) / 1000.0)) AS answered_lately
     FROM instances i LEFT JOIN health_last h ON h.target = i.id AND h.from_node = i.runner_id
     LEFT JOIN alerts al ON al.instance = i.id AND al.cleared_at IS NULL
     LEFT JOIN app_checks c ON c.app_id = i.app_id
     ORDER BY i.created_at, i.id`,
    [DEFAULT_CHECK.intervalMs],
  );
  const stray = await q.query<{ id: number; app_id: number }>(
    `SELECT al.id, al.app_id FROM alerts al LEFT JOIN instances i ON i.id = al.instance
     WHERE al.cleared_at IS NULL AND al.instance IS NOT NULL AND (i.id IS NULL OR i.state = 'stopping')`,
  );
  return apps.rows.map((a) => ({
    appId: a.id, name: a.name, intervalMs: a.interval_ms ?? DEFAULT_CHECK.intervalMs, isDeploying: a.release_id !== a.live_release_id,
    liveReleaseId: a.live_release_id, webhook: a.alert_webhook,
    instances: instances.rows
      .filter((i) => i.app_id === a.id && i.state !== 'stopping' && (i.release_id === a.live_release_id || i.routed))
      .map((i) => ({
        id: i.id, runnerId: i.runner_id, processType: i.process_type, state: i.state, healthy: i.ok, answers: (i.status !== null && i.status > 0) || i.answered_lately,
        reason: i.ok === false ? i.error : null, isOutOfRotation: i.out_of_rotation, rung: i.remediation_rung,
        rungAt: i.remediation_at?.getTime() ?? null, alertId: i.alert_id === null ? null : Number(i.alert_id), alertReason: i.alert_reason,
      })),
    strayAlerts: stray.rows.filter((s) => s.app_id === a.id).map((s) => Number(s.id)),
  }));
}

async function instanceChanged(tx: Queryable, id: string): Promise<void> {
  const instance = await getInstance(tx, id);
  if (instance) await appendEvent(tx, 'instance.changed', instance.app, instance as unknown as Record<string, unknown>);
}

/**
 * Records a rung on an instance (`rung` is its place on the ladder, 1..4) with its `remediation.rung` event.
 * `out-of-rotation` also flags the instance (balancers stop routing it: `instance.changed`); `move` stops it and
 * places a replacement on `toRunner`. Returns the replacement's id for a move.
 */
export async function recordRung(tx: Queryable, app: string, instanceId: string, name: Rung, rung: number, reason: string, toRunner?: string): Promise<string | undefined> {
  const { rows } = await tx.query<{ app_id: number; release_id: number; process_type: string; out_of_rotation: boolean }>(
    "UPDATE instances SET remediation_rung = $2, remediation_at = now() WHERE id = $1 AND state <> 'stopping' RETURNING app_id, release_id, process_type, out_of_rotation",
    [instanceId, rung],
  );
  const row = rows[0];
  if (!row) return undefined;
  let replacement: string | undefined;
  if (name === 'out-of-rotation' && !row.out_of_rotation) {
    await tx.query('UPDATE instances SET out_of_rotation = true WHERE id = $1', [instanceId]);
    await instanceChanged(tx, instanceId);
  }
  if (name === 'move') {
    replacement = await placeInstance(tx, row.app_id, row.release_id, toRunner!, row.process_type);
    await stopInstance(tx, instanceId);
  }
  await appendEvent(tx, 'remediation.rung', app, { instance: instanceId, rung: name, reason, ...(replacement ? { replacement, runner: toRunner } : {}) });
  return replacement;
}

/** The instance is healthy again: back in rotation, off the ladder (`remediation.rung` with rung 'restored'). */
export async function restoreInstance(tx: Queryable, app: string, instanceId: string, reason: string): Promise<void> {
  const { rows } = await tx.query<{ out_of_rotation: boolean }>(
    'SELECT out_of_rotation FROM instances WHERE id = $1 AND (remediation_rung > 0 OR out_of_rotation) FOR UPDATE', [instanceId],
  );
  if (!rows[0]) return;
  await tx.query('UPDATE instances SET out_of_rotation = false, remediation_rung = 0, remediation_at = NULL WHERE id = $1', [instanceId]);
  if (rows[0].out_of_rotation) await instanceChanged(tx, instanceId);
  await appendEvent(tx, 'remediation.rung', app, { instance: instanceId, rung: 'restored', reason });
}

/** Every runner's instance count, overall and per app (stopping ones not counted per app), for choosing where a moved instance goes. */
export async function runnerLoads(q: Queryable): Promise<Array<{ id: string; instances: number; byApp: Map<number, number> }>> {
  const { rows } = await q.query<{ id: string; app_id: number | null; n: number; app_n: number }>(
    `SELECT n.id, i.app_id, count(i.id)::int AS n, count(i.id) FILTER (WHERE i.state <> 'stopping')::int AS app_n
     FROM nodes n LEFT JOIN instances i ON i.runner_id = n.id WHERE n.kind = 'runner' GROUP BY n.id, i.app_id ORDER BY n.id`,
  );
  const runners = new Map<string, { id: string; instances: number; byApp: Map<number, number> }>();
  for (const r of rows) {
    const runner = runners.get(r.id) ?? { id: r.id, instances: 0, byApp: new Map<number, number>() };
    runners.set(r.id, runner);
    runner.instances += r.n;
    if (r.app_id !== null) runner.byApp.set(Number(r.app_id), r.app_n);
  }
  return [...runners.values()];
}
