/**
 * Destroying an app everywhere, all real (nexus on PostgreSQL, a root runner with app users on uWSGI, a balancer, a
 * collector): an app that leaves a daemon behind (double fork + setsid) and writes into its HOME, TMPDIR and /tmp
 * is destroyed; nothing of it may remain — no process of its uid, no user, no file under the runner's folder, no
 * logs on the collector — and a re-created app of the same name sees nothing of the old one.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packDirectory } from '../../src/archive/index.js';
import { randomId } from '../../src/core/ids.js';
import { silentLogger } from '../../src/core/logger.js';
import { createOwner, withTransaction } from '../../src/db/index.js';
import type { App, Release } from '../../src/protocol/index.js';
import { Balancer } from '../../src/balancer/balancer.js';
import { Runner } from '../../src/runner/runner.js';
import type { StatsDaemon } from '../../src/stats/stats.js';
import { killAllOf, processesOf } from '../../src/runner/app-files.js';
import { AppUsers } from '../../src/runner/app-users.js';
import { send } from '../balancer/helpers.js';
import { testConfig } from '../helpers/config.js';
import { collectorAddress, startCollector, startNexus, type NexusHandle } from '../helpers/daemons.js';
import { testDatabase, testPool } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';
import { apiCaller } from '../helpers/api.js';
import { searchableTempDir } from '../helpers/data-dir.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);
const { token } = await withTransaction(pool, (tx) => createOwner(tx, `ds-owner-${randomId(3)}`));
const dir = searchableTempDir('pier-ds-destroy-');
const app = `ds-${randomId(3)}`;
const scratch = `/tmp/pier-${app}-scratch`;
const users = new AppUsers();
const seenUids = new Set<number>();
let nexus: NexusHandle;
let runner: Runner;
let runnerConfig: ReturnType<typeof testConfig>;
let collector: StatsDaemon;
let startStats: () => Promise<StatsDaemon>;
let balancer: Balancer;

/**
 * At import the app leaves a daemon behind (`sleep 1000` in its own session, its parent gone) and writes into its
 * HOME, TMPDIR and /tmp; each request prints a line naming its path.
 */
const SOURCE = `import os, subprocess, tempfile
home = os.environ["HOME"]
os.makedirs(os.path.join(home, "cache", "deep"), exist_ok=True)
open(os.path.join(home, "cache", "deep", "data"), "w").write("old app data")
tempfile.NamedTemporaryFile(delete=False, prefix="old-").write(b"old tmp")
open(${JSON.stringify(scratch)}, "w").write("old scratch")
subprocess.Popen(["sleep", "1000"], start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print("started with secret", os.environ.get("SECRET", "-"), flush=True)
def application(environ, start_response):
    print("served", environ["PATH_INFO"], flush=True)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("secret=%s" % os.environ.get("SECRET", "-")).encode()]
`;

const api = apiCaller(() => nexus.api, token);

async function deploy(): Promise<Release> {
  const appDir = join(dir, 'src', app);
  mkdirSync(appDir, { recursive: true });
  writeFileSync(join(appDir, 'wsgi.py'), SOURCE);
  const up = await api<{ release: Release }>('POST', `/v1/apps/${app}/releases`, await packDirectory(appDir));
  expect(up.status).toBe(201);
  return waitFor(async () => {
    const { release } = (await api<{ release: Release }>('GET', `/v1/apps/${app}/releases/v${up.json.release.version}`)).json;
    return release.status === 'pending' ? undefined : release;
  }, { name: `v${up.json.release.version} settled`, timeoutMs: 30_000, intervalMs: 100 });
}

function uidOf(name: string): number | undefined {
  try {
    return Number(execFileSync('getent', ['passwd', name]).toString().split(':')[2]);
  } catch {
    return undefined;
  }
}

function gidOf(name: string): number {
  return Number(execFileSync('getent', ['passwd', name]).toString().split(':')[3]);
}

/** Every path under `root` (not following links) owned by `uid`. */
function ownedBy(root: string, uid: number): string[] {
  const found: string[] = [];
  const walk = (path: string): void => {
    let st;
    try {
      st = lstatSync(path);
    } catch {
      return;
    }
    if (st.uid === uid) found.push(path);
    if (st.isDirectory()) for (const name of readdirSync(path)) walk(join(path, name));
  };
  walk(root);
  return found;
}

