import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_NEXUS_ADDRESSES, loadConfig } from '../../src/config/index.js';
import { ConfigError } from '../../src/core/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'pier-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
/** Writes `text` to a new TOML file in the temp folder and returns its path. */
function toml(text: string): string {
  const file = join(dir, `pier-${files++}.toml`);
  writeFileSync(file, text);
  return file;
}

/** The ConfigError `fn` throws (fails the test when it throws nothing or something else). */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('PIER_CONFIG');
    expect((err as ConfigError).message).not.toContain('\n');
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError, but nothing was thrown');
}

describe('loadConfig', () => {
  it('returns the schema defaults when given no file, env or overrides', () => {
    const config = loadConfig();
    expect(config.nexus.apiPort).toBe(7480);
    expect(config.nexus.controlBind).toBe('tcp://127.0.0.1:7400');
    expect(config.cluster.heartbeatIntervalMs).toBe(500);
    expect(config.cluster.heartbeatMisses).toBe(3);
    expect(config.cluster.maxMessageBytes).toBe(4 * 1024 * 1024);
    expect(config.cluster.nexus).toEqual(DEFAULT_NEXUS_ADDRESSES);
    expect(config.security.curve).toBe(true);
    expect(config.db.url).toBe('');
    expect(config.log.level).toBe('info');
    expect(config.balancer.port).toBe(8080);
    const expectedDataDir = userInfo().uid === 0 ? '/var/lib/pier' : join(homedir(), '.local', 'share', 'pier');
    expect(config.dataDir).toBe(expectedDataDir);
    expect(config.security.keysDir).toBe(join(expectedDataDir, 'keys'));
  });

  it('returns a deeply frozen config when loaded', () => {
    const config = loadConfig();
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.nexus)).toBe(true);
    expect(Object.isFrozen(config.cluster.nexus[0])).toBe(true);
    expect(() => {
      (config.nexus as { apiPort: number }).apiPort = 1;
    }).toThrow(TypeError);
  });

  it('reads settings from a TOML file and keeps defaults for the rest when a file is given', () => {
    const file = toml(`
dataDir = "${join(dir, 'data')}"
[nexus]
apiPort = 9000
id = "nexus-7"
[cluster]
heartbeatIntervalMs = 250
[[cluster.nexus]]
control = "tcp://10.0.0.1:7400"
events = "tcp://10.0.0.1:7401"
heartbeats = "tcp://10.0.0.1:7402"
api = "http://10.0.0.1:7480"
`);
    const config = loadConfig({ file });
    expect(config.nexus.apiPort).toBe(9000);
    expect(config.nexus.id).toBe('nexus-7');
    expect(config.nexus.controlBind).toBe('tcp://127.0.0.1:7400');
    expect(config.cluster.heartbeatIntervalMs).toBe(250);
    expect(config.cluster.heartbeatMisses).toBe(3);
    expect(config.cluster.nexus).toEqual([
      { control: 'tcp://10.0.0.1:7400', events: 'tcp://10.0.0.1:7401', heartbeats: 'tcp://10.0.0.1:7402', api: 'http://10.0.0.1:7480' },
    ]);
    expect(config.dataDir).toBe(join(dir, 'data'));
    expect(config.security.keysDir).toBe(join(dir, 'data', 'keys'));
  });

  it('maps PIER_* variables and DATABASE_URL onto settings of the right type when env is given', () => {
    const config = loadConfig({
      env: {
        PIER_NEXUS_API_PORT: '8123',
        PIER_CLUSTER_HEARTBEAT_INTERVAL_MS: '75',
        PIER_SECURITY_CURVE: 'false',
        PIER_LOG_LEVEL: 'warn',
        PIER_DATA: join(dir, 'env-data'),
        DATABASE_URL: 'postgres://u:p@127.0.0.1:5432/pier',
      },
    });
    expect(config.nexus.apiPort).toBe(8123);
    expect(config.cluster.heartbeatIntervalMs).toBe(75);
    expect(config.security.curve).toBe(false);
    expect(config.log.level).toBe('warn');
    expect(config.dataDir).toBe(join(dir, 'env-data'));
    expect(config.db.url).toBe('postgres://u:p@127.0.0.1:5432/pier');
  });

  it('prefers PIER_DB_URL over DATABASE_URL when both are set', () => {
    const config = loadConfig({ env: { DATABASE_URL: 'postgres://a@127.0.0.1/a', PIER_DB_URL: 'postgres://b@127.0.0.1/b' } });
    expect(config.db.url).toBe('postgres://b@127.0.0.1/b');
  });

  it('ignores unrelated and empty environment variables when env is given', () => {
    const config = loadConfig({ env: { PIER_NEXUS_API_PORT: '', HOME: '/nowhere', PIER_NOT_A_SETTING: 'x' } });
    expect(config.nexus.apiPort).toBe(7480);
  });

  it('applies default < file < env < overrides when one setting is given at every level', () => {
    const file = toml('[nexus]\napiPort = 1001\ntickIntervalMs = 111\n[cluster]\nheartbeatIntervalMs = 101\nheartbeatMisses = 5\n');
    const env = { PIER_NEXUS_API_PORT: '2002', PIER_CLUSTER_HEARTBEAT_INTERVAL_MS: '202', DATABASE_URL: 'postgres://env@127.0.0.1/env' };

    expect(loadConfig({ file }).nexus.apiPort).toBe(1001);

    const fromEnv = loadConfig({ file, env });
    expect(fromEnv.nexus.apiPort).toBe(2002);
    expect(fromEnv.cluster.heartbeatIntervalMs).toBe(202);
    // Settings only the file gives survive the env layer in the same section.
    expect(fromEnv.nexus.tickIntervalMs).toBe(111);
    expect(fromEnv.cluster.heartbeatMisses).toBe(5);

    const fromOverrides = loadConfig({ file, env, overrides: { nexus: { apiPort: 3003 }, db: { url: 'postgres://flag@127.0.0.1/flag' } } });
    expect(fromOverrides.nexus.apiPort).toBe(3003);
    expect(fromOverrides.db.url).toBe('postgres://flag@127.0.0.1/flag');
    expect(fromOverrides.cluster.heartbeatIntervalMs).toBe(202);
    expect(fromOverrides.nexus.tickIntervalMs).toBe(111);
    // The default still shows through where no layer set anything.
    expect(fromOverrides.nexus.eventPollMs).toBe(1000);
  });

  it('names the key path and the file when the file has an unknown key', () => {
    const file = toml('[nexus]\napiPort = 9000\nbogusSetting = 1\n');
    const err = configError(() => loadConfig({ file }));
    expect(err.message).toContain('nexus.bogusSetting');
    expect(err.message).toContain(file);
    expect(err.message).toContain('is not a known setting');
  });

  it('names an unknown top-level section and an unknown key inside an array entry when the file has them', () => {
    const top = toml('[nexsu]\napiPort = 9000\n');
    expect(configError(() => loadConfig({ file: top })).message).toBe(`file ${top}: nexsu is not a known setting`);
    const entry = toml('[[cluster.nexus]]\ncontrol = "tcp://127.0.0.1:1"\nport = 1\n');
    expect(configError(() => loadConfig({ file: entry })).message).toContain('cluster.nexus.0.port');
  });

  it('says the allowed range when a port in the file is out of range', () => {
    const file = toml('[db]\nembeddedPort = 70000\n');
    expect(configError(() => loadConfig({ file })).message).toBe(`file ${file}: db.embeddedPort must be 1..65535`);
    const balancer = toml('[balancer]\nport = 70000\n');
    expect(configError(() => loadConfig({ file: balancer })).message).toBe(`file ${balancer}: balancer.port must be 0..65535`);
    const low = toml('[cluster]\nheartbeatIntervalMs = 5\n');
    expect(configError(() => loadConfig({ file: low })).message).toBe(`file ${low}: cluster.heartbeatIntervalMs must be 10..86400000`);
  });

  it('says the allowed range when an env variable is out of range', () => {
    const err = configError(() => loadConfig({ env: { PIER_NEXUS_API_PORT: '70000' } }));
    expect(err.message).toContain('nexus.apiPort must be 0..65535');
  });

  it('names the env variable, not the file, when only the env value is out of range', () => {
    const file = toml('[nexus]\napiPort = 9000\n');
    const err = configError(() => loadConfig({ file, env: { PIER_NEXUS_API_PORT: '70000' } }));
    expect(err.message).toContain('must be 0..65535');
    expect(err.message).toContain('PIER_NEXUS_API_PORT');
    expect(err.message).not.toContain(file);
  });

  it('rejects an env variable that is not a number or a boolean when the setting needs one', () => {
    expect(configError(() => loadConfig({ env: { PIER_NEXUS_API_PORT: 'eighty' } })).message)
      .toBe("env PIER_NEXUS_API_PORT: 'eighty' is not a number");
    expect(configError(() => loadConfig({ env: { PIER_SECURITY_CURVE: 'maybe' } })).message)
      .toBe("env PIER_SECURITY_CURVE: 'maybe' is not a boolean (use true or false)");
  });

  it('rejects a value of the wrong type in the file', () => {
    const file = toml('[security]\ncurve = "yes"\n');
    const err = configError(() => loadConfig({ file }));
    expect(err.message).toContain(file);
    expect(err.message).toContain('security.curve');
  });

  it('reports bad TOML in one line naming the file', () => {
    const file = toml('[nexus\napiPort = 9000\n\n\n"unterminated = \n');
    const err = configError(() => loadConfig({ file }));
    expect(err.message).toMatch(new RegExp(`^file ${file}: invalid TOML: .+`));
  });

  it('throws a ConfigError naming the file when the requested file is missing', () => {
    const missing = join(dir, 'does-not-exist.toml');
    const err = configError(() => loadConfig({ file: missing }));
    expect(err.message).toBe(`cannot read config file '${missing}': ENOENT`);
  });

  it('checks overrides like any other layer when they are out of range', () => {
    const err = configError(() => loadConfig({ overrides: { cluster: { heartbeatMisses: 0 } } }));
    expect(err.message).toContain('cluster.heartbeatMisses must be 1..100');
  });
});
