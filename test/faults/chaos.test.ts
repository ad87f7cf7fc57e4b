/**
 * The chaos drill (issue #11, Must show 1): `pier up --runners 2`, an app at web=2 under paced load, and for 90 s a
 * `kill -9` of a random daemon every 6 s — nexus, either runner, the stats collector or the embedded PostgreSQL
 * (seeded, printed: replay a run with PIER_CHAOS_SEED=<seed>). The balancer is not a victim: on one machine it is
 * the only public listener, so its death is a public outage by construction, not a resilience finding; its own
 * restart is covered by `pier up`'s supervision like every other child (see the report).
 *
 * Asserted: at most 0.1% of public requests fail; after each PostgreSQL death the CLI answers again within 5 s;
 * never two emperors for one runner folder; at the end nothing is lost (apps, config vars, releases, hostnames)
 * and 2 instances are ready; after `pier down` no process of the platform is left (daemons, PostgreSQL, emperors,
 * vassals, app workers).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Instance } from '../../src/protocol/index.js';
import { isAlive } from '../../src/up/index.js';
import { runCli } from '../helpers/cli.js';
import { searchableTempDir } from '../helpers/data-dir.js';
import { SteadyLoad } from '../helpers/load.js';
import { writeUpConfig } from '../helpers/up-config.js';
import { sleep, waitFor } from '../helpers/wait.js';

const APP = 'ch-drill';
const DRILL_MS = 90_000;
const KILL_EVERY_MS = 6000;
const VICTIMS = ['nexus-1', 'runner-1', 'runner-2', 'stats-1', 'postgres'] as const;
type Victim = (typeof VICTIMS)[number];
const SEED = Number(process.env.PIER_CHAOS_SEED ?? Math.floor(Math.random() * 1_000_000));

let dataDir: string;
let env: NodeJS.ProcessEnv;
let apiUrl: string;
let webPort: number;
let token: string;
let isDown = false;

type UpState = { postgres: { pid: number } | null; children: Array<{ name: string; pid: number }> };

/** mulberry32: a tiny seeded PRNG, so a failing run can be replayed with its seed. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function upState(): UpState {
  return JSON.parse(readFileSync(join(dataDir, 'up.json'), 'utf8')) as UpState;
}

function pidOf(victim: Victim): number {
  const state = upState();
  return victim === 'postgres' ? state.postgres!.pid : state.children.find((c) => c.name === victim)!.pid;
}

function cmdline(pid: string | number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

/** Live emperors of a runner's folder, found by their command line (`--emperor <vassal dir>`). */
function emperorsOf(runner: string): number[] {
  const vassals = join(dataDir, `runner-${runner}`, 'emperor', 'vassals');
  return pids().filter((pid) => cmdline(pid).includes(`--emperor ${vassals}`));
}

function pids(): number[] {
  return readdirSync('/proc').filter((e) => /^\d+$/.test(e)).map(Number).filter((pid) => pid !== process.pid);
}

function uidOf(user: string): number | undefined {
  const found = spawnSync('id', ['-u', user], { encoding: 'utf8' });
  return found.status === 0 ? Number(found.stdout.trim()) : undefined;
}

/**
 * Every process of this platform still alive: anything whose command line or working folder is in the data folder
 * (daemons, PostgreSQL and its backends, emperors, vassals), that was started for it (PIER_DATA in its environment:
 * the supervisor) or that runs as the app's user (its workers).
 */
function platformProcesses(appUid: number | undefined): string[] {
  const left: string[] = [];
  for (const pid of pids()) {
    let cwd = '';
    try {
      cwd = readlinkSync(`/proc/${pid}/cwd`);
    } catch {
      // gone or not ours to read
    }
    let uid: number | undefined;
    try {
      uid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
    } catch {
      continue;
    }
    const line = cmdline(pid);
    let environ = '';
    try {
      environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
    } catch {
      // gone
    }
    const isOurs = line.includes(dataDir) || cwd.startsWith(dataDir) || environ.includes(`PIER_DATA=${dataDir}\0`) || (appUid !== undefined && uid === appUid);
    if (isOurs) left.push(`${pid} ${line.slice(0, 120)}`);
  }
  return left;
}

async function api<T>(path: string): Promise<T> {
  const res = await fetch(`${apiUrl}${path}`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(2000) });
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return (await res.json()) as T;
}

async function readyInstances(): Promise<Instance[]> {
  const { instances } = await api<{ instances: Instance[] }>(`/v1/apps/${APP}/instances`);
  return instances.filter((i) => i.state === 'ready' && i.isLive);
}

