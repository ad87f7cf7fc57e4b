/**
 * `pier up` as root, from a checkout only root can read (like one under /root): the nexus, balancer and stats
 * daemons drop to an unprivileged user once started (real, effective, saved and fs uid all that user's, no
 * capabilities), the runner keeps root, PostgreSQL runs as `postgres`, and everything still works — a deploy (its
 * upload checked in a worker thread started after the drop), traffic through the balancer, `pier logs`,
 * `pier stats`. An app's user, playing the attacker, reads none of the platform's secrets or logs.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import { lookupUser } from '../../src/core/privileges.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { privateTempDir, searchableTempDir } from '../helpers/data-dir.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';
import { tarGz } from '../archive/fixtures.js';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const id = randomId(3);
const daemonUser = `lp-pier-${id}`;
const app = `lp${id}`;
let checkoutParent: string;
let cli: string;
let dataDir: string;
let env: NodeJS.ProcessEnv;
let ports: number[];
let up: CliResult;

function run(args: string[], extraEnv: NodeJS.ProcessEnv = env, timeoutMs = 60_000): Promise<CliResult> {
  return runCli(args, extraEnv, timeoutMs, cli);
}

/** The Uid:, Gid:, Groups: and CapEff: lines of a process. */
function credentials(pid: number): { uids: number[]; gids: number[]; groups: number[]; capEff: string } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => (new RegExp(`^${name}:[ \\t]*(.*)$`, 'm').exec(status)?.[1] ?? '').trim();
  const numbers = (name: string) => field(name).split(/\s+/).filter(Boolean).map(Number);
  return { uids: numbers('Uid'), gids: numbers('Gid'), groups: numbers('Groups'), capEff: field('CapEff') };
}

/** Tries to read `path` (a file with cat, a folder with ls) as `uid`; the exit code and stderr. */
function readAs(uid: number, gid: number, path: string): { status: number | null; stderr: string; stdout: string } {
  const isDir = statSync(path).isDirectory();
  const result = spawnSync(isDir ? 'ls' : 'cat', [path], { uid, gid, encoding: 'utf8' });
  return { status: result.status, stderr: result.stderr, stdout: result.stdout };
}

beforeAll(async () => {
  // A checkout only root can enter: what a daemon has not loaded before dropping root, it cannot load after.
  checkoutParent = privateTempDir('pier-lp-checkout-');
  const checkout = join(checkoutParent, 'pier');
  mkdirSync(checkout);
  cpSync(join(repo, 'dist'), join(checkout, 'dist'), { recursive: true });
  cpSync(join(repo, 'package.json'), join(checkout, 'package.json'));
  // A real folder, not a symlink out of the private one: Node would load through the link's readable target.
  // Hard links when on the same filesystem (fast), a copy otherwise.
  const modules = realpathSync(join(repo, 'node_modules'));
  if (spawnSync('cp', ['-al', modules, join(checkout, 'node_modules')]).status !== 0) {
    rmSync(join(checkout, 'node_modules'), { recursive: true, force: true });
    cpSync(modules, join(checkout, 'node_modules'), { recursive: true });
  }
  cli = join(checkout, 'dist', 'cli', 'main.js');

  dataDir = searchableTempDir('pier-lp-');
  ports = await Promise.all(Array.from({ length: 10 }, () => freePort()));
  const [pg, c1, e1, h1, a1, web, si, st, sq] = ports;
  const instancePorts = 21000 + (process.pid % 100) * 50;
  writeFileSync(
    join(dataDir, 'pier.toml'),
    `[log]\nlevel = "info"\n[db]\nembeddedPort = ${pg}\n[security]\nuser = "${daemonUser}"\n[balancer]\nport = ${web}\n` +
      `[runner]\nportMin = ${instancePorts}\nportMax = ${instancePorts + 49}\n` +
      `[[cluster.stats]]\nintake = "tcp://127.0.0.1:${si}"\ntail = "tcp://127.0.0.1:${st}"\nquery = "tcp://127.0.0.1:${sq}"\n` +
      `[[cluster.nexus]]\ncontrol = "tcp://127.0.0.1:${c1}"\nevents = "tcp://127.0.0.1:${e1}"\nheartbeats = "tcp://127.0.0.1:${h1}"\napi = "http://127.0.0.1:${a1}"\n`,
  );
  env = { PIER_DATA: dataDir, XDG_CONFIG_HOME: join(dataDir, 'xdg'), PIER_DB_URL: '', DATABASE_URL: '' };
  up = await run(['up', '--detach']);
}, 120_000);

