/**
 * A partition across real interfaces: runner B lives in its own Linux network namespace, joined to this one by a
 * veth pair; the nexus, runner A and the balancer stay here. Cutting the link (link down) must get B declared
 * dead and its instance served from A; healing it must bring B back once (no flapping), with its stale instance
 * stopped and never routed again beside its replacement.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packDirectory } from '../../src/archive/index.js';
import { randomId } from '../../src/core/ids.js';
import { silentLogger } from '../../src/core/logger.js';
import { createOwner, withTransaction } from '../../src/db/index.js';
import type { Instance } from '../../src/protocol/index.js';
import { Balancer } from '../../src/balancer/balancer.js';
import { Runner } from '../../src/runner/runner.js';
import { CLI } from '../helpers/cli.js';
import { testConfig } from '../helpers/config.js';
import { startNexus, type NexusHandle } from '../helpers/daemons.js';
import { SteadyLoad } from '../helpers/load.js';
import { testDatabase, testPool } from '../helpers/postgres.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { apiCaller } from '../helpers/api.js';
import { searchableTempDir } from '../helpers/data-dir.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);
const { token } = await withTransaction(pool, (tx) => createOwner(tx, 'partition-owner', true));
const dir = searchableTempDir('pier-partition-');
const suffix = randomId(3).replace(/[^a-z0-9]/gi, '').slice(0, 6).toLowerCase();
const ns = `pier-${suffix}`;
const hostVeth = `ph${suffix}`;
const nsVeth = `pn${suffix}`;
const subnet = `10.231.${process.pid % 250}`;
const hostIp = `${subnet}.1`;
const nsIp = `${subnet}.2`;
/** Above the link's own route (metric 0): used only while the link is down. */
const UNREACHABLE_METRIC = 4000;
const timing = { heartbeatIntervalMs: 500, heartbeatMisses: 3, controlTimeoutMs: 1000 };
let nexus: NexusHandle;
let runnerA: Runner;
let runnerB: ChildProcess | undefined;
let balancer: Balancer;

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

const api = apiCaller(() => nexus.api, token);

async function instances(): Promise<Instance[]> {
  return (await api<{ instances: Instance[] }>('GET', '/v1/apps/split/instances')).json.instances;
}

async function eventsAfter(version: number): Promise<Array<{ version: number; type: string; data: { id?: string } }>> {
  return (await api<{ events: Array<{ version: number; type: string; data: { id?: string } }> }>('GET', `/v1/events?after=${version}`)).json.events;
}

beforeAll(async () => {
  ip('netns', 'add', ns);
  ip('link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', nsVeth);
  ip('link', 'set', nsVeth, 'netns', ns);
  ip('addr', 'add', `${hostIp}/24`, 'dev', hostVeth);
  ip('link', 'set', hostVeth, 'up');
  // While the link is down, B's subnet must lead nowhere, as when a router answers "host unreachable": without
  // this route its packets take the default route, and whatever answers there (this machine's gateway answers HTTP
  // 404 on most ports) gets B's traffic.
  ip('route', 'add', 'unreachable', `${subnet}.0/24`, 'metric', String(UNREACHABLE_METRIC));
  ip('netns', 'exec', ns, 'ip', 'addr', 'add', `${nsIp}/24`, 'dev', nsVeth);
  ip('netns', 'exec', ns, 'ip', 'link', 'set', nsVeth, 'up');
  ip('netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up');

  nexus = await startNexus(dbUrl, {
    cluster: { ...timing, stats: [] },
    nexus: { controlBind: `tcp://${hostIp}:*`, eventsBind: `tcp://${hostIp}:*`, heartbeatsBind: `tcp://${hostIp}:*`, schedulerIntervalMs: 200 },
  }, 'file');
  const cluster = { ...timing, stats: [], nexus: [{ control: nexus.control, events: nexus.events, heartbeats: nexus.heartbeats, api: nexus.api }] };
  const base = 32000 + (process.pid % 80) * 100;
  runnerA = new Runner({ config: testConfig({ dataDir: join(dir, 'a'), cluster, runner: { id: 'runner-a', portMin: base, portMax: base + 49, startTimeoutMs: 15_000 } }), log: silentLogger() });
  await runnerA.start();
  balancer = new Balancer({ config: testConfig({ cluster, balancer: { id: 'balancer-p', host: '127.0.0.1', port: 0, connectTimeoutMs: 300 } }), log: silentLogger() });
  await balancer.start();

  // Runner B is another machine: its own namespace, its own config file, reachable only through the veth pair.
  mkdirSync(join(dir, 'b'), { recursive: true });
  const file = join(dir, 'b', 'runner.toml');
  writeFileSync(file, [
    `dataDir = "${join(dir, 'b')}"`,
    '[log]', 'level = "info"',
    '[security]', 'curve = false',
    '[cluster]', `heartbeatIntervalMs = ${timing.heartbeatIntervalMs}`, `heartbeatMisses = ${timing.heartbeatMisses}`, 'stats = []',
    '[[cluster.nexus]]', `control = "${nexus.control}"`, `events = "${nexus.events}"`, `heartbeats = "${nexus.heartbeats}"`, `api = "${nexus.api}"`,
    '[runner]', 'id = "runner-b"', `advertiseHost = "${nsIp}"`, `bindHost = "${nsIp}"`, `portMin = ${base + 50}`, `portMax = ${base + 99}`, 'startTimeoutMs = 15000',
  ].join('\n'));
  const out = openSync(join(dir, 'b', 'runner.log'), 'a');
  runnerB = spawn('ip', ['netns', 'exec', ns, process.execPath, CLI, 'runner', '--config', file], { stdio: ['ignore', out, out], env: { PATH: process.env.PATH, HOME: process.env.HOME } });
  await waitFor(async () => (await api<{ nodes: Array<{ id: string; status: string }> }>('GET', '/v1/nodes')).json.nodes.some((n) => n.id === 'runner-b' && n.status === 'alive'), {
    name: 'runner B registered from its namespace', timeoutMs: 20_000, intervalMs: 100,
  });

  const appDir = join(dir, 'app');
  mkdirSync(appDir, { recursive: true });
  writeFileSync(join(appDir, 'wsgi.py'), 'def application(environ, start_response):\n    start_response("200 OK", [("Content-Type", "text/plain")])\n    return [environ["SERVER_NAME"].encode()]\n');
  expect((await api('POST', '/v1/apps', { name: 'split' })).status).toBe(201);
  expect((await api('POST', '/v1/apps/split/releases', await packDirectory(appDir))).status).toBe(201);
  expect((await api('PATCH', '/v1/apps/split/formation', { web: 2 })).status).toBe(200);
  await waitFor(async () => {
    const ready = (await instances()).filter((i) => i.state === 'ready' && i.isLive);
    return ready.length === 2 && new Set(ready.map((i) => i.runnerId)).size === 2;
  }, { name: 'one ready instance on each runner', timeoutMs: 60_000, intervalMs: 200 }).catch(async (err: unknown) => {
    // A set-up that fails on CI must say why: where the instances are, and what runner B (another process) logged.
    const list = await instances().catch(() => []);
    console.log(`[partition] set-up failed; instances: ${JSON.stringify(list.map((i) => ({ id: i.id, runner: i.runnerId, state: i.state, isLive: i.isLive, port: i.port })))}`);
    console.log(`[partition] runner B's log (last 40 lines):\n${readFileSync(join(dir, 'b', 'runner.log'), 'utf8').trim().split('\n').slice(-40).join('\n')}`);
    throw err;
  });
}, 120_000);

