/**
 * The scheduler's decisions, pure: given apps, instances and runners, what to place, stop, forget, switch live
 * or fail. Deploys are blue/green: the new release's instances start beside the old ones, routes switch only
 * when all of them are ready, and only then are the old ones stopped. A release whose instance fails (or does
 * not become ready in time) is marked failed and the app's target goes back to the live release. The stage slot
 * holds one instance of its release beside them (unless that release is the target or live one).
 *
 * A draining runner (`pier nodes:drain`) gets nothing new. Its web instances are replaced: new ones start on other
 * runners, and the drained ones stop once the app has as many ready elsewhere as it wants, so the app keeps serving
 * throughout. Its background instances stop first and start again elsewhere (scheduler-background.ts). With no
 * other runner to go to, what runs there stays. A rolling deploy still rolls through a drained runner; the moves
 * come after it.
 */
import type { InstanceState } from '../protocol/index.js';
import { RELEASE_TASK, releasePhaseGate } from './release-phase.js';
import { planBackground, typeOf } from './scheduler-background.js';

export interface SchedApp {
  id: number;
  name: string;
  scale: number;
  targetReleaseId: number | null;
  liveReleaseId: number | null;
  /** Release on the stage slot, if any (it may be the live release right after a promote). */
  stageReleaseId?: number | null;
  /** The stage release has not had a ready instance yet. */
  isStagePending?: boolean;
  /** The previous live release, kept running during the new one's live-traffic verdict. */
  keptReleaseId?: number | null;
  /** The target release deploys runner by runner instead of blue/green. */
  isRolling?: boolean;
  /** The target release's release phase (null or absent: none to run). */
  releasePhase?: 'pending' | 'done' | 'failed' | null;
  /** The target release has a web process (else no web instance runs, whatever `scale` says). @default true */
  hasWeb?: boolean;
  /** Background types each release has (release id → types), for the releases that may run. @default none */
  processTypes?: Record<number, string[]>;
  /** Desired count of each background type (no entry = 0). @default none */
  formation?: Record<string, number>;
  /** Background types that run at most once across the cluster, fenced by a lease. @default none */
  singletons?: string[];
}

export interface SchedInstance {
  id: string;
  appId: number;
  releaseId: number;
  runnerId: string;
  state: InstanceState;
  error: string | null;
  /** Time since the instance was assigned. */
  ageMs: number;
  /** Routed before its release is live (a rolling deploy's ready instance). */
  isRouted?: boolean;
  /** `web` (absent: web), a background type, or `release` (the release phase's task). @default 'web' */
  processType?: string;
  /** Its per-app, per-type name (`web.1`, `worker.2`); null for rows from before names. */
  name?: string | null;
}

export interface SchedRunner {
  id: string;
  isAlive: boolean;
  /** An operator drains it: nothing new is placed there, what runs there moves. @default false */
  isDraining?: boolean;
}

export type Action =
  | { kind: 'place'; appId: number; releaseId: number; runnerId: string; processType?: string; name?: string; singleton?: boolean }
  | { kind: 'phaseDone'; appId: number; releaseId: number }
  | { kind: 'phaseFailed'; appId: number; releaseId: number; error: string }
  | { kind: 'stop'; instanceId: string }
  | { kind: 'forget'; instanceId: string }
  | { kind: 'live'; appId: number; releaseId: number; isRolling?: boolean }
  | { kind: 'route'; instanceId: string }
  | { kind: 'fail'; appId: number; releaseId: number; error: string }
  | { kind: 'staged'; appId: number; releaseId: number }
  | { kind: 'failStage'; appId: number; releaseId: number; error: string };

export interface PlanOptions {
  /** An instance not ready this long after assignment has failed. */
  startTimeoutMs: number;
  /** False right after becoming leader, before liveness is known: instances on silent runners are kept. */
  mayForget: boolean;
  /** The live-traffic verdict is on: at a switch the previous live release keeps running (for a quick revert). */
  keepsPreviousLive?: boolean;
}

