/** Request aggregates per app and minute (`request_stats`): add a collector's counts, read a window, prune. */
import type pg from 'pg';
import type { StatsRow } from '../protocol/index.js';
import { withTransaction, type Queryable } from './pool.js';

/** Counts one collector saw for one app-minute since its last flush. */
export interface RequestStatsDelta {
  app: string;
  /** Start of the minute, ms since the epoch. */
  minute: number;
  requests: number;
  s2xx: number;
  s3xx: number;
  s4xx: number;
  s5xx: number;
  bytes: number;
  /** Requests per latency bucket. */
  histogram: ArrayLike<number>;
}

/** Percentiles of a merged histogram, computed by the caller (the bucket layout is the collector's). */
export type Summarize = (histogram: number[]) => { p50Ms: number | null; p95Ms: number | null; p99Ms: number | null };

/**
 * Adds deltas to their rows (creating missing ones) and recomputes each row's percentiles from its merged
 * histogram, in one transaction. Concurrent collectors serialize on the rows they share: give the deltas
 * sorted by app and minute so they lock in the same order.
 */
export async function addRequestStats(pool: pg.Pool, deltas: RequestStatsDelta[], summarize: Summarize): Promise<void> {
  if (deltas.length === 0) return;
  await withTransaction(pool, async (tx) => {
    const { rows } = await tx.query<{ app: string; minute: Date; histogram: number[] }>(
      `INSERT INTO request_stats AS r (app, minute, requests, s2xx, s3xx, s4xx, s5xx, bytes, histogram)
       SELECT t.app, t.minute, t.requests, t.s2xx, t.s3xx, t.s4xx, t.s5xx, t.bytes, t.histogram::integer[]
       FROM unnest($1::text[], $2::timestamptz[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::text[])
         WITH ORDINALITY AS t(app, minute, requests, s2xx, s3xx, s4xx, s5xx, bytes, histogram, ord)
       ORDER BY t.ord
       ON CONFLICT (app, minute) DO UPDATE SET
         requests = r.requests + excluded.requests, s2xx = r.s2xx + excluded.s2xx, s3xx = r.s3xx + excluded.s3xx,
         s4xx = r.s4xx + excluded.s4xx, s5xx = r.s5xx + excluded.s5xx, bytes = r.bytes + excluded.bytes,
         histogram = ARRAY(SELECT coalesce(a, 0) + coalesce(b, 0)
                           FROM unnest(r.histogram, excluded.histogram) WITH ORDINALITY AS h(a, b, i) ORDER BY i)
       RETURNING app, minute, histogram`,
      [
        deltas.map((d) => d.app), deltas.map((d) => new Date(d.minute).toISOString()), deltas.map((d) => d.requests),
        deltas.map((d) => d.s2xx), deltas.map((d) => d.s3xx), deltas.map((d) => d.s4xx), deltas.map((d) => d.s5xx),
        deltas.map((d) => d.bytes), deltas.map((d) => `{${Array.from(d.histogram).join(',')}}`),
      ],
    );
    const summaries = rows.map((row) => ({ row, p: summarize(row.histogram) }));
    await tx.query(
      `UPDATE request_stats r SET p50_ms = t.p50, p95_ms = t.p95, p99_ms = t.p99
       FROM unnest($1::text[], $2::timestamptz[], $3::float8[], $4::float8[], $5::float8[]) AS t(app, minute, p50, p95, p99)
       WHERE r.app = t.app AND r.minute = t.minute`,
      [
        summaries.map((s) => s.row.app), summaries.map((s) => s.row.minute.toISOString()),
        summaries.map((s) => s.p.p50Ms), summaries.map((s) => s.p.p95Ms), summaries.map((s) => s.p.p99Ms),
      ],
    );
  });
}

type StatsDbRow = {
  minute: Date; requests: number; s2xx: number; s3xx: number; s4xx: number; s5xx: number; bytes: number;
  p50_ms: number | null; p95_ms: number | null; p99_ms: number | null;
};

/** An app's minutes from `since` (inclusive, ms since the epoch), oldest first. */
export async function requestStatsSince(q: Queryable, app: string, sinceMs: number): Promise<StatsRow[]> {
  const { rows } = await q.query<StatsDbRow>(
    `SELECT minute, requests, s2xx, s3xx, s4xx, s5xx, bytes, p50_ms, p95_ms, p99_ms
     FROM request_stats WHERE app = $1 AND minute >= $2 ORDER BY minute`,
    [app, new Date(sinceMs).toISOString()],
  );
  return rows.map((r) => ({
    minute: r.minute.getTime(), requests: r.requests, s2xx: r.s2xx, s3xx: r.s3xx, s4xx: r.s4xx, s5xx: r.s5xx, bytes: r.bytes,
    p50Ms: r.p50_ms, p95Ms: r.p95_ms, p99Ms: r.p99_ms,
  }));
}

/** Deletes an app's minutes up to `upToMs` (its destroy: a re-created app of the name starts empty). */
export async function deleteRequestStats(q: Queryable, app: string, upToMs: number): Promise<number> {
  const result = await q.query('DELETE FROM request_stats WHERE app = $1 AND minute <= $2', [app, new Date(upToMs).toISOString()]);
  return result.rowCount ?? 0;
}

/** Deletes minutes older than `beforeMs`; returns how many rows went. */
export async function pruneRequestStats(q: Queryable, beforeMs: number): Promise<number> {
  const result = await q.query('DELETE FROM request_stats WHERE minute < $1', [new Date(beforeMs).toISOString()]);
  return result.rowCount ?? 0;
}
