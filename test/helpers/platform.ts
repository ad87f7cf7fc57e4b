/**
 * A whole platform for one test file (nexus, stats collector, runner as root with app users, balancer), with an
 * owner and an operator token, apps written from source, deploys that wait for the release to settle, and a
 * clean-up that also removes the app users the file's apps got.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { packDirectory } from '../../src/archive/index.js';
import type { ConfigInput } from '../../src/config/index.js';
import { randomId } from '../../src/core/ids.js';
import { silentLogger } from '../../src/core/logger.js';
import { createOwner, withTransaction } from '../../src/db/index.js';
import type { Instance, Release } from '../../src/protocol/index.js';
import { Balancer } from '../../src/balancer/balancer.js';
import { appUserName } from '../../src/runner/app-users.js';
import type { PortPool } from '../../src/runner/ports.js';
import { Runner } from '../../src/runner/runner.js';
import { apiCaller, type ApiCall } from './api.js';
import { testConfig } from './config.js';
import { searchableTempDir } from './data-dir.js';
import { collectorAddress, startCollector, startNexus, type NexusHandle } from './daemons.js';
import { testDatabase, testPool } from './postgres.js';
import { waitFor } from './wait.js';

export interface Platform {
  dir: string;
  /** The platform's database (for tests that read or change PostgreSQL directly). */
  dbUrl: string;
  nexus: NexusHandle;
  runner: Runner;
  /** Every runner (`runner` first), with PlatformOptions.runners > 1. */
  runners: Runner[];
  balancer: Balancer;
  /** The apps' owner. */
  api: ApiCall;
  /** An operator (admin). */
  admin: ApiCall;
  /** Another owner, who owns none of the apps. */
  stranger: ApiCall;
  /** The owner's and the operator's tokens (for the CLI). */
  tokens: { owner: string; admin: string };
  /** Writes `files` (paths may have folders) as a new app folder and returns it. */
  writeApp(name: string, files: Record<string, string>): string;
  /** Creates (unless it exists) and deploys `app` from `appDir`; resolves with the settled release. */
  deploy(app: string, appDir: string): Promise<Release>;
  /** The app's ready instances. */
  readyInstances(app: string): Promise<Instance[]>;
}

export interface PlatformOptions {
  /** Overrides of the runner's config section. */
  runner?: ConfigInput;
  /** Port pool for the runner (tests that play with ports). */
  ports?: PortPool;
  /** Apps whose users (p-<app>) are removed after the file (read at the end: names may be added meanwhile). */
  apps: string[];
  /** Prefix of the owners' names and the data folder. @default 'rl' */
  prefix?: string;
  /** How many runners (each its own folder, id and half of the port range). @default 1 */
  runners?: number;
  /** Overrides of the cluster section every daemon gets (e.g. integrityIntervalMs). */
  cluster?: { integrityIntervalMs?: number; heartbeatMisses?: number };
  /** Overrides of the nexus's config section (e.g. alertWebhookUrl, alertWebhookAllowPrivate). */
  nexus?: ConfigInput;
}

/** Call at the top level of a test file. */
export function platformForFile(options: PlatformOptions): Platform {
  const prefix = options.prefix ?? 'rl';
  const dir = searchableTempDir(`pier-${prefix}-`);
  const p = { dir } as Platform;
  const created = new Set<string>();
  beforeAll(async () => {
    const dbUrl = await testDatabase();
    p.dbUrl = dbUrl;
    const pool = testPool(dbUrl);
    const owner = await withTransaction(pool, (tx) => createOwner(tx, `${prefix}-owner-${randomId()}`));
    const admin = await withTransaction(pool, (tx) => createOwner(tx, `${prefix}-admin-${randomId()}`, true));
    const stranger = await withTransaction(pool, (tx) => createOwner(tx, `${prefix}-stranger-${randomId()}`));
    const collector = await collectorAddress();
    // Heartbeats as tolerant as in production (1.5 s): everything here shares one event loop on a busy machine,
    // and a runner declared dead for a 150 ms stall would have its instances moved mid-test.
    const beats = { heartbeatIntervalMs: 100, heartbeatMisses: 15, ...options.cluster };
    p.nexus = await startNexus(dbUrl, { nexus: { schedulerIntervalMs: 100, ...options.nexus }, cluster: { stats: [collector], ...beats } }, 'file');
    const cluster = { ...beats, nexus: [{ control: p.nexus.control, events: p.nexus.events, heartbeats: p.nexus.heartbeats, api: p.nexus.api, sessions: p.nexus.sessions }], stats: [collector] };
    await startCollector(dbUrl, { dataDir: dir, cluster }, collector, { flushIntervalMs: 200 });
    const base = 24000 + (process.pid % 50) * 100;
    const count = options.runners ?? 1;
    const span = Math.floor(100 / count);
    p.runners = [];
    for (let n = 0; n < count; n++) {
      const runner = new Runner({
        config: testConfig({
          dataDir: dir, cluster,
          runner: {
            id: `runner-${randomId()}`, dir: join(dir, n === 0 ? 'runner' : `runner-${n + 1}`), portMin: base + n * span, portMax: base + (n + 1) * span - 1,
            startTimeoutMs: 15_000, drainMs: 0, ...options.runner,
          },
        }),
        log: silentLogger(), ...(options.ports ? { ports: options.ports } : {}),
      });
      await runner.start();
      p.runners.push(runner);
    }
    p.runner = p.runners[0]!;
    p.balancer = new Balancer({ config: testConfig({ cluster, balancer: { id: `balancer-${randomId()}`, host: '127.0.0.1', port: 0 } }), log: silentLogger() });
    await p.balancer.start();
    p.api = apiCaller(() => p.nexus.api, owner.token);
    p.admin = apiCaller(() => p.nexus.api, admin.token);
    p.stranger = apiCaller(() => p.nexus.api, stranger.token);
    p.tokens = { owner: owner.token, admin: admin.token };
  }, 60_000);

  afterAll(async () => {
    await p.balancer?.stop();
    for (const runner of p.runners ?? []) await runner.stop();
    for (const app of options.apps) {
      try {
        execFileSync('userdel', [appUserName(app)], { stdio: 'ignore' });
      } catch {
        // never created
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }, 40_000);

  p.writeApp = (name, files) => {
    const appDir = join(dir, 'src', `${name}-${randomId()}`);
    for (const [file, text] of Object.entries(files)) {
      mkdirSync(join(appDir, file, '..'), { recursive: true });
      writeFileSync(join(appDir, file), text);
    }
    return appDir;
  };

  p.deploy = async (app, appDir) => {
    if (!created.has(app)) {
      expect([201, 409]).toContain((await p.api('POST', '/v1/apps', { name: app })).status); // 409: the test made it
      created.add(app);
    }
    const up = await p.api<{ release: Release }>('POST', `/v1/apps/${app}/releases`, await packDirectory(appDir));
    expect(up.status).toBe(201);
    return waitFor(async () => {
      const { release } = (await p.api<{ release: Release }>('GET', `/v1/apps/${app}/releases/v${up.json.release.version}`)).json;
      return release.status === 'pending' ? undefined : release;
    }, { name: `v${up.json.release.version} of ${app} settled`, timeoutMs: 30_000, intervalMs: 100 });
  };

  p.readyInstances = async (app) => (await p.api<{ instances: Instance[] }>('GET', `/v1/apps/${app}/instances`)).json.instances.filter((i) => i.state === 'ready');
  return p;
}
