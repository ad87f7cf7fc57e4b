/** Runs the scheduler on the leader: on a timer and when woken, reads the state, plans, applies in one transaction. */
import type pg from 'pg';
import type { Logger } from 'pino';
import {
  failRelease, failReleasePhase, failStage, finishReleasePhase, forgetInstance, markStaged, routeInstance, tendDeployLocks, loadSchedulingState, lockScheduling, makeLive, placeInstance, setNodeDown, stopInstance, withTransaction,
} from '../db/index.js';
import { Coalesced } from '../core/coalesce.js';
import type { NodeLiveness } from '../core/liveness.js';
import { plan, type Action } from './scheduler.js';
import { placeSingleton, withProcessTypes } from './formation-state.js';

export interface SchedulerLoopOptions {
  pool: pg.Pool;
  isLeader: () => boolean;
  /** The one liveness rule, with the heartbeats this replica received. */
  liveness: NodeLiveness;
  intervalMs: number;
  /** An instance not ready this long after assignment fails its deploy. */
  startTimeoutMs: number;
  /** How long a new live release is watched (the previous one kept running) by the live-traffic verdict. @default 0 */
  verdictWindowMs?: number;
  /** Lease of the deploy locks the API takes; the leader renews them at half. @default 60000 */
  deployLockLeaseMs?: number;
  /** How often the leader compares heartbeat times with the dead-after budget (cheap: in memory). @default 100 */
  livenessCheckMs?: number;
  /** Lease of a singleton process type's instance (see db/singletons.ts). @default 4000 */
  singletonLeaseMs?: number;
  log: Logger;
}

export class SchedulerLoop {
  private timer: NodeJS.Timeout | undefined;
  private watcher: NodeJS.Timeout | undefined;
  /** Nodes this replica last saw as alive, to run a pass as soon as one crosses the dead-after budget. */
  private aliveSeen = new Set<string>();
  private readonly passes = new Coalesced(
    () => this.pass(),
    (err) => this.log.warn({ err: err.message }, 'scheduling pass failed; will retry'),
  );
  private leaderSince: number | undefined;
  private readonly log: Logger;

  constructor(private readonly options: SchedulerLoopOptions) {
    this.log = options.log.child({ component: 'nexus.scheduler' });
  }

  start(): void {
    this.timer = setInterval(() => this.kick(), this.options.intervalMs);
    this.watcher = setInterval(() => this.watchLiveness(), this.options.livenessCheckMs ?? 100);
  }

  /**
   * A node's death is noticed within one check of its budget running out, not at the next scheduling pass:
   * the pass that forgets its instances (and takes its backends out of rotation) runs right away.
   */
  private watchLiveness(): void {
    if (!this.options.isLeader()) return;
    const alive = this.options.liveness.aliveInMemory();
    const isChanged = alive.size !== this.aliveSeen.size || [...alive].some((id) => !this.aliveSeen.has(id));
    this.aliveSeen = alive;
    if (isChanged) this.kick();
  }

  /** Runs a pass now (or right after the current one). */
  kick(): void {
    if (!this.options.isLeader()) {
      this.leaderSince = undefined;
      return;
    }
    this.leaderSince ??= Date.now();
    this.passes.kick();
  }

  private async pass(): Promise<void> {
    const { liveness } = this.options;
    const { deadAfterMs } = liveness;
    const now = Date.now();
    // Right after taking over, heartbeats from every runner may not have arrived yet: keep their instances.
    const mayForget = now - (this.leaderSince ?? now) > deadAfterMs * 2;
    const actions = await withTransaction(this.options.pool, async (tx) => {
      await lockScheduling(tx);
      for (const lost of await tendDeployLocks(tx, this.options.deployLockLeaseMs ?? 60_000)) {
        await failRelease(tx, lost.appId, lost.releaseId, lost.reason);
        this.log.warn({ appId: lost.appId, releaseId: lost.releaseId, reason: lost.reason }, 'deploy lock lost');
      }
      const state = await withProcessTypes(tx, await loadSchedulingState(tx));
      const runners = state.nodes.filter((n) => n.kind === 'runner')
        .map((r) => ({ id: r.id, isAlive: liveness.isAlive(r.id, r.lastHeartbeatAt, now), isDraining: r.isDraining }));
      const planned = plan(state.apps, state.instances, runners, {
        startTimeoutMs: this.options.startTimeoutMs, mayForget, keepsPreviousLive: (this.options.verdictWindowMs ?? 0) > 0,
      });
      for (const action of planned) await apply(tx, action, this.options.verdictWindowMs ?? 0, this.options.singletonLeaseMs ?? 4000);
      // Node liveness as events (node.down / node.up), recorded once by whichever replica leads.
      for (const node of state.nodes) {
        const isDown = !liveness.isAlive(node.id, node.lastHeartbeatAt, now);
        if (isDown !== node.isMarkedDown && (!isDown || mayForget)) {
          await setNodeDown(tx, node.id, node.kind, isDown);
          this.log.info({ node: node.id, kind: node.kind, silentMs: now - (liveness.newestBeat(node.id, node.lastHeartbeatAt) ?? 0) }, isDown ? 'node down' : 'node up');
        }
      }
      return planned;
    });
    if (actions.length > 0) this.log.info({ actions: actions.map(describe) }, 'scheduled');
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    clearInterval(this.watcher);
    await this.passes.idle();
  }
}

async function apply(tx: pg.PoolClient, action: Action, verdictWindowMs: number, singletonLeaseMs: number): Promise<void> {
  switch (action.kind) {
    case 'place':
      if (action.singleton) return placeSingleton(tx, action, singletonLeaseMs);
      await placeInstance(tx, action.appId, action.releaseId, action.runnerId, action.processType ?? 'web', action.name ?? null);
      return;
    case 'phaseDone':
      return finishReleasePhase(tx, action.releaseId);
    case 'phaseFailed':
      return failReleasePhase(tx, action.appId, action.releaseId, action.error);
    case 'stop':
      return stopInstance(tx, action.instanceId);
    case 'forget':
      return forgetInstance(tx, action.instanceId);
    case 'live':
      // A rolling deploy retired the old instances already: there is nothing warm to switch back to.
      return makeLive(tx, action.appId, action.releaseId, action.isRolling ? 0 : verdictWindowMs);
    case 'route':
      return routeInstance(tx, action.instanceId);
    case 'fail':
      return failRelease(tx, action.appId, action.releaseId, action.error);
    case 'staged':
      return markStaged(tx, action.appId, action.releaseId);
    case 'failStage':
      return failStage(tx, action.appId, action.releaseId, action.error);
  }
}

function describe(action: Action): string {
  switch (action.kind) {
    case 'place':
      return `place app ${action.appId} release ${action.releaseId} on ${action.runnerId}`;
    case 'stop':
    case 'forget':
      return `${action.kind} ${action.instanceId}`;
    case 'live':
      return `live app ${action.appId} release ${action.releaseId}`;
    case 'route':
      return `route ${action.instanceId}`;
    case 'fail':
      return `fail app ${action.appId} release ${action.releaseId}`;
    case 'staged':
      return `staged app ${action.appId} release ${action.releaseId}`;
    case 'failStage':
      return `fail stage of app ${action.appId} release ${action.releaseId}`;
    case 'phaseDone':
      return `release phase done: app ${action.appId} release ${action.releaseId}`;
    case 'phaseFailed':
      return `release phase failed: app ${action.appId} release ${action.releaseId}`;
  }
}
