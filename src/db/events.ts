/** The events table: append under the ordering lock (gapless ids), read ranges, and the NOTIFY channel. */
import type { EventType, StateEvent } from '../protocol/index.js';
import { PierError } from '../core/errors.js';
import { ADVISORY, type Queryable } from './pool.js';

/** PostgreSQL channel notified (with the new id) on every committed event. */
export const EVENTS_CHANNEL = 'pier_events';

type EventRow = { id: number; type: EventType; app: string | null; data: Record<string, unknown>; created_at: Date };

function toEvent(row: EventRow): StateEvent {
  return { version: row.id, type: row.type, app: row.app, data: row.data, at: row.created_at.getTime() };
}

/**
 * Appends an event inside the caller's transaction. The transaction-level advisory lock serializes writers until
 * commit, so ids are assigned and committed in order and a rolled-back writer leaves no hole.
 */
export async function appendEvent(tx: Queryable, type: EventType, app: string | null, data: Record<string, unknown> = {}): Promise<number> {
  await tx.query('SELECT pg_advisory_xact_lock($1, $2)', [ADVISORY.namespace, ADVISORY.events]);
  const { rows } = await tx.query<{ id: number }>(
    `INSERT INTO events (id, type, app, data)
     SELECT coalesce(max(id), 0) + 1, $1, $2, $3 FROM events
     RETURNING id`,
    [type, app, JSON.stringify(data)],
  );
  const id = rows[0]!.id;
  await tx.query('SELECT pg_notify($1, $2)', [EVENTS_CHANNEL, String(id)]);
  return id;
}

/** The version of the newest committed event (0 when there is none). */
export async function currentVersion(q: Queryable): Promise<number> {
  const { rows } = await q.query<{ v: number }>('SELECT coalesce(max(id), 0)::bigint AS v FROM events');
  return rows[0]!.v;
}

/** Events with version > after, oldest first. */
export async function eventsSince(q: Queryable, after: number, limit: number): Promise<StateEvent[]> {
  const { rows } = await q.query<{ min: number | null }>('SELECT min(id)::bigint AS min FROM events');
  const oldest = rows[0]?.min;
  if (oldest !== null && oldest !== undefined && after < oldest - 1) {
    throw new PierError('PIER_EVENTS_TRIMMED', `events after version ${after} are no longer kept; take a snapshot`);
  }
  const result = await q.query<EventRow>(
    'SELECT id, type, app, data, created_at FROM events WHERE id > $1 ORDER BY id LIMIT $2',
    [after, limit],
  );
  return result.rows.map(toEvent);
}
