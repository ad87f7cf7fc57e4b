/**
 * Health state: each app's check (app_checks), probe results (health_results raw, health_last newest per target
 * and prober), and what the API shows of them. Alerts and the remediation ladder's rows are in db/alerts.ts.
 */
import { DEFAULT_CHECK, type AppCheck, type Check, type HealthReply, type HealthResult } from '../protocol/index.js';
import type { AppRef } from './apps.js';
import { appendEvent } from './events.js';
import type { Queryable } from './pool.js';

type CheckRow = { path: string; status: number | null; interval_ms: number; timeout_ms: number };
const toCheck = (r: CheckRow): Check => ({ path: r.path, status: r.status, intervalMs: r.interval_ms, timeoutMs: r.timeout_ms });

/** The app's own check, or undefined when it has none (DEFAULT_CHECK applies). */
export async function getAppCheck(q: Queryable, appId: number): Promise<Check | undefined> {
  const { rows } = await q.query<CheckRow>('SELECT path, status, interval_ms, timeout_ms FROM app_checks WHERE app_id = $1', [appId]);
  return rows[0] ? toCheck(rows[0]) : undefined;
}

/** The check of the app named `app` (for instance specs), or undefined for the default. */
export async function getAppCheckByName(q: Queryable, app: string): Promise<Check | undefined> {
  const { rows } = await q.query<CheckRow>(
    'SELECT c.path, c.status, c.interval_ms, c.timeout_ms FROM app_checks c JOIN apps a ON a.id = c.app_id WHERE a.name = $1', [app],
  );
  return rows[0] ? toCheck(rows[0]) : undefined;
}

/** Every app's own check, for snapshots. */
export async function listAppChecks(q: Queryable): Promise<AppCheck[]> {
  const { rows } = await q.query<CheckRow & { app: string }>(
    'SELECT a.name AS app, c.path, c.status, c.interval_ms, c.timeout_ms FROM app_checks c JOIN apps a ON a.id = c.app_id ORDER BY a.name',
  );
  return rows.map((r) => ({ app: r.app, check: toCheck(r) }));
}

/** Sets the app's check (validated by the caller) and records `checks.changed`; running instances pick it up. */
export async function setAppCheck(tx: Queryable, app: AppRef, check: Check): Promise<void> {
  await tx.query(
    `INSERT INTO app_checks (app_id, path, status, interval_ms, timeout_ms) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (app_id) DO UPDATE SET path = $2, status = $3, interval_ms = $4, timeout_ms = $5, updated_at = now()`,
    [app.id, check.path, check.status, check.intervalMs, check.timeoutMs],
  );
  await appendEvent(tx, 'checks.changed', app.name, { app: app.name, check });
}

/** A turn of one target's health, as recorded by `recordHealthResults`. */
export interface HealthTurn {
  app: string;
  kind: 'instance' | 'hostname';
  target: string;
  healthy: boolean;
  reason: string | null;
}

/**
 * Stores a prober's batch: every result raw (one INSERT), the newest per target in health_last (one upsert), and
 * a `health.changed` event only where a target's health turned — so steady probing writes two statements a batch
 * and no events. Instance results count only from the runner that holds the instance; others are dropped.
 * Returns the number of results accepted and the turns.
 */
export async function recordHealthResults(tx: Queryable, from: string, results: HealthResult[]): Promise<{ accepted: number; turns: HealthTurn[] }> {
  const apps = await tx.query<{ id: number; name: string }>('SELECT id, name FROM apps WHERE name = ANY($1)', [[...new Set(results.map((r) => r.app))]]);
  const appIds = new Map(apps.rows.map((r) => [r.name, r.id]));
  const instanceIds = results.filter((r) => r.kind === 'instance').map((r) => r.target);
  const held = await tx.query<{ id: string; app: string }>(
    'SELECT i.id, a.name AS app FROM instances i JOIN apps a ON a.id = i.app_id WHERE i.id = ANY($1) AND i.runner_id = $2', [instanceIds, from],
  );
  const holds = new Map(held.rows.map((r) => [r.id, r.app]));
  const accepted = results.filter((r) => appIds.has(r.app) && (r.kind === 'hostname' || holds.get(r.target) === r.app));
  if (accepted.length === 0) return { accepted: 0, turns: [] };
  await tx.query(
    `INSERT INTO health_results (app_id, kind, target, from_node, ok, status, latency_ms, error, at)
     SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::boolean[], $6::int[], $7::float8[], $8::text[], $9::timestamptz[])`,
    [
      accepted.map((r) => appIds.get(r.app)), accepted.map((r) => r.kind), accepted.map((r) => r.target), accepted.map(() => from),
      accepted.map((r) => r.ok), accepted.map((r) => r.status), accepted.map((r) => r.latencyMs), accepted.map((r) => r.error),
      accepted.map((r) => new Date(r.at)),
    ],
  );
  // The newest result per target decides its health now.
  const newest = new Map<string, HealthResult>();
  for (const r of accepted) if ((newest.get(r.target)?.at ?? -1) <= r.at) newest.set(r.target, r);
  const list = [...newest.values()];
  const previous = await tx.query<{ target: string; ok: boolean }>(
    'SELECT target, ok FROM health_last WHERE from_node = $1 AND target = ANY($2) FOR UPDATE', [from, list.map((r) => r.target)],
  );
  const wasOk = new Map(previous.rows.map((r) => [r.target, r.ok]));
  await tx.query(
    `INSERT INTO health_last AS h (app_id, kind, target, from_node, ok, status, latency_ms, error, at, since)
     SELECT a, k, t, $4, o, s, l, e, at, at FROM unnest($1::bigint[], $2::text[], $3::text[], $5::boolean[], $6::int[], $7::float8[], $8::text[], $9::timestamptz[])
       AS u(a, k, t, o, s, l, e, at)
     ON CONFLICT (target, from_node) DO UPDATE SET ok = excluded.ok, status = excluded.status, latency_ms = excluded.latency_ms,
       error = excluded.error, at = excluded.at, since = CASE WHEN h.ok = excluded.ok THEN h.since ELSE excluded.at END`,
    [
      list.map((r) => appIds.get(r.app)), list.map((r) => r.kind), list.map((r) => r.target), from,
      list.map((r) => r.ok), list.map((r) => r.status), list.map((r) => r.latencyMs), list.map((r) => r.error), list.map((r) => new Date(r.at)),
    ],
  );
  const turns: HealthTurn[] = [];
  for (const r of list) {
    const before = wasOk.get(r.target);
    // A first result that is healthy is no news; a first one that is not is.
    if (before === r.ok || (before === undefined && r.ok)) continue;
    const turn: HealthTurn = { app: r.app, kind: r.kind, target: r.target, healthy: r.ok, reason: r.ok ? null : r.error };
    turns.push(turn);
    await appendEvent(tx, 'health.changed', r.app, r.kind === 'instance'
      ? { instance: r.target, healthy: r.ok, reason: turn.reason }
      : { host: r.target, from, healthy: r.ok, reason: turn.reason });
  }
  return { accepted: accepted.length, turns };
}

