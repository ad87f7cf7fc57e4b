/** The add-on placement's choices (src/nexus/addon-placer.ts) and the redis kind's password. */
import { describe, expect, it } from 'vitest';
import type { AddonRunner } from '../../src/db/index.js';
import { pickPort, pickRunner } from '../../src/nexus/addon-placer.js';
import { redisPassword } from '../../src/nexus/addons/redis.js';

function runner(id: string, load: number, used: number[] = [], portMin = 30000, portMax = 30009): AddonRunner {
  return { id, address: '127.0.0.1', lastHeartbeatAtMs: Date.now(), portMin, portMax, load, usedPorts: new Set(used), isDraining: false };
}

describe('pickRunner', () => {
  it('takes the runner that runs the least, ties by id, none when there is none', () => {
    expect(pickRunner([runner('b', 3), runner('a', 1), runner('c', 1)])?.id).toBe('a');
    expect(pickRunner([])).toBeUndefined();
  });
});

describe('pickPort', () => {
  it("picks a port of the runner's add-on range that no add-on server holds there", () => {
    for (let i = 0; i < 200; i++) {
      const port = pickPort(runner('a', 0, [30000, 30001, 30002, 30003, 30004, 30005, 30006, 30007, 30009]));
      expect(port).toBe(30008);
    }
    const spread = new Set(Array.from({ length: 200 }, () => pickPort(runner('a', 0))));
    expect([...spread].every((p) => p! >= 30000 && p! <= 30009)).toBe(true);
    expect(spread.size).toBeGreaterThan(5);
  });

  it('finds none in a full range', () => {
    expect(pickPort(runner('a', 0, [30000, 30001], 30000, 30001))).toBeUndefined();
  });
});

describe('redisPassword', () => {
  it('is 32 letters and digits, fresh each time', () => {
    const seen = new Set(Array.from({ length: 100 }, () => redisPassword()));
    expect(seen.size).toBe(100);
    for (const p of seen) expect(p).toMatch(/^[A-Za-z0-9]{32}$/);
  });
});
