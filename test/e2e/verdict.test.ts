/**
 * The deploy verdict from live traffic, all real (nexus, stats collector, runner on uWSGI, balancer): a release
 * that answers 500 to a third of its requests passes the start-up check, goes live, and is switched back to the
 * previous release by the verdict within seconds; a healthy release passes and the previous one is then drained.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packDirectory } from '../../src/archive/index.js';
import { silentLogger } from '../../src/core/logger.js';
import { createOwner, eventsSince, withTransaction } from '../../src/db/index.js';
import type { Instance, Release } from '../../src/protocol/index.js';
import { Balancer } from '../../src/balancer/balancer.js';
import { Runner } from '../../src/runner/runner.js';
import { testConfig } from '../helpers/config.js';
import { collectorAddress, startCollector, startNexus, type NexusHandle } from '../helpers/daemons.js';
import { SteadyLoad } from '../helpers/load.js';
import { testDatabase, testPool } from '../helpers/postgres.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { apiCaller } from '../helpers/api.js';
import { searchableTempDir } from '../helpers/data-dir.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);
const { token } = await withTransaction(pool, (tx) => createOwner(tx, 'verdict-owner'));
const dir = searchableTempDir('pier-verdict-');
const WINDOW_MS = 4000;
let nexus: NexusHandle;
let runner: Runner;
let balancer: Balancer;

const api = apiCaller(() => nexus.api, token);

async function release(version: number): Promise<Release> {
  return (await api<{ release: Release }>('GET', `/v1/apps/judged/releases/v${version}`)).json.release;
}

async function deploy(name: string, source: string): Promise<number> {
  const folder = join(dir, 'src', name);
  mkdirSync(folder, { recursive: true });
  writeFileSync(join(folder, 'wsgi.py'), source);
  const up = await api<{ release: Release }>('POST', '/v1/apps/judged/releases', await packDirectory(folder));
  expect(up.status).toBe(201);
  return up.json.release.version;
}

async function body(): Promise<string> {
  const res = await request(`http://127.0.0.1:${balancer.port}/`, { headers: { host: 'judged.localhost' } });
  return res.body.text();
}

const healthy = (name: string): string =>
  `def application(environ, start_response):\n    start_response("200 OK", [("Content-Type", "text/plain")])\n    return [b"${name}"]\n`;
const flaky = `import itertools\ncounter = itertools.count(1)\ndef application(environ, start_response):\n    if next(counter) % 3 == 0:\n        start_response("500 Internal Server Error", [("Content-Type", "text/plain")])\n        return [b"boom"]\n    start_response("200 OK", [("Content-Type", "text/plain")])\n    return [b"flaky"]\n`;

beforeAll(async () => {
  const collector = await collectorAddress();
  nexus = await startNexus(dbUrl, { nexus: { schedulerIntervalMs: 100, verdictWindowMs: WINDOW_MS, verdictMinRequests: 20 }, cluster: { stats: [collector] } }, 'file');
  const cluster = { nexus: [{ control: nexus.control, events: nexus.events, heartbeats: nexus.heartbeats, api: nexus.api }], stats: [collector] };
  await startCollector(dbUrl, { dataDir: dir, cluster }, collector);
  const base = 28000 + (process.pid % 80) * 50;
  runner = new Runner({ config: testConfig({ dataDir: dir, cluster, runner: { id: 'runner-verdict', portMin: base, portMax: base + 49, startTimeoutMs: 15_000, drainMs: 0 } }), log: silentLogger() });
  await runner.start();
  balancer = new Balancer({ config: testConfig({ cluster, balancer: { id: 'balancer-verdict', host: '127.0.0.1', port: 0 } }), log: silentLogger() });
  await balancer.start();
  expect((await api('POST', '/v1/apps', { name: 'judged' })).status).toBe(201);
  const v1 = await deploy('v1', healthy('v1'));
  await waitFor(async () => (await release(v1)).status === 'live', { name: 'v1 live', timeoutMs: 30_000, intervalMs: 50 });
  await waitFor(async () => (await body()) === 'v1', { name: 'v1 answering' });
}, 90_000);

afterAll(async () => {
  await balancer?.stop();
  await runner?.stop();
  rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe('the live-traffic verdict', () => {
  it('switches back from a release that answers 500 to a third of its requests, and says why', async () => {
    const traffic = new SteadyLoad(`http://127.0.0.1:${balancer.port}/`, 'judged.localhost', 4, 5);
    traffic.start();
    await sleep(1500); // the previous release's numbers before the switch
    const v2 = await deploy('v2', flaky);
    await waitFor(async () => ['live', 'failed'].includes((await release(v2)).status), { name: 'v2 live', timeoutMs: 30_000, intervalMs: 20 });
    const liveAt = Date.now();
    const reverted = await waitFor(async () => {
      const r = await release(v2);
      return r.status === 'failed' ? r : undefined;
    }, { name: 'v2 reverted', timeoutMs: WINDOW_MS + 5000, intervalMs: 20 });
    const exposedMs = Date.now() - liveAt;
    await sleep(500);
    const result = await traffic.stop();
    console.log(`[verdict] v2 exposed ${exposedMs} ms; ${reverted.error}; load ${result.ok} ok / ${result.failed} failed`);
    expect(reverted.error).toMatch(/^reverted by the live-traffic verdict: 5xx on 3\d% of \d+ requests, against 0\.0% of \d+ before$/);
    expect(exposedMs).toBeLessThan(WINDOW_MS);
    expect((await release(1)).status).toBe('live');
    for (let i = 0; i < 10; i++) expect(await body()).toBe('v1');
    const events = (await eventsSince(pool, 0, 10_000)).filter((e) => e.type === 'release.reverted');
    expect(events.map((e) => e.data)).toEqual([expect.objectContaining({ release: v2, previous: 1 })]);
    await waitFor(async () => {
      const list = (await api<{ instances: Instance[] }>('GET', '/v1/apps/judged/instances')).json.instances;
      return list.every((i) => i.release === 1);
    }, { name: 'v2 instances gone', timeoutMs: 10_000, intervalMs: 100 });
  }, 60_000);

  it('lets a healthy release pass, then drains the previous one', async () => {
    const traffic = new SteadyLoad(`http://127.0.0.1:${balancer.port}/`, 'judged.localhost', 2, 10);
    traffic.start();
    await sleep(1000);
    const v3 = await deploy('v3', healthy('v3'));
    await waitFor(async () => (await release(v3)).status === 'live', { name: 'v3 live', timeoutMs: 30_000, intervalMs: 20 });
    // During the window the previous release keeps running beside it.
    const during = (await api<{ instances: Instance[] }>('GET', '/v1/apps/judged/instances')).json.instances;
    expect(during.some((i) => i.release === 1 && i.state === 'ready')).toBe(true);
    await waitFor(async () => (await eventsSince(pool, 0, 10_000)).some((e) => e.type === 'release.verdict' && e.data.release === v3), {
      name: 'v3 passed', timeoutMs: WINDOW_MS + 5000, intervalMs: 100,
    });
    const result = await traffic.stop();
    expect(result.failures).toEqual([]);
    expect((await release(v3)).status).toBe('live');
    await waitFor(async () => (await api<{ instances: Instance[] }>('GET', '/v1/apps/judged/instances')).json.instances.every((i) => i.release === v3), {
      name: 'v1 drained after the verdict', timeoutMs: 10_000, intervalMs: 100,
    });
  }, 60_000);
});
