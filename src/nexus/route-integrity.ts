/**
 * The leader's side of the balancers' integrity check. Each balancer's heartbeat carries the digest of the route
 * table it serves and the event version that table reflects. On an interval the leader reads the state (one
 * REPEATABLE READ snapshot: the routes and the version they are at) and computes the same digest
 * (protocol/route-digest.ts); a balancer that reports that very version with another digest holds a table that
 * differs from the state — an event applied wrongly, or a change written to PostgreSQL without its event — and
 * is told to reload it: a `routes.resync` event naming it, after which it loads a fresh snapshot. Each is counted.
 * A balancer at another version is not compared this round (it is catching up, or the state moved on); its
 * event follower closes version gaps by itself.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import type { NodeLiveness } from '../core/liveness.js';
import { appendEvent, takeSnapshot, withTransaction } from '../db/index.js';
import { routeDigest, routesOfSnapshot, type HeartbeatMessage } from '../protocol/index.js';

export interface RouteIntegrityOptions {
  pool: pg.Pool;
  liveness: NodeLiveness;
  isLeader: () => boolean;
  intervalMs: number;
  log: Logger;
}

type Report = { digest: string; version: number; at: number };

export class RouteIntegrity {
  /** Balancers told to reload their table since this replica started. */
  resyncs = 0;
  private readonly reports = new Map<string, Report>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private readonly log: Logger;

  constructor(private readonly options: RouteIntegrityOptions) {
    this.log = options.log.child({ component: 'nexus.route-integrity' });
  }

  /** Takes each balancer's newest digest from its heartbeat. */
  onBeat(beat: HeartbeatMessage): void {
    if (beat.kind !== 'balancer' || beat.routeDigest === undefined || beat.routeVersion === undefined) return;
    this.reports.set(beat.nodeId, { digest: beat.routeDigest, version: beat.routeVersion, at: Date.now() });
  }

  start(): void {
    this.timer = setInterval(() => {
      if (!this.options.isLeader()) return;
      this.running ??= this.check().then(
        () => undefined,
        (err: Error) => this.log.warn({ err: err.message }, 'route integrity check failed; will retry'),
      ).finally(() => (this.running = undefined));
    }, this.options.intervalMs);
  }

  /** One comparison; resolves with the balancers told to resync. */
  async check(): Promise<string[]> {
    const { pool, liveness } = this.options;
    const snapshot = await takeSnapshot(pool, liveness);
    const expected = routeDigest(routesOfSnapshot(snapshot));
    const now = Date.now();
    const stale: Array<[string, Report]> = [];
    for (const [nodeId, report] of this.reports) {
      if (now - report.at > liveness.deadAfterMs) {
        this.reports.delete(nodeId); // silent: nothing to compare
        continue;
      }
      if (report.version === snapshot.version && report.digest !== expected) stale.push([nodeId, report]);
    }
    if (stale.length === 0) return [];
    await withTransaction(pool, async (tx) => {
      for (const [nodeId, report] of stale) {
        await appendEvent(tx, 'routes.resync', null, { nodeId, version: snapshot.version, expected, got: report.digest });
      }
    });
    for (const [nodeId] of stale) {
      this.resyncs += 1;
      this.reports.delete(nodeId); // its next beat says what it holds after the reload
      this.log.warn({ node: nodeId, version: snapshot.version, resyncs: this.resyncs }, 'balancer route table differs from the state; told to reload it');
    }
    return stale.map(([nodeId]) => nodeId);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}
