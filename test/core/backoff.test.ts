import { describe, expect, it } from 'vitest';
import { RestartBackoff } from '../../src/core/backoff.js';
import { NodeLiveness } from '../../src/core/liveness.js';

describe('RestartBackoff', () => {
  it('doubles the delay up to 30 s while a process dies right after each start', () => {
    const backoff = new RestartBackoff();
    expect(Array.from({ length: 10 }, () => backoff.next(0))).toEqual([250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  });

  it('restarts after the base delay when the process served 3× its last delay', () => {
    const backoff = new RestartBackoff(1000);
    expect(backoff.next(0)).toBe(1000);
    expect(backoff.next(500)).toBe(2000);
    expect(backoff.next(5999)).toBe(4000);
    expect(backoff.next(12_000)).toBe(1000);
    // A server killed every 6 s (the chaos drill) is back after 1 s each time.
    expect([4500, 4500, 4500].map((ran) => backoff.next(ran))).toEqual([1000, 1000, 1000]);
  });
});

describe('NodeLiveness', () => {
  it('judges a node alive while its newest known heartbeat (memory or stored) is younger than the budget', () => {
    const liveness = new NodeLiveness(1000);
    const now = 100_000;
    expect(liveness.status('r1', null, now)).toBe('unknown');
    expect(liveness.status('r1', now - 500, now)).toBe('alive');
    expect(liveness.status('r1', now - 1000, now)).toBe('dead');
    liveness.record('r1', { load: 0.5, instances: 2 }, now - 200);
    // Memory is fresher than a stored time written in batches, and the stored time fresher than an old memory.
    expect(liveness.status('r1', now - 5000, now)).toBe('alive');
    expect(liveness.status('r1', null, now + 1000)).toBe('dead');
    expect(liveness.status('r1', now + 500, now + 1000)).toBe('alive');
    expect([...liveness.aliveInMemory(now)]).toEqual(['r1']);
    expect(liveness.summaries.get('r1')).toEqual({ load: 0.5, instances: 2 });
    liveness.forget(10_000, now + 20_000);
    expect(liveness.lastSeen.size).toBe(0);
  });
});