/** Every path under `root` whose name mentions `text`. */
function named(root: string, text: string): string[] {
  const found: string[] = [];
  const walk = (path: string): void => {
    let entries;
    try {
      entries = readdirSync(path, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.name.includes(text)) found.push(join(path, e.name));
      if (e.isDirectory()) walk(join(path, e.name));
    }
  };
  walk(root);
  return found;
}

async function destroyAndWait(): Promise<void> {
  expect((await api('DELETE', `/v1/apps/${app}`)).status).toBe(200);
  await waitFor(async () => uidOf(`p-${app}`) === undefined, { name: 'app user deleted', timeoutMs: 20_000, intervalMs: 100 });
}

beforeAll(async () => {
  const address = await collectorAddress();
  nexus = await startNexus(dbUrl, { nexus: { schedulerIntervalMs: 100 }, cluster: { stats: [address] } }, 'file');
  const cluster = { nexus: [{ control: nexus.control, events: nexus.events, heartbeats: nexus.heartbeats, api: nexus.api }], stats: [address] };
  startStats = () => startCollector(dbUrl, { dataDir: dir, cluster }, address, { flushIntervalMs: 200 });
  collector = await startStats();
  const base = 29000 + (process.pid % 40) * 20;
  runnerConfig = testConfig({ dataDir: dir, cluster, runner: { id: `runner-${randomId()}`, dir: join(dir, 'runner'), portMin: base, portMax: base + 19, startTimeoutMs: 15_000 } });
  runner = new Runner({ config: runnerConfig, log: silentLogger() });
  await runner.start();
  balancer = new Balancer({ config: testConfig({ cluster, balancer: { id: `balancer-${randomId()}`, host: '127.0.0.1', port: 0 } }), log: silentLogger() });
  await balancer.start();
}, 60_000);