export function plan(apps: SchedApp[], instances: SchedInstance[], runners: SchedRunner[], options: PlanOptions): Action[] {
  const actions: Action[] = [];
  const alive = runners.filter((r) => r.isAlive).map((r) => r.id).sort();
  const aliveSet = new Set(alive);
  const draining = new Set(runners.filter((r) => r.isAlive && r.isDraining === true).map((r) => r.id));
  // Where new instances may go: live runners that are not draining.
  const placeable = alive.filter((id) => !draining.has(id));
  // Load per runner, updated as we place, so one pass spreads instances.
  const load = new Map<string, number>(alive.map((id) => [id, 0]));
  const appLoad = new Map<string, number>();
  const kept: SchedInstance[] = [];
  for (const instance of instances) {
    if (!aliveSet.has(instance.runnerId) && options.mayForget) {
      actions.push({ kind: 'forget', instanceId: instance.id });
      continue;
    }
    kept.push(instance);
    load.set(instance.runnerId, (load.get(instance.runnerId) ?? 0) + 1);
    const key = `${instance.appId}/${instance.runnerId}`;
    appLoad.set(key, (appLoad.get(key) ?? 0) + 1);
  }
  for (const app of apps) {
    const all = kept.filter((i) => i.appId === app.id);
    // While the target's release phase runs, nothing else of the app changes (release-phase.ts).
    const gate = releasePhaseGate(app, all, (releaseId) => {
      const runnerId = pickRunner(placeable, load, appLoad, app.id);
      if (runnerId !== undefined) actions.push({ kind: 'place', appId: app.id, releaseId, runnerId, processType: RELEASE_TASK });
      return runnerId !== undefined;
    });
    actions.push(...gate.actions);
    if (gate.isHolding) continue;
    const running = all.filter((i) => i.processType !== RELEASE_TASK);
    const mine = running.filter((i) => typeOf(i) === 'web');
    const background = running.filter((i) => typeOf(i) !== 'web');
    const before = actions.length;
    actions.push(...planWeb(app, mine, { placeable, aliveSet, draining, load, appLoad, options }));
    const wentLive = actions.slice(before).some((a) => a.kind === 'live' && a.appId === app.id);
    const runId = app.targetReleaseId === null ? null : wentLive ? app.targetReleaseId : app.liveReleaseId;
    actions.push(...planBackground(app, runId, background, { alive: placeable, load, draining }));
  }
  return actions;
}

interface WebContext {
  /** Live runners that are not draining, sorted: where new instances go. */
  placeable: string[];
  aliveSet: ReadonlySet<string>;
  draining: ReadonlySet<string>;
  load: Map<string, number>;
  appLoad: Map<string, number>;
  options: PlanOptions;
}

