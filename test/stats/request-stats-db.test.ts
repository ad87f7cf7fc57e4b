import { describe, expect, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import { addRequestStats, pruneRequestStats, requestStatsSince, type RequestStatsDelta } from '../../src/db/stats.js';
import { newHistogram, record, summarize } from '../../src/stats/histogram.js';
import { testDatabase, testPool } from '../helpers/postgres.js';

const pool = testPool(await testDatabase());

const MINUTE = 60_000;
const T0 = Date.UTC(2026, 0, 15, 10, 0, 0);

function delta(app: string, minute: number, durationsMs: number[], overrides: Partial<RequestStatsDelta> = {}): RequestStatsDelta {
  const histogram = newHistogram();
  for (const d of durationsMs) record(histogram, d);
  return { app, minute, requests: durationsMs.length, s2xx: durationsMs.length, s3xx: 0, s4xx: 0, s5xx: 0, bytes: 100 * durationsMs.length, histogram, ...overrides };
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('request_stats', () => {
  it('creates a row with counts and percentiles from the histogram', async () => {
    const app = `app-${randomId()}`;
    await addRequestStats(pool, [delta(app, T0, range(1, 100), { s2xx: 90, s4xx: 6, s5xx: 4 })], summarize);
    const rows = await requestStatsSince(pool, app, T0);
    expect(rows).toHaveLength(1);
    const row = rows[0]!;
    expect(row).toMatchObject({ minute: T0, requests: 100, s2xx: 90, s3xx: 0, s4xx: 6, s5xx: 4, bytes: 10_000 });
    expect(Math.abs(row.p50Ms! - 50) / 50).toBeLessThanOrEqual(0.05);
    expect(Math.abs(row.p95Ms! - 95) / 95).toBeLessThanOrEqual(0.05);
    expect(Math.abs(row.p99Ms! - 99) / 99).toBeLessThanOrEqual(0.05);
    expect(typeof row.requests).toBe('number');
  });

  it('adds a second delta for the same app-minute and recomputes percentiles from the merged histogram', async () => {
    const app = `app-${randomId()}`;
    const fast = range(1, 100);
    const slow = range(901, 1000);
    await addRequestStats(pool, [delta(app, T0, fast, { s3xx: 3, bytes: 1_000 })], summarize);
    await addRequestStats(pool, [delta(app, T0, slow, { s2xx: 0, s5xx: 100, bytes: 5_000_000_000 })], summarize);
    const [row] = await requestStatsSince(pool, app, T0);
    expect(row).toMatchObject({ requests: 200, s2xx: 100, s3xx: 3, s4xx: 0, s5xx: 100, bytes: 5_000_001_000 });
    const merged = newHistogram();
    for (const d of [...fast, ...slow]) record(merged, d);
    expect({ p50Ms: row!.p50Ms, p95Ms: row!.p95Ms, p99Ms: row!.p99Ms }).toEqual(summarize(merged));
    // The median moved from ~50 ms to the top of the fast half; p95 now lies in the slow half.
    expect(Math.abs(row!.p50Ms! - 100) / 100).toBeLessThanOrEqual(0.05);
    expect(Math.abs(row!.p95Ms! - 990) / 990).toBeLessThanOrEqual(0.05);
    const { rows } = await pool.query<{ histogram: number[] }>('SELECT histogram FROM request_stats WHERE app = $1', [app]);
    expect(rows[0]!.histogram).toEqual(Array.from(merged));
  });

  it('merges a stored histogram shorter than the delta', async () => {
    const app = `app-${randomId()}`;
    await pool.query(`INSERT INTO request_stats (app, minute, requests, s2xx, histogram) VALUES ($1, $2, 2, 2, '{0,2}')`, [app, new Date(T0).toISOString()]);
    await addRequestStats(pool, [delta(app, T0, [50])], summarize);
    const { rows } = await pool.query<{ histogram: number[]; requests: number }>('SELECT histogram, requests FROM request_stats WHERE app = $1', [app]);
    const expected = newHistogram();
    expected[1] = 2;
    record(expected, 50);
    expect(rows[0]!.histogram).toEqual(Array.from(expected));
    expect(rows[0]!.requests).toBe(3);
  });

  it('writes several apps and minutes in one call', async () => {
    const a = `app-a${randomId()}`;
    const b = `app-b${randomId()}`;
    await addRequestStats(pool, [delta(a, T0, [10]), delta(a, T0 + MINUTE, [20, 30]), delta(b, T0, [40, 50, 60])], summarize);
    expect((await requestStatsSince(pool, a, 0)).map((r) => [r.minute, r.requests])).toEqual([[T0, 1], [T0 + MINUTE, 2]]);
    expect((await requestStatsSince(pool, b, 0)).map((r) => [r.minute, r.requests])).toEqual([[T0, 3]]);
  });

  it('adds up concurrent flushes of several collectors for the same rows', async () => {
    const app = `app-${randomId()}`;
    const flushes = Array.from({ length: 6 }, (_, i) => [delta(app, T0, [i + 1]), delta(app, T0 + MINUTE, [10 * (i + 1), 5])]);
    await Promise.all(flushes.map((deltas) => addRequestStats(pool, deltas, summarize)));
    const rows = await requestStatsSince(pool, app, T0);
    expect(rows.map((r) => [r.minute, r.requests, r.bytes])).toEqual([[T0, 6, 600], [T0 + MINUTE, 12, 1200]]);
    const merged = newHistogram();
    for (let i = 0; i < 6; i++) record(merged, i + 1);
    expect(rows[0]!.p99Ms).toBe(summarize(merged).p99Ms);
  });

  it('does nothing for no deltas', async () => {
    await expect(addRequestStats(pool, [], summarize)).resolves.toBeUndefined();
  });

  it('stores null percentiles for a minute with an empty histogram', async () => {
    const app = `app-${randomId()}`;
    await addRequestStats(pool, [delta(app, T0, [], { histogram: [] })], summarize);
    expect((await requestStatsSince(pool, app, T0))[0]).toMatchObject({ requests: 0, p50Ms: null, p95Ms: null, p99Ms: null });
  });

  it('reads an app\'s minutes from since (inclusive), oldest first', async () => {
    const app = `app-${randomId()}`;
    const other = `app-${randomId()}`;
    await addRequestStats(pool, [delta(app, T0 + 3 * MINUTE, [1]), delta(app, T0, [1]), delta(app, T0 + MINUTE, [1]), delta(other, T0 + MINUTE, [1])], summarize);
    expect((await requestStatsSince(pool, app, 0)).map((r) => r.minute)).toEqual([T0, T0 + MINUTE, T0 + 3 * MINUTE]);
    expect((await requestStatsSince(pool, app, T0 + MINUTE)).map((r) => r.minute)).toEqual([T0 + MINUTE, T0 + 3 * MINUTE]);
    expect((await requestStatsSince(pool, app, T0 + MINUTE + 1)).map((r) => r.minute)).toEqual([T0 + 3 * MINUTE]);
    expect(await requestStatsSince(pool, app, T0 + 4 * MINUTE)).toEqual([]);
    expect(await requestStatsSince(pool, `app-${randomId()}`, 0)).toEqual([]);
  });

  it('prunes minutes before a time and reports how many went', async () => {
    // Far in the past, so rows of the other tests in this file stay out of the way.
    const old = Date.UTC(2001, 0, 1);
    const app = `app-${randomId()}`;
    await addRequestStats(pool, [delta(app, old, [1]), delta(app, old + MINUTE, [1]), delta(app, old + 2 * MINUTE, [1])], summarize);
    expect(await pruneRequestStats(pool, old + 2 * MINUTE)).toBe(2);
    expect((await requestStatsSince(pool, app, 0)).map((r) => r.minute)).toEqual([old + 2 * MINUTE]);
    expect(await pruneRequestStats(pool, old)).toBe(0);
  });
});
