/**
 * Redis for apps (issue #13, Must show 3 and 5) through the whole platform (nexus, root runner with app users and
 * cgroups, real Debian redis-server, real CLI): the leader places the add-on, the runner starts its server as the
 * app's user with its config on stdin, REDIS_URL reaches the app (a new release) and works from `pier run`; the
 * server refuses a client without the password or with a wrong one; a second redis on the app is refused with
 * nothing created; destroying it stops the server and deletes the row. App names start with `rd`.
 */
import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import { getAddon, type Addon } from '../../src/db/index.js';
import type { AddonView } from '../../src/protocol/index.js';
import { appUserName } from '../../src/runner/app-users.js';
import { redisCgroupMb } from '../../src/runner/addon-servers.js';
import { CLI } from '../helpers/cli.js';
import { controlClient } from '../helpers/daemons.js';
import { platformForFile } from '../helpers/platform.js';
import { testPool } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';
import { resp } from '../helpers/redis.js';

const isRoot = process.getuid?.() === 0;
const apps: string[] = [];
const ADDON_PORTS = { addonPortMin: 31000 + (process.pid % 40) * 10, addonPortMax: 31000 + (process.pid % 40) * 10 + 9 };
const p = platformForFile({ apps, prefix: 'rd', runner: ADDON_PORTS });

const WSGI = 'def application(environ, start_response):\n    start_response("200 OK", [])\n    return [b"ok"]\n';

interface Ran { code: number; stdout: string; stderr: string }

function pier(args: string[], timeoutMs = 30_000): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, PIER_API_URL: p.nexus.api, PIER_TOKEN: p.tokens.owner }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
  });
}

async function deployedApp(what: string): Promise<string> {
  const app = `rd${randomId(2)}-${what}`;
  apps.push(app);
  expect((await p.api('POST', '/v1/apps', { name: app })).status).toBe(201);
  expect((await p.deploy(app, p.writeApp(app, { 'wsgi.py': WSGI }))).status).toBe('live');
  return app;
}

async function appRef(app: string): Promise<{ id: number; name: string }> {
  const { rows } = await testPool(p.dbUrl).query<{ id: string }>('SELECT id FROM apps WHERE name = $1', [app]);
  return { id: Number(rows[0]!.id), name: app };
}

/** `pier addons:create redis -a APP --json` (the platform's default plan: 64 MiB). */
async function createRedis(app: string): Promise<AddonView> {
  const ran = await pier(['addons:create', 'redis', '-a', app, '--json']);
  expect(ran.stderr).toBe('');
  expect(ran.code).toBe(0);
  const addon = JSON.parse(ran.stdout) as AddonView;
  expect(addon).toMatchObject({ kind: 'redis', app, state: 'provisioning', configVar: 'REDIS_URL' });
  return addon;
}

async function readyAddon(app: string, name: string): Promise<Addon> {
  const ref = await appRef(app);
  return waitFor(async () => {
    const addon = await getAddon(testPool(p.dbUrl), ref, name);
    return addon.state === 'ready' ? addon : undefined;
  }, { name: `${name} ready`, timeoutMs: 20_000, intervalMs: 50 });
}

function serverPid(name: string): number {
  const server = p.runner.addons!.servers().find((s) => s.name === name);
  expect(server?.pid).toBeGreaterThan(1);
  return server!.pid!;
}

