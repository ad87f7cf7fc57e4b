import { describe, expect, it } from 'vitest';
import { plan, type SchedApp, type SchedInstance } from '../../src/nexus/scheduler.js';

const options = { startTimeoutMs: 60_000, mayForget: true };
const runners = (...ids: string[]) => ids.map((id) => ({ id, isAlive: true }));
const app = (over: Partial<SchedApp> = {}): SchedApp => ({ id: 1, name: 'ph', scale: 2, targetReleaseId: 2, liveReleaseId: 1, releasePhase: 'pending', ...over });
const inst = (over: Partial<SchedInstance>): SchedInstance => ({
  id: 'i', appId: 1, releaseId: 2, runnerId: 'r1', state: 'ready', error: null, ageMs: 1000, ...over,
});
const old = [inst({ id: 'old-1', releaseId: 1, runnerId: 'r1' }), inst({ id: 'old-2', releaseId: 1, runnerId: 'r2' })];

describe('release phase gate (scheduler plan)', () => {
  it('places one release task, on one runner, and nothing else of the release while its phase is pending', () => {
    expect(plan([app()], old, runners('r1', 'r2'), options)).toEqual([
      { kind: 'place', appId: 1, releaseId: 2, runnerId: 'r1', processType: 'release' },
    ]);
  });

  it('waits for a running task: no second task, no web instance, the live release keeps serving', () => {
    const task = inst({ id: 'task', processType: 'release', state: 'starting' });
    expect(plan([app()], [...old, task], runners('r1', 'r2'), options)).toEqual([]);
  });

  it('never fails a slow release phase by the instance start time-out (the runner bounds it)', () => {
    const task = inst({ id: 'task', processType: 'release', state: 'starting', ageMs: 10 * 60_000 });
    expect(plan([app()], [...old, task], runners('r1', 'r2'), options)).toEqual([]);
  });

  it('marks the phase done, stops the task and places the release in the same pass once the task exited 0', () => {
    const task = inst({ id: 'task', processType: 'release', state: 'ready' });
    const actions = plan([app()], [...old, task], runners('r1', 'r2'), options);
    expect(actions.slice(0, 2)).toEqual([{ kind: 'phaseDone', appId: 1, releaseId: 2 }, { kind: 'stop', instanceId: 'task' }]);
    expect(actions.slice(2).filter((a) => a.kind === 'place')).toHaveLength(2);
    expect(actions.some((a) => a.kind === 'live')).toBe(false);
  });

  it('fails the release with the task\'s output and stops only the task when the phase failed', () => {
    const task = inst({ id: 'task', processType: 'release', state: 'failed', error: 'release phase failed (exit code 3):\nboom' });
    expect(plan([app()], [...old, task], runners('r1', 'r2'), options)).toEqual([
      { kind: 'phaseFailed', appId: 1, releaseId: 2, error: 'release phase failed (exit code 3):\nboom' },
      { kind: 'stop', instanceId: 'task' },
    ]);
  });

  it('places the task again elsewhere when its runner died (it was forgotten)', () => {
    const task = inst({ id: 'task', processType: 'release', state: 'starting', runnerId: 'r2' });
    const actions = plan([app()], [old[0]!, task], [{ id: 'r1', isAlive: true }, { id: 'r2', isAlive: false }], options);
    expect(actions).toEqual([
      { kind: 'forget', instanceId: 'task' },
      { kind: 'place', appId: 1, releaseId: 2, runnerId: 'r1', processType: 'release' },
    ]);
  });

  it('runs no phase for a release without one (or once it is done), and stops a leftover task', () => {
    const leftover = inst({ id: 'task', processType: 'release', state: 'ready', releaseId: 2 });
    for (const releasePhase of [null, 'done'] as const) {
      const actions = plan([app({ releasePhase })], [...old, leftover], runners('r1', 'r2'), options);
      expect(actions[0]).toEqual({ kind: 'stop', instanceId: 'task' });
      expect(actions.filter((a) => a.kind === 'place' && a.processType === undefined)).toHaveLength(2);
    }
  });

  it('runs a promoted stage release\'s phase before it goes live, its warm stage instance waiting', () => {
    const warm = inst({ id: 'stage-1', releaseId: 2, state: 'ready' });
    const promoted = app({ scale: 1, stageReleaseId: 1, targetReleaseId: 2 });
    expect(plan([promoted], [old[0]!, warm], runners('r1', 'r2'), options)).toEqual([
      { kind: 'place', appId: 1, releaseId: 2, runnerId: 'r2', processType: 'release' },
    ]);
    const done = inst({ id: 'task', releaseId: 2, processType: 'release', state: 'ready', runnerId: 'r2' });
    expect(plan([promoted], [old[0]!, warm, done], runners('r1', 'r2'), options)).toEqual([
      { kind: 'phaseDone', appId: 1, releaseId: 2 },
      { kind: 'stop', instanceId: 'task' },
      { kind: 'live', appId: 1, releaseId: 2 },
    ]);
  });

  it('places nothing when no runner is alive', () => {
    expect(plan([app()], [], [{ id: 'r1', isAlive: false }], options)).toEqual([]);
  });
});
