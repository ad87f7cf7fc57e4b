/**
 * `pier explain`: one app's timeline in a window, read from the events table (the app's own events, plus each
 * node.down/up of a runner that held one of the app's instances then) and from request_stats (minutes that were
 * 5xx bursts). Bounded: at most `limit` entries, the newest kept, with a note when the window held more.
 */
import {
  BURST_MIN_5XX, BURST_MIN_PERCENT, EXPLAIN_MAX_ENTRIES, type ExplainEntry, type ExplainResponse,
} from '../protocol/index.js';
import type { AppRef } from './apps.js';
import { burstEntry, byTime, eventEntry, type ExplainEvent } from './explain-entries.js';
import type { Queryable } from './pool.js';

type EventRow = { id: number; type: string; data: Record<string, unknown>; created_at: Date };

/**
 * Node events in the window for runners that held one of the app's instances when they went down (a node.up: at
 * the node's last node.down before it). An instance was held when its latest instance.changed before that down
 * placed it on the runner, not as failed, and it was not removed — or removed less than `deadAfterMs` before the
 * down: the leader may move a silent runner's instances before it records the node.down itself. Only the app's
 * events since it was created count ($4), so a re-created name never inherits another app's history.
 */
export const NODE_EVENTS_SQL = `
  SELECT e.id, e.type, e.data, e.created_at, held.ids AS held
  FROM events e
  CROSS JOIN LATERAL (
    SELECT d.id AS down_id, d.created_at AS down_at FROM events d
    WHERE d.app IS NULL AND d.type = 'node.down' AND d.data->>'id' = e.data->>'id' AND d.id <= e.id
    ORDER BY d.id DESC LIMIT 1
  ) down
  CROSS JOIN LATERAL (
    SELECT array_agg(x.iid ORDER BY x.iid) AS ids FROM (
      SELECT c.data->>'id' AS iid,
             (array_agg(c.data->>'runnerId' ORDER BY c.id DESC) FILTER (WHERE c.type = 'instance.changed'))[1] AS runner,
             (array_agg(c.data->>'state' ORDER BY c.id DESC) FILTER (WHERE c.type = 'instance.changed'))[1] AS state,
             max(c.created_at) FILTER (WHERE c.type = 'instance.removed') AS removed_at
      FROM events c
      WHERE c.app = $1 AND c.type IN ('instance.changed', 'instance.removed') AND c.id < down.down_id AND c.created_at >= $4
      GROUP BY c.data->>'id'
    ) x
    WHERE x.runner = e.data->>'id' AND x.state <> 'failed'
      AND (x.removed_at IS NULL OR x.removed_at >= down.down_at - $5 * interval '1 millisecond')
  ) held
  WHERE e.app IS NULL AND e.type IN ('node.down', 'node.up') AND e.created_at >= $2 AND held.ids IS NOT NULL
  ORDER BY e.created_at DESC, e.id DESC
  LIMIT $3`;

export interface ExplainOptions {
  /** A node is dead after this long without a heartbeat (heartbeat interval × misses). @default 0 */
  deadAfterMs?: number;
  /** Most entries. @default EXPLAIN_MAX_ENTRIES */
  limit?: number;
}

/** The app's own events in the window, newest first ($3: one more than the limit, to tell a cut window). */
export const APP_EVENTS_SQL = `
  SELECT id, type, data, created_at FROM events WHERE app = $1 AND created_at >= $2
  ORDER BY created_at DESC, id DESC LIMIT $3`;

/** The app's timeline from `sinceMs` (never before the app was created), oldest first. */
export async function explainApp(q: Queryable, app: AppRef, sinceMs: number, options: ExplainOptions = {}): Promise<ExplainResponse> {
  const limit = options.limit ?? EXPLAIN_MAX_ENTRIES;
  const created = await q.query<{ created_at: Date }>('SELECT created_at FROM apps WHERE id = $1', [app.id]);
  const createdAt = created.rows[0]?.created_at ?? new Date(0);
  const from = new Date(Math.max(sinceMs, createdAt.getTime()));
  // One more than the limit tells whether the window was cut.
  const [own, nodes, bursts] = await Promise.all([
    q.query<EventRow>(APP_EVENTS_SQL, [app.name, from, limit + 1]),
    q.query<EventRow & { held: string[] }>(NODE_EVENTS_SQL, [app.name, from, limit + 1, createdAt, options.deadAfterMs ?? 0]),
    q.query<{ minute: Date; requests: number; s5xx: number; p95_ms: number | null }>(
      // The minute holding `from` counts; a minute before the app existed (a re-created name) does not.
      `SELECT minute, requests, s5xx, p95_ms FROM request_stats
       WHERE app = $1 AND minute > $2::timestamptz - interval '1 minute' AND minute >= date_trunc('minute', $5::timestamptz)
         AND s5xx >= $3 AND s5xx * 100 >= requests * $4
       ORDER BY minute DESC LIMIT $6`,
      [app.name, from, BURST_MIN_5XX, BURST_MIN_PERCENT, createdAt, limit + 1],
    ),
  ]);
  const versions = own.rows.filter((r) => r.type === 'release.created' && typeof r.data.version === 'number').map((r) => r.data.version as number);
  const creators = new Map<number, string>();
  if (versions.length > 0) {
    const { rows } = await q.query<{ version: number; name: string }>(
      `SELECT r.version, o.name FROM releases r JOIN owners o ON o.id = r.created_by WHERE r.app_id = $1 AND r.version = ANY($2::int[])`,
      [app.id, versions],
    );
    for (const row of rows) creators.set(row.version, row.name);
  }
  const heldBy = new Map(nodes.rows.map((r) => [r.id, r.held]));
  const toEvent = (r: EventRow): ExplainEvent => ({ id: r.id, type: r.type, data: r.data, at: r.created_at.getTime() });
  const all: ExplainEntry[] = [
    ...own.rows.map((r) => eventEntry(toEvent(r), { creators })),
    ...nodes.rows.map((r) => eventEntry(toEvent(r), { creators, heldBy })),
    ...bursts.rows.map((r) => burstEntry({ minute: r.minute.getTime(), requests: r.requests, s5xx: r.s5xx, p95Ms: r.p95_ms })),
  ].sort(byTime);
  const isCut = all.length > limit;
  const entries = isCut ? all.slice(all.length - limit) : all;
  return {
    app: app.name, since: from.getTime(), entries, truncated: isCut,
    ...(isCut ? { note: `more than ${limit} entries since ${from.toISOString()}: the oldest are left out; ask for a shorter window` } : {}),
  };
}
