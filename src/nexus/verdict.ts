/**
 * The deploy verdict from live traffic (leader only): for `windowMs` after a release goes live, the previous
 * release keeps running and, every second, the new release's 5xx rate and p95 latency since the switch are
 * compared with the previous release's in the same length of time before it (numbers from every stats
 * collector's recent memory). A clearly worse release is switched back at once — the previous instances are
 * still warm — and marked failed with the reason; otherwise, when the window ends, the previous one is let go.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import { Coalesced } from '../core/coalesce.js';
import { mergeInto, newHistogram, quantile } from '../core/histogram.js';
import { acceptVerdict, pendingVerdicts, revertRelease, withTransaction, type PendingVerdict } from '../db/index.js';
import type { StatsClient } from '../transport/index.js';

export interface VerdictOptions {
  pool: pg.Pool;
  stats: StatsClient | undefined;
  isLeader: () => boolean;
  /** Fewest requests to the new release before it can be judged. */
  minRequests: number;
  /** How often pending verdicts are checked. @default 1000 */
  checkMs?: number;
  log: Logger;
}

/** A release's numbers over a span, merged across collectors. */
export interface Numbers {
  requests: number;
  s5xx: number;
  p95Ms: number | null;
}

/**
 * Whether `next` is clearly worse than `before`: a 5xx rate of at least 5% that is more than twice the old rate
 * plus 2 points, or (when the old release had enough traffic to compare) a p95 more than twice the old plus
 * 100 ms. Returns the reason, or undefined when it is not (or cannot yet be) judged worse.
 */
export function judge(next: Numbers, before: Numbers, minRequests: number): string | undefined {
  if (next.requests < minRequests) return undefined;
  const rate = next.s5xx / next.requests;
  const oldRate = before.requests > 0 ? before.s5xx / before.requests : 0;
  if (rate >= 0.05 && rate > 2 * oldRate + 0.02) {
    return `5xx on ${pct(rate)} of ${next.requests} requests, against ${pct(oldRate)} of ${before.requests} before`;
  }
  if (before.requests >= minRequests && next.p95Ms !== null && before.p95Ms !== null && next.p95Ms > 2 * before.p95Ms + 100) {
    return `p95 ${Math.round(next.p95Ms)} ms over ${next.requests} requests, against ${Math.round(before.p95Ms)} ms before`;
  }
  return undefined;
}

function pct(rate: number): string {
  return `${(rate * 100).toFixed(rate < 0.1 ? 1 : 0)}%`;
}

export class VerdictLoop {
  private timer: NodeJS.Timeout | undefined;
  private readonly passes = new Coalesced(
    () => this.pass(),
    (err) => this.log.warn({ err: err.message }, 'verdict pass failed; will retry'),
  );
  private readonly log: Logger;

  constructor(private readonly options: VerdictOptions) {
    this.log = options.log.child({ component: 'nexus.verdict' });
  }

  start(): void {
    this.timer = setInterval(() => {
      if (this.options.isLeader()) this.passes.kick();
    }, this.options.checkMs ?? 1000);
  }

  private async pass(): Promise<void> {
    const verdicts = await pendingVerdicts(this.options.pool);
    for (const verdict of verdicts) await this.check(verdict);
  }

  private async check(verdict: PendingVerdict): Promise<void> {
    const now = Date.now();
    const spanMs = Math.max(1000, Math.min(now, verdict.untilMs) - verdict.sinceMs);
    const [next, before] = await Promise.all([
      this.numbers(verdict.app, verdict.release, verdict.sinceMs, now),
      this.numbers(verdict.app, verdict.previous, verdict.sinceMs - spanMs, verdict.sinceMs),
    ]);
    const reason = next && before ? judge(next, before, this.options.minRequests) : undefined;
    if (reason) {
      const isReverted = await withTransaction(this.options.pool, (tx) => revertRelease(tx, verdict, reason));
      if (isReverted) this.log.warn({ app: verdict.app, release: verdict.release, previous: verdict.previous, reason, exposedMs: now - verdict.sinceMs }, 'release reverted by the live-traffic verdict');
      return;
    }
    if (now >= verdict.untilMs) {
      const summary = next ? { requests: next.requests, s5xx: next.s5xx, p95Ms: next.p95Ms } : { requests: null };
      await withTransaction(this.options.pool, (tx) => acceptVerdict(tx, verdict, summary));
      this.log.info({ app: verdict.app, release: verdict.release, ...summary }, 'release passed its live-traffic verdict');
    }
  }

  /** The release's numbers over [sinceMs, untilMs) from every collector; undefined when none answered. */
  private async numbers(app: string, release: number, sinceMs: number, untilMs: number): Promise<Numbers | undefined> {
    const stats = this.options.stats;
    if (!stats?.isConfigured) return undefined;
    const { results } = await stats.gather('stats.release', { app, release, sinceMs: Math.max(0, Math.floor(sinceMs)), untilMs: Math.floor(untilMs) });
    if (results.length === 0) return undefined;
    const merged = newHistogram();
    let requests = 0;
    let s5xx = 0;
    for (const r of results) {
      requests += r.requests;
      s5xx += r.s5xx;
      if (r.histogram.length > 0) mergeInto(merged, r.histogram);
    }
    return { requests, s5xx, p95Ms: requests > 0 ? quantile(merged, 0.95) : null };
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.passes.idle();
  }
}
