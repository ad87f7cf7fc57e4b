/** `pier limits:set` arguments: Heroku-style names and units, checked before anything is sent. */
import { describe, expect, it } from 'vitest';
import { parseLimits } from '../../src/cli/commands/limits.js';

describe('parseLimits', () => {
  it('turns NAME=VALUE words into the API body, with units and defaults', () => {
    expect(parseLimits(['memory=1GB', 'processes=64', 'files=2048', 'cpu=512', 'timeout=30s'])).toEqual({
      memoryMb: 1024, processes: 64, openFiles: 2048, cpuShares: 512, requestTimeoutMs: 30_000,
    });
    expect(parseLimits(['memory=512', 'timeout=1500', 'timeout=2m'])).toEqual({ memoryMb: 512, requestTimeoutMs: 120_000 });
    expect(parseLimits(['memory=default'])).toEqual({ memoryMb: null });
  });

  it('refuses unknown names, bad values and values out of range, naming them', () => {
    expect(() => parseLimits(['ram=5'])).toThrow("unknown limit 'ram'; use memory, processes, files, cpu, timeout (e.g. memory=512)");
    expect(() => parseLimits(['memory'])).toThrow(/'memory' is not NAME=VALUE/);
    expect(() => parseLimits(['memory=lots'])).toThrow("memory must be a whole number (units: mb, m, gb, g) or 'default', not 'lots'");
    expect(() => parseLimits(['processes=64k'])).toThrow("processes must be a whole number or 'default', not '64k'");
    expect(() => parseLimits(['memory=8'])).toThrow('memory must be 32..1048576 MB, not 8');
    expect(() => parseLimits(['timeout=0s'])).toThrow(/timeout must be 1000\.\.86400000 ms/);
    expect(parseLimits(['timeout=1h'])).toEqual({ requestTimeoutMs: 3_600_000 });
  });
});
