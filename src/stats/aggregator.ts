/**
 * Per app and minute request aggregates not yet written to PostgreSQL (pure, in memory). What it holds are
 * deltas since the last successful flush: the flush adds them to the stored row, so flushing the current
 * minute every few seconds, retrying after a failed flush, and several collectors sharing the traffic all
 * add up to the right totals.
 */
import type { AccessMessage } from '../protocol/index.js';
import type { RequestStatsDelta } from '../db/index.js';
import { newHistogram, mergeInto, record, type Histogram } from './histogram.js';

/** Counts of one app-minute (what a flush adds to its `request_stats` row). */
export interface MinuteDelta extends RequestStatsDelta {
  histogram: Histogram;
}

export interface AggregatorStats {
  /** Requests counted. */
  recorded: number;
  /** App-minutes thrown away because too many were waiting for the database. */
  droppedMinutes: number;
}

const MINUTE_MS = 60_000;

export class RequestAggregator {
  readonly stats: AggregatorStats = { recorded: 0, droppedMinutes: 0 };
  private pending = new Map<string, MinuteDelta>();

  /** @param maxPending most app-minutes held; beyond it the oldest minute is dropped. */
  constructor(private readonly maxPending: number) {}

  /** Number of app-minutes waiting to be flushed. */
  get size(): number {
    return this.pending.size;
  }

  /** Counts one request into its app-minute (by the time the balancer saw it). */
  record(access: AccessMessage & { app: string }): void {
    const delta = this.entry(access.app, Math.floor(access.at / MINUTE_MS) * MINUTE_MS);
    delta.requests += 1;
    const cls = Math.floor(access.status / 100);
    if (cls === 2) delta.s2xx += 1;
    else if (cls === 3) delta.s3xx += 1;
    else if (cls === 4) delta.s4xx += 1;
    else if (cls === 5) delta.s5xx += 1;
    delta.bytes += access.bytes;
    record(delta.histogram, access.durationMs);
    this.stats.recorded += 1;
  }

  /** Takes every pending delta (sorted by app and minute, so concurrent writers lock rows in one order). */
  take(): MinuteDelta[] {
    const all = [...this.pending.values()];
    this.pending = new Map();
    return all.sort((a, b) => (a.app < b.app ? -1 : a.app > b.app ? 1 : a.minute - b.minute));
  }

  /** Throws away every pending minute of `app` (it was destroyed). */
  dropApp(app: string): void {
    for (const [key, delta] of [...this.pending]) if (delta.app === app) this.pending.delete(key);
  }

  /** Puts back deltas whose flush failed, adding them to anything recorded since. */
  restore(deltas: MinuteDelta[]): void {
    for (const d of deltas) {
      const into = this.entry(d.app, d.minute);
      into.requests += d.requests;
      into.s2xx += d.s2xx;
      into.s3xx += d.s3xx;
      into.s4xx += d.s4xx;
      into.s5xx += d.s5xx;
      into.bytes += d.bytes;
      mergeInto(into.histogram, d.histogram);
    }
  }

  private entry(app: string, minute: number): MinuteDelta {
    const key = `${app}\u0000${minute}`;
    let delta = this.pending.get(key);
    if (!delta) {
      if (this.pending.size >= this.maxPending) this.dropOldest();
      delta = { app, minute, requests: 0, s2xx: 0, s3xx: 0, s4xx: 0, s5xx: 0, bytes: 0, histogram: newHistogram() };
      this.pending.set(key, delta);
    }
    return delta;
  }

  private dropOldest(): void {
    let oldestKey: string | undefined;
    let oldest = Infinity;
    for (const [key, delta] of this.pending) {
      if (delta.minute < oldest) {
        oldest = delta.minute;
        oldestKey = key;
      }
    }
    if (oldestKey !== undefined) {
      this.pending.delete(oldestKey);
      this.stats.droppedMinutes += 1;
    }
  }
}
