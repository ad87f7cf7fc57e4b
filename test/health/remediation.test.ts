/** The remediation ladder's and the alerts' decisions (pure: no daemons). */
import { describe, expect, it } from 'vitest';
import type { LadderAppRow, LadderInstanceRow } from '../../src/db/index.js';
import { decide, pickRunner } from '../../src/nexus/remediation.js';

const now = 1_000_000;
const runners = () => [{ id: 'r1', appInstances: 2, instances: 2 }, { id: 'r2', appInstances: 0, instances: 5 }];

function inst(id: string, over: Partial<LadderInstanceRow> = {}): LadderInstanceRow {
  return {
    id, runnerId: 'r1', processType: 'web', state: 'ready', healthy: true, answers: true, reason: null, isOutOfRotation: false,
    rung: 0, rungAt: null, alertId: null, ...over,
  };
}
function app(instances: LadderInstanceRow[], over: Partial<LadderAppRow> = {}): LadderAppRow {
  return { appId: 7, name: 'hc-a', intervalMs: 1000, isDeploying: false, liveReleaseId: 1, instances, strayAlerts: [], webhook: null, ...over };
}
const sick = { healthy: false, reason: 'check GET /health answered 500 (expected 200)' } as const;

describe('remediation ladder', () => {
  it('takes an unhealthy instance out of rotation and raises one alert when another serves', () => {
    const actions = decide([app([inst('a', sick), inst('b')])], { now, runners });
    expect(actions).toEqual([
      { kind: 'raise', app: 'hc-a', instance: 'a', reason: sick.reason },
      { kind: 'rung', app: 'hc-a', appId: 7, instance: 'a', rung: 'out-of-rotation', step: 1, reason: sick.reason },
    ]);
  });

  it('climbs one rung per interval: rewrite, restart, then move to the least loaded other runner', () => {
    const at = (rung: number, ago: number) => inst('a', { ...sick, alertId: 1, isOutOfRotation: true, rung, rungAt: now - ago });
    expect(decide([app([at(1, 999), inst('b')])], { now, runners })).toEqual([]);
    expect(decide([app([at(1, 1000), inst('b')])], { now, runners })).toMatchObject([{ kind: 'rung', rung: 'rewrite', step: 2 }]);
    expect(decide([app([at(2, 1000), inst('b')])], { now, runners })).toMatchObject([{ kind: 'rung', rung: 'restart', step: 3 }]);
    expect(decide([app([at(3, 1000), inst('b')])], { now, runners })).toMatchObject([{ kind: 'rung', rung: 'move', step: 4, toRunner: 'r2' }]);
    expect(decide([app([at(4, 5000), inst('b')])], { now, runners })).toEqual([]);
  });

  it('replaces an open alert by one saying crash loop once the instance is diagnosed so, once', () => {
    const loop = 'crash loop: uWSGI restarted it 3 times in the last 60 s';
    const caught = inst('a', { healthy: false, reason: loop, alertId: 4, alertReason: 'check GET / failed: ECONNREFUSED' });
    expect(decide([app([caught, inst('b')])], { now, runners }).filter((a) => a.kind !== 'rung')).toEqual([
      { kind: 'clear', app: 'hc-a', alertId: 4, why: 'diagnosed as a crash loop' },
      { kind: 'raise', app: 'hc-a', instance: 'a', reason: loop },
    ]);
    const said = inst('a', { healthy: false, reason: loop, alertId: 5, alertReason: loop });
    expect(decide([app([said, inst('b')])], { now, runners }).filter((a) => a.kind !== 'rung')).toEqual([]);
  });

  it('never has two instances of an app on the ladder at once', () => {
    const a = inst('a', { ...sick, alertId: 1, isOutOfRotation: true, rung: 1, rungAt: now - 10 });
    const b = inst('b', { ...sick });
    const c = inst('c');
    const actions = decide([app([a, b, c])], { now, runners });
    expect(actions).toEqual([{ kind: 'raise', app: 'hc-a', instance: 'b', reason: sick.reason }]);
  });

  it('leaves the last serving instance alone while it answers (alert only); one that does not answer climbs in rotation', () => {
    expect(decide([app([inst('a', sick)])], { now, runners })).toEqual([{ kind: 'raise', app: 'hc-a', instance: 'a', reason: sick.reason }]);
    const kept = inst('a', { ...sick, alertId: 1 });
    expect(decide([app([kept])], { now, runners })).toEqual([]);
    // An out-of-rotation instance does not count as serving; another instance that serves frees it to leave.
    expect(decide([app([kept, inst('b', { isOutOfRotation: true, healthy: true })])], { now, runners })).toMatchObject([{ kind: 'restore', instance: 'b' }]);
    expect(decide([app([kept, inst('b')])], { now, runners })).toMatchObject([{ kind: 'rung', rung: 'out-of-rotation', step: 1 }]);
    // Not answering: rewrite, restart, move, all in rotation (out of it, the public would get only 503s).
    const dead = (rung: number) => inst('a', { ...sick, answers: false, alertId: 1, rung, rungAt: rung > 0 ? now - 1000 : null });
    expect(decide([app([dead(0)])], { now, runners })).toMatchObject([{ kind: 'rung', rung: 'rewrite', step: 2 }]);
    expect(decide([app([dead(2)])], { now, runners })).toMatchObject([{ kind: 'rung', rung: 'restart', step: 3 }]);
    expect(decide([app([dead(3)])], { now, runners })).toMatchObject([{ kind: 'rung', rung: 'move', step: 4, toRunner: 'r2' }]);
    // Another instance serving again: the one on the ladder leaves rotation at its rung, then climbs on.
    expect(decide([app([dead(2), inst('b')])], { now, runners })).toMatchObject([{ kind: 'rung', instance: 'a', rung: 'out-of-rotation', step: 2 }]);
    // The other instance turning unhealthy while one is out leaves it in place (the last serving).
    const out = inst('a', { ...sick, alertId: 1, isOutOfRotation: true, rung: 1, rungAt: now - 5000 });
    expect(decide([app([out, inst('b', { ...sick, alertId: 2 })])], { now, runners })).toMatchObject([{ kind: 'rung', instance: 'a', rung: 'rewrite', step: 2 }]);
  });

  it('puts a healthy-again instance back into rotation and clears its alert; clears alerts of instances gone', () => {
    const back = inst('a', { healthy: true, alertId: 3, isOutOfRotation: true, rung: 3, rungAt: now - 10 });
    expect(decide([app([back, inst('b')], { strayAlerts: [9] })], { now, runners })).toEqual([
      { kind: 'clear', app: 'hc-a', alertId: 3, why: 'healthy again' },
      { kind: 'clear', app: 'hc-a', alertId: 9, why: 'the instance was replaced or stopped' },
      { kind: 'restore', app: 'hc-a', instance: 'a', reason: 'healthy again' },
    ]);
  });

  it('waits while the app deploys, ignores instances without results and non-web processes', () => {
    expect(decide([app([inst('a', sick), inst('b')], { isDeploying: true })], { now, runners })).toEqual([
      { kind: 'raise', app: 'hc-a', instance: 'a', reason: sick.reason },
    ]);
    expect(decide([app([inst('a', { healthy: null }), inst('w', { ...sick, processType: 'worker' })])], { now, runners })).toEqual([]);
  });

  it('moves to the same runner only when no other is alive', () => {
    expect(pickRunner([{ id: 'r1', appInstances: 1, instances: 1 }], 'r1')).toBe('r1');
    expect(pickRunner([], 'r1')).toBeUndefined();
    expect(pickRunner([{ id: 'r3', appInstances: 1, instances: 1 }, { id: 'r2', appInstances: 1, instances: 1 }, { id: 'r1', appInstances: 0, instances: 0 }], 'r1')).toBe('r2');
  });
});