/** The web instances of one app: blue/green or rolling deploys, the stage slot, scale. */
function planWeb(app: SchedApp, mine: SchedInstance[], { placeable, aliveSet, draining, load, appLoad, options }: WebContext): Action[] {
  const actions: Action[] = [];
  const scale = app.hasWeb === false ? 0 : app.scale;
  {
    const stop = (list: SchedInstance[]): void => {
      for (const i of list) if (i.state !== 'stopping') actions.push({ kind: 'stop', instanceId: i.id });
    };
    if (app.targetReleaseId === null) {
      stop(mine);
      return actions;
    }
    const pick = (): string | undefined => pickRunner(placeable, load, appLoad, app.id);
    /** Places an instance of `releaseId` on `runnerId`, counting it so the rest of the pass spreads around it. */
    const place = (releaseId: number, runnerId: string): void => {
      // Web instances get their `web.N` name when the row is written (placeInstance), lowest free then.
      actions.push({ kind: 'place', appId: app.id, releaseId, runnerId });
      load.set(runnerId, (load.get(runnerId) ?? 0) + 1);
      appLoad.set(`${app.id}/${runnerId}`, (appLoad.get(`${app.id}/${runnerId}`) ?? 0) + 1);
    };
    const stageId = app.stageReleaseId ?? null;
    const isStageOwn = stageId !== null && stageId !== app.targetReleaseId && stageId !== app.liveReleaseId;
    if (isStageOwn) {
      actions.push(...planStage(app, stageId, mine.filter((i) => i.releaseId === stageId), options, (runnerId) => place(stageId, runnerId), pick));
    }
    const target = mine.filter((i) => i.releaseId === app.targetReleaseId && i.state !== 'stopping');
    // The stage release's instances are not leftovers of an old deploy (after a promote, the old live release
    // is on stage: it keeps serving live until the switch, then keeps one instance for stage).
    const keptId = app.keptReleaseId ?? null;
    const others = mine.filter((i) => i.releaseId !== app.targetReleaseId && i.releaseId !== stageId && i.releaseId !== keptId);
    const isDeploying = app.targetReleaseId !== app.liveReleaseId;
    const broken = target.filter((i) => isBroken(i, options));
    if (broken.length > 0 && isDeploying) {
      actions.push({ kind: 'fail', appId: app.id, releaseId: app.targetReleaseId, error: brokenReason(broken[0]!, options) });
      stop(target);
      return actions;
    }
    stop(broken); // a live release's instance that died: replaced below
    const healthy = target.filter((i) => !broken.includes(i));
    if (app.isRolling && isDeploying && app.liveReleaseId !== null) {
      const old = mine.filter((i) => i.releaseId === app.liveReleaseId && i.state !== 'stopping');
      const targetId = app.targetReleaseId;
      actions.push(...planRolling({ ...app, scale }, healthy, old, (runnerId) => place(targetId, runnerId), aliveSet, pick));
      return actions;
    }
    // Instances on draining runners are replaced, unless there is nowhere else to go: they count only then.
    const leaving = placeable.length > 0 ? healthy.filter((i) => draining.has(i.runnerId)) : [];
    const staying = healthy.filter((i) => !leaving.includes(i));
    if (staying.length < scale) {
      for (let n = staying.length; n < scale; n++) {
        const runnerId = pick();
        if (runnerId === undefined) break;
        place(app.targetReleaseId, runnerId);
      }
    } else if (staying.length > scale) {
      const rank = (i: SchedInstance): number => (i.state === 'ready' ? 1 : 0);
      const extras = [...staying].sort((a, b) => rank(a) - rank(b) || a.ageMs - b.ageMs).slice(0, staying.length - scale);
      stop(extras);
    }
    // The drained ones stop once as many as the app wants are ready elsewhere (or it wants none).
    if (leaving.length > 0 && staying.filter((i) => i.state === 'ready').length >= scale) stop(leaving);
    const readyCount = healthy.filter((i) => i.state === 'ready').length;
    if (isDeploying && readyCount >= scale && broken.length === 0) {
      actions.push({ kind: 'live', appId: app.id, releaseId: app.targetReleaseId });
      stop(options.keepsPreviousLive ? others.filter((i) => i.releaseId !== app.liveReleaseId) : others);
    } else if (!isDeploying) {
      stop(others);
    }
  }
  return actions;
}

/**
 * One step of a rolling deploy: a runner at a time, new instances are started beside that runner's old ones,
 * routed as soon as they are ready, and then the old ones are retired (drained); the next runner starts only when
 * nothing is in progress. When no old instance is left, the release goes live (routing by release from then on).
 * A failed new instance fails the whole deploy before this step is reached (see plan), which stops the new
 * instances and lets the ordinary path put back the old ones it retired.
 */