afterAll(async () => {
  await balancer?.stop();
  await runner?.stop();
  // Only a uid that is still this file's app user: a freed one may belong to another test file's app by now.
  const current = uidOf(`p-${app}`);
  if (current !== undefined && seenUids.has(current)) await killAllOf({ uid: current, gid: gidOf(`p-${app}`) });
  if (uidOf(`p-${app}`) !== undefined) await users.remove(app);
  rmSync(scratch, { force: true });
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe('destroying an app', () => {
  it('leaves no process, user, file or log of it anywhere, and a re-created name starts empty', async () => {
    const runnerDir = runner.dir;
    const logsDir = join(dir, 'stats', 'logs', app);
    expect((await api('POST', '/v1/apps', { name: app })).status).toBe(201);
    expect((await api('PATCH', `/v1/apps/${app}/config`, { SECRET: 'old-secret' })).status).toBe(200);
    expect((await api('POST', `/v1/apps/${app}/hostnames`, { hostname: `${app}.example.test` })).status).toBe(201);
    const oldRelease = await deploy();
    expect(oldRelease).toMatchObject({ status: 'live' });
    const uid = uidOf(`p-${app}`)!;
    expect(uid).toBeGreaterThan(0);
    seenUids.add(uid);
    for (let i = 0; i < 5; i++) {
      const reply = await waitFor(async () => {
        const r = await send(balancer.port!, `${app}.localhost`, { path: `/old-${i}` });
        return r.status === 200 ? r : undefined;
      }, { name: 'old app answers' });
      expect(reply.body).toBe('secret=old-secret');
    }
    await waitFor(async () => {
      const { json } = await api<{ lines: string[] }>('GET', `/v1/apps/${app}/logs?lines=1000`);
      return json.lines.some((l) => l.includes('served /old-4'));
    }, { name: 'old logs stored', timeoutMs: 5000, intervalMs: 100 });
    await waitFor(async () => {
      const { json } = await api<{ stats: Array<{ requests: number }> }>('GET', `/v1/apps/${app}/stats?since=1h`);
      return json.stats.reduce((sum, r) => sum + r.requests, 0) >= 5;
    }, { name: 'old stats stored', timeoutMs: 5000, intervalMs: 100 });
    // The daemon escaped its vassal: its own session, not the vassal's child.
    const daemons = (await processesOf(uid)).filter((pid) => readProc(pid, 'cmdline').startsWith('sleep\0'));
    expect(daemons.length).toBeGreaterThanOrEqual(1);
    expect(readProc(daemons[0]!, 'stat').split(') ')[1]!.split(' ')[3]).toBe(String(daemons[0])); // session leader
    expect(ownedBy(runnerDir, uid).length).toBeGreaterThan(0);
    expect(existsSync(logsDir)).toBe(true);
    expect(existsSync(scratch)).toBe(true);

    // A CI job holds the app's deploy lock (ten minutes) when the app is destroyed.
    expect((await api('POST', `/v1/apps/${app}/lock`, { holder: 'old-ci', leaseMs: 600_000 })).status).toBe(201);

    const destroyedAt = Date.now();
    await destroyAndWait();
    console.log(`destroy: user gone ${Date.now() - destroyedAt} ms after the API call`);
    expect(await processesOf(uid)).toEqual([]);
    expect(ownedBy(runnerDir, uid)).toEqual([]);
    expect(named(runnerDir, app)).toEqual([]);
    expect(existsSync(scratch)).toBe(false);
    await waitFor(() => !existsSync(logsDir), { name: 'collector logs deleted', timeoutMs: 5000, intervalMs: 100 });
    const { rows } = await pool.query('SELECT count(*)::int AS n FROM request_stats WHERE app = $1', [app]);
    expect(rows[0].n).toBe(0);
    const left = await pool.query(
      `SELECT (SELECT count(*)::int FROM artifacts WHERE sha256 = $1) AS artifacts, (SELECT count(*)::int FROM locks WHERE name = $2) AS locks`,
      [oldRelease.sha256, `deploy:${app}`],
    );
    expect(left.rows[0]).toEqual({ artifacts: 0, locks: 0 });
    expect(readdirSync(join(runnerDir, 'artifacts'))).toEqual([]);

    // The same name again: nothing of the old app.
    const recreatedAt = Date.now();
    expect((await api('POST', '/v1/apps', { name: app })).status).toBe(201);
    expect((await api<{ app: App }>('GET', `/v1/apps/${app}`)).json.app.hostnames).not.toContain(`${app}.example.test`);
    expect((await api<{ hostnames: unknown[] }>('GET', `/v1/apps/${app}/hostnames`)).json.hostnames).toEqual([]);
    expect((await api<{ vars: Record<string, string> }>('GET', `/v1/apps/${app}/config`)).json.vars).toEqual({});
    expect((await api<{ releases: unknown[] }>('GET', `/v1/apps/${app}/releases`)).json.releases).toEqual([]);
    expect((await api<{ lines: string[] }>('GET', `/v1/apps/${app}/logs?lines=1000`)).json.lines).toEqual([]);
    expect((await api<{ stats: unknown[] }>('GET', `/v1/apps/${app}/stats?since=1h`)).json.stats).toEqual([]);
    expect((await api<{ lock: unknown }>('GET', `/v1/apps/${app}/lock`)).json.lock).toBeNull();

    expect(await deploy()).toMatchObject({ status: 'live', version: 1 });
    const newUid = uidOf(`p-${app}`)!;
    seenUids.add(newUid);
    for (let i = 0; i < 3; i++) {
      const reply = await waitFor(async () => {
        const r = await send(balancer.port!, `${app}.localhost`, { path: `/new-${i}` });
        return r.status === 200 ? r : undefined;
      }, { name: 'new app answers' });
      expect(reply.body).toBe('secret=-');
    }
    const lines = await waitFor(async () => {
      const { json } = await api<{ lines: string[] }>('GET', `/v1/apps/${app}/logs?lines=1000`);
      return json.lines.some((l) => l.includes('served /new-2')) ? json.lines : undefined;
    }, { name: 'new logs', timeoutMs: 5000, intervalMs: 100 });
    expect(lines.filter((l) => l.includes('/old-') || l.includes('old-secret'))).toEqual([]);
    const stats = await waitFor(async () => {
      const { json } = await api<{ stats: Array<{ requests: number }> }>('GET', `/v1/apps/${app}/stats?since=1h`);
      const n = json.stats.reduce((sum, r) => sum + r.requests, 0);
      return n >= 3 ? n : undefined;
    }, { name: 'new stats', timeoutMs: 5000, intervalMs: 100 });
    expect(stats).toBe(3);
    // Whatever the new user owns under the runner's folder (uid reused or not) was made for the new app.
    for (const path of ownedBy(runnerDir, newUid)) expect(lstatSync(path).ctimeMs).toBeGreaterThanOrEqual(recreatedAt - 5);
    const homeFiles = named(join(runnerDir, 'homes'), 'data').concat(named(join(runnerDir, 'homes'), 'old-'));
    for (const path of homeFiles) expect(lstatSync(path).ctimeMs).toBeGreaterThanOrEqual(recreatedAt - 5);

    // And gone again (this also removes what the test made).
    await destroyAndWait();
    expect(await processesOf(newUid)).toEqual([]);
    expect(ownedBy(runnerDir, newUid)).toEqual([]);
  }, 90_000);

  it('is finished by a runner and a collector that were down during the destroy, when they come back', async () => {
    const runnerDir = runner.dir;
    const logsDir = join(dir, 'stats', 'logs', app);
    expect((await api('POST', '/v1/apps', { name: app })).status).toBe(201);
    expect(await deploy()).toMatchObject({ status: 'live' });
    const uid = uidOf(`p-${app}`)!;
    seenUids.add(uid);
    await waitFor(async () => (await send(balancer.port!, `${app}.localhost`, { path: '/old-down' })).status === 200, { name: 'old app answers' });
    await waitFor(async () => {
      const { json } = await api<{ lines: string[] }>('GET', `/v1/apps/${app}/logs?lines=1000`);
      return json.lines.some((l) => l.includes('served /old-down'));
    }, { name: 'old logs stored', timeoutMs: 5000, intervalMs: 100 });

    // Both go away, the app is destroyed and its name created again meanwhile. A runner that stops kills what its
    // instances started, escaped daemon included (their cgroups go with them); one killed with -9 cannot, so a
    // process of the app's uid is left running as such a runner would leave it.
    await runner.stop();
    await collector.stop();
    expect(await processesOf(uid)).toEqual([]);
    spawn('sleep', ['1000'], { uid, gid: gidOf(`p-${app}`), detached: true, stdio: 'ignore' }).unref();
    await waitFor(async () => (await processesOf(uid)).length > 0, { name: 'leftover process of the old app' });
    expect((await api('DELETE', `/v1/apps/${app}`)).status).toBe(200);
    expect((await api('POST', '/v1/apps', { name: app })).status).toBe(201);
    expect(ownedBy(runnerDir, uid).length).toBeGreaterThan(0);
    expect(readdirSync(logsDir).length).toBeGreaterThan(0);

    const backAt = Date.now();
    collector = await startStats();
    runner = new Runner({ config: runnerConfig, log: silentLogger() });
    await runner.start(); // resolves once the first snapshot is handled: the old app is gone by then
    console.log(`restart: old app cleaned up ${Date.now() - backAt} ms after the runner came back`);
    expect(await processesOf(uid)).toEqual([]);
    expect(ownedBy(runnerDir, uid)).toEqual([]);
    expect(named(runnerDir, app)).toEqual([]);
    expect(uidOf(`p-${app}`)).toBeUndefined();
    await waitFor(() => !existsSync(logsDir) || readdirSync(logsDir).length === 0, { name: 'old logs deleted by the collector', timeoutMs: 5000, intervalMs: 100 });

    expect(await deploy()).toMatchObject({ status: 'live', version: 1 });
    await waitFor(async () => (await send(balancer.port!, `${app}.localhost`, { path: '/new-back' })).status === 200, { name: 'new app answers' });
    const lines = await waitFor(async () => {
      const { json } = await api<{ lines: string[] }>('GET', `/v1/apps/${app}/logs?lines=1000`);
      return json.lines.some((l) => l.includes('served /new-back')) ? json.lines : undefined;
    }, { name: 'new logs', timeoutMs: 5000, intervalMs: 100 });
    expect(lines.filter((l) => l.includes('/old-'))).toEqual([]);
    seenUids.add(uidOf(`p-${app}`)!);
    await destroyAndWait();
  }, 90_000);
});

function readProc(pid: number, file: string): string {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return '';
  }
}