/**
 * Drops raw results older than `retentionMs`, and the newest-result rows of instances that are gone or of
 * hostnames no longer probed for that long. Returns the raw rows deleted.
 */
export async function pruneHealth(q: Queryable, retentionMs: number): Promise<number> {
  const { rowCount } = await q.query("DELETE FROM health_results WHERE at < now() - $1 * interval '1 millisecond'", [retentionMs]);
  await q.query(
    `DELETE FROM health_last h WHERE (h.kind = 'instance' AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.id = h.target))
       OR h.at < now() - $1 * interval '1 millisecond'`,
    [retentionMs],
  );
  await q.query("DELETE FROM alerts WHERE cleared_at < now() - $1 * interval '1 millisecond' * 24", [retentionMs]);
  return rowCount ?? 0;
}

/** What `GET /v1/apps/:app/health` answers. */
export async function appHealth(q: Queryable, app: AppRef): Promise<HealthReply> {
  const check = (await getAppCheck(q, app.id)) ?? DEFAULT_CHECK;
  const instances = await q.query<{
    id: string; process_type: string; version: number; runner_id: string; state: string; out_of_rotation: boolean; remediation_rung: number;
    ok: boolean | null; status: number | null; latency_ms: number | null; at: Date | null; error: string | null;
  }>(
    `SELECT i.id, i.process_type, r.version, i.runner_id, i.state, i.out_of_rotation, i.remediation_rung, h.ok, h.status, h.latency_ms, h.at, h.error
     FROM instances i JOIN releases r ON r.id = i.release_id
     LEFT JOIN health_last h ON h.target = i.id AND h.from_node = i.runner_id
     WHERE i.app_id = $1 ORDER BY i.created_at, i.id`,
    [app.id],
  );
  const hosts = await q.query<{ target: string; from_node: string; ok: boolean; status: number | null; latency_ms: number | null; at: Date; error: string | null }>(
    "SELECT target, from_node, ok, status, latency_ms, at, error FROM health_last WHERE app_id = $1 AND kind = 'hostname' ORDER BY target, from_node",
    [app.id],
  );
  const results = await q.query<{ target: string; from_node: string; ok: boolean; status: number | null; latency_ms: number | null; error: string | null; at: Date }>(
    'SELECT target, from_node, ok, status, latency_ms, error, at FROM health_results WHERE app_id = $1 ORDER BY at DESC, id DESC LIMIT 100',
    [app.id],
  );
  return {
    app: app.name,
    check,
    instances: instances.rows.map((r) => ({
      id: r.id, name: r.id, processType: r.process_type, release: r.version, runner: r.runner_id, state: r.state,
      healthy: r.ok, status: r.status, latencyMs: r.latency_ms, at: r.at?.getTime() ?? null, reason: r.ok === false ? r.error : null,
      isOutOfRotation: r.out_of_rotation, rung: r.remediation_rung,
    })),
    hostnames: hosts.rows.map((r) => ({
      host: r.target, from: r.from_node, healthy: r.ok, status: r.status, latencyMs: r.latency_ms, at: r.at.getTime(), reason: r.ok ? null : r.error,
    })),
    results: results.rows.map((r) => ({
      target: r.target, from: r.from_node, ok: r.ok, status: r.status, latencyMs: r.latency_ms, error: r.error, at: r.at.getTime(),
    })),
  };
}