/** What must survive the drill, as the CLI shows it. */
async function durableState(): Promise<Record<string, unknown>> {
  const read = async (args: string[]): Promise<unknown> => {
    const out = await runCli([...args, '--json'], env);
    if (out.code !== 0) throw new Error(`pier ${args.join(' ')}: ${out.stderr}`);
    return JSON.parse(out.stdout);
  };
  const apps = (await read(['apps'])) as Array<{ name: string }>;
  const releases = (await read(['releases', '-a', APP])) as Array<{ version: number; sha256?: string }>;
  return {
    apps: apps.map((a) => a.name).sort(),
    config: await read(['config', '-a', APP]),
    releases: releases.map((r) => r.version).sort(),
    hosts: await read(['hosts', '-a', APP]),
  };
}

beforeAll(async () => {
  dataDir = searchableTempDir('pier-ch-');
  ({ webPort, apiUrl, env } = await writeUpConfig(dataDir, { portBase: 35000, portCount: 40 }));
  const up = await runCli(['up', '--detach', '--runners', '2'], env, 90_000);
  expect(up.stderr).toBe('');
  token = (JSON.parse(readFileSync(join(dataDir, 'admin.json'), 'utf8')) as { token: string }).token;
  expect((await runCli(['apps:create', APP], env)).code).toBe(0);
  expect((await runCli(['config:set', 'DRILL_KEY=kept', '-a', APP], env)).code).toBe(0);
  expect((await runCli(['hosts:add', 'drill.example.com', '-a', APP], env)).code).toBe(0);
  const deployed = await runCli(['deploy', fileURLToPath(new URL('../../examples/hello', import.meta.url)), '-a', APP], env);
  expect(deployed.stderr).toBe('');
  expect((await runCli(['ps:scale', 'web=2', '-a', APP], env)).code).toBe(0);
  await waitFor(async () => (await readyInstances()).length === 2, { name: '2 ready instances', timeoutMs: 40_000, intervalMs: 200 });
}, 180_000);

afterAll(async () => {
  if (!isDown && env) {
    await runCli(['apps:destroy', APP, '--confirm', APP], env);
    await runCli(['down'], env, 60_000);
  }
  if (spawnSync('id', [`p-${APP}`], { stdio: 'ignore' }).status === 0) execFileSync('userdel', [`p-${APP}`], { stdio: 'ignore' });
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
}, 90_000);

