/**
 * The leader's placement of Redis add-on servers: a new one goes to the live runner that runs the least (add-ons
 * and instances), on a free port of that runner's add-on range; one whose runner is dead (the one liveness rule)
 * is placed again elsewhere, starting empty (its data is a cache); one being destroyed whose runner is gone has its
 * row deleted. Runs on a timer and when woken (events, a runner's liveness turning).
 */
import { randomInt } from 'node:crypto';
import type pg from 'pg';
import type { Logger } from 'pino';
import { Coalesced } from '../core/coalesce.js';
import type { NodeLiveness } from '../core/liveness.js';
import {
  addonRunners, deleteAddonRow, lockAddonPlacement, placeRedisAddon, redisAddons, withTransaction, type Addon, type AddonRunner,
} from '../db/index.js';

export interface AddonPlacerOptions {
  pool: pg.Pool;
  isLeader: () => boolean;
  liveness: NodeLiveness;
  /** A pass at least this often. */
  intervalMs: number;
  /** The add-on port range of a runner that did not register one. */
  defaultPorts: { portMin: number; portMax: number };
  /** A failed start is placed again after this long (not in a tight loop). @default 1000 */
  retryAfterMs?: number;
  log: Logger;
}

export class AddonPlacer {
  private timer: NodeJS.Timeout | undefined;
  private watcher: NodeJS.Timeout | undefined;
  private aliveSeen = new Set<string>();
  private leaderSince: number | undefined;
  private readonly passes = new Coalesced(
    () => this.pass(),
    (err) => this.log.warn({ err: err.message }, 'add-on placement pass failed; will retry'),
  );
  private readonly log: Logger;

  constructor(private readonly options: AddonPlacerOptions) {
    this.log = options.log.child({ component: 'nexus.addons' });
  }

  start(): void {
    this.timer = setInterval(() => this.kick(), this.options.intervalMs);
    // A runner's death is acted on within 100 ms of its budget running out, not at the next timed pass.
    this.watcher = setInterval(() => {
      if (!this.options.isLeader()) return;
      const alive = this.options.liveness.aliveInMemory();
      const isChanged = alive.size !== this.aliveSeen.size || [...alive].some((id) => !this.aliveSeen.has(id));
      this.aliveSeen = alive;
      if (isChanged) this.kick();
    }, 100);
  }

  kick(): void {
    if (!this.options.isLeader()) {
      this.leaderSince = undefined;
      return;
    }
    this.leaderSince ??= Date.now();
    this.passes.kick();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    clearInterval(this.watcher);
    await this.passes.idle();
  }

  private async pass(): Promise<void> {
    const { liveness } = this.options;
    const now = Date.now();
    // Right after taking over, heartbeats from every runner may not have arrived yet: move nothing off a runner.
    const mayForget = now - (this.leaderSince ?? now) > liveness.deadAfterMs * 2;
    const done = await withTransaction(this.options.pool, async (tx) => {
      await lockAddonPlacement(tx);
      const addons = await redisAddons(tx);
      if (addons.length === 0) return [];
      const runners = await addonRunners(tx, this.options.defaultPorts);
      const isAlive = (id: string | null): boolean => {
        const runner = runners.find((r) => r.id === id);
        return !!runner && liveness.isAlive(runner.id, runner.lastHeartbeatAtMs, now);
      };
      const actions: string[] = [];
      for (const addon of addons) {
        const isDestroying = addon.state === 'destroying' || addon.appId === null;
        if (isDestroying) {
          // Its runner stops the server and reports; a runner that is gone has nothing left to stop.
          if (addon.runnerId === null || (mayForget && !isAlive(addon.runnerId))) {
            await deleteAddonRow(tx, addon.id);
            actions.push(`drop ${addon.name}`);
          }
          continue;
        }
        let note: string;
        let isDrainMove = false;
        if (addon.runnerId === null) {
          if (addon.generation > 0 && now - addon.updatedAt.getTime() < (this.options.retryAfterMs ?? 1000)) continue;
          note = addon.generation === 0 ? 'created' : `${addon.note ?? 'its start failed'}; placed again`;
        } else if (mayForget && !isAlive(addon.runnerId)) {
          note = `runner ${addon.runnerId} lost; restarted empty`;
        } else if (runners.find((r) => r.id === addon.runnerId)?.isDraining && addon.state === 'ready') {
          // Drained by an operator: moved like a lost one (its data is a cache), when another runner can take it.
          note = `runner ${addon.runnerId} drained; restarted empty`;
          isDrainMove = true;
        } else {
          continue;
        }
        const to = pickRunner(runners.filter((r) => r.id !== addon.runnerId && !r.isDraining && liveness.isAlive(r.id, r.lastHeartbeatAtMs, now)));
        if (!to) {
          // A drained runner's server stays where it is while there is nowhere else (no warning each pass).
          if (!isDrainMove) this.log.warn({ addon: addon.name, app: addon.appName }, 'no live runner for an add-on server; waiting for one');
          continue;
        }
        const port = pickPort(to);
        if (port === undefined) {
          this.log.warn({ addon: addon.name, runner: to.id, portMin: to.portMin, portMax: to.portMax }, 'no free add-on port on the runner; widen runner.addonPortMin..addonPortMax');
          continue;
        }
        await placeRedisAddon(tx, addon, { runnerId: to.id, host: to.address, port }, note);
        to.load++;
        to.usedPorts.add(port);
        actions.push(`place ${addon.name} on ${to.id}:${port} (${note})`);
        logPlacement(this.log, addon, to.id, port, note);
      }
      return actions;
    });
    if (done.length > 0) this.log.info({ actions: done }, 'add-ons placed');
  }
}

function logPlacement(log: Logger, addon: Addon, runnerId: string, port: number, note: string): void {
  log.info({ addon: addon.name, app: addon.appName, from: addon.runnerId, to: runnerId, port, generation: addon.generation + 1, note }, 'add-on server placed');
}

/** The runner that runs the least (ties: by id, so placements are predictable). */
export function pickRunner(runners: AddonRunner[]): AddonRunner | undefined {
  return [...runners].sort((a, b) => a.load - b.load || a.id.localeCompare(b.id))[0];
}

/** A free port of the runner's add-on range, at random (a port another process squats fails the start, and is retried). */
export function pickPort(runner: AddonRunner): number | undefined {
  const size = runner.portMax - runner.portMin + 1;
  if (size <= 0) return undefined;
  for (let attempt = 0; attempt < 32; attempt++) {
    const port = runner.portMin + randomInt(size);
    if (!runner.usedPorts.has(port)) return port;
  }
  for (let port = runner.portMin; port <= runner.portMax; port++) if (!runner.usedPorts.has(port)) return port;
  return undefined;
}
