/** Test configuration: short intervals, ephemeral ports, silent logs. */
import { validateConfig, deepMerge, type ConfigInput, type PierConfig } from '../../src/config/index.js';

/** A config for one in-process nexus on free loopback ports; `overrides` merge over it. */
export function testConfig(overrides: ConfigInput = {}): PierConfig {
  const base: ConfigInput = {
    dataDir: '/tmp/pier-test-unused',
    log: { level: 'silent' },
    security: { curve: false },
    cluster: { heartbeatIntervalMs: 50, heartbeatMisses: 3, controlTimeoutMs: 500 },
    nexus: {
      controlBind: 'tcp://127.0.0.1:*', eventsBind: 'tcp://127.0.0.1:*', heartbeatsBind: 'tcp://127.0.0.1:*', sessionsBind: 'tcp://127.0.0.1:*',
      apiHost: '127.0.0.1', apiPort: 0, tickIntervalMs: 100, eventPollMs: 200, shutdownGraceMs: 500, verdictWindowMs: 0,
    },
  };
  return validateConfig(deepMerge(base, overrides));
}
