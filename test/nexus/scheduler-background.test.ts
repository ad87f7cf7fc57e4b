import { describe, expect, it } from 'vitest';
import { plan, type Action, type SchedApp, type SchedInstance } from '../../src/nexus/scheduler.js';
import { nextName } from '../../src/nexus/scheduler-background.js';

const options = { startTimeoutMs: 60_000, mayForget: true };
const runners = (...ids: string[]) => ids.map((id) => ({ id, isAlive: true }));
/** App 1, live on release 1 (web + worker + clock), formation worker=2. */
const app = (over: Partial<SchedApp> = {}): SchedApp => ({
  id: 1, name: 'wk-jobs', scale: 1, targetReleaseId: 1, liveReleaseId: 1,
  processTypes: { 1: ['worker', 'clock'], 2: ['worker', 'clock'] }, formation: { worker: 2 }, ...over,
});
const web = (over: Partial<SchedInstance>): SchedInstance => ({
  id: 'w', appId: 1, releaseId: 1, runnerId: 'r1', state: 'ready', error: null, ageMs: 1000, processType: 'web', name: 'web.1', ...over,
});
const worker = (over: Partial<SchedInstance>): SchedInstance => ({
  id: 'k', appId: 1, releaseId: 1, runnerId: 'r1', state: 'ready', error: null, ageMs: 1000, processType: 'worker', name: 'worker.1', ...over,
});
const places = (actions: Action[]) => actions.filter((a) => a.kind === 'place' && a.processType !== undefined && a.processType !== 'web');
const stops = (actions: Action[]) => actions.filter((a) => a.kind === 'stop').map((a) => (a as { instanceId: string }).instanceId).sort();

