/**
 * The remediation ladder and alerts, as pure decisions (no I/O): given each app's serving instances with their
 * newest health, what to do now. The leader's HealthLoop (health-loop.ts) reads the state, calls `decide` and
 * applies the actions in one transaction.
 *
 * The ladder, for an unhealthy instance, one rung per check interval:
 *   1 out-of-rotation — balancers stop routing it (never the app's last serving instance: see below);
 *   2 rewrite         — its runner writes its vassal again from its record (uWSGI reloads it);
 *   3 restart         — its runner stops and starts its vassal;
 *   4 move            — it is stopped and a replacement is placed on another runner (the same one if none other).
 * Healthy again at any rung: back into rotation, off the ladder. At most one instance of an app is on the ladder
 * at a time, and none while the app is deploying. The app's last serving instance stays in rotation whatever
 * happens: out of it, every request gets a 503, which helps no one. While it still answers it is left alone (its
 * alert stays open): even a graceful reload of the only instance refuses requests for a moment, and a check that is
 * wrong for the app must not take it down. One that does not answer at all climbs the other rungs in place
 * (rewrite, restart, move).
 */
import type { LadderAppRow, LadderInstanceRow } from '../db/index.js';
import type { Rung } from '../protocol/index.js';

export type HealthAction =
  | { kind: 'rung'; app: string; appId: number; instance: string; rung: Rung; step: number; reason: string; toRunner?: string }
  | { kind: 'restore'; app: string; instance: string; reason: string }
  | { kind: 'raise'; app: string; instance: string; reason: string }
  | { kind: 'clear'; app: string; alertId: number; why: string };

export interface DecideOptions {
  now: number;
  /** Live runners with their load, for a move: fewest instances of the app, then fewest overall. */
  runners: (appId: number) => ReadonlyArray<{ id: string; appInstances: number; instances: number }>;
}

const STEPS: Rung[] = ['out-of-rotation', 'rewrite', 'restart', 'move'];

/** Whether a health reason is the runner's crash-loop verdict (health-prober.ts). */
function isCrashLoop(reason: string | null | undefined): boolean {
  return reason?.startsWith('crash loop: ') === true;
}

/** Whether an instance takes public traffic now. */
function isServing(i: LadderInstanceRow): boolean {
  return i.state === 'ready' && !i.isOutOfRotation && i.healthy !== false;
}

export function decide(apps: readonly LadderAppRow[], options: DecideOptions): HealthAction[] {
  const actions: HealthAction[] = [];
  for (const app of apps) actions.push(...decideApp(app, options));
  return actions;
}

function decideApp(app: LadderAppRow, options: DecideOptions): HealthAction[] {
  const actions: HealthAction[] = [];
  const web = app.instances.filter((i) => i.processType === 'web');
  // Alerts follow health: one per unhealthy ready instance, cleared when it is healthy again or gone.
  for (const i of web) {
    if (i.healthy === false && i.state === 'ready' && i.alertId === null) {
      actions.push({ kind: 'raise', app: app.name, instance: i.id, reason: i.reason ?? 'unhealthy' });
    } else if (i.healthy === false && i.alertId !== null && isCrashLoop(i.reason) && !isCrashLoop(i.alertReason)) {
      // A crash loop is the sharper diagnosis (a probe may first have caught one of its deaths): the open alert is
      // replaced by one that says so.
      actions.push({ kind: 'clear', app: app.name, alertId: i.alertId, why: 'diagnosed as a crash loop' });
      actions.push({ kind: 'raise', app: app.name, instance: i.id, reason: i.reason! });
    } else if (i.healthy === true && i.alertId !== null) {
      actions.push({ kind: 'clear', app: app.name, alertId: i.alertId, why: 'healthy again' });
    }
  }
  for (const id of app.strayAlerts) actions.push({ kind: 'clear', app: app.name, alertId: id, why: 'the instance was replaced or stopped' });

  for (const i of web) {
    if ((i.rung > 0 || i.isOutOfRotation) && i.healthy === true) {
      actions.push({ kind: 'restore', app: app.name, instance: i.id, reason: 'healthy again' });
    }
  }
  if (app.isDeploying) return actions;
  const onLadder = web.find((i) => i.rung > 0 && i.healthy !== true);
  if (onLadder) {
    const next = nextRung(app, onLadder, web, options);
    if (next) actions.push(next);
    return actions;
  }
  const sick = web.find((i) => i.state === 'ready' && i.healthy === false);
  if (sick) {
    const next = nextRung(app, sick, web, options);
    if (next) actions.push(next);
  }
  return actions;
}

/** The instance's next rung, or undefined when it must wait (too soon, or it is the last one serving). */
function nextRung(app: LadderAppRow, i: LadderInstanceRow, web: readonly LadderInstanceRow[], options: DecideOptions): HealthAction | undefined {
  if (i.rung > 0 && i.rungAt !== null && options.now - i.rungAt < app.intervalMs) return undefined;
  const othersServing = web.some((o) => o.id !== i.id && isServing(o));
  const isKept = !othersServing && i.answers;
  const reason = i.reason ?? 'unhealthy';
  const base = { kind: 'rung' as const, app: app.name, appId: app.appId, instance: i.id, reason };
  if (!i.isOutOfRotation) {
    if (othersServing) return { ...base, rung: 'out-of-rotation', step: Math.max(1, i.rung) };
    if (isKept) return undefined; // the last one serving, still answering: left alone (see the module comment)
  }
  // Out of rotation, or the last one serving and not answering: the next rung past out-of-rotation.
  const step = Math.max(1, i.rung) + 1;
  if (step > STEPS.length) return undefined;
  const rung = STEPS[step - 1]!;
  if (rung !== 'move') return { ...base, rung, step };
  const target = pickRunner(options.runners(app.appId), i.runnerId);
  if (target === undefined) return undefined;
  return { ...base, rung, step, toRunner: target };
}

/** Another live runner (fewest of the app, then fewest overall, then by id), else the instance's own. */
export function pickRunner(runners: ReadonlyArray<{ id: string; appInstances: number; instances: number }>, current: string): string | undefined {
  const others = runners.filter((r) => r.id !== current)
    .sort((a, b) => a.appInstances - b.appInstances || a.instances - b.instances || a.id.localeCompare(b.id));
  return others[0]?.id ?? runners.find((r) => r.id === current)?.id;
}