afterAll(async () => {
  await run(['down']);
  // pier up created the daemon user and the runner the app's: both go (destroy removes the app's; make sure).
  for (const user of [`p-${app}`, daemonUser]) if (lookupUser(user)) spawnSync('userdel', [user]);
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(checkoutParent, { recursive: true, force: true });
}, 60_000);

describe('pier up (least privilege)', () => {
  it('runs nexus, balancer and stats as the unprivileged user, the runner as root, postgres as postgres', () => {
    expect(up.stderr).toBe('');
    expect(up.code).toBe(0);
    const user = lookupUser(daemonUser)!;
    expect(user.uid).toBeGreaterThan(0);
    const state = JSON.parse(readFileSync(join(dataDir, 'up.json'), 'utf8')) as { children: Array<{ name: string; pid: number }>; postgres: { pid: number } };
    const byName = new Map(state.children.map((c) => [c.name, c.pid]));
    for (const name of ['nexus-1', 'balancer-1', 'stats-1']) {
      const creds = credentials(byName.get(name)!);
      expect(creds.uids, `${name} uids (real, effective, saved, fs)`).toEqual([user.uid, user.uid, user.uid, user.uid]);
      expect(creds.gids, `${name} gids`).toEqual([user.gid, user.gid, user.gid, user.gid]);
      expect(creds.groups, `${name} supplementary groups`).toEqual([]);
      expect(creds.capEff, `${name} effective capabilities`).toMatch(/^0+$/);
      // Every thread (libuv's pool, V8's) dropped too, not only the main one.
      const tasks = readdirSync(`/proc/${byName.get(name)!}/task`);
      expect(tasks.length).toBeGreaterThan(1);
      for (const task of tasks) expect(credentials(Number(task)).uids, `${name} thread ${task}`).toEqual([user.uid, user.uid, user.uid, user.uid]);
    }
    expect(credentials(byName.get('runner-1')!).uids).toEqual([0, 0, 0, 0]);
    // Only the nexus and the collector are given the database URL (with its password).
    const dbUrlOf = (name: string) => readFileSync(`/proc/${byName.get(name)!}/environ`, 'utf8').split('\0').find((v) => v.startsWith('PIER_DB_URL='));
    for (const name of ['nexus-1', 'stats-1']) expect(dbUrlOf(name), name).toMatch(/^PIER_DB_URL=postgres(ql)?:\/\/.+:.+@/);
    for (const name of ['balancer-1', 'runner-1']) expect(dbUrlOf(name), name).toBe('PIER_DB_URL=');
    const postgres = lookupUser('postgres')!;
    expect(credentials(state.postgres.pid).uids).toEqual([postgres.uid, postgres.uid, postgres.uid, postgres.uid]);
    // And the daemon user really cannot read the checkout the daemons were started from.
    expect(readAs(user.uid, user.gid, join(checkoutParent, 'pier', 'dist', 'api', 'upload-check-worker.js')).status).not.toBe(0);
  });

  it('still deploys (upload checked in a worker started after the drop), serves, logs and counts', async () => {
    const { request } = await import('undici');
    expect((await run(['apps:create', app])).code).toBe(0);
    // The nexus's first upload check starts its first worker, after the drop: it still refuses a hostile archive.
    const { token } = JSON.parse(readFileSync(join(dataDir, 'admin.json'), 'utf8')) as { token: string };
    const deep = tarGz([{ name: 'wsgi.py', data: 'x' }, { name: `${'a/'.repeat(2000)}x.py`, data: 'x' }]);
    const refused = await fetch(`http://127.0.0.1:${ports[4]}/v1/apps/${app}/releases`, {
      method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/gzip' }, body: deep,
    });
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toMatch(/over the 1024-byte limit for a path/);
    const deployed = await run(['deploy', join(repo, 'examples', 'hello'), '-a', app]);
    expect(deployed.stderr).toBe('');
    expect(deployed.stdout).toMatch(/v1 is live in [\d.]+ s/);
    const nexusLog = readFileSync(join(dataDir, 'logs', 'nexus-1.log'), 'utf8');
    expect(nexusLog.indexOf('"msg":"dropped root"')).toBeGreaterThan(-1);
    expect(nexusLog).not.toMatch(/upload check worker failed/);
    for (let i = 0; i < 5; i++) {
      const res = await request(`http://127.0.0.1:${ports[5]}/lp-${i}`, { headers: { host: `${app}.localhost` } });
      expect(await res.body.text()).toBe('Hello from Pier!\n');
      expect(res.statusCode).toBe(200);
    }
    const logs = await waitFor(async () => {
      const result = await run(['logs', '-a', app, '-n', '200']);
      return result.stdout.includes('path="/lp-4"') && result.stdout.includes('hello: GET /lp-4') ? result : undefined;
    }, { name: 'router and app lines in pier logs', timeoutMs: 15_000, intervalMs: 250 });
    expect(logs.code).toBe(0);
    const stats = await waitFor(async () => {
      const result = await run(['stats', '-a', app, '--json']);
      const rows = JSON.parse(result.stdout || '[]') as Array<{ requests: number; s2xx: number }>;
      return rows.reduce((n, r) => n + r.s2xx, 0) >= 5 ? rows : undefined;
    }, { name: 'requests counted in pier stats', timeoutMs: 15_000, intervalMs: 250 });
    expect(stats.reduce((n, r) => n + r.requests, 0)).toBeGreaterThanOrEqual(5);
    // The collector wrote its chunks after the drop: they are its user's, in folders no one else enters.
    const user = lookupUser(daemonUser)!;
    const appLogs = join(dataDir, 'stats', 'logs', app);
    for (const path of [join(dataDir, 'stats'), join(dataDir, 'stats', 'logs'), appLogs, ...readdirSync(appLogs).map((f) => join(appLogs, f))]) {
      const st = statSync(path);
      expect([st.uid, st.gid], path).toEqual([user.uid, user.gid]);
      if (st.isDirectory()) expect(st.mode & 0o777, path).toBe(0o700);
    }
  }, 120_000);

  it("keeps keys, admin token, configs, daemon logs and collected logs from an app's user", () => {
    const appUser = lookupUser(`p-${app}`);
    expect(appUser, 'the deployed app has its own user').toBeDefined();
    const { uid, gid } = appUser!;
    const keysDir = join(dataDir, 'keys');
    const targets = [
      keysDir, join(keysDir, 'cluster', 'server.key'), join(keysDir, 'nexus-1', 'server.key'), join(keysDir, 'stats-1', 'stats.key'),
      join(keysDir, 'runner-1', 'node.key'), join(dataDir, 'admin.json'),
      join(dataDir, 'config'), join(dataDir, 'config', 'nexus-1.toml'),
      join(dataDir, 'logs'), join(dataDir, 'logs', 'nexus-1.log'), join(dataDir, 'logs', 'up.log'),
      join(dataDir, 'stats'), join(dataDir, 'stats', 'logs', app), join(dataDir, 'stats', 'logs', app, readdirSync(join(dataDir, 'stats', 'logs', app))[0]!),
    ];
    // The database URL and its password reach the daemons in their environment: not for app users either.
    const state = JSON.parse(readFileSync(join(dataDir, 'up.json'), 'utf8')) as { children: Array<{ name: string; pid: number }> };
    for (const child of state.children) targets.push(`/proc/${child.pid}/environ`);
    for (const path of targets) {
      expect(existsSync(path), path).toBe(true);
      expect(readAs(0, 0, path).status, `root reads ${path}`).toBe(0);
      const attempt = readAs(uid, gid, path);
      expect(attempt.status, `app user reads ${path}`).not.toBe(0);
      expect(attempt.stdout, path).toBe('');
      expect(attempt.stderr, path).toMatch(/Permission denied/);
    }
    // The daemon user, too, holds no key on disk: each daemon read its own before dropping root.
    const daemon = lookupUser(daemonUser)!;
    for (const path of [join(keysDir, 'nexus-1', 'server.key'), join(dataDir, 'admin.json'), join(dataDir, 'config', 'nexus-1.toml')]) {
      expect(readAs(daemon.uid, daemon.gid, path).status, `daemon user reads ${path}`).not.toBe(0);
    }
  });

  it('refuses security.user for a runner, which needs root, with one line', async () => {
    const file = join(dataDir, 'runner-with-user.toml');
    writeFileSync(file, `[security]\nuser = "${daemonUser}"\n`);
    const result = await run(['runner', '--config', file]);
    expect(result.code).toBe(78);
    expect(result.stderr).toBe(
      `error: security.user '${daemonUser}' is for nexus, balancer and stats daemons: a runner needs root (it creates app users and cgroups and starts each app as its user); remove security.user from the runner's config (PIER_CONFIG)\n`,
    );
  });

  it('destroys the app and stops cleanly', async () => {
    expect((await run(['apps:destroy', app, '--confirm', app])).code).toBe(0);
    const down = await run(['down']);
    expect(down.code).toBe(0);
  }, 60_000);
});
