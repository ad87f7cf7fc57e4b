/**
 * Request latency histograms with fixed logarithmic buckets (pure). Fixed buckets, unlike a sample of raw
 * durations, add up: several collectors (each gets a share of the access records) and several flushes of
 * the same minute merge exactly by adding counts, in memory and in PostgreSQL. A percentile read from them
 * is the geometric middle of its bucket, within ±5% of the true value.
 */

/** Lower edge of bucket 1 in ms; bucket 0 holds everything faster. */
const BASE_MS = 0.1;
/** Each bucket is this much wider than the one before (±4.9% error at the geometric middle). */
const GROWTH = 1.1;
/** Durations at or above this (10 minutes) share the last bucket. */
const MAX_MS = 600_000;
const LOG_GROWTH = Math.log(GROWTH);
/** Regular buckets between BASE_MS and MAX_MS. */
const SPAN = Math.ceil(Math.log(MAX_MS / BASE_MS) / LOG_GROWTH);

/** Number of buckets: [0, 0.1 ms), SPAN logarithmic ones, [10 min, ∞). */
export const HISTOGRAM_BUCKETS = SPAN + 2;

/** A histogram: one count per bucket. */
export type Histogram = Uint32Array;

export function newHistogram(): Histogram {
  return new Uint32Array(HISTOGRAM_BUCKETS);
}

/** The bucket a duration falls in. */
export function bucketOf(durationMs: number): number {
  if (!(durationMs >= BASE_MS)) return 0; // also NaN
  if (durationMs >= MAX_MS) return HISTOGRAM_BUCKETS - 1;
  return Math.min(SPAN, Math.floor(Math.log(durationMs / BASE_MS) / LOG_GROWTH) + 1);
}

/** The value reported for a bucket: the geometric middle of its edges. */
export function bucketValue(bucket: number): number {
  if (bucket <= 0) return BASE_MS / 2;
  if (bucket >= HISTOGRAM_BUCKETS - 1) return MAX_MS;
  return BASE_MS * GROWTH ** (bucket - 0.5);
}

export function record(histogram: Histogram, durationMs: number): void {
  histogram[bucketOf(durationMs)]! += 1;
}

/** Adds `from` into `into` (they may differ in length when read from an older store: extra buckets are ignored). */
export function mergeInto(into: Histogram, from: ArrayLike<number>): void {
  const length = Math.min(into.length, from.length);
  for (let i = 0; i < length; i++) into[i]! += from[i]!;
}

/**
 * The q-quantile (0 < q ≤ 1) by nearest rank: the bucket holding the ⌈q·n⌉-th fastest request. Null for an
 * empty histogram. Rounded to 0.01 ms.
 */
export function quantile(histogram: ArrayLike<number>, q: number): number | null {
  let total = 0;
  for (let i = 0; i < histogram.length; i++) total += histogram[i]!;
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let i = 0; i < histogram.length; i++) {
    seen += histogram[i]!;
    if (seen >= rank) return Math.round(bucketValue(i) * 100) / 100;
  }
  return Math.round(bucketValue(histogram.length - 1) * 100) / 100;
}

/** p50, p95 and p99 of a histogram. */
export function summarize(histogram: ArrayLike<number>): { p50Ms: number | null; p95Ms: number | null; p99Ms: number | null } {
  return { p50Ms: quantile(histogram, 0.5), p95Ms: quantile(histogram, 0.95), p99Ms: quantile(histogram, 0.99) };
}
