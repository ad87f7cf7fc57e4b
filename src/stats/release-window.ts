/**
 * Each release's recent requests in memory (pure): 10-second buckets of counts, 5xx and a latency histogram,
 * for the last 10 minutes. The nexus's deploy verdict asks for a release's numbers since its switch, and the
 * previous release's numbers before it, to decide whether the new one is clearly worse.
 */
import type { AccessMessage } from '../protocol/index.js';
import { mergeInto, newHistogram, record, type Histogram } from '../core/histogram.js';

const BUCKET_MS = 10_000;
/** Buckets older than this are dropped. */
const KEEP_MS = 10 * 60_000;

interface Bucket {
  startMs: number;
  requests: number;
  s5xx: number;
  histogram: Histogram;
}

export interface ReleaseNumbers {
  requests: number;
  s5xx: number;
  histogram: number[];
}

export class ReleaseWindows {
  private readonly releases = new Map<string, Bucket[]>();

  /** Counts one request to the release that answered it (requests the balancer answered itself are skipped). */
  record(access: AccessMessage & { app: string }): void {
    if (access.release === undefined || access.release === null) return;
    const key = `${access.app}\u0000${access.release}`;
    let buckets = this.releases.get(key);
    if (!buckets) {
      buckets = [];
      this.releases.set(key, buckets);
    }
    const startMs = Math.floor(access.at / BUCKET_MS) * BUCKET_MS;
    // Records arrive in time order, nearly always for the newest bucket.
    let bucket = buckets.at(-1)?.startMs === startMs ? buckets.at(-1) : buckets.find((b) => b.startMs === startMs);
    if (!bucket) {
      bucket = { startMs, requests: 0, s5xx: 0, histogram: newHistogram() };
      buckets.push(bucket);
      this.prune(key, buckets, access.at);
    }
    bucket.requests += 1;
    if (access.status >= 500) bucket.s5xx += 1;
    record(bucket.histogram, access.durationMs);
  }

  /** The release's numbers for buckets overlapping [sinceMs, untilMs). */
  query(app: string, release: number, sinceMs: number, untilMs: number): ReleaseNumbers {
    const buckets = this.releases.get(`${app}\u0000${release}`) ?? [];
    const merged = newHistogram();
    let requests = 0;
    let s5xx = 0;
    for (const b of buckets) {
      if (b.startMs + BUCKET_MS <= sinceMs || b.startMs >= untilMs) continue;
      requests += b.requests;
      s5xx += b.s5xx;
      mergeInto(merged, b.histogram);
    }
    return { requests, s5xx, histogram: requests === 0 ? [] : Array.from(merged) };
  }

  private prune(key: string, buckets: Bucket[], nowMs: number): void {
    const kept = buckets.filter((b) => b.startMs > nowMs - KEEP_MS);
    if (kept.length === 0) this.releases.delete(key);
    else if (kept.length !== buckets.length) this.releases.set(key, kept);
  }

  /** Forgets every release of `app` (it was destroyed: a re-created app's v1 is another release). */
  dropApp(app: string): void {
    for (const key of [...this.releases.keys()]) if (key.startsWith(`${app}\u0000`)) this.releases.delete(key);
  }

  /** Drops releases with nothing recent (called now and then). */
  sweep(nowMs = Date.now()): void {
    for (const [key, buckets] of this.releases) this.prune(key, buckets, nowMs);
  }
}
