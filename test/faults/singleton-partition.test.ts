/**
 * A singleton process type through a network partition (issue #12, Must show 2): runner B lives in its own network
 * namespace (as in partition.test.ts) and runs the app's `clock` singleton; cutting B's link must stop B's clock
 * before its lease runs out, and the scheduler starts the clock on runner A only after that — sampled every 50 ms
 * from /proc (both runners share this machine's pid namespace), never two clock processes at once; the clock runs
 * again within the lease (plus its start) after the cut, and healing the link starts nothing twice. App names
 * start with `wk`.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packDirectory } from '../../src/archive/index.js';
import { randomId } from '../../src/core/ids.js';
import { silentLogger } from '../../src/core/logger.js';
import { createOwner, withTransaction } from '../../src/db/index.js';
import type { Instance } from '../../src/protocol/index.js';
import { appUserName } from '../../src/runner/app-users.js';
import { Runner } from '../../src/runner/runner.js';
import { apiCaller } from '../helpers/api.js';
import { CLI, runCli } from '../helpers/cli.js';
import { testConfig } from '../helpers/config.js';
import { searchableTempDir } from '../helpers/data-dir.js';
import { startNexus, type NexusHandle } from '../helpers/daemons.js';
import { testDatabase, testPool } from '../helpers/postgres.js';
import { sleep, waitFor } from '../helpers/wait.js';

const isRoot = process.getuid?.() === 0;
const LEASE_MS = 3000;
const dir = searchableTempDir('pier-wk-singleton-');
const suffix = randomId(3).replace(/[^a-z0-9]/gi, '').slice(0, 6).toLowerCase();
const ns = `pier-wk${suffix}`;
const hostVeth = `wh${suffix}`;
const nsVeth = `wn${suffix}`;
const subnet = `10.232.${process.pid % 250}`;
const hostIp = `${subnet}.1`;
const nsIp = `${subnet}.2`;
const timing = { heartbeatIntervalMs: 500, heartbeatMisses: 3, controlTimeoutMs: 1000 };
const app = `wk${randomId()}-clock`;
const beats = join(dir, 'record', app);
let nexus: NexusHandle;
let runnerA: Runner;
let runnerB: ChildProcess | undefined;
let token = '';

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

const api = apiCaller(() => nexus.api, undefined);
const call = <T>(method: string, path: string, body?: unknown) => apiCaller(() => nexus.api, token)<T>(method, path, body);

/** Clock processes alive now (by the pid files each one writes at start), with the runner it says it runs on. */
function clocks(): Array<{ pid: number; runner: string }> {
  if (!existsSync(beats)) return [];
  return readdirSync(beats).filter((f) => /^\d+$/.test(f)).flatMap((f) => {
    try {
      if (/^State:\s+Z/m.test(readFileSync(`/proc/${f}/status`, 'utf8'))) return [];
      return [{ pid: Number(f), runner: readFileSync(join(beats, f), 'utf8') }];
    } catch {
      return [];
    }
  });
}

beforeAll(async () => {
  if (!isRoot) return;
  void api;
  const dbUrl = await testDatabase();
  const pool = testPool(dbUrl);
  token = (await withTransaction(pool, (tx) => createOwner(tx, `wk-owner-${randomId()}`, true))).token;
  ip('netns', 'add', ns);
  ip('link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', nsVeth);
  ip('link', 'set', nsVeth, 'netns', ns);
  ip('addr', 'add', `${hostIp}/24`, 'dev', hostVeth);
  ip('link', 'set', hostVeth, 'up');
  ip('netns', 'exec', ns, 'ip', 'addr', 'add', `${nsIp}/24`, 'dev', nsVeth);
  ip('netns', 'exec', ns, 'ip', 'link', 'set', nsVeth, 'up');
  ip('netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up');

  nexus = await startNexus(dbUrl, {
    cluster: { ...timing, stats: [] },
    nexus: { controlBind: `tcp://${hostIp}:*`, eventsBind: `tcp://${hostIp}:*`, heartbeatsBind: `tcp://${hostIp}:*`, schedulerIntervalMs: 100, singletonLeaseMs: LEASE_MS },
  }, 'file');
  const cluster = { ...timing, stats: [], nexus: [{ control: nexus.control, events: nexus.events, heartbeats: nexus.heartbeats, api: nexus.api }] };
  const base = 33000 + (process.pid % 80) * 100;
  runnerA = new Runner({
    config: testConfig({ dataDir: join(dir, 'a'), cluster, runner: { id: 'runner-a', dir: join(dir, 'a', 'runner'), portMin: base, portMax: base + 49, startTimeoutMs: 15_000, stopGraceMs: 5000, workerSettleMs: 300 } }),
    log: silentLogger(),
  });
  await runnerA.start();

  mkdirSync(join(dir, 'b'), { recursive: true });
  const file = join(dir, 'b', 'runner.toml');
  writeFileSync(file, [
    `dataDir = "${join(dir, 'b')}"`,
    '[log]', 'level = "info"',
    '[security]', 'curve = false',
    '[cluster]', `heartbeatIntervalMs = ${timing.heartbeatIntervalMs}`, `heartbeatMisses = ${timing.heartbeatMisses}`, `controlTimeoutMs = ${timing.controlTimeoutMs}`, 'stats = []',
    '[[cluster.nexus]]', `control = "${nexus.control}"`, `events = "${nexus.events}"`, `heartbeats = "${nexus.heartbeats}"`, `api = "${nexus.api}"`,
    '[runner]', 'id = "runner-b"', `advertiseHost = "${nsIp}"`, `bindHost = "${nsIp}"`, `portMin = ${base + 50}`, `portMax = ${base + 99}`,
    'startTimeoutMs = 15000', 'stopGraceMs = 5000', 'workerSettleMs = 300',
  ].join('\n'));
  const out = openSync(join(dir, 'b', 'runner.log'), 'a');
  runnerB = spawn('ip', ['netns', 'exec', ns, process.execPath, CLI, 'runner', '--config', file], { stdio: ['ignore', out, out], env: { PATH: process.env.PATH, HOME: process.env.HOME } });
  await waitFor(async () => (await call<{ nodes: Array<{ id: string; status: string }> }>('GET', '/v1/nodes')).json.nodes.some((n) => n.id === 'runner-b' && n.status === 'alive'), {
    name: 'runner B registered from its namespace', timeoutMs: 20_000, intervalMs: 100,
  });

  const record = join(dir, 'record');
  mkdirSync(record, { recursive: true, mode: 0o1777 });
  chmodSync(record, 0o1777);
  const appDir = join(dir, 'app');
  mkdirSync(appDir, { recursive: true });
  writeFileSync(join(appDir, 'Procfile'), 'web: wsgi:application\nclock: python3 clock.py\n');
  writeFileSync(join(appDir, 'wsgi.py'), 'def application(environ, start_response):\n    start_response("200 OK", [])\n    return [b"ok"]\n');
  writeFileSync(join(appDir, 'clock.py'), [
    'import os, time',
    `beats = ${JSON.stringify(beats)}`,
    'os.makedirs(beats, exist_ok=True)',
    // Which runner: its HOME is <runner dir>/homes/<instance>.
    'open("%s/%d" % (beats, os.getpid()), "w").write(os.environ["HOME"].split("/homes/")[0].rsplit("/", 2)[-2])',
    'while True:',
    '    time.sleep(0.05)',
    '',
  ].join('\n'));
  expect((await call('POST', '/v1/apps', { name: app })).status).toBe(201);
  expect((await call('POST', `/v1/apps/${app}/releases`, await packDirectory(appDir))).status).toBe(201);
  await waitFor(async () => (await call<{ instances: Instance[] }>('GET', `/v1/apps/${app}/instances`)).json.instances.some((i) => i.state === 'ready' && i.runnerId === 'runner-a'), {
    name: 'web ready on A', timeoutMs: 60_000, intervalMs: 200,
  });
}, 120_000);

