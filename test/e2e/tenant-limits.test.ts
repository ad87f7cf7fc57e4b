/**
 * Attack: one app on a runner tries to take the runner (and every other app on it) down — a fork bomb, a memory
 * hog, (a request that never ends: tenant-timeout.test.ts). All real: the apps are deployed through the API onto a root runner, each
 * instance in cgroups of its own; a neighbour app on the same runner is under steady load through the balancer
 * meanwhile. Limits are set per app by an operator through the API (owners may only read them).
 */
import { existsSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import type { Instance } from '../../src/protocol/index.js';
import { send } from '../balancer/helpers.js';
import { SteadyLoad, type LoadResult } from '../helpers/load.js';
import { platformForFile } from '../helpers/platform.js';
import { waitFor } from '../helpers/wait.js';

const p = platformForFile({ apps: ['rl-calm', 'rl-bomb', 'rl-hog'] });

const CALM = `def application(environ, start_response):\n    start_response("200 OK", [("Content-Type", "text/plain")])\n    return [b"calm"]\n`;
// Each process forks as fast as it can; a refused fork is retried after 5 ms (keeps the test machine usable).
const BOMB = `import os, threading, time
def bomb():
    while True:
        try:
            os.fork()
        except OSError:
            time.sleep(0.005)
def application(environ, start_response):
    if environ["PATH_INFO"] == "/bomb":
        threading.Thread(target=bomb, daemon=True).start()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"bomb"]
`;
const HOG = `def application(environ, start_response):
    if environ["PATH_INFO"] == "/hog":
        hog = []
        while True:
            hog.append(b"x" * (4 << 20))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hog"]
`;
/** The instance's cgroup folder of `controller` (found by name under the runner's group). */
function cgroupOf(controller: 'memory' | 'pids' | 'cpu', instance: Instance): string {
  const own = readFileSync('/proc/self/cgroup', 'utf8').split('\n').map((l) => l.split(':')).find((f) => f[1]?.split(',').includes(controller))?.[2] ?? '/';
  const parent = `/sys/fs/cgroup/${controller}${own === '/' ? '' : own}`;
  const group = execFileSync('ls', [parent]).toString().split('\n').find((n) => n.startsWith(`pier-${p.runner.id}-`));
  return `${parent}/${group}/${instance.id}`;
}

const read = (path: string): string => readFileSync(path, 'utf8').trim();

async function appLog(app: string): Promise<string[]> {
  return (await p.api<{ lines: string[] }>('GET', `/v1/apps/${app}/logs?lines=2000`)).json.lines;
}

async function deployReady(app: string, source: string): Promise<Instance> {
  expect((await p.deploy(app, p.writeApp(app, { 'wsgi.py': source }))).status).toBe('live');
  const [instance] = await p.readyInstances(app);
  await waitFor(async () => (await send(p.balancer.port!, `${app}.localhost`)).status === 200, { name: `${app} routed` });
  return instance!;
}

/** Runs steady load on the neighbour while `attack` runs, for `ms` in all. */
async function neighbourUnder(attack: () => Promise<void>, ms: number): Promise<LoadResult> {
  const load = new SteadyLoad(`http://127.0.0.1:${p.balancer.port}/`, 'rl-calm.localhost', 4, 5);
  load.start();
  await new Promise((resolve) => setTimeout(resolve, 300));
  const started = Date.now();
  await attack();
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, ms - (Date.now() - started))));
  return load.stop();
}

/** The runner never missed its heartbeats, and the neighbour's instance is the one it was. */
async function expectRunnerFine(): Promise<void> {
  const { nodes } = (await p.admin<{ nodes: Array<{ id: string; status: string }> }>('GET', '/v1/nodes')).json;
  expect(nodes.find((n) => n.id === p.runner.id)?.status).toBe('alive');
  expect(p.runner.instances!.count).toBeGreaterThan(0);
}

async function scaleToZero(app: string, instance: Instance): Promise<void> {
  expect((await p.api('PATCH', `/v1/apps/${app}/formation`, { web: 0 })).status).toBe(200);
  await waitFor(() => !existsSync(cgroupOf('pids', instance)), { name: `${app}'s cgroup removed`, timeoutMs: 20_000, intervalMs: 100 });
}

