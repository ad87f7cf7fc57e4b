import { describe, expect, it } from 'vitest';
import {
  HISTOGRAM_BUCKETS, bucketOf, bucketValue, mergeInto, newHistogram, quantile, record, summarize, type Histogram,
} from '../../src/stats/histogram.js';

function histogramOf(durationsMs: number[]): Histogram {
  const h = newHistogram();
  for (const d of durationsMs) record(h, d);
  return h;
}

/** True nearest-rank quantile of a sample. */
function exactQuantile(durationsMs: number[], q: number): number {
  const sorted = [...durationsMs].sort((a, b) => a - b);
  return sorted[Math.max(1, Math.ceil(q * sorted.length)) - 1]!;
}

function expectWithin5Percent(actual: number | null, expected: number): void {
  expect(actual).not.toBeNull();
  expect(Math.abs(actual! - expected) / expected).toBeLessThanOrEqual(0.05);
}

const uniform = Array.from({ length: 1000 }, (_, i) => i + 1);
// Deterministic exponential sample with mean 100 ms: the (i + 0.5)/N quantiles of Exp(1/100).
const exponential = Array.from({ length: 2000 }, (_, i) => -Math.log(1 - (i + 0.5) / 2000) * 100);
// Bimodal: 90% fast (2–4 ms), 10% slow (800–1200 ms), as a cache-miss workload looks.
const bimodal = Array.from({ length: 1000 }, (_, i) => (i % 10 === 9 ? 800 + (i * 7) % 400 : 2 + ((i * 13) % 200) / 100));

describe('histogram', () => {
  it('reports every duration from 0.1 ms to 10 minutes within ±5% of itself', () => {
    for (let d = 0.1; d < 600_000; d *= 1.013) {
      const value = bucketValue(bucketOf(d));
      expect(Math.abs(value - d) / d, `duration ${d}`).toBeLessThanOrEqual(0.05);
    }
  });

  it('puts durations below 0.1 ms, negative and NaN in bucket 0 and 10 minutes or more in the last bucket', () => {
    expect(bucketOf(0)).toBe(0);
    expect(bucketOf(0.0999)).toBe(0);
    expect(bucketOf(-5)).toBe(0);
    expect(bucketOf(Number.NaN)).toBe(0);
    expect(bucketOf(0.1)).toBe(1);
    expect(bucketOf(600_000)).toBe(HISTOGRAM_BUCKETS - 1);
    expect(bucketOf(Number.POSITIVE_INFINITY)).toBe(HISTOGRAM_BUCKETS - 1);
    expect(bucketOf(599_999)).toBeLessThan(HISTOGRAM_BUCKETS - 1);
    expect(bucketValue(HISTOGRAM_BUCKETS - 1)).toBe(600_000);
  });

  it('keeps buckets in increasing order of duration', () => {
    let previous = -1;
    for (let d = 0.05; d < 700_000; d *= 1.05) {
      const bucket = bucketOf(d);
      expect(bucket).toBeGreaterThanOrEqual(previous);
      previous = bucket;
    }
    for (let b = 1; b < HISTOGRAM_BUCKETS; b++) expect(bucketValue(b)).toBeGreaterThan(bucketValue(b - 1));
  });

  it.each([
    ['uniform 1..1000 ms', uniform],
    ['exponential, mean 100 ms', exponential],
    ['bimodal 2–4 ms / 800–1200 ms', bimodal],
  ])('gives p50, p95 and p99 within ±5%% of the true values for a %s sample', (_name, sample) => {
    const p = summarize(histogramOf(sample));
    expectWithin5Percent(p.p50Ms, exactQuantile(sample, 0.5));
    expectWithin5Percent(p.p95Ms, exactQuantile(sample, 0.95));
    expectWithin5Percent(p.p99Ms, exactQuantile(sample, 0.99));
  });

  it('matches the textbook quantiles of the exponential distribution', () => {
    const p = summarize(histogramOf(exponential));
    expectWithin5Percent(p.p50Ms, 100 * Math.LN2);
    expectWithin5Percent(p.p95Ms, -100 * Math.log(0.05));
    expectWithin5Percent(p.p99Ms, -100 * Math.log(0.01));
  });

  it('returns null percentiles for an empty histogram', () => {
    expect(summarize(newHistogram())).toEqual({ p50Ms: null, p95Ms: null, p99Ms: null });
    expect(quantile([], 0.5)).toBeNull();
  });

  it('rounds percentiles to 0.01 ms', () => {
    const p = summarize(histogramOf([12.345, 12.345, 12.345]));
    expect(p.p50Ms).toBe(p.p99Ms);
    expect(Math.round(p.p50Ms! * 100) / 100).toBe(p.p50Ms);
    expect(quantile(histogramOf([0.01]), 0.5)).toBe(0.05);
  });

  it('uses nearest rank: the slowest request is p99 of 10 requests and not of 101', () => {
    const ten = [...Array.from({ length: 9 }, () => 10), 1000];
    expectWithin5Percent(quantile(histogramOf(ten), 0.99), 1000);
    expectWithin5Percent(quantile(histogramOf(ten), 0.9), 10);
    const many = [...Array.from({ length: 100 }, () => 10), 1000];
    expectWithin5Percent(quantile(histogramOf(many), 0.99), 10);
    expectWithin5Percent(quantile(histogramOf(many), 1), 1000);
  });

  it('merges two halves into exactly the histogram of the whole', () => {
    const first = histogramOf(exponential.slice(0, 700));
    const second = histogramOf(exponential.slice(700));
    mergeInto(first, second);
    expect(Array.from(first)).toEqual(Array.from(histogramOf(exponential)));
    expect(summarize(first)).toEqual(summarize(histogramOf(exponential)));
  });

  it('merges a shorter or longer stored histogram, ignoring extra buckets', () => {
    const into = newHistogram();
    mergeInto(into, [1, 2, 3]);
    expect(Array.from(into.slice(0, 4))).toEqual([1, 2, 3, 0]);
    const longer = Array.from({ length: HISTOGRAM_BUCKETS + 5 }, () => 1);
    mergeInto(into, longer);
    expect(into.length).toBe(HISTOGRAM_BUCKETS);
    expect(into.reduce((a, b) => a + b, 0)).toBe(6 + HISTOGRAM_BUCKETS);
  });
});
