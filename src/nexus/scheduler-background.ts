/**
 * The scheduler's decisions for background process types (Procfile `worker:`, `clock:` …), pure. Workers run from
 * the app's live release only: they do not gate a deploy (there is no HTTP to probe) and do not start beside the
 * old release's workers. At the switch the old release's workers are stopped (SIGTERM, then the runner's grace),
 * and a type's new workers are placed once none of its old ones is left — Heroku's order (stop, then start), so two
 * versions of a worker never consume the same queue or run against a schema the other does not expect.
 *
 * Each instance gets a per-app, per-type name `type.N` (lowest free N), the name logs, `pier ps` and `ps:stop` use.
 * A type's instances spread over live runners (fewest of that type, then fewest of anything); one whose runner
 * died is forgotten by the caller and placed again here.
 */
import type { Action, SchedApp, SchedInstance } from './scheduler.js';

/** The type of an instance (rows from before process types are web). */
export function typeOf(instance: Pick<SchedInstance, 'processType'>): string {
  return instance.processType ?? 'web';
}

/** Lowest free `type.N` given the names in use. */
export function nextName(type: string, used: ReadonlySet<string>): string {
  for (let n = 1; ; n++) if (!used.has(`${type}.${n}`)) return `${type}.${n}`;
}

/** The N of `type.N` (0 for anything else), to stop the highest-numbered instances first on scale-down. */
function ordinal(instance: SchedInstance): number {
  const match = /\.(\d+)$/.exec(instance.name ?? '');
  return match ? Number(match[1]) : 0;
}

export interface BackgroundContext {
  /** Live runner ids that are not draining, sorted: where new instances go. */
  alive: string[];
  /** Draining runners: their background instances stop, then start again elsewhere (when there is an elsewhere). @default none */
  draining?: ReadonlySet<string>;
  /** Instances per runner (all apps), updated as instances are placed. */
  load: Map<string, number>;
}

/**
 * Background actions for one app. `runId` is the release whose workers should run (the live release, or the
 * target when this pass switches to it); `instances` are the app's background instances on live runners.
 */
export function planBackground(app: SchedApp, runId: number | null, instances: SchedInstance[], ctx: BackgroundContext): Action[] {
  const actions: Action[] = [];
  const stop = (list: SchedInstance[]): void => {
    for (const i of list) if (i.state !== 'stopping') actions.push({ kind: 'stop', instanceId: i.id });
  };
  const stale = instances.filter((i) => i.releaseId !== runId);
  stop(stale);
  if (runId === null) return actions;
  const types = app.processTypes?.[runId] ?? [];
  const formation = app.formation ?? {};
  for (const type of new Set([...types, ...instances.filter((i) => i.releaseId === runId).map(typeOf)])) {
    const all = instances.filter((i) => typeOf(i) === type);
    const current = all.filter((i) => i.releaseId === runId && i.state !== 'stopping');
    // A worker the runner gave up on (its release cannot be prepared, say) is replaced, possibly elsewhere.
    const broken = current.filter((i) => i.state === 'failed');
    stop(broken);
    // On a draining runner: stopped now, placed elsewhere below (a singleton once it is gone: its lease fences it).
    const leaving = ctx.alive.length > 0 ? current.filter((i) => i.state !== 'failed' && ctx.draining?.has(i.runnerId) === true) : [];
    stop(leaving);
    const healthy = current.filter((i) => i.state !== 'failed' && !leaving.includes(i));
    const isSingleton = app.singletons?.includes(type) === true;
    const want = types.includes(type) ? Math.min(isSingleton ? 1 : Infinity, Math.max(0, formation[type] ?? 0)) : 0;
    if (healthy.length > want) {
      stop([...healthy].sort((a, b) => ordinal(b) - ordinal(a)).slice(0, healthy.length - want));
      continue;
    }
    // Stop, then start: nothing of this type from another release may still run (or be stopping); for a singleton,
    // nothing of it at all (its lease, checked when the placement is applied, is the fence; this saves the attempt).
    if (healthy.length === want || all.some((i) => i.releaseId !== runId || (isSingleton && !healthy.includes(i)))) continue;
    const used = new Set(all.filter((i) => !broken.includes(i) && !leaving.includes(i)).map((i) => i.name).filter((n): n is string => typeof n === 'string'));
    const perRunner = new Map<string, number>();
    for (const i of healthy) perRunner.set(i.runnerId, (perRunner.get(i.runnerId) ?? 0) + 1);
    for (let n = healthy.length; n < want; n++) {
      const runnerId = pick(ctx, perRunner);
      if (runnerId === undefined) break;
      const name = nextName(type, used);
      used.add(name);
      perRunner.set(runnerId, (perRunner.get(runnerId) ?? 0) + 1);
      ctx.load.set(runnerId, (ctx.load.get(runnerId) ?? 0) + 1);
      // A singleton is placed only once its lease is free (checked, and taken, when the action is applied).
      actions.push({ kind: 'place', appId: app.id, releaseId: runId, runnerId, processType: type, name, ...(isSingleton ? { singleton: true } : {}) });
    }
  }
  return actions;
}

/** The live runner with the fewest instances of this type, then the fewest overall, then by id. */
function pick(ctx: BackgroundContext, perRunner: Map<string, number>): string | undefined {
  let best: string | undefined;
  for (const id of ctx.alive) {
    if (best === undefined) {
      best = id;
      continue;
    }
    const a = perRunner.get(id) ?? 0;
    const b = perRunner.get(best) ?? 0;
    if (a < b || (a === b && (ctx.load.get(id) ?? 0) < (ctx.load.get(best) ?? 0))) best = id;
  }
  return best;
}