describe('per-app limits (tenant boundary)', () => {
  it('lets only operators change limits, with a 400 naming a bad field, and applies them to the next instance', async () => {
    expect((await p.api('POST', '/v1/apps', { name: 'rl-bomb' })).status).toBe(201);
    const none = await p.api<{ limits: Record<string, number | null> }>('GET', '/v1/apps/rl-bomb/limits');
    expect(none).toEqual({ status: 200, json: { limits: { memoryMb: null, processes: null, openFiles: null, cpuShares: null, requestTimeoutMs: null } } });

    const byOwner = await p.api<{ error: { code: string; message: string } }>('PATCH', '/v1/apps/rl-bomb/limits', { processes: 65_536 });
    expect(byOwner.status).toBe(403);
    expect(byOwner.json.error).toMatchObject({ code: 'PIER_FORBIDDEN' });
    expect((await p.stranger('PATCH', '/v1/apps/rl-bomb/limits', { processes: 40 })).status).toBe(404);
    expect((await p.stranger('GET', '/v1/apps/rl-bomb/limits')).status).toBe(404);

    for (const [body, pattern] of [
      [{ memoryMb: 1 }, /^body\.memoryMb must be >= 32$/],
      [{ processes: 'many' }, /^body\.processes/],
      [{ requestTimeoutMs: 1.5 }, /^body\.requestTimeoutMs/],
      [{ memory: 512 }, /^body has an unknown field 'memory'$/],
      [{}, /^body/],
    ] as const) {
      const bad = await p.admin<{ error: { code: string; message: string } }>('PATCH', '/v1/apps/rl-bomb/limits', body);
      expect(bad.status, JSON.stringify(body)).toBe(400);
      expect(bad.json.error.message).toMatch(pattern);
    }
    expect((await p.api<{ limits: object }>('GET', '/v1/apps/rl-bomb/limits')).json.limits).toMatchObject({ processes: null });

    const set = await p.admin<{ limits: Record<string, number | null> }>('PATCH', '/v1/apps/rl-bomb/limits', { processes: 40, cpuShares: 256, openFiles: 512 });
    expect(set.status).toBe(200);
    expect(set.json.limits).toEqual({ memoryMb: null, processes: 40, cpuShares: 256, openFiles: 512, requestTimeoutMs: null });
    expect((await p.admin('PATCH', '/v1/apps/rl-bomb/limits', { openFiles: null })).status).toBe(200);
    expect((await p.api<{ limits: object }>('GET', '/v1/apps/rl-bomb/limits')).json.limits).toMatchObject({ processes: 40, openFiles: null });

    const instance = await deployReady('rl-bomb', BOMB);
    expect(read(`${cgroupOf('pids', instance)}/pids.max`)).toBe('40');
    expect(read(`${cgroupOf('cpu', instance)}/cpu.shares`)).toBe('256');
    expect(read(`${cgroupOf('memory', instance)}/memory.limit_in_bytes`)).toBe(String(512 * 1024 * 1024)); // the runner's default
    const vassal = readFileSync(`${p.runner.dir}/emperor/vassals/${instance.id}.ini`, 'utf8');
    expect(vassal).toMatch(/^max-fd = 1024$/m);
    expect(vassal).toMatch(/^harakiri = 60$/m);
  }, 40_000);

  it("contains a fork bomb: the neighbour keeps p99 < 100 ms with no failure, and the bomb's log says why", async () => {
    await deployReady('rl-calm', CALM);
    const [bomb] = await p.readyInstances('rl-bomb');
    const result = await neighbourUnder(async () => {
      expect((await send(p.balancer.port!, 'rl-bomb.localhost', { path: '/bomb' })).status).toBe(200);
      await waitFor(() => Number(read(`${cgroupOf('pids', bomb!)}/pids.current`)) >= 40, { name: 'bomb at its cap', timeoutMs: 5000 });
    }, 3000);
    const tasks = Number(read(`${cgroupOf('pids', bomb!)}/pids.current`));
    const refused = Number(/^max (\d+)$/m.exec(read(`${cgroupOf('pids', bomb!)}/pids.events`))![1]);
    console.log(`fork bomb: neighbour ${result.ok} ok / ${result.failed} failed at ${result.rate} req/s, p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms, max ${result.maxMs} ms; bomb held at ${tasks} tasks, ${refused} forks refused`);
    expect(result.failed, result.failures.join('; ')).toBe(0);
    expect(result.ok).toBeGreaterThan(100);
    expect(result.p99Ms).toBeLessThan(100);
    expect(tasks).toBeLessThanOrEqual(40);
    expect(refused).toBeGreaterThan(0);
    await expectRunnerFine();
    const lines = await waitFor(async () => {
      const mine = (await appLog('rl-bomb')).filter((l) => l.includes('reached its process limit of 40'));
      return mine.length > 0 ? mine : undefined;
    }, { name: 'limit line in the log', timeoutMs: 5000, intervalMs: 200 });
    expect(lines[0]).toMatch(/ pier\[rl-bomb-v1-\w+\]: instance rl-bomb-v1-\w+ reached its process limit of 40: \d+ fork\(\)s refused; /);
    expect(lines.length).toBeLessThanOrEqual(2); // rate-limited: one line per 10 s
    // Gone with its instance: every process of the bomb is killed, its cgroups removed.
    await scaleToZero('rl-bomb', bomb!);
    await waitFor(() => processesOf('p-rl-bomb').length === 0, { name: 'bomb processes gone', timeoutMs: 5000 });
  }, 40_000);

  it("contains a memory hog: the kernel kills it at its limit, uWSGI respawns it, the neighbour does not notice", async () => {
    expect((await p.api('POST', '/v1/apps', { name: 'rl-hog' })).status).toBe(201);
    expect((await p.admin('PATCH', '/v1/apps/rl-hog/limits', { memoryMb: 64 })).status).toBe(200);
    const hog = await deployReady('rl-hog', HOG);
    let hogStatus = 0;
    const result = await neighbourUnder(async () => {
      hogStatus = (await send(p.balancer.port!, 'rl-hog.localhost', { path: '/hog' })).status;
    }, 3000);
    const peakBytes = Number(read(`${cgroupOf('memory', hog)}/memory.max_usage_in_bytes`));
    console.log(`memory hog: neighbour ${result.ok} ok / ${result.failed} failed at ${result.rate} req/s, p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms, max ${result.maxMs} ms; hog peaked at ${(peakBytes / 1024 / 1024).toFixed(1)} MB, its request got ${hogStatus}`);
    expect(result.failed, result.failures.join('; ')).toBe(0);
    expect(result.p99Ms).toBeLessThan(100);
    expect(hogStatus).toBe(502);
    expect(peakBytes).toBeLessThanOrEqual(64 * 1024 * 1024);
    await expectRunnerFine();
    const lines = await waitFor(async () => {
      const log = await appLog('rl-hog');
      const limit = log.find((l) => l.includes('reached its memory limit of 64 MB'));
      const died = log.find((l) => /worker 1 \(pid: \d+\) died, killed by signal 9/.test(l));
      return limit && died ? [limit, died] : undefined;
    }, { name: 'oom lines in the log', timeoutMs: 5000, intervalMs: 200 });
    expect(lines[0]).toMatch(/ pier\[rl-hog-v1-\w+\]: instance rl-hog-v1-\w+ reached its memory limit of 64 MB: the kernel killed \d+ of its processes/);
    // Respawned: the hog app answers again.
    await waitFor(async () => (await send(p.balancer.port!, 'rl-hog.localhost')).body === 'hog', { name: 'hog respawned', timeoutMs: 5000 });
    await scaleToZero('rl-hog', hog);
  }, 40_000);

  it('leaves no cgroup behind when the runner stops', async () => {
    const [calm] = await p.readyInstances('rl-calm');
    const groups = (['memory', 'pids', 'cpu'] as const).map((c) => cgroupOf(c, calm!).replace(/\/[^/]+$/, ''));
    for (const dir of groups) expect(existsSync(dir)).toBe(true);
    await p.runner.stop();
    for (const dir of groups) expect(existsSync(dir)).toBe(false);
    expect(processesOf('p-rl-calm')).toEqual([]);
  }, 30_000);
});

function processesOf(user: string): number[] {
  try {
    return execFileSync('ps', ['-o', 'pid=', '-u', user], { encoding: 'utf8' }).split('\n').filter((l) => l.trim()).map(Number);
  } catch {
    return []; // ps exits 1 when there is none
  }
}