afterAll(async () => {
  const child = runnerB;
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await Promise.race([exited, sleep(30_000)]);
  }
  await balancer?.stop();
  await runnerA?.stop();
  try {
    ip('netns', 'del', ns); // takes the veth pair with it
  } catch {
    // not created
  }
  try {
    ip('route', 'del', 'unreachable', `${subnet}.0/24`, 'metric', String(UNREACHABLE_METRIC)); // in this namespace: stays otherwise
  } catch {
    // not created
  }
  rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe('a runner partitioned from the nexus', () => {
  it('is declared dead and served elsewhere; after healing it rejoins once and its stale instance never routes again', async () => {
    const isOnB = (address: string): boolean => address.startsWith(`${nsIp}:`);
    expect([...balancer.table.addresses()].some(isOnB)).toBe(true);
    const { json: status } = await api<{ version: number }>('GET', '/v1/status');
    const traffic = new SteadyLoad(`http://127.0.0.1:${balancer.port}/`, 'split.localhost', 4, 10);
    traffic.start();
    await sleep(500);

    ip('link', 'set', hostVeth, 'down');
    const cutAt = Date.now();
    const elsewhere = await waitFor(async () => {
      const list = await instances();
      const ready = list.filter((i) => i.state === 'ready' && i.isLive);
      return !list.some((i) => i.runnerId === 'runner-b') && ready.length === 2 ? ready : undefined;
    }, { name: 'B declared dead and its instance replaced on A', timeoutMs: 15_000, intervalMs: 50 });
    const replacedMs = Date.now() - cutAt;
    expect(elsewhere.every((i) => i.runnerId === 'runner-a')).toBe(true);
    // From here on, nothing on B may be routed: sample the balancer's table through the heal.
    let routedToB = 0;
    const sampler = setInterval(() => {
      if ([...balancer.table.addresses()].some(isOnB)) routedToB += 1;
    }, 20);
    await sleep(2000);

    ip('link', 'set', hostVeth, 'up');
    const healedAt = Date.now();
    await waitFor(async () => (await eventsAfter(status.version)).some((e) => e.type === 'node.up' && e.data.id === 'runner-b'), {
      name: 'B back (node.up)', timeoutMs: 15_000, intervalMs: 100,
    });
    const rejoinMs = Date.now() - healedAt;
    // B learns its instance was taken away and stops it.
    await waitFor(() => {
      const vassals = join(dir, 'b', 'runner-runner-b', 'emperor', 'vassals');
      return !existsSync(vassals) || readdirSync(vassals).filter((f) => f.endsWith('.ini')).length === 0;
    }, { name: "B's stale vassal stopped", timeoutMs: 15_000, intervalMs: 100 });
    await sleep(3000); // long enough for a flapping node to flap
    clearInterval(sampler);
    const result = await traffic.stop();

    const events = await eventsAfter(status.version);
    const liveness = events.filter((e) => e.type === 'node.down' || e.type === 'node.up').map((e) => `${e.type} ${e.data.id}`);
    console.log(`[partition] replaced on A after ${replacedMs} ms, B rejoined ${rejoinMs} ms after healing; ${result.ok} ok / ${result.failed} failed ${result.failures.slice(0, 3).join(', ')}; liveness ${liveness.join(', ')}`);
    expect(liveness).toEqual(['node.down runner-b', 'node.up runner-b']);
    expect(routedToB).toBe(0);
    const final = (await instances()).filter((i) => i.state === 'ready' && i.isLive);
    expect(final.map((i) => i.id).sort()).toEqual(elsewhere.map((i) => i.id).sort());
    expect([...balancer.table.addresses()].filter(isOnB)).toEqual([]);
    expect(result.ok).toBeGreaterThan(0);
  }, 90_000);
});
