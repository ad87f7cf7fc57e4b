import { describe, expect, it } from 'vitest';
import type { AccessMessage } from '../../src/protocol/index.js';
import { RequestAggregator } from '../../src/stats/aggregator.js';
import { quantile } from '../../src/stats/histogram.js';

const MINUTE = 60_000;
const T0 = Date.UTC(2026, 0, 15, 10, 0, 0);

function access(app: string, at: number, overrides: Partial<AccessMessage> = {}): AccessMessage & { app: string } {
  return {
    v: 1, type: 'access', app, host: `${app}.example.com`, method: 'GET', path: '/', status: 200, bytes: 100,
    durationMs: 10, backend: '127.0.0.1:8001', requestId: 'r1', balancerId: 'balancer-1', at, ...overrides,
  } as AccessMessage & { app: string };
}

function sum(histogram: ArrayLike<number>): number {
  let total = 0;
  for (let i = 0; i < histogram.length; i++) total += histogram[i]!;
  return total;
}

describe('RequestAggregator', () => {
  it('counts requests per status class and adds up bytes', () => {
    const agg = new RequestAggregator(100);
    const statuses = [200, 201, 204, 301, 304, 400, 404, 404, 500, 503, 101];
    statuses.forEach((status, i) => agg.record(access('web', T0 + i, { status, bytes: 1000 + i })));
    const [delta] = agg.take();
    expect(delta).toMatchObject({ app: 'web', minute: T0, requests: 11, s2xx: 3, s3xx: 2, s4xx: 3, s5xx: 2 });
    expect(delta!.bytes).toBe(11 * 1000 + (10 * 11) / 2);
    expect(sum(delta!.histogram)).toBe(11);
    expect(agg.stats.recorded).toBe(11);
  });

  it('groups by the minute of the balancer time', () => {
    const agg = new RequestAggregator(100);
    agg.record(access('web', T0));
    agg.record(access('web', T0 + MINUTE - 1));
    agg.record(access('web', T0 + MINUTE));
    const deltas = agg.take();
    expect(deltas.map((d) => [d.minute, d.requests])).toEqual([[T0, 2], [T0 + MINUTE, 1]]);
  });

  it('records latencies into the histogram', () => {
    const agg = new RequestAggregator(100);
    for (let i = 1; i <= 100; i++) agg.record(access('web', T0, { durationMs: i }));
    const [delta] = agg.take();
    const p50 = quantile(delta!.histogram, 0.5)!;
    expect(Math.abs(p50 - 50) / 50).toBeLessThanOrEqual(0.05);
  });

  it('takes deltas sorted by app then minute, and empties itself', () => {
    const agg = new RequestAggregator(100);
    agg.record(access('zeta', T0 + 2 * MINUTE));
    agg.record(access('alpha', T0 + MINUTE));
    agg.record(access('zeta', T0));
    agg.record(access('alpha', T0 + 3 * MINUTE));
    agg.record(access('alpha', T0));
    expect(agg.size).toBe(5);
    const deltas = agg.take();
    expect(deltas.map((d) => `${d.app}@${(d.minute - T0) / MINUTE}`)).toEqual(['alpha@0', 'alpha@1', 'alpha@3', 'zeta@0', 'zeta@2']);
    expect(agg.size).toBe(0);
    expect(agg.take()).toEqual([]);
  });

  it('adds restored deltas to what was recorded since', () => {
    const agg = new RequestAggregator(100);
    agg.record(access('web', T0, { status: 200, bytes: 10, durationMs: 5 }));
    agg.record(access('web', T0, { status: 500, bytes: 20, durationMs: 500 }));
    const failed = agg.take();
    agg.record(access('web', T0, { status: 404, bytes: 30, durationMs: 50 }));
    agg.record(access('api', T0, { status: 302, bytes: 40 }));
    agg.restore(failed);
    const deltas = agg.take();
    expect(deltas).toHaveLength(2);
    const web = deltas.find((d) => d.app === 'web')!;
    expect(web).toMatchObject({ requests: 3, s2xx: 1, s3xx: 0, s4xx: 1, s5xx: 1, bytes: 60 });
    expect(sum(web.histogram)).toBe(3);
    expect(deltas.find((d) => d.app === 'api')).toMatchObject({ requests: 1, s3xx: 1, bytes: 40 });
  });

  it('restores into an empty aggregator unchanged', () => {
    const agg = new RequestAggregator(100);
    agg.record(access('web', T0, { durationMs: 7 }));
    agg.record(access('web', T0 + MINUTE, { durationMs: 70 }));
    const taken = agg.take();
    const copy = taken.map((d) => ({ ...d, histogram: d.histogram.slice() }));
    agg.restore(taken);
    expect(agg.take()).toEqual(copy);
  });

  it('drops the oldest minute and counts it when maxPending app-minutes are waiting', () => {
    const agg = new RequestAggregator(3);
    agg.record(access('web', T0 + MINUTE));
    agg.record(access('web', T0));
    agg.record(access('api', T0 + 2 * MINUTE));
    agg.record(access('web', T0)); // existing app-minute: nothing dropped
    expect(agg.stats.droppedMinutes).toBe(0);
    agg.record(access('api', T0 + 3 * MINUTE));
    expect(agg.stats.droppedMinutes).toBe(1);
    expect(agg.size).toBe(3);
    const kept = agg.take().map((d) => `${d.app}@${(d.minute - T0) / MINUTE}`);
    expect(kept).toEqual(['api@2', 'api@3', 'web@1']);
    expect(agg.stats.recorded).toBe(5);
  });
});