describe('scheduler plan (background process types)', () => {
  it('moves the workers of a draining runner: stopped there, placed elsewhere; a singleton only once it is gone', () => {
    const drained = [{ id: 'r1', isAlive: true, isDraining: true }, { id: 'r2', isAlive: true }];
    const k1 = worker({ id: 'k1', runnerId: 'r1' });
    const k2 = worker({ id: 'k2', runnerId: 'r2', name: 'worker.2' });
    const actions = plan([app()], [web({ runnerId: 'r2' }), k1, k2], drained, options);
    expect(stops(actions)).toEqual(['k1']);
    expect(places(actions)).toEqual([{ kind: 'place', appId: 1, releaseId: 1, runnerId: 'r2', processType: 'worker', name: 'worker.1' }]);
    const clock = worker({ id: 'c1', runnerId: 'r1', processType: 'clock', name: 'clock.1' });
    const single = app({ formation: { clock: 1 }, singletons: ['clock'] });
    const first = plan([single], [web({ runnerId: 'r2' }), clock], drained, options);
    expect(stops(first)).toEqual(['c1']);
    expect(places(first)).toEqual([]);
    expect(places(plan([single], [web({ runnerId: 'r2' }), { ...clock, state: 'stopping' }], drained, options))).toEqual([]);
    expect(places(plan([single], [web({ runnerId: 'r2' })], drained, options))).toEqual([
      { kind: 'place', appId: 1, releaseId: 1, runnerId: 'r2', processType: 'clock', name: 'clock.1', singleton: true },
    ]);
  });

  it('places formation[type] workers of the live release spread across runners, named type.N', () => {
    const actions = plan([app()], [web({})], runners('r1', 'r2'), options);
    expect(places(actions)).toEqual([
      { kind: 'place', appId: 1, releaseId: 1, runnerId: 'r2', processType: 'worker', name: 'worker.1' },
      { kind: 'place', appId: 1, releaseId: 1, runnerId: 'r1', processType: 'worker', name: 'worker.2' },
    ]);
  });

  it('runs nothing of a type the formation leaves out (new types start at 0)', () => {
    const actions = plan([app({ formation: {} })], [web({})], runners('r1'), options);
    expect(places(actions)).toEqual([]);
  });

  it('takes the lowest free name and keeps running workers', () => {
    const actions = plan([app({ formation: { worker: 3 } })], [web({}), worker({ id: 'a', name: 'worker.2' })], runners('r1'), options);
    expect(places(actions).map((a) => (a as { name: string }).name)).toEqual(['worker.1', 'worker.3']);
    expect(stops(actions)).toEqual([]);
  });

  it('stops the highest-numbered workers on scale-down', () => {
    const list = [web({}), worker({ id: 'a', name: 'worker.1' }), worker({ id: 'b', name: 'worker.2' }), worker({ id: 'c', name: 'worker.3' })];
    const actions = plan([app({ formation: { worker: 1 } })], list, runners('r1'), options);
    expect(stops(actions)).toEqual(['b', 'c']);
    expect(places(actions)).toEqual([]);
  });

  it('keeps the old release\'s workers during a deploy; at the switch stops them, and starts the new ones only once they are gone', () => {
    const deploying = app({ targetReleaseId: 2, liveReleaseId: 1, formation: { worker: 1 } });
    const oldWeb = web({ id: 'w1' });
    const oldWorker = worker({ id: 'k1' });
    // New web instance still starting: nothing happens to workers.
    const starting = web({ id: 'w2', releaseId: 2, state: 'starting', name: 'web.2' });
    expect(plan([deploying], [oldWeb, oldWorker, starting], runners('r1'), options)).toEqual([]);
    // It is ready: the release goes live, the old web and worker are stopped, no new worker yet.
    const ready = { ...starting, state: 'ready' as const };
    const atSwitch = plan([deploying], [oldWeb, oldWorker, ready], runners('r1'), options);
    expect(atSwitch).toContainEqual({ kind: 'live', appId: 1, releaseId: 2 });
    expect(stops(atSwitch)).toEqual(['k1', 'w1']);
    expect(places(atSwitch)).toEqual([]);
    // Live on v2, the old worker is still stopping: still nothing placed.
    const live = app({ targetReleaseId: 2, liveReleaseId: 2, formation: { worker: 1 } });
    expect(places(plan([live], [ready, { ...oldWorker, state: 'stopping' }], runners('r1'), options))).toEqual([]);
    // Gone: v2's worker starts, taking worker.1 again.
    expect(places(plan([live], [ready], runners('r1'), options))).toEqual([
      { kind: 'place', appId: 1, releaseId: 2, runnerId: 'r1', processType: 'worker', name: 'worker.1' },
    ]);
  });

  it('does not let a worker gate the switch, nor start one of the new release before it is live', () => {
    const deploying = app({ targetReleaseId: 2, liveReleaseId: 1, formation: { worker: 1 } });
    const newWeb = web({ id: 'w2', releaseId: 2, state: 'starting' });
    const actions = plan([deploying], [web({ id: 'w1' }), worker({ id: 'k1' }), newWeb], runners('r1'), options);
    expect(actions).toEqual([]); // no switch waits on the worker, and no v2 worker starts beside the v1 one
    const ready = { ...newWeb, state: 'ready' as const };
    expect(plan([deploying], [web({ id: 'w1' }), worker({ id: 'k1', state: 'starting' }), ready], runners('r1'), options)).toContainEqual({ kind: 'live', appId: 1, releaseId: 2 });
  });

  it('moves a worker whose runner died to a live runner, under the same name', () => {
    const list = [web({ runnerId: 'r2' }), worker({ id: 'a', runnerId: 'r1', name: 'worker.1' }), worker({ id: 'b', runnerId: 'r2', name: 'worker.2' })];
    const actions = plan([app()], list, [{ id: 'r1', isAlive: false }, { id: 'r2', isAlive: true }], options);
    expect(actions).toContainEqual({ kind: 'forget', instanceId: 'a' });
    expect(places(actions)).toEqual([{ kind: 'place', appId: 1, releaseId: 1, runnerId: 'r2', processType: 'worker', name: 'worker.1' }]);
  });

  it('replaces a worker the runner gave up on', () => {
    const actions = plan([app({ formation: { worker: 1 } })], [web({}), worker({ id: 'bad', state: 'failed', error: 'boom' })], runners('r1'), options);
    expect(stops(actions)).toEqual(['bad']);
    expect(places(actions)).toHaveLength(1);
  });

  it('a worker that has not settled for a long time does not fail anything (workers have no start time-out)', () => {
    const actions = plan([app({ formation: { worker: 1 } })], [web({}), worker({ state: 'starting', ageMs: 10 * 60_000 })], runners('r1'), options);
    expect(actions).toEqual([]);
  });

  it('runs no web instance of a release without a web process, which goes live at once and starts its workers after', () => {
    const first = app({ targetReleaseId: 1, liveReleaseId: null, hasWeb: false, formation: { worker: 1 } });
    const actions = plan([first], [], runners('r1'), options);
    expect(actions.filter((a) => a.kind === 'place' && a.processType === undefined)).toEqual([]);
    expect(actions).toContainEqual({ kind: 'live', appId: 1, releaseId: 1 });
    expect(places(actions)).toEqual([{ kind: 'place', appId: 1, releaseId: 1, runnerId: 'r1', processType: 'worker', name: 'worker.1' }]);
  });

  it('stops every worker of an app with no target release', () => {
    const actions = plan([app({ targetReleaseId: null, liveReleaseId: null })], [worker({ id: 'a' })], runners('r1'), options);
    expect(stops(actions)).toEqual(['a']);
  });

  it('places at most one instance of a singleton type, marked so the lease is taken with it', () => {
    const actions = plan([app({ formation: { clock: 3 }, singletons: ['clock'] })], [web({})], runners('r1', 'r2'), options);
    expect(places(actions)).toEqual([{ kind: 'place', appId: 1, releaseId: 1, runnerId: 'r2', processType: 'clock', name: 'clock.1', singleton: true }]);
  });

  it('replaces a singleton whose runner died only through a new placement (the lease decides when)', () => {
    const clock = worker({ id: 'c', processType: 'clock', name: 'clock.1', runnerId: 'r1' });
    const actions = plan([app({ formation: { clock: 1 }, singletons: ['clock'] })], [web({ runnerId: 'r2' }), clock], [{ id: 'r1', isAlive: false }, { id: 'r2', isAlive: true }], options);
    expect(actions).toContainEqual({ kind: 'forget', instanceId: 'c' });
    expect(places(actions)).toEqual([{ kind: 'place', appId: 1, releaseId: 1, runnerId: 'r2', processType: 'clock', name: 'clock.1', singleton: true }]);
  });

  it('nextName fills gaps', () => {
    expect(nextName('worker', new Set(['worker.1', 'worker.3']))).toBe('worker.2');
    expect(nextName('clock', new Set())).toBe('clock.1');
  });
});
