/** The runner's add-on port range (Redis servers): a range of its own, apart from the instances' by default. */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';

describe('runner.addonPortMin..addonPortMax', () => {
  it('defaults to 30000-30999, apart from the instance range', () => {
    const { runner } = loadConfig({});
    expect([runner.addonPortMin, runner.addonPortMax]).toEqual([30000, 30999]);
  });

  it('refuses a range that is no range, naming the variable and the fix', () => {
    expect(() => loadConfig({ env: { PIER_RUNNER_ADDON_PORT_MIN: '31000', PIER_RUNNER_ADDON_PORT_MAX: '30500' } })).toThrow(
      'env PIER_RUNNER_ADDON_PORT_MIN: runner.addonPortMin (31000) is above runner.addonPortMax (30500); swap them',
    );
  });
});