describe.runIf(isRoot)('redis add-on', () => {
  it("serves REDIS_URL to the app's one-offs, as the app's user, memory-limited, password required and never on its command line", async () => {
    const app = await deployedApp('cache');
    const created = await createRedis(app);
    const addon = await readyAddon(app, created.name);
    expect(addon.runnerId).toBe(p.runner.id);
    expect(addon.port).toBeGreaterThanOrEqual(ADDON_PORTS.addonPortMin);
    expect(addon.port).toBeLessThanOrEqual(ADDON_PORTS.addonPortMax);
    expect(addon.startedAt).not.toBeNull();
    const url = `redis://:${addon.secret}@127.0.0.1:${addon.port}/0`;
    expect((await p.api<{ vars: Record<string, string> }>('GET', `/v1/apps/${app}/config`)).json.vars.REDIS_URL).toBe(url);

    // From the app's own release, through `pier run` (the new release REDIS_URL made goes live first).
    const script = "import os,redis; r=redis.from_url(os.environ['REDIS_URL']); r.set('k','v'); print(r.get('k'))";
    const ran = await waitFor(async () => {
      const r = await pier(['run', '-a', app, '--', 'python3', '-c', script]);
      return r.code === 0 ? r : undefined;
    }, { name: 'pier run reaching redis', timeoutMs: 30_000, intervalMs: 500 });
    expect(ran.stdout).toBe("b'v'\n");

    // Without the password, and with a wrong one: refused.
    expect(await resp(addon.port!, ['GET k'])).toMatch(/^-NOAUTH /);
    expect(await resp(addon.port!, ['AUTH wrongpassword', 'GET k'])).toMatch(/^-WRONGPASS .*\r\n-NOAUTH /s);
    expect(await resp(addon.port!, [`AUTH ${addon.secret}`, 'GET k'])).toBe('+OK\r\n$1\r\nv\r\n');

    // The server runs as the app's uid, its command line holds no password, its memory is limited twice over.
    const pid = serverPid(addon.name);
    const uid = Number(execFileSync('id', ['-u', appUserName(app)]).toString().trim());
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    expect(/^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status)!.slice(1).map(Number)).toEqual([uid, uid, uid, uid]);
    expect(/^NoNewPrivs:\s+1/m.test(status)).toBe(true);
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    expect(cmdline.split('\0')[0]).toMatch(/redis-server/);
    expect(cmdline).not.toContain(addon.secret);
    expect(readFileSync(`/proc/${pid}/environ`, 'utf8')).not.toContain(addon.secret);
    const memoryCgroup = /^\d+:memory:(.+)$/m.exec(readFileSync(`/proc/${pid}/cgroup`, 'utf8'))![1]!;
    expect(memoryCgroup).toMatch(new RegExp(`/addon-${addon.name}$`));
    expect(Number(readFileSync(join('/sys/fs/cgroup/memory', memoryCgroup, 'memory.limit_in_bytes'), 'utf8'))).toBe(redisCgroupMb(64) * 1024 * 1024);
    const config = await resp(addon.port!, [`AUTH ${addon.secret}`, 'CONFIG GET maxmemory', 'CONFIG GET maxmemory-policy', 'CONFIG GET save', 'CONFIG GET appendonly']);
    expect(config).toContain(`$9\r\nmaxmemory\r\n$8\r\n${64 * 1024 * 1024}\r\n`);
    expect(config).toContain('allkeys-lru');
    expect(config).toContain('$4\r\nsave\r\n$0\r\n\r\n');
    expect(config).toContain('$10\r\nappendonly\r\n$2\r\nno\r\n');
    // Its working folder is its own (root made it, the app's user owns it, nobody else may enter).
    const workDir = readlinkCwd(pid);
    const dirStat = execFileSync('stat', ['-c', '%u %a', workDir]).toString().trim();
    expect(dirStat).toBe(`${uid} 700`);

    // What `addons:info` says: where it runs, since when, why it is empty.
    const info = await pier(['addons:info', addon.name, '-a', app]);
    expect(info.code).toBe(0);
    expect(info.stdout).toContain(`${p.runner.id}`);
    expect(info.stdout).toContain(`127.0.0.1:${addon.port}`);
    expect(info.stdout).toContain(addon.startedAt!.toISOString());
    expect(info.stdout).toContain('created');
    expect(info.stdout).not.toContain(addon.secret);

    // A stale assignment (an older generation than applied) changes nothing: the same server keeps running.
    await p.runner.addons!.apply([{ name: addon.name, kind: 'redis', app, generation: addon.generation - 1, run: false, port: addon.port!, password: addon.secret, maxmemoryMb: 64 }]);
    expect(serverPid(addon.name)).toBe(pid);

    // Destroyed: REDIS_URL unset (a new release), the server stops, its folder goes, the row is deleted.
    const destroyed = await pier(['addons:destroy', addon.name, '-a', app, '--confirm', app]);
    expect(destroyed.code).toBe(0);
    expect((await p.api<{ vars: Record<string, string> }>('GET', `/v1/apps/${app}/config`)).json.vars.REDIS_URL).toBeUndefined();
    await waitFor(async () => !existsSync(`/proc/${pid}`) || /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8')) || undefined, { name: 'server stopped', timeoutMs: 10_000 });
    await waitFor(async () => {
      const { rows } = await testPool(p.dbUrl).query('SELECT 1 FROM addons WHERE name = $1', [addon.name]);
      return rows.length === 0 || undefined;
    }, { name: 'row deleted', timeoutMs: 10_000 });
    expect(existsSync(workDir)).toBe(false);
    expect(readdirSync(join(p.runner.dir, 'addons')).filter((n) => n.startsWith(addon.name))).toEqual([]);
  }, 90_000);

  it('refuses a second redis on the same app with 409, creating nothing; checks every report; apps:destroy stops its server and drops the row', async () => {
    const app = `rd${randomId(2)}-twice`;
    apps.push(app);
    expect((await p.api('POST', '/v1/apps', { name: app })).status).toBe(201);
    const first = await createRedis(app);
    const ready = await readyAddon(app, first.name);
    const pid = serverPid(first.name);
    const again = await p.api<{ error: { code: string; message: string } }>('POST', `/v1/apps/${app}/addons`, { kind: 'redis' });
    expect(again.status).toBe(409);
    expect(again.json.error.message).toBe(`app '${app}' already has a redis add-on; run 'pier addons -a ${app}' to see it`);
    const cli = await pier(['addons:create', 'redis', '-a', app]);
    expect(cli.code).not.toBe(0);
    expect(cli.stderr.trim().split('\n')).toHaveLength(1);
    const { rows } = await testPool(p.dbUrl).query('SELECT name, generation FROM addons WHERE app_name = $1', [app]);
    expect(rows).toEqual([{ name: first.name, generation: ready.generation }]);
    expect(p.runner.addons!.servers().map((s) => s.pid)).toContain(pid);

    // Reports are checked: a malformed one is refused, one for another generation changes nothing, and a failed
    // start takes it off the runner until the leader places it again (a new generation, its reason in the note).
    const control = controlClient([p.nexus.control], 2000);
    await expect(control.call('addon.report', { nodeId: p.runner.id, name: first.name, generation: 0, state: 'up' })).rejects.toThrow(/generation/);
    await expect(control.call('addon.report', { nodeId: p.runner.id, name: first.name, generation: 1, state: 'gone' as 'up' })).rejects.toThrow(/state/);
    expect(await control.call('addon.report', { nodeId: p.runner.id, name: first.name, generation: ready.generation + 5, state: 'failed' })).toEqual({ applied: false });
    expect(await control.call('addon.report', { nodeId: 'runner-elsewhere', name: first.name, generation: ready.generation, state: 'stopped' })).toEqual({ applied: false });
    expect(await control.call('addon.report', { nodeId: p.runner.id, name: first.name, generation: ready.generation, state: 'failed', note: 'a test says so' })).toEqual({ applied: true });
    const again2 = await waitFor(async () => {
      const a = await getAddon(testPool(p.dbUrl), await appRef(app), first.name);
      return a.state === 'ready' && a.generation === ready.generation + 1 ? a : undefined;
    }, { name: 'placed again after a failed start', timeoutMs: 10_000, intervalMs: 50 });
    expect(again2.note).toBe(`failed to start on runner ${p.runner.id}: a test says so; placed again`);
    await waitFor(() => !existsSync(`/proc/${pid}`) || /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8')) || undefined, { name: 'the failed generation stopped', timeoutMs: 5000 });
    const pid2 = serverPid(first.name);

    expect((await p.api('DELETE', `/v1/apps/${app}`)).status).toBe(200);
    await waitFor(async () => !existsSync(`/proc/${pid2}`) || /^State:\s+Z/m.test(readFileSync(`/proc/${pid2}/status`, 'utf8')) || undefined, { name: 'server stopped', timeoutMs: 10_000 });
    await waitFor(async () => (await testPool(p.dbUrl).query('SELECT 1 FROM addons WHERE name = $1', [first.name])).rows.length === 0 || undefined, { name: 'row deleted', timeoutMs: 10_000 });
  }, 60_000);
});

function readlinkCwd(pid: number): string {
  return execFileSync('readlink', [`/proc/${pid}/cwd`]).toString().trim();
}
