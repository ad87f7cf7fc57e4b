import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { ConfigError } from '../../src/core/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'pier-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}
function error(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('gives the documented defaults when nothing is set', () => {
    const config = loadConfig({ env: {} });
    expect(config.nexus.apiPort).toBe(7480);
    expect(config.cluster.heartbeatIntervalMs).toBe(500);
    expect(config.cluster.nexus).toHaveLength(2);
    expect(config.balancer.port).toBe(8080);
    expect(Object.isFrozen(config.nexus)).toBe(true);
  });

  it('ranks defaults < file < PIER_* env < overrides', () => {
    const path = file('rank.toml', '[nexus]\napiPort = 7001\nid = "from-file"\n[cluster]\nheartbeatIntervalMs = 200\n');
    const config = loadConfig({
      file: path,
      env: { PIER_NEXUS_API_PORT: '7002', PIER_CLUSTER_HEARTBEAT_INTERVAL_MS: '300', DATABASE_URL: 'postgres://x@h/db' },
      overrides: { cluster: { heartbeatIntervalMs: 400 } },
    });
    expect(config.nexus.id).toBe('from-file');
    expect(config.nexus.apiPort).toBe(7002);
    expect(config.cluster.heartbeatIntervalMs).toBe(400);
    expect(config.db.url).toBe('postgres://x@h/db');
  });

  it('names the key and the file of an unknown setting', () => {
    const path = file('unknown.toml', '[nexus]\napiPrt = 1\n');
    const err = error(() => loadConfig({ file: path, env: {} }));
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toBe(`file ${path}: nexus.apiPrt is not a known setting`);
  });

  it('gives the allowed range of an out-of-range value', () => {
    const err = error(() => loadConfig({ file: file('range.toml', '[balancer]\nport = 70000\n'), env: {} }));
    expect(err.message).toMatch(/balancer\.port must be 0\.\.65535$/);
  });

  it('reports bad TOML, a bad env value and a missing file in one line each', () => {
    for (const err of [
      error(() => loadConfig({ file: file('bad.toml', '[nexus\napiPort = 1\n'), env: {} })),
      error(() => loadConfig({ env: { PIER_NEXUS_API_PORT: 'lots' } })),
      error(() => loadConfig({ env: { PIER_SECURITY_CURVE: 'maybe' } })),
      error(() => loadConfig({ file: join(dir, 'missing.toml'), env: {} })),
    ]) {
      expect(err).toBeInstanceOf(ConfigError);
      expect(err.message).not.toContain('\n');
    }
  });
});
