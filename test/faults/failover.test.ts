/**
 * Failover drills on a real platform (`pier up`: two nexus replicas, a runner on uWSGI, a balancer, a collector,
 * plus a second runner started alone from its config file, as on another machine) backed by a PostgreSQL server
 * this file owns, under a steady load through the balancer: kill -9 the leading nexus, kill -9 the lone runner
 * with its whole emperor (a machine dying), stop and start PostgreSQL. Each drill asserts what the public and
 * the operator see.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/logger.js';
import { EmbeddedPostgres } from '../../src/db/index.js';
import { curveKeyPair } from '../../src/transport/index.js';
import type { Instance } from '../../src/protocol/index.js';
import { isAlive } from '../../src/up/index.js';
import { CLI, runCli } from '../helpers/cli.js';
import { SteadyLoad } from '../helpers/load.js';
import { freePort } from '../helpers/ports.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { searchableTempDir } from '../helpers/data-dir.js';

let dataDir: string;
let env: NodeJS.ProcessEnv;
let postgres: EmbeddedPostgres;
let pgPort: number;
let apiUrls: string[];
let webPort: number;
let token: string;
/** The runner started outside pier up (no supervisor restarts it). */
let lone: ChildProcess | undefined;
const LONE = 'runner-lone';

/**
 * Gives the lone runner a key of its own, as the README says for a machine added by hand: its node.key in its
 * keys folder and its public key in the cluster's allow-list (before pier up starts the servers); the two
 * public keys are copied over once pier up made them.
 */
function allowLoneRunner(): void {
  const pair = curveKeyPair();
  mkdirSync(join(dataDir, 'keys', LONE), { recursive: true });
  writeFileSync(join(dataDir, 'keys', LONE, 'node.key'), JSON.stringify(pair), { mode: 0o600 });
  mkdirSync(join(dataDir, 'keys', 'allowed', 'runner'), { recursive: true });
  writeFileSync(join(dataDir, 'keys', 'allowed', 'runner', `${LONE}.pub`), `${pair.publicKey}\n`);
}

/** Starts the lone runner from a config derived from pier up's runner-1.toml (own id, keys, folder and port range). */
function startLoneRunner(portMin: number): ChildProcess {
  const base = readFileSync(join(dataDir, 'config', 'runner-1.toml'), 'utf8');
  const file = join(dataDir, 'config', `${LONE}.toml`);
  const keysDir = join(dataDir, 'keys', LONE);
  for (const pub of ['server.pub', 'stats.pub']) copyFileSync(join(dataDir, 'keys', 'runner-1', pub), join(keysDir, pub));
  writeFileSync(file, base.replace(/^id = "runner-1"$/m, `id = "${LONE}"`).replace(/^portMin = \d+$/m, `portMin = ${portMin}`).replace(/^portMax = \d+$/m, `portMax = ${portMin + 39}`)
    .replace(/^keysDir = ".*"$/m, `keysDir = "${keysDir}"`));
  const out = openSync(join(dataDir, 'logs', `${LONE}.log`), 'a');
  return spawn(process.execPath, [CLI, 'runner', '--config', file], { env: { PATH: process.env.PATH, HOME: process.env.HOME }, stdio: ['ignore', out, out] });
}

function stopLoneRunner(signal: NodeJS.Signals): Promise<void> {
  const child = lone;
  lone = undefined;
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  return exited;
}

type UpState = { children: Array<{ name: string; pid: number }> };

function childPid(name: string): number {
  const state = JSON.parse(readFileSync(join(dataDir, 'up.json'), 'utf8')) as UpState;
  const child = state.children.find((c) => c.name === name);
  if (!child) throw new Error(`no child ${name} in up.json`);
  return child.pid;
}

/**
 * GET `path` from whichever replica answers, in order: after a test kills the leading nexus, `pier up` restarts it,
 * and its API may still refuse connections when the next test starts (a CI run failed on that).
 */
