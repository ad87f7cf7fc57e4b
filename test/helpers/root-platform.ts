/**
 * A whole platform with a root runner for tenant-boundary tests, all real: a nexus on PostgreSQL, a runner on a
 * uWSGI emperor running each app as its own user, a stats collector, and the JSON API an owner uses (`pier logs`
 * reads it). Registers its own beforeAll/afterAll: the runner stops, the data folder goes, and the `p-<app>` users
 * of the apps made through `createApp` are removed.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { packDirectory } from '../../src/archive/index.js';
import { randomId } from '../../src/core/ids.js';
import { silentLogger } from '../../src/core/logger.js';
import { createOwner, withTransaction } from '../../src/db/index.js';
import type { Release } from '../../src/protocol/index.js';
import { appUserName } from '../../src/runner/app-users.js';
import { Runner } from '../../src/runner/runner.js';
import { testConfig } from './config.js';
import { collectorAddress, startCollector, startNexus, type NexusHandle } from './daemons.js';
import { testDatabase, testPool } from './postgres.js';
import { waitFor } from './wait.js';
import { apiCaller, type ApiCall } from './api.js';
import { searchableTempDir } from './data-dir.js';

export interface RootPlatform {
  /** The data folder (searchable by app users); `record/` in it is writable by every user (sticky). */
  dir: string;
  record: string;
  api: ApiCall;
  readonly runner: Runner;
  /** Creates app `<prefix>-<suffix>` for the test's owner; its user is removed after the file. */
  createApp(suffix: string): Promise<string>;
  /** Writes an app folder from `files` (paths may have folders). */
  writeApp(name: string, files: Record<string, string>): string;
  /** Uploads `appDir` as a new release of `app` and waits until it is live or failed. */
  deploy(app: string, appDir: string): Promise<Release>;
  /** GETs `path` of the app's ready instance directly. */
  get(app: string, path?: string): Promise<string>;
  logsOf(app: string): Promise<string[]>;
}

/** Call at the top level of a test file (with top-level await). `pipArgs` go to the runner's config. */
export async function rootPlatform(prefix: string, pipArgs: string[] = []): Promise<RootPlatform> {
  const dbUrl = await testDatabase();
  const pool = testPool(dbUrl);
  const { token } = await withTransaction(pool, (tx) => createOwner(tx, `${prefix}-owner-${randomId()}`));
  const dir = searchableTempDir(`pier-${prefix}-`);
  const record = join(dir, 'record');
  const names = `${prefix}${randomId()}`;
  const apps: string[] = [];
  let nexus: NexusHandle;
  let runner: Runner | undefined;
  const api = apiCaller(() => nexus.api, token);

  beforeAll(async () => {
    if (process.getuid?.() !== 0) return; // the tests using it need app users
    mkdirSync(record, { mode: 0o1777 });
    chmodSync(record, 0o1777);
    const collector = await collectorAddress();
    nexus = await startNexus(dbUrl, { nexus: { schedulerIntervalMs: 100 }, cluster: { stats: [collector] } }, 'file');
    const cluster = { nexus: [{ control: nexus.control, events: nexus.events, heartbeats: nexus.heartbeats, api: nexus.api }], stats: [collector] };
    await startCollector(dbUrl, { dataDir: dir, cluster }, collector, { flushIntervalMs: 200 });
    const base = 26000 + (process.pid % 30) * 100;
    runner = new Runner({
      config: testConfig({ dataDir: dir, cluster, runner: { id: `runner-${randomId()}`, dir: join(dir, 'runner'), portMin: base, portMax: base + 99, startTimeoutMs: 6000, pipArgs } }),
      log: silentLogger(),
    });
    await runner.start();
  }, 60_000);

  afterAll(async () => {
    await runner?.stop();
    rmSync(dir, { recursive: true, force: true });
    for (const app of apps) {
      try {
        execFileSync('userdel', [appUserName(app)], { stdio: 'ignore' });
      } catch {
        // never created
      }
    }
  }, 30_000);

  const platform: RootPlatform = {
    dir, record, api,
    get runner() {
      return runner!;
    },
    async createApp(suffix) {
      const name = `${names}-${suffix}`;
      expect((await api('POST', '/v1/apps', { name })).status).toBe(201);
      apps.push(name);
      return name;
    },
    writeApp(name, files) {
      const appDir = join(dir, 'src', name);
      for (const [path, text] of Object.entries(files)) {
        mkdirSync(join(appDir, path, '..'), { recursive: true });
        writeFileSync(join(appDir, path), text);
      }
      return appDir;
    },
    async deploy(app, appDir) {
      const up = await api<{ release: Release }>('POST', `/v1/apps/${app}/releases`, await packDirectory(appDir));
      expect(up.status).toBe(201);
      return waitFor(async () => {
        const { release } = (await api<{ release: Release }>('GET', `/v1/apps/${app}/releases/v${up.json.release.version}`)).json;
        return release.status === 'pending' ? undefined : release;
      }, { name: `v${up.json.release.version} of ${app} settled`, timeoutMs: 40_000, intervalMs: 100 });
    },
    async get(app, path = '/') {
      const { json } = await api<{ instances: Array<{ state: string; port: number | null }> }>('GET', `/v1/apps/${app}/instances`);
      const port = json.instances.find((i) => i.state === 'ready')!.port!;
      const res = await fetch(`http://127.0.0.1:${port}${path}`);
      expect(res.status).toBe(200);
      return res.text();
    },
    async logsOf(app) {
      return (await api<{ lines: string[] }>('GET', `/v1/apps/${app}/logs?lines=10000`)).json.lines;
    },
  };
  return platform;
}