afterAll(async () => {
  const child = runnerB;
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await Promise.race([exited, sleep(30_000)]);
  }
  await runnerA?.stop();
  try {
    ip('netns', 'del', ns);
  } catch {
    // not created
  }
  try {
    execFileSync('userdel', [appUserName(app)], { stdio: 'ignore' });
  } catch {
    // never created
  }
  rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe.runIf(isRoot)('a singleton process type across a partition', () => {
  it('never runs twice, and runs again on the other runner within the lease after the cut', async () => {
    const scaled = await runCli(['ps:scale', 'clock=1', '--singleton', '-a', app], { PIER_API_URL: nexus.api, PIER_TOKEN: token });
    expect(scaled.stderr).toBe('');
    expect(scaled.stdout.trim()).toBe(`scaled ${app} to web=1 clock=1 (clock: singleton)`);
    const refused = await runCli(['ps:scale', 'clock=2', '-a', app], { PIER_API_URL: nexus.api, PIER_TOKEN: token });
    expect(refused.stderr.trim()).toBe('error: clock is a singleton: it runs at most once (clock=0 or clock=1; --no-singleton to scale it out) (PIER_VALIDATION)');
    const first = await waitFor(() => {
      const list = clocks();
      return list.length === 1 ? list[0] : undefined;
    }, { name: 'the clock running', timeoutMs: 20_000, intervalMs: 50 });
    expect(first.runner).toBe('b');

    let maxAtOnce = 0;
    const samples: Array<{ at: number; list: Array<{ pid: number; runner: string }> }> = [];
    const sampler = setInterval(() => {
      const list = clocks();
      maxAtOnce = Math.max(maxAtOnce, list.length);
      samples.push({ at: Date.now(), list });
    }, 50);
    let cutAt = 0;
    try {
      await sleep(1000);
      ip('link', 'set', hostVeth, 'down');
      cutAt = Date.now();
      const onA = await waitFor(() => clocks().find((c) => c.runner === 'a'), { name: 'the clock running on A', timeoutMs: LEASE_MS + 10_000, intervalMs: 50 });
      const againMs = Date.now() - cutAt;
      const lastB = samples.filter((s) => s.list.some((c) => c.runner === 'b')).at(-1)!.at;
      console.log(`[singleton] lease ${LEASE_MS} ms: B's clock stopped ${lastB - cutAt} ms after the cut, running again on A (pid ${onA.pid}) ${againMs} ms after it; at most ${maxAtOnce} at once`);
      expect(lastB - cutAt).toBeLessThan(LEASE_MS);
      expect(againMs).toBeLessThan(LEASE_MS + 1500);

      // Healing: B rejoins; nothing of the clock starts there again.
      ip('link', 'set', hostVeth, 'up');
      await waitFor(async () => (await call<{ nodes: Array<{ id: string; status: string }> }>('GET', '/v1/nodes')).json.nodes.some((n) => n.id === 'runner-b' && n.status === 'alive'), {
        name: 'runner B back', timeoutMs: 15_000, intervalMs: 100,
      });
      await sleep(2000);
      expect(clocks()).toEqual([onA]);
    } finally {
      clearInterval(sampler);
    }
    expect(samples.length).toBeGreaterThan(50);
    expect(maxAtOnce).toBe(1);
  }, 60_000);
});