async function api<T>(path: string): Promise<T> {
  let failure: unknown;
  for (const base of apiUrls) {
    try {
      const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(2000) });
      if (res.status !== 200) throw new Error(`${path}: HTTP ${res.status}`);
      return (await res.json()) as T;
    } catch (err) {
      failure = err; // try the next replica
    }
  }
  throw failure;
}

/** The app's instances, from whichever API answers. */
async function instances(): Promise<Instance[]> {
  return (await api<{ instances: Instance[] }>('/v1/apps/steady/instances')).instances;
}

/** Adds a hostname through the CLI and waits until the balancer routes it: a change made now reaches the balancer. */
async function routesNewHostname(hostname: string, timeoutMs: number): Promise<number> {
  const added = await runCli(['hosts:add', hostname, '-a', 'steady'], env);
  expect(added.code, added.stderr).toBe(0);
  const started = Date.now();
  await waitFor(async () => {
    const res = await request(`http://127.0.0.1:${webPort}/`, { headers: { host: hostname } });
    await res.body.text();
    return res.statusCode === 200;
  }, { name: `${hostname} routed`, timeoutMs, intervalMs: 50 });
  return Date.now() - started;
}

function load(): SteadyLoad {
  return new SteadyLoad(`http://127.0.0.1:${webPort}/`, 'steady.localhost', 4, 5);
}

beforeAll(async () => {
  dataDir = searchableTempDir('pier-failover-');
  const ports = await Promise.all(Array.from({ length: 14 }, () => freePort()));
  const [pg, c1, e1, h1, a1, c2, e2, h2, a2, web, si, st, sq] = ports as number[];
  pgPort = pg!;
  webPort = web!;
  postgres = new EmbeddedPostgres({ dataDir: join(dataDir, 'external-pg'), port: pgPort, log: silentLogger() });
  await postgres.start();
  const instancePorts = 31000 + (process.pid % 100) * 40;
  writeFileSync(
    join(dataDir, 'pier.toml'),
    `[log]\nlevel = "info"\n[balancer]\nport = ${web}\n[runner]\nportMin = ${instancePorts}\nportMax = ${instancePorts + 39}\n` +
      `[[cluster.stats]]\nintake = "tcp://127.0.0.1:${si}"\ntail = "tcp://127.0.0.1:${st}"\nquery = "tcp://127.0.0.1:${sq}"\n` +
      `[[cluster.nexus]]\ncontrol = "tcp://127.0.0.1:${c1}"\nevents = "tcp://127.0.0.1:${e1}"\nheartbeats = "tcp://127.0.0.1:${h1}"\napi = "http://127.0.0.1:${a1}"\n` +
      `[[cluster.nexus]]\ncontrol = "tcp://127.0.0.1:${c2}"\nevents = "tcp://127.0.0.1:${e2}"\nheartbeats = "tcp://127.0.0.1:${h2}"\napi = "http://127.0.0.1:${a2}"\n`,
  );
  apiUrls = [`http://127.0.0.1:${a1}`, `http://127.0.0.1:${a2}`];
  env = { PIER_DATA: dataDir, XDG_CONFIG_HOME: join(dataDir, 'xdg'), DATABASE_URL: postgres.url };
  allowLoneRunner();
  const up = await runCli(['up', '--detach'], env);
  expect(up.stderr).toBe('');
  token = (JSON.parse(readFileSync(join(dataDir, 'admin.json'), 'utf8')) as { token: string }).token;

  lone = startLoneRunner(instancePorts + 40 > 65_000 ? 30_000 : instancePorts + 40);
  await waitFor(async () => (await api<{ nodes: Array<{ id: string; status: string }> }>('/v1/status')).nodes.some((n) => n.id === LONE && n.status === 'alive'), {
    name: 'lone runner alive', timeoutMs: 20_000, intervalMs: 100,
  });

  expect((await runCli(['apps:create', 'steady'], env)).code).toBe(0);
  const deployed = await runCli(['deploy', fileURLToPath(new URL('../../examples/hello', import.meta.url)), '-a', 'steady'], env);
  expect(deployed.stderr).toBe('');
  expect((await runCli(['ps:scale', 'web=2', '-a', 'steady'], env)).code).toBe(0);
  await waitFor(async () => {
    const ready = (await instances()).filter((i) => i.state === 'ready' && i.isLive);
    return ready.length === 2 && new Set(ready.map((i) => i.runnerId)).size === 2;
  }, { name: 'two ready instances on two runners', timeoutMs: 30_000, intervalMs: 200 });
}, 120_000);

