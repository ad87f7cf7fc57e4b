import { describe, expect, it } from 'vitest';
import { plan, type SchedApp, type SchedInstance } from '../../src/nexus/scheduler.js';

const options = { startTimeoutMs: 60_000, mayForget: true };
const runners = (...ids: string[]) => ids.map((id) => ({ id, isAlive: true }));
const app = (over: Partial<SchedApp> = {}): SchedApp => ({ id: 1, name: 'hello', scale: 1, targetReleaseId: 2, liveReleaseId: 1, ...over });
const inst = (over: Partial<SchedInstance>): SchedInstance => ({
  id: 'i', appId: 1, releaseId: 2, runnerId: 'r1', state: 'ready', error: null, ageMs: 1000, ...over,
});

describe('scheduler plan', () => {
  it('places the wanted number of instances spread across live runners', () => {
    const actions = plan([app({ scale: 3, liveReleaseId: null })], [], runners('r1', 'r2', 'r3'), options);
    const placed = actions.filter((a) => a.kind === 'place').map((a) => (a as { runnerId: string }).runnerId);
    expect(placed.sort()).toEqual(['r1', 'r2', 'r3']);
  });

  it('drains a runner: replacements start elsewhere first, the drained instances stop once those are ready', () => {
    const live = app({ scale: 2, targetReleaseId: 1, liveReleaseId: 1 });
    const drained = [{ id: 'r1', isAlive: true, isDraining: true }, { id: 'r2', isAlive: true }, { id: 'r3', isAlive: true }];
    const a = inst({ id: 'a', releaseId: 1, runnerId: 'r1' });
    const b = inst({ id: 'b', releaseId: 1, runnerId: 'r1' });
    // Both on the drained runner: two placed on the others, nothing stopped yet.
    expect(plan([live], [a, b], drained, options)).toEqual([
      { kind: 'place', appId: 1, releaseId: 1, runnerId: 'r2' },
      { kind: 'place', appId: 1, releaseId: 1, runnerId: 'r3' },
    ]);
    // One replacement ready, one starting: still serving from the drained runner.
    const c = inst({ id: 'c', releaseId: 1, runnerId: 'r2' });
    const d = inst({ id: 'd', releaseId: 1, runnerId: 'r3', state: 'starting' });
    expect(plan([live], [a, b, c, d], drained, options)).toEqual([]);
    // Both ready: the drained ones stop; nothing new goes to r1.
    expect(plan([live], [a, b, c, { ...d, state: 'ready' }], drained, options)).toEqual([{ kind: 'stop', instanceId: 'a' }, { kind: 'stop', instanceId: 'b' }]);
    expect(plan([live], [c], drained, options)).toEqual([{ kind: 'place', appId: 1, releaseId: 1, runnerId: 'r3' }]);
    // With nowhere else to go, what runs on a drained runner stays, and nothing is placed.
    const alone = [{ id: 'r1', isAlive: true, isDraining: true }];
    expect(plan([live], [a], alone, options)).toEqual([]);
    // A deploy places its new instances only on runners that are not draining.
    const deploying = app({ scale: 1, targetReleaseId: 2, liveReleaseId: 1 });
    expect(plan([deploying], [a], drained, options)).toEqual([{ kind: 'place', appId: 1, releaseId: 2, runnerId: 'r2' }]);
  });

  it('places nothing when no runner is alive', () => {
    expect(plan([app()], [], [{ id: 'r1', isAlive: false }], options)).toEqual([]);
  });

  it('keeps the old release serving until every new instance is ready, then switches and stops the old', () => {
    const old = inst({ id: 'old', releaseId: 1 });
    const starting = inst({ id: 'new', releaseId: 2, state: 'starting' });
    expect(plan([app()], [old, starting], runners('r1'), options)).toEqual([]);
    const ready = { ...starting, state: 'ready' as const };
    expect(plan([app()], [old, ready], runners('r1'), options)).toEqual([
      { kind: 'live', appId: 1, releaseId: 2 },
      { kind: 'stop', instanceId: 'old' },
    ]);
  });

  it('fails a deploy whose instance failed, stops its instances and leaves the live one alone', () => {
    const old = inst({ id: 'old', releaseId: 1 });
    const bad = inst({ id: 'bad', releaseId: 2, state: 'failed', error: 'ImportError: boom' });
    expect(plan([app()], [old, bad], runners('r1'), options)).toEqual([
      { kind: 'fail', appId: 1, releaseId: 2, error: 'ImportError: boom' },
      { kind: 'stop', instanceId: 'bad' },
    ]);
  });

  it('fails a deploy whose instance is not ready within the start timeout', () => {
    const slow = inst({ id: 'slow', state: 'starting', ageMs: 61_000 });
    const [first] = plan([app({ liveReleaseId: null })], [slow], runners('r1'), options);
    expect(first).toMatchObject({ kind: 'fail', error: 'instance did not become ready in 60 s' });
  });

  it('replaces an instance of the live release that died', () => {
    const dead = inst({ id: 'dead', releaseId: 1, state: 'failed' });
    const actions = plan([app({ targetReleaseId: 1 })], [dead], runners('r1'), options);
    expect(actions).toEqual([
      { kind: 'stop', instanceId: 'dead' },
      { kind: 'place', appId: 1, releaseId: 1, runnerId: 'r1' },
    ]);
  });

  it('scales down by stopping instances that are not ready first', () => {
    const a = inst({ id: 'a', releaseId: 1, state: 'ready' });
    const b = inst({ id: 'b', releaseId: 1, state: 'starting' });
    expect(plan([app({ targetReleaseId: 1 })], [a, b], runners('r1'), options)).toEqual([{ kind: 'stop', instanceId: 'b' }]);
  });

  it('forgets instances on dead runners and places them elsewhere, but not right after a leader change', () => {
    const lost = inst({ id: 'lost', releaseId: 1, runnerId: 'r1' });
    const state = [{ id: 'r1', isAlive: false }, { id: 'r2', isAlive: true }];
    expect(plan([app({ targetReleaseId: 1 })], [lost], state, options)).toEqual([
      { kind: 'forget', instanceId: 'lost' },
      { kind: 'place', appId: 1, releaseId: 1, runnerId: 'r2' },
    ]);
    expect(plan([app({ targetReleaseId: 1 })], [lost], state, { ...options, mayForget: false })).toEqual([]);
  });

  it('stops everything of an app with no release', () => {
    expect(plan([app({ targetReleaseId: null })], [inst({ id: 'x' })], runners('r1'), options)).toEqual([{ kind: 'stop', instanceId: 'x' }]);
  });

  describe('the stage slot', () => {
    const staging = (over: Partial<SchedApp> = {}): SchedApp => app({ targetReleaseId: 1, liveReleaseId: 1, stageReleaseId: 3, isStagePending: true, ...over });

    it('places one stage instance beside the live ones and marks the release staged once it is ready', () => {
      const live = inst({ id: 'live', releaseId: 1 });
      expect(plan([staging()], [live], runners('r1', 'r2'), options)).toEqual([{ kind: 'place', appId: 1, releaseId: 3, runnerId: 'r2' }]);
      const stage = inst({ id: 'stage', releaseId: 3, runnerId: 'r2' });
      expect(plan([staging()], [live, stage], runners('r1', 'r2'), options)).toEqual([{ kind: 'staged', appId: 1, releaseId: 3 }]);
      expect(plan([staging({ isStagePending: false })], [live, stage], runners('r1', 'r2'), options)).toEqual([]);
    });

    it('fails a stage release whose instance failed, without touching live', () => {
      const live = inst({ id: 'live', releaseId: 1 });
      const bad = inst({ id: 'bad', releaseId: 3, state: 'failed', error: 'boom' });
      expect(plan([staging()], [live, bad], runners('r1'), options)).toEqual([
        { kind: 'failStage', appId: 1, releaseId: 3, error: 'boom' },
        { kind: 'stop', instanceId: 'bad' },
      ]);
    });

    it('after a promote keeps the old live release serving until the switch, then keeps one of it for stage', () => {
      // Promote: target 3 (its stage instance is ready), live 1, stage now 1.
      const promoted = app({ scale: 2, targetReleaseId: 3, liveReleaseId: 1, stageReleaseId: 1, isStagePending: false });
      const old = [inst({ id: 'old-a', releaseId: 1 }), inst({ id: 'old-b', releaseId: 1, runnerId: 'r2' })];
      const warm = inst({ id: 'warm', releaseId: 3, runnerId: 'r2' });
      const during = plan([promoted], [...old, warm], runners('r1', 'r2'), options);
      expect(during).toEqual([{ kind: 'place', appId: 1, releaseId: 3, runnerId: 'r1' }]);
      const second = inst({ id: 'second', releaseId: 3 });
      expect(plan([promoted], [...old, warm, second], runners('r1', 'r2'), options)).toEqual([{ kind: 'live', appId: 1, releaseId: 3 }]);
      const after = app({ scale: 2, targetReleaseId: 3, liveReleaseId: 3, stageReleaseId: 1, isStagePending: false });
      const stops = plan([after], [...old, warm, second], runners('r1', 'r2'), options);
      expect(stops.filter((a) => a.kind === 'stop')).toHaveLength(1);
      expect(stops.every((a) => a.kind === 'stop')).toBe(true);
    });
  });

  describe('rolling deploys', () => {
    const rolling = app({ scale: 2, isRolling: true });
    const old = [inst({ id: 'old-1', releaseId: 1, runnerId: 'r1' }), inst({ id: 'old-2', releaseId: 1, runnerId: 'r2' })];

    it('starts the first runner only, routes its new instance when ready, retires the old one there, goes on', () => {
      expect(plan([rolling], old, runners('r1', 'r2'), options)).toEqual([{ kind: 'place', appId: 1, releaseId: 2, runnerId: 'r1' }]);
      const starting = inst({ id: 'new-1', runnerId: 'r1', state: 'starting' });
      expect(plan([rolling], [...old, starting], runners('r1', 'r2'), options)).toEqual([]);
      const ready = { ...starting, state: 'ready' as const };
      // The next runner starts in the same pass: nothing is in progress any more.
      expect(plan([rolling], [...old, ready], runners('r1', 'r2'), options)).toEqual([
        { kind: 'place', appId: 1, releaseId: 2, runnerId: 'r2' },
        { kind: 'route', instanceId: 'new-1' },
        { kind: 'stop', instanceId: 'old-1' },
      ]);
    });

    it('moves to the next runner once nothing is in progress, and goes live when no old instance is left', () => {
      const routed = inst({ id: 'new-1', runnerId: 'r1', isRouted: true });
      const second = plan([rolling], [{ ...old[0]!, state: 'stopping' }, old[1]!, routed], runners('r1', 'r2'), options);
      expect(second).toEqual([{ kind: 'place', appId: 1, releaseId: 2, runnerId: 'r2' }]);
      const both = [routed, inst({ id: 'new-2', runnerId: 'r2', isRouted: true })];
      expect(plan([rolling], both, runners('r1', 'r2'), options)).toEqual([{ kind: 'live', appId: 1, releaseId: 2, isRolling: true }]);
    });

    it('aborts at the first failed instance: the deploy fails and its instances stop', () => {
      const routed = inst({ id: 'new-1', runnerId: 'r1', isRouted: true });
      const bad = inst({ id: 'new-2', runnerId: 'r2', state: 'failed', error: 'boom' });
      expect(plan([rolling], [old[1]!, routed, bad], runners('r1', 'r2'), options)).toEqual([
        { kind: 'fail', appId: 1, releaseId: 2, error: 'boom' },
        { kind: 'stop', instanceId: 'new-1' },
        { kind: 'stop', instanceId: 'new-2' },
      ]);
      // Back on the live release, the ordinary path puts back the instance the deploy retired.
      const after = plan([app({ scale: 2, targetReleaseId: 1, liveReleaseId: 1 })], [old[1]!], runners('r1', 'r2'), options);
      expect(after).toEqual([{ kind: 'place', appId: 1, releaseId: 1, runnerId: 'r1' }]);
    });
  });
});
