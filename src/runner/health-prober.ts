/**
 * Probes this runner's serving instances directly, each on its app's check interval, and watches the emperor for
 * crash loops; reports results to the nexus in batches (`health.report`). A crash-looping instance is unhealthy
 * whatever its last probe said.
 */
import type { Logger } from 'pino';
import { DEFAULT_CHECK, MAX_HEALTH_BATCH, type AppCheck, type Check, type HealthResult } from '../protocol/index.js';
import type { ControlClient } from '../transport/index.js';
import type { EmperorStatus } from './emperor-stats.js';
import { probeCheck } from './probe.js';

export interface HealthProberOptions {
  runnerId: string;
  control: ControlClient;
  /** The instances to probe now. */
  serving: () => Array<{ id: string; app: string; port: number; hostHeader?: string }>;
  /** The emperor's view of its vassals (for respawns and the blacklist). */
  emperorStatus: () => Promise<EmperorStatus>;
  /** Where instances are reached. @default '127.0.0.1' */
  host?: string;
  /** How often due probes are started and the emperor is read. @default 200 */
  tickMs?: number;
  /** How often queued results are sent. @default 250 */
  flushMs?: number;
  /** Respawns within `crashWindowMs` that make a crash loop. @default 3 */
  crashRespawns?: number;
  /** @default 60000 */
  crashWindowMs?: number;
  log: Logger;
}

/** Pause before a probe that got no answer is tried again. */
const NO_ANSWER_RETRY_MS = 200;

/** How long after Pier began restarting an instance its next restart is taken for Pier's. */
const PIER_RESTART_MS = 30_000;

/** Results waiting for the nexus; beyond it the oldest are dropped (only the newest per target matters much). */
const MAX_QUEUE = 5000;

export class HealthProber {
  private readonly checks = new Map<string, Check>();
  /** Instance → when its next probe is due (ms). */
  private readonly due = new Map<string, number>();
  private readonly inFlight = new Set<string>();
  /**
   * Vassal → its master's pid and respawn count last seen, when it was seen restarting, and when Pier began
   * restarting it (the next restart within PIER_RESTART_MS is Pier's, not counted).
   */
  private readonly vassals = new Map<string, { pid: number; respawns: number; restarts: number[]; pierRestartAt?: number }>();
  private readonly crashLoops = new Map<string, string>();
  private queue: HealthResult[] = [];
  private tickTimer: NodeJS.Timeout | undefined;
  private flushTimer: NodeJS.Timeout | undefined;
  private isFlushing = false;
  private lastEmperorRead = 0;
  /** Results dropped because the nexus could not take them. */
  dropped = 0;
  private readonly log: Logger;

  constructor(private readonly options: HealthProberOptions) {
    this.log = options.log.child({ component: 'runner.health' });
  }

  /** Replaces every app's check (after a snapshot); apps not listed use the default. */
  loadChecks(checks: readonly AppCheck[] | undefined): void {
    this.checks.clear();
    for (const c of checks ?? []) this.checks.set(c.app, c.check);
    this.due.clear(); // probe each at once with its (maybe new) check
  }

  /** One app's check changed (null: back to the default): its instances are probed with it from now on. */
  setCheck(app: string, check: Check | null): void {
    if (check) this.checks.set(app, check);
    else this.checks.delete(app);
    for (const s of this.options.serving()) if (s.app === app) this.due.delete(s.id);
  }

  /**
   * Pier itself restarts the instance (remediation): that restart is not the app crashing, so it is not counted.
   * The app's own restarts before it still are: a crash loop is not forgotten by restarting it.
   */
  pierRestarts(id: string): void {
    const known = this.vassals.get(id);
    if (known) known.pierRestartAt = Date.now();
  }

  checkOf(app: string): Check {
    return this.checks.get(app) ?? DEFAULT_CHECK;
  }

  start(): void {
    this.tickTimer = setInterval(() => void this.tick(), this.options.tickMs ?? 200);
    this.flushTimer = setInterval(() => void this.flush(), this.options.flushMs ?? 250);
  }

  async stop(): Promise<void> {
    clearInterval(this.tickTimer);
    clearInterval(this.flushTimer);
  }