describe('chaos drill: kill -9 of a random daemon every 6 s for 90 s under pier up --runners 2', () => {
  it('fails at most 0.1% of public requests, the CLI is back within 5 s of each PostgreSQL death, nothing is lost, nothing is left', async () => {
    const before = await durableState();
    const random = seeded(SEED);
    const traffic = new SteadyLoad(`http://127.0.0.1:${webPort}/`, `${APP}.localhost`, 4, 5);
    traffic.start();
    await sleep(1000);

    const kills: string[] = [];
    const cliBackMs: number[] = [];
    const emperorCounts = new Set<number>();
    const started = Date.now();
    for (let tick = 1; Date.now() - started < DRILL_MS; tick++) {
      const victim = VICTIMS[Math.floor(random() * VICTIMS.length)]!;
      // A victim still restarting from an earlier kill is waited for (its new pid), never skipped.
      const pid = await waitFor(() => {
        const p = pidOf(victim);
        return p > 0 && isAlive(p) ? p : undefined;
      }, { name: `a live ${victim}`, timeoutMs: 15_000, intervalMs: 50 });
      process.kill(pid, 'SIGKILL');
      const killedAt = Date.now();
      let note = `${victim} (pid ${pid}) at +${killedAt - started} ms`;
      if (victim === 'postgres') {
        const back = await waitFor(() => {
          const p = pidOf('postgres');
          return p !== pid && isAlive(p) ? Date.now() - killedAt : undefined;
        }, { name: 'a new postmaster', timeoutMs: 15_000, intervalMs: 20 });
        note += `, new postmaster after ${back} ms`;
        await waitFor(async () => (await runCli(['apps', '--json'], env, 10_000)).code === 0, { name: 'the CLI answers after a PostgreSQL death', timeoutMs: 15_000, intervalMs: 20 });
        cliBackMs.push(Date.now() - killedAt);
        note += `, CLI back after ${cliBackMs.at(-1)} ms`;
      }
      kills.push(note);
      for (const runner of ['runner-1', 'runner-2']) emperorCounts.add(emperorsOf(runner).length);
      const wait = started + tick * KILL_EVERY_MS - Date.now();
      if (wait > 0) await sleep(wait);
    }

    // The platform settles by itself: the CLI answers and the app has its 2 instances again.
    const settleStarted = Date.now();
    await waitFor(async () => (await runCli(['apps', '--json'], env)).code === 0, { name: 'the CLI answers after the drill', timeoutMs: 20_000, intervalMs: 100 });
    await waitFor(async () => (await readyInstances().catch(() => [])).length === 2, { name: '2 ready instances after the drill', timeoutMs: 30_000, intervalMs: 200 });
    const settleMs = Date.now() - settleStarted;
    await sleep(1000);
    const result = await traffic.stop();
    const after = await durableState();
    const emperorsAtEnd = ['runner-1', 'runner-2'].map((r) => emperorsOf(r).length);
    const total = result.ok + result.failed;
    const failedPct = (100 * result.failed) / Math.max(1, total);

    console.log(
      `[chaos] seed ${SEED} (replay: PIER_CHAOS_SEED=${SEED}); ${kills.length} kills:\n  ${kills.join('\n  ')}\n` +
        `[chaos] public: ${result.ok} ok / ${result.failed} failed (${failedPct.toFixed(3)}%) at ${result.rate} req/s, p99 ${result.p99Ms} ms, max ${result.maxMs} ms; ` +
        `first failures: ${result.failures.join('; ') || 'none'}\n` +
        `[chaos] CLI back after each PostgreSQL death: ${cliBackMs.join(', ') || 'no PostgreSQL kill'} ms; settled ${settleMs} ms after the last kill; ` +
        `emperors per runner seen ${[...emperorCounts].join('/')}, at the end ${emperorsAtEnd.join('/')}`,
    );
    // The supervisor's own account of each PostgreSQL restart (delay chosen, time to ready), for a failed budget's post-mortem.
    const pgLines = readFileSync(join(dataDir, 'logs', 'up.log'), 'utf8').split('\n').filter((l) => l.includes('embedded PostgreSQL')).map((l) => {
      const entry = JSON.parse(l) as { time: number; msg: string; restartInMs?: number; err?: string };
      return `+${entry.time - started} ms ${entry.msg}${entry.restartInMs === undefined ? '' : ` (in ${entry.restartInMs} ms)`}${entry.err ? `: ${entry.err}` : ''}`;
    });
    console.log(`[chaos] supervisor on PostgreSQL:\n  ${pgLines.join('\n  ')}`);
    expect(kills.length).toBeGreaterThanOrEqual(14);
    expect(failedPct).toBeLessThanOrEqual(0.1);
    expect(total).toBeGreaterThan(5000);
    for (const ms of cliBackMs) expect(ms).toBeLessThanOrEqual(5000);
    expect([...emperorCounts].every((n) => n <= 1)).toBe(true);
    expect(emperorsAtEnd).toEqual([1, 1]);
    expect(after).toEqual(before);
    expect((await readyInstances()).length).toBe(2);

    // The balancer, counted apart: on one machine it is the only public listener, so its death is an outage by
    // construction. What is asserted is that pier up brings it back quickly, with its table (the app answers).
    const gapTraffic = new SteadyLoad(`http://127.0.0.1:${webPort}/`, `${APP}.localhost`, 2, 20);
    gapTraffic.start();
    await sleep(500);
    const balancerPid = upState().children.find((c) => c.name === 'balancer-1')!.pid;
    process.kill(balancerPid, 'SIGKILL');
    const balancerKilledAt = Date.now();
    await waitFor(async () => {
      const pid = upState().children.find((c) => c.name === 'balancer-1')!.pid;
      if (pid === balancerPid) return false;
      const res = await request(`http://127.0.0.1:${webPort}/`, { headers: { host: `${APP}.localhost` }, headersTimeout: 1000, bodyTimeout: 1000 }).catch(() => undefined);
      await res?.body.text();
      return res?.statusCode === 200;
    }, { name: 'the balancer serves again', timeoutMs: 15_000, intervalMs: 20 });
    const balancerGapMs = Date.now() - balancerKilledAt;
    await sleep(500);
    const gap = await gapTraffic.stop();
    console.log(`[chaos] balancer kill (counted apart): serving again after ${balancerGapMs} ms; ${gap.failed} of ${gap.ok + gap.failed} requests failed meanwhile`);
    expect(balancerGapMs).toBeLessThan(5000);

    // pier down leaves nothing of the platform: no daemon, PostgreSQL, emperor, vassal or app worker.
    const appUid = uidOf(`p-${APP}`);
    expect(platformProcesses(appUid).length).toBeGreaterThan(0); // the scan does see a running platform
    const down = await runCli(['down'], env, 60_000);
    isDown = true;
    expect(down.code, down.stderr).toBe(0);
    await waitFor(() => platformProcesses(appUid).length === 0, { name: 'no process of the platform left', timeoutMs: 5000, intervalMs: 100 }).catch(() => undefined);
    expect(platformProcesses(appUid)).toEqual([]);
  }, 240_000);
});
