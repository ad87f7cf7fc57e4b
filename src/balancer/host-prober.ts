/**
 * Probes every app's hostnames through this balancer's own listener (Host header set, so the request takes the
 * public path: routing, proxy, instance) on the app's check interval, and reports the results in batches
 * (`health.report`, kind 'hostname'). What it shows is what the public gets from this balancer.
 */
import type { Logger } from 'pino';
import { probeCheck } from '../core/http-check.js';
import { DEFAULT_CHECK, MAX_HEALTH_BATCH, type AppCheck, type Check, type HealthResult } from '../protocol/index.js';
import type { ControlClient } from '../transport/index.js';

export interface HostProberOptions {
  balancerId: string;
  control: ControlClient;
  /** Apps and the hostnames to probe now. */
  targets: () => Array<{ app: string; hosts: string[] }>;
  /** Where this balancer's listener is reached from this machine, once it listens. */
  listener: () => { host: string; port: number } | undefined;
  /**
   * X-Request-Id prefix of the probes (random per balancer, so nobody else can send requests that pass for probes):
   * the balancer keeps these out of the access records, so checks never count in an app's stats or logs.
   */
  requestIdPrefix: string;
  /** @default 200 */
  tickMs?: number;
  /** @default 500 */
  flushMs?: number;
  log: Logger;
}

/** Probes in flight at once (each holds one connection through the proxy). */
const MAX_IN_FLIGHT = 32;
const MAX_QUEUE = 5000;

export class HostProber {
  private readonly checks = new Map<string, Check>();
  private readonly due = new Map<string, number>();
  private readonly inFlight = new Set<string>();
  private queue: HealthResult[] = [];
  private timers: NodeJS.Timeout[] = [];
  private isFlushing = false;
  private sequence = 0;
  private readonly log: Logger;

  constructor(private readonly options: HostProberOptions) {
    this.log = options.log.child({ component: 'balancer.health' });
  }

  loadChecks(checks: readonly AppCheck[] | undefined): void {
    this.checks.clear();
    for (const c of checks ?? []) this.checks.set(c.app, c.check);
    this.due.clear();
  }

  setCheck(app: string, check: Check | null): void {
    if (check) this.checks.set(app, check);
    else this.checks.delete(app);
    for (const key of [...this.due.keys()]) if (key.startsWith(`${app} `)) this.due.delete(key);
  }

  start(): void {
    this.timers = [
      setInterval(() => this.tick(), this.options.tickMs ?? 200),
      setInterval(() => void this.flush(), this.options.flushMs ?? 500),
    ];
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
  }

  private tick(): void {
    const listener = this.options.listener();
    if (!listener) return;
    const now = Date.now();
    const keys = new Set<string>();
    for (const { app, hosts } of this.options.targets()) {
      const check = this.checks.get(app) ?? DEFAULT_CHECK;
      for (const host of hosts) {
        const key = `${app} ${host}`;
        keys.add(key);
        if ((this.due.get(key) ?? 0) > now || this.inFlight.has(key) || this.inFlight.size >= MAX_IN_FLIGHT) continue;
        this.due.set(key, now + check.intervalMs);
        this.inFlight.add(key);
        const at = Date.now();
        void probeCheck(listener.host, listener.port, check, host, { 'x-request-id': `${this.options.requestIdPrefix}${(this.sequence += 1)}` }).then((outcome) => {
          this.queue.push({
            kind: 'hostname', target: host, app, ok: outcome.ok, status: outcome.status,
            latencyMs: Math.round(outcome.latencyMs * 10) / 10, error: outcome.error?.slice(0, 500) ?? null, at,
          });
          if (this.queue.length > MAX_QUEUE) this.queue = this.queue.slice(-MAX_QUEUE);
        }).finally(() => this.inFlight.delete(key));
      }
    }
    for (const key of [...this.due.keys()]) if (!keys.has(key)) this.due.delete(key);
  }

  private async flush(): Promise<void> {
    if (this.isFlushing || this.queue.length === 0) return;
    this.isFlushing = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.slice(0, MAX_HEALTH_BATCH);
        await this.options.control.call('health.report', { nodeId: this.options.balancerId, results: batch });
        this.queue = this.queue.slice(batch.length);
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message, queued: this.queue.length }, 'cannot report hostname checks yet; will retry');
    } finally {
      this.isFlushing = false;
    }
  }
}