  private async tick(): Promise<void> {
    const now = Date.now();
    const serving = this.options.serving();
    const ids = new Set(serving.map((s) => s.id));
    for (const id of [...this.due.keys()]) if (!ids.has(id)) this.due.delete(id);
    if (now - this.lastEmperorRead >= 1000) {
      this.lastEmperorRead = now;
      await this.readEmperor(now, ids);
    }
    for (const s of serving) {
      const check = this.checkOf(s.app);
      if ((this.due.get(s.id) ?? 0) > now || this.inFlight.has(s.id)) continue;
      this.due.set(s.id, now + check.intervalMs);
      this.inFlight.add(s.id);
      void this.probe(s, check).finally(() => this.inFlight.delete(s.id));
    }
  }

  private async probe(s: { id: string; app: string; port: number; hostHeader?: string }, check: Check): Promise<void> {
    const at = Date.now();
    const crash = this.crashLoops.get(s.id);
    let outcome = await probeCheck(this.options.host ?? '127.0.0.1', s.port, check, s.hostHeader);
    // No answer at all is tried once more right away before it counts: a new connection can wait behind keep-alive
    // connections that hold every uWSGI thread for a moment. A wrong answer counts at once.
    if (outcome.status === null && !crash) {
      await new Promise((resolve) => setTimeout(resolve, NO_ANSWER_RETRY_MS));
      if (this.options.serving().some((x) => x.id === s.id)) outcome = await probeCheck(this.options.host ?? '127.0.0.1', s.port, check, s.hostHeader);
    }
    // An instance uWSGI keeps restarting is unhealthy even in the moments it answers.
    const result: HealthResult = crash
      ? { kind: 'instance', target: s.id, app: s.app, ok: false, status: outcome.status, latencyMs: round(outcome.latencyMs), error: crash, at }
      : { kind: 'instance', target: s.id, app: s.app, ok: outcome.ok, status: outcome.status, latencyMs: round(outcome.latencyMs), error: outcome.error?.slice(0, 500) ?? null, at };
    this.enqueue(result);
  }

  /** Reads respawns and the blacklist; a vassal respawned crashRespawns times within the window is crash-looping. */
  private async readEmperor(now: number, serving: Set<string>): Promise<void> {
    const status = await this.options.emperorStatus().catch(() => undefined);
    if (!status) return;
    const windowMs = this.options.crashWindowMs ?? 60_000;
    const limit = this.options.crashRespawns ?? 3;
    const seen = new Set<string>();
    for (const v of status.vassals) {
      seen.add(v.name);
      const known = this.vassals.get(v.name);
      const restarts = (known?.restarts ?? []).filter((at) => now - at <= windowMs);
      // uWSGI 2.0's emperor does not count a vassal that died and came back in `respawns`: its master's pid changes.
      const hasRestarted = known !== undefined && (known.pid !== v.pid || v.respawns > known.respawns);
      const pierRestartAt = known?.pierRestartAt !== undefined && now - known.pierRestartAt < PIER_RESTART_MS ? known.pierRestartAt : undefined;
      if (hasRestarted && pierRestartAt === undefined) restarts.push(now);
      this.vassals.set(v.name, { pid: v.pid, respawns: v.respawns, restarts, ...(pierRestartAt !== undefined && !hasRestarted ? { pierRestartAt } : {}) });
      if (restarts.length >= limit) this.crashLoops.set(v.name, `crash loop: uWSGI restarted it ${restarts.length} times in the last ${Math.round(windowMs / 1000)} s`);
      else this.crashLoops.delete(v.name);
    }
    for (const b of status.blacklist) {
      seen.add(b.name);
      this.crashLoops.set(b.name, `crash loop: uWSGI blacklisted it after ${b.attempts} failed starts`);
    }
    // A vassal missing for a moment (dead, not yet respawned) keeps its history while its instance is served here.
    for (const name of [...this.vassals.keys()]) if (!seen.has(name) && !serving.has(name)) this.vassals.delete(name);
    for (const name of [...this.crashLoops.keys()]) if (!serving.has(name)) this.crashLoops.delete(name);
  }

  private enqueue(result: HealthResult): void {
    this.queue.push(result);
    if (this.queue.length > MAX_QUEUE) {
      this.dropped += this.queue.length - MAX_QUEUE;
      this.queue = this.queue.slice(-MAX_QUEUE);
    }
  }

  /** Sends what is queued, in batches; on failure the results wait for the next flush. */
  private async flush(): Promise<void> {
    if (this.isFlushing || this.queue.length === 0) return;
    this.isFlushing = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.slice(0, MAX_HEALTH_BATCH);
        await this.options.control.call('health.report', { nodeId: this.options.runnerId, results: batch });
        this.queue = this.queue.slice(batch.length);
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message, queued: this.queue.length }, 'cannot report health results yet; will retry');
    } finally {
      this.isFlushing = false;
    }
  }
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
