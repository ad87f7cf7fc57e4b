/**
 * The release-phase gate of the scheduler, pure: while a deploy's target release has its release phase pending,
 * nothing of it is placed but its one `release` task (on one live runner); the task's runner runs the Procfile's
 * `release:` command and reports the task `ready` (exit 0) or `failed`. Ready: the phase is done and the
 * ordinary placement goes on in the same pass. Failed: the release fails with the command's last lines and the
 * app stays on its live release (nothing public changed). A task whose runner died is forgotten by the plan and
 * placed again here (a release command must be safe to run again, as on Heroku). Tasks of other releases stop.
 */
import type { Action, SchedApp, SchedInstance } from './scheduler.js';

/** The process type of the release phase's task. */
export const RELEASE_TASK = 'release';

export interface PhaseGate {
  actions: Action[];
  /** True while the phase holds the deploy: plan places nothing else for the app this pass. */
  isHolding: boolean;
}

/**
 * @param instances the app's instances (of every release and type) on live runners
 * @param place places the task of `releaseId` on a runner it picks; false when no runner is alive
 */
export function releasePhaseGate(app: SchedApp, instances: readonly SchedInstance[], place: (releaseId: number) => boolean): PhaseGate {
  const actions: Action[] = [];
  const tasks = instances.filter((i) => i.processType === RELEASE_TASK && i.state !== 'stopping');
  const target = app.targetReleaseId;
  const isGated = target !== null && target !== app.liveReleaseId && app.releasePhase === 'pending';
  for (const task of tasks) {
    if (!isGated || task.releaseId !== target) actions.push({ kind: 'stop', instanceId: task.id });
  }
  if (!isGated) return { actions, isHolding: false };
  const mine = tasks.filter((t) => t.releaseId === target);
  const failed = mine.find((t) => t.state === 'failed');
  if (failed) {
    actions.push({ kind: 'phaseFailed', appId: app.id, releaseId: target, error: failed.error ?? 'the release phase failed' });
    for (const t of mine) actions.push({ kind: 'stop', instanceId: t.id });
    return { actions, isHolding: true };
  }
  const done = mine.find((t) => t.state === 'ready');
  if (done) {
    actions.push({ kind: 'phaseDone', appId: app.id, releaseId: target });
    for (const t of mine) actions.push({ kind: 'stop', instanceId: t.id });
    return { actions, isHolding: false };
  }
  if (mine.length === 0) place(target);
  return { actions, isHolding: true };
}