afterAll(async () => {
  await stopLoneRunner('SIGTERM');
  if (env) await runCli(['down'], env);
  await postgres?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
}, 60_000);

describe('failover under load', () => {
  it('kill -9 of the leading nexus: no failed request, a new leader within 2 s, the CLI answers at once', async () => {
    const health = await Promise.all(apiUrls.map((base) => fetch(`${base}/healthz`).then((r) => r.json() as Promise<{ nexusId: string; isLeader: boolean }>)));
    const leaderIndex = health.findIndex((h) => h.isLeader);
    expect(leaderIndex).not.toBe(-1);
    const survivor = apiUrls[1 - leaderIndex]!;
    const traffic = load();
    traffic.start();
    await sleep(1000);

    process.kill(childPid(health[leaderIndex]!.nexusId), 'SIGKILL');
    const killedAt = Date.now();
    const cliStarted = Date.now();
    const cli = await runCli(['apps', '--json'], env);
    const cliMs = Date.now() - cliStarted;
    await waitFor(async () => {
      const h = (await (await fetch(`${survivor}/healthz`)).json()) as { isLeader: boolean };
      return h.isLeader;
    }, { name: 'the surviving replica leads', timeoutMs: 5000, intervalMs: 25 });
    const takeoverMs = Date.now() - killedAt;
    await sleep(2000);
    const result = await traffic.stop();

    console.log(`[failover] leader kill: takeover ${takeoverMs} ms, CLI ${cliMs} ms, ${result.ok} ok / ${result.failed} failed at ${result.rate} req/s`);
    expect(cli.code, cli.stderr).toBe(0);
    expect(JSON.parse(cli.stdout)).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'steady' })]));
    expect(cliMs).toBeLessThan(1000);
    expect(takeoverMs).toBeLessThan(2000);
    expect(result.failures).toEqual([]);
    expect(result.ok).toBeGreaterThan(500);
    // The balancer and runners follow the surviving replica: a new hostname is routed.
    expect(await routesNewHostname('after-leader.example.test', 5000)).toBeLessThan(5000);
  }, 30_000);

  it('kill -9 of a runner and its apps: backends leave rotation, ≤ 0.5% failures, two ready instances again, nothing runs twice', async () => {
    const before = (await instances()).filter((i) => i.state === 'ready' && i.isLive);
    expect(before).toHaveLength(2);
    const victim = before.find((i) => i.runnerId === LONE)!;
    expect(victim).toBeDefined();
    const emperorPid = (JSON.parse(readFileSync(join(dataDir, `runner-${LONE}`, 'emperor', 'emperor.json'), 'utf8')) as { pid: number }).pid;
    const { version } = await api<{ version: number }>('/v1/status');
    const traffic = load();
    traffic.start();
    await sleep(1000);

    // The machine dies: the runner, its emperor and every vassal (the emperor leads their process group).
    const runnerDead = stopLoneRunner('SIGKILL');
    process.kill(-emperorPid, 'SIGKILL');
    await runnerDead;
    const killedAt = Date.now();
    await waitFor(async () => !(await instances()).some((i) => i.id === victim.id), {
      name: 'the dead runner\'s instance out of rotation', timeoutMs: 5000, intervalMs: 25,
    });
    const outMs = Date.now() - killedAt;
    const ready = await waitFor(async () => {
      const list = (await instances()).filter((i) => i.state === 'ready' && i.isLive);
      return list.length === 2 ? list : undefined;
    }, { name: 'two ready instances again', timeoutMs: 15_000, intervalMs: 100 });
    const recoveredMs = Date.now() - killedAt;
    await sleep(1000);
    const result = await traffic.stop();

    console.log(`[failover] runner kill: out of rotation ${outMs} ms, 2 ready after ${recoveredMs} ms, ${result.ok} ok / ${result.failed} failed ${result.failures.join(', ')}`);
    expect(outMs).toBeLessThan(2000);
    expect(recoveredMs).toBeLessThan(10_000);
    expect(result.failed / (result.ok + result.failed)).toBeLessThanOrEqual(0.005);
    expect(ready.every((i) => i.runnerId === 'runner-1')).toBe(true);

    // The machine comes back with its stale vassal files: the runner stops what is no longer its, runs nothing twice.
    lone = startLoneRunner(Number(/^portMin = (\d+)$/m.exec(readFileSync(join(dataDir, 'config', `${LONE}.toml`), 'utf8'))![1]));
    const settled = await waitFor(async () => {
      const current = (await instances()).filter((i) => i.state !== 'stopping');
      const vassals = ['runner-1', LONE].flatMap((r) => {
        const dir = join(dataDir, `runner-${r}`, 'emperor', 'vassals');
        return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.ini')).map((f) => f.slice(0, -4)) : [];
      });
      const isBack = (await api<{ nodes: Array<{ id: string; status: string }> }>('/v1/status')).nodes.some((n) => n.id === LONE && n.status === 'alive');
      return isBack && vassals.length === current.length && current.every((i) => vassals.includes(i.id)) ? { current, vassals } : undefined;
    }, { name: 'vassals match the instances', timeoutMs: 20_000, intervalMs: 200 });
    expect(settled.vassals).not.toContain(victim.id);
    expect(new Set(settled.vassals).size).toBe(settled.vassals.length);
    expect(settled.current.filter((i) => i.state === 'ready' && i.isLive)).toHaveLength(2);
    // The leader recorded the node going down and coming back, once each.
    const { events } = await waitFor(async () => {
      const page = await api<{ events: Array<{ type: string; data: { id?: string } }> }>(`/v1/events?after=${version}`);
      return page.events.some((e) => e.type === 'node.up') ? page : undefined;
    }, { name: 'node.up recorded', timeoutMs: 5000, intervalMs: 100 });
    const liveness = events.filter((e) => e.type === 'node.down' || e.type === 'node.up').map((e) => `${e.type} ${e.data.id}`);
    expect(liveness).toEqual([`node.down ${LONE}`, `node.up ${LONE}`]);
  }, 60_000);

  it('PostgreSQL stopped and started: public traffic never fails; control calls work again within 5 s', async () => {
    const traffic = load();
    traffic.start();
    await sleep(500);
    await postgres.stop();
    await sleep(3000);
    const during = await runCli(['apps', '--json'], env, 20_000);
    expect(during.code).not.toBe(0);
    expect(during.stderr.trim().split('\n')).toHaveLength(1);
    postgres = new EmbeddedPostgres({ dataDir: join(dataDir, 'external-pg'), port: pgPort, log: silentLogger() });
    await postgres.start();
    const backAt = Date.now();
    await waitFor(async () => (await runCli(['apps', '--json'], env)).code === 0, { name: 'control calls again', timeoutMs: 15_000, intervalMs: 100 });
    const recoveredMs = Date.now() - backAt;
    await sleep(500);
    const result = await traffic.stop();

    console.log(`[failover] PostgreSQL restart: control back after ${recoveredMs} ms, ${result.ok} ok / ${result.failed} failed`);
    expect(result.failures).toEqual([]);
    expect(recoveredMs).toBeLessThan(5000);
    // Events flow again (each replica re-LISTENs): a new hostname reaches the balancer.
    expect(await routesNewHostname('after-pg.example.test', 5000)).toBeLessThan(5000);
  }, 60_000);
});