function planRolling(
  app: SchedApp, fresh: SchedInstance[], old: SchedInstance[], place: (runnerId: string) => void,
  alive: ReadonlySet<string>, pick: () => string | undefined,
): Action[] {
  const actions: Action[] = [];
  const ready = fresh.filter((i) => i.state === 'ready');
  for (const i of ready) if (!i.isRouted) actions.push({ kind: 'route', instanceId: i.id });
  const count = (list: SchedInstance[], runnerId: string): number => list.filter((i) => i.runnerId === runnerId).length;
  const remaining: SchedInstance[] = [];
  for (const runnerId of [...new Set(old.map((i) => i.runnerId))].sort()) {
    const olds = old.filter((i) => i.runnerId === runnerId);
    // Retired once as many new instances are ready (and routed, above) on the same runner.
    if (count(ready, runnerId) >= olds.length) for (const i of olds) actions.push({ kind: 'stop', instanceId: i.id });
    else remaining.push(...olds);
  }
  const isInProgress = fresh.some((i) => i.state !== 'ready');
  if (remaining.length > 0) {
    if (!isInProgress) {
      const runnerId = remaining[0]!.runnerId;
      const need = count(remaining, runnerId) - count(fresh, runnerId);
      // A dead runner's old instances are replaced wherever there is room.
      for (let n = 0; n < need; n++) {
        const where = alive.has(runnerId) ? runnerId : pick();
        if (where !== undefined) place(where);
      }
    }
    return actions;
  }
  if (fresh.length < app.scale) {
    if (!isInProgress) {
      const where = pick();
      if (where !== undefined) place(where);
    }
  } else if (!isInProgress) {
    actions.push({ kind: 'live', appId: app.id, releaseId: app.targetReleaseId!, isRolling: true });
  }
  return actions;
}

/**
 * One instance of the stage release: placed, replaced when it dies, extras stopped; the release is 'staged' once
 * it is ready, or failed (leaving the stage slot) when its first instance fails or does not start in time.
 */
function planStage(
  app: SchedApp, stageId: number, instances: SchedInstance[], options: PlanOptions, place: (runnerId: string) => void, pick: () => string | undefined,
): Action[] {
  const actions: Action[] = [];
  const stop = (list: SchedInstance[]): void => {
    for (const i of list) if (i.state !== 'stopping') actions.push({ kind: 'stop', instanceId: i.id });
  };
  const current = instances.filter((i) => i.state !== 'stopping');
  const broken = current.filter((i) => isBroken(i, options));
  if (broken.length > 0 && app.isStagePending) {
    actions.push({ kind: 'failStage', appId: app.id, releaseId: stageId, error: brokenReason(broken[0]!, options) });
    stop(current);
    return actions;
  }
  stop(broken);
  const healthy = current.filter((i) => !broken.includes(i));
  if (healthy.length === 0) {
    const runnerId = pick();
    if (runnerId !== undefined) place(runnerId);
  } else if (healthy.length > 1) {
    const rank = (i: SchedInstance): number => (i.state === 'ready' ? 1 : 0);
    stop([...healthy].sort((a, b) => rank(b) - rank(a) || b.ageMs - a.ageMs).slice(1));
  }
  if (app.isStagePending && healthy.some((i) => i.state === 'ready')) actions.push({ kind: 'staged', appId: app.id, releaseId: stageId });
  return actions;
}

/** An instance that failed, or was not ready within the start time-out. */
function isBroken(instance: SchedInstance, options: PlanOptions): boolean {
  return instance.state === 'failed' || (instance.state !== 'ready' && instance.ageMs > options.startTimeoutMs);
}

/** Why a broken instance failed its release: its own error, or the time-out. */
function brokenReason(instance: SchedInstance, options: PlanOptions): string {
  return instance.state === 'failed' ? (instance.error ?? 'instance failed') : `instance did not become ready in ${Math.round(options.startTimeoutMs / 1000)} s`;
}

/** The live runner with the fewest instances of this app, then the fewest overall, then by id. */
function pickRunner(alive: string[], load: Map<string, number>, appLoad: Map<string, number>, appId: number): string | undefined {
  let best: string | undefined;
  for (const id of alive) {
    if (best === undefined) {
      best = id;
      continue;
    }
    const a = appLoad.get(`${appId}/${id}`) ?? 0;
    const b = appLoad.get(`${appId}/${best}`) ?? 0;
    if (a < b || (a === b && (load.get(id) ?? 0) < (load.get(best) ?? 0))) best = id;
  }
  return best;
}
