/**
 * Deploys under a steady load, all real (nexus, two runners on uWSGI, balancer): blue/green v1 → v2 across two
 * runners with no failed request and the old vassals gone after the drain; releases that fail to import or never
 * answer change nothing public and say why; a rollback brings the previous release back in one call.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { packDirectory } from '../../src/archive/index.js';
import { silentLogger } from '../../src/core/logger.js';
import { createOwner, withTransaction } from '../../src/db/index.js';
import type { Instance, Release } from '../../src/protocol/index.js';
import { Balancer } from '../../src/balancer/balancer.js';
import { Runner } from '../../src/runner/runner.js';
import { testConfig } from '../helpers/config.js';
import { startNexus, type NexusHandle } from '../helpers/daemons.js';
import { SteadyLoad } from '../helpers/load.js';
import { testDatabase, testPool } from '../helpers/postgres.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { apiCaller } from '../helpers/api.js';
import { searchableTempDir } from '../helpers/data-dir.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);
const { token } = await withTransaction(pool, (tx) => createOwner(tx, 'deploy-owner'));
const dir = searchableTempDir('pier-deploys-');
const DRAIN_MS = 1500;
let nexus: NexusHandle;
const runners: Runner[] = [];
let balancer: Balancer;

const api = apiCaller(() => nexus.api, token);

/** An app folder whose every answer names its version. */
function appVersion(name: string, source: string): string {
  const appDir = join(dir, 'src', name);
  mkdirSync(appDir, { recursive: true });
  writeFileSync(join(appDir, 'wsgi.py'), source);
  return appDir;
}
const answering = (version: string): string =>
  `def application(environ, start_response):\n    start_response("200 OK", [("Content-Type", "text/plain")])\n    return [b"${version}"]\n`;

async function upload(appDir: string, app = 'blue', query = ''): Promise<number> {
  const up = await api<{ release: Release }>('POST', `/v1/apps/${app}/releases${query}`, await packDirectory(appDir));
  expect(up.status).toBe(201);
  return up.json.release.version;
}

async function settled(version: number, app = 'blue'): Promise<Release> {
  return waitFor(async () => {
    const { release } = (await api<{ release: Release }>('GET', `/v1/apps/${app}/releases/v${version}`)).json;
    return release.status === 'pending' ? undefined : release;
  }, { name: `v${version} settled`, timeoutMs: 30_000, intervalMs: 50 });
}

async function get(host = 'blue.localhost'): Promise<{ status: number; body: string }> {
  const res = await request(`http://127.0.0.1:${balancer.port}/`, { headers: { host } });
  return { status: res.statusCode, body: await res.body.text() };
}

function vassals(): string[] {
  return runners.flatMap((r) => {
    const folder = join(r.dir, 'emperor', 'vassals');
    return existsSync(folder) ? readdirSync(folder).filter((f) => f.endsWith('.ini')).map((f) => f.slice(0, -4)) : [];
  });
}

beforeAll(async () => {
  nexus = await startNexus(dbUrl, { nexus: { schedulerIntervalMs: 100 } }, 'file');
  const cluster = { nexus: [{ control: nexus.control, events: nexus.events, heartbeats: nexus.heartbeats, api: nexus.api }], stats: [] };
  // A range of its own, below the ephemeral range and apart from the other files' runners (they run in parallel).
  const base = 10000 + (process.pid % 20) * 100;
  for (const [i, id] of ['runner-d1', 'runner-d2'].entries()) {
    const runner = new Runner({
      config: testConfig({ dataDir: dir, cluster, runner: { id, portMin: base + i * 50, portMax: base + i * 50 + 49, startTimeoutMs: 5000, drainMs: DRAIN_MS } }),
      log: silentLogger(),
    });
    await runner.start();
    runners.push(runner);
  }
  balancer = new Balancer({ config: testConfig({ cluster, balancer: { id: 'balancer-d', host: '127.0.0.1', port: 0 } }), log: silentLogger() });
  await balancer.start();

  expect((await api('POST', '/v1/apps', { name: 'blue' })).status).toBe(201);
  expect((await api('PATCH', '/v1/apps/blue/formation', { web: 2 })).status).toBe(200);
  expect((await settled(await upload(appVersion('v1', answering('v1')))))).toMatchObject({ status: 'live' });
  await waitFor(async () => {
    const ready = (await api<{ instances: Instance[] }>('GET', '/v1/apps/blue/instances')).json.instances.filter((i) => i.state === 'ready' && i.isLive);
    return ready.length === 2 && new Set(ready.map((i) => i.runnerId)).size === 2;
  }, { name: 'v1 on both runners', timeoutMs: 20_000, intervalMs: 100 });
}, 90_000);

afterAll(async () => {
  await balancer?.stop();
  for (const runner of runners) await runner.stop();
  rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe('deploys under load', () => {
  it('blue/green v1 → v2 on two runners: no failed request, all traffic on v2, old vassals gone after the drain', async () => {
    const v1Vassals = vassals();
    expect(v1Vassals).toHaveLength(2);
    const traffic = new SteadyLoad(`http://127.0.0.1:${balancer.port}/`, 'blue.localhost', 4, 5);
    traffic.start();
    await sleep(500);
    const started = Date.now();
    const version = await upload(appVersion('v2', answering('v2')));
    expect(await settled(version)).toMatchObject({ status: 'live' });
    const liveMs = Date.now() - started;
    for (let i = 0; i < 20; i++) expect(await get()).toEqual({ status: 200, body: 'v2' });
    await waitFor(() => vassals().every((v) => !v1Vassals.includes(v)), { name: 'v1 vassals removed', timeoutMs: DRAIN_MS + 5000, intervalMs: 50 });
    const goneMs = Date.now() - started;
    await sleep(300);
    const result = await traffic.stop();
    console.log(`[deploys] v2 live ${liveMs} ms after upload, v1 vassals gone at ${goneMs} ms; ${result.ok} ok / ${result.failed} failed at ${result.rate} req/s`);
    expect(result.failures).toEqual([]);
    expect(vassals()).toHaveLength(2);
    expect(goneMs).toBeGreaterThanOrEqual(DRAIN_MS);
  }, 60_000);

  it('a release that cannot import and one that never answers fail with their reason; nothing public changes', async () => {
    const traffic = new SteadyLoad(`http://127.0.0.1:${balancer.port}/`, 'blue.localhost', 4, 5);
    traffic.start();
    const broken = await settled(await upload(appVersion('v3-broken', `import no_such_module_here\n${answering('v3')}`)));
    expect(broken.status).toBe('failed');
    expect(broken.error).toContain("No module named 'no_such_module_here'");
    const silent = await settled(await upload(appVersion('v4-silent', 'import time\ntime.sleep(3600)\n' + answering('never'))));
    expect(silent.status).toBe('failed');
    expect(silent.error).toMatch(/did not answer|not ready|timed out/i);
    // A quiet log shows no error of the app's: the runner's reason is the last line, the one `pier deploy` prints.
    expect(silent.error!.split('\n').at(-1)).toMatch(/did not answer HTTP within \d+ ms/);
    const result = await traffic.stop();
    console.log(`[deploys] failing releases: ${result.ok} ok / ${result.failed} failed; silent: ${silent.error?.split('\n').at(-1)}`);
    expect(result.failures).toEqual([]);
    expect(await get()).toEqual({ status: 200, body: 'v2' });
  }, 60_000);

  it('rolls back to the previous good release in one call, code and config', async () => {
    expect((await api('PATCH', '/v1/apps/blue/config', { MODE: 'new' })).status).toBe(200);
    const configRelease = (await api<{ releases: Release[] }>('GET', '/v1/apps/blue/releases')).json.releases[0]!;
    expect(await settled(configRelease.version)).toMatchObject({ status: 'live' });
    const started = Date.now();
    const back = await api<{ release: Release }>('POST', '/v1/apps/blue/rollback', {});
    expect(back.status).toBe(201);
    expect(back.json.release.description).toBe('rollback to v2');
    expect(await settled(back.json.release.version)).toMatchObject({ status: 'live' });
    await waitFor(async () => (await get()).body === 'v2', { name: 'v2 answering' });
    const rollbackMs = Date.now() - started;
    console.log(`[deploys] rollback live in ${rollbackMs} ms`);
    expect((await api<{ vars: Record<string, string> }>('GET', '/v1/apps/blue/config')).json.vars).toEqual({});
    const named = await api<{ release: Release }>('POST', '/v1/apps/blue/rollback', { version: 1 });
    expect(named.json.release.description).toBe('rollback to v1');
    expect(await settled(named.json.release.version)).toMatchObject({ status: 'live' });
    await waitFor(async () => (await get()).body === 'v1', { name: 'v1 answering' });
    expect((await api<{ error: { message: string } }>('POST', '/v1/apps/blue/rollback', { version: 3 })).json.error.message).toMatch(/v3 failed to start/);
    expect((await api('POST', '/v1/apps/blue/rollback', { version: 99 })).status).toBe(404);
    expect((await api('POST', '/v1/apps/blue/rollback', { version: 'v1' })).status).toBe(400);
  }, 90_000);

  it('stages a release at stage.<app>.<domain> beside live, and promotes it under load with no failed request', async () => {
    const live = (await get()).body;
    expect(live).toBe('v1');
    expect((await get('stage.blue.localhost')).status).toBe(404); // nothing on stage yet
    const stagedVersion = await upload(appVersion('v-stage', answering('staged')), 'blue', '?stage=1');
    const onStage = await waitFor(async () => {
      const { release } = (await api<{ release: Release }>('GET', `/v1/apps/blue/releases/v${stagedVersion}`)).json;
      return release.status === 'staged' ? release : release.status === 'failed' ? release : undefined;
    }, { name: 'release on stage', timeoutMs: 30_000, intervalMs: 50 });
    expect(onStage.status).toBe('staged');
    await waitFor(async () => (await get('stage.blue.localhost')).body === 'staged', { name: 'stage host answers' });
    for (let i = 0; i < 10; i++) expect(await get()).toEqual({ status: 200, body: 'v1' });

    const traffic = new SteadyLoad(`http://127.0.0.1:${balancer.port}/`, 'blue.localhost', 4, 5);
    traffic.start();
    await sleep(300);
    const started = Date.now();
    const promoted = await api<{ release: Release }>('POST', '/v1/apps/blue/promote', {});
    expect(promoted.status).toBe(201);
    expect(await settled(stagedVersion)).toMatchObject({ status: 'live' });
    const promoteMs = Date.now() - started;
    await waitFor(async () => (await get()).body === 'staged', { name: 'live answers with the promoted release' });
    await sleep(300);
    const result = await traffic.stop();
    console.log(`[deploys] promote live in ${promoteMs} ms; ${result.ok} ok / ${result.failed} failed`);
    expect(result.failures).toEqual([]);
    for (let i = 0; i < 10; i++) expect(await get()).toEqual({ status: 200, body: 'staged' });
    // The previous live release took the stage slot: promoting again would go back.
    await waitFor(async () => (await get('stage.blue.localhost')).body === 'v1', { name: 'old live on stage' });
    await waitFor(async () => {
      const now = (await api<{ instances: Instance[] }>('GET', '/v1/apps/blue/instances')).json.instances.filter((i) => i.state !== 'stopping');
      return now.filter((i) => i.isLive).length === 2 && now.filter((i) => i.isStage).length === 1 ? true : undefined;
    }, { name: 'two live instances and one stage instance', timeoutMs: 10_000, intervalMs: 100 });
  }, 90_000);

  it('a stage release that fails leaves the stage slot and changes nothing live', async () => {
    const version = await upload(appVersion('v-stage-broken', `raise RuntimeError("stage boom")\n${answering('x')}`), 'blue', '?stage=1');
    const failed = await waitFor(async () => {
      const { release } = (await api<{ release: Release }>('GET', `/v1/apps/blue/releases/v${version}`)).json;
      return release.status === 'failed' ? release : undefined;
    }, { name: 'stage release failed', timeoutMs: 30_000, intervalMs: 50 });
    expect(failed.error).toContain('RuntimeError: stage boom');
    expect(await get()).toEqual({ status: 200, body: 'staged' });
    await waitFor(async () => (await get('stage.blue.localhost')).status === 404, { name: 'stage slot empty' });
    expect((await api<{ error: { message: string } }>('POST', '/v1/apps/blue/promote', {})).json.error.message).toMatch(/nothing on stage/);
  }, 60_000);

  it('rolls a release runner by runner with no failed request, and aborts at the first bad instance putting the old back', async () => {
    const get2 = async (): Promise<{ status: number; body: string }> => get('roll.localhost');
    expect((await api('POST', '/v1/apps', { name: 'roll' })).status).toBe(201);
    expect((await api('PATCH', '/v1/apps/roll/formation', { web: 2 })).status).toBe(200);
    expect(await settled(await upload(appVersion('roll-v1', answering('r1')), 'roll'), 'roll')).toMatchObject({ status: 'live' });
    const onBoth = async (release: number): Promise<boolean> => {
      const ready = (await api<{ instances: Instance[] }>('GET', '/v1/apps/roll/instances')).json.instances.filter((i) => i.state === 'ready' && i.release === release);
      return ready.length === 2 && new Set(ready.map((i) => i.runnerId)).size === 2;
    };
    await waitFor(() => onBoth(1), { name: 'r1 on both runners', timeoutMs: 20_000, intervalMs: 100 });

    const traffic = new SteadyLoad(`http://127.0.0.1:${balancer.port}/`, 'roll.localhost', 4, 5);
    traffic.start();
    const seen = new Set<string>();
    let mostInstances = 0;
    let isSampling = true;
    const sampler = (async () => {
      while (isSampling) {
        seen.add((await get2()).body);
        const list = (await api<{ instances: Instance[] }>('GET', '/v1/apps/roll/instances')).json.instances.filter((i) => i.state !== 'stopping');
        mostInstances = Math.max(mostInstances, list.length);
        await sleep(20);
      }
    })();
    const v2 = await upload(appVersion('roll-v2', answering('r2')), 'roll', '?strategy=rolling');
    expect(await settled(v2, 'roll')).toMatchObject({ status: 'live' });
    await waitFor(() => onBoth(v2), { name: 'r2 on both runners', timeoutMs: 20_000, intervalMs: 100 });
    isSampling = false;
    await sampler;
    const result = await traffic.stop();
    console.log(`[deploys] rolling: ${result.ok} ok / ${result.failed} failed; at most ${mostInstances} instances; answers ${[...seen].join(', ')}`);
    expect(result.failures).toEqual([]);
    expect(mostInstances).toBeLessThanOrEqual(3); // never a second full set: one extra instance at a time
    expect(seen).toEqual(new Set(['r1', 'r2']));
    for (let i = 0; i < 6; i++) expect(await get2()).toEqual({ status: 200, body: 'r2' });

    // v3 starts on the first runner, then fails on the second (it refuses to start twice): the deploy stops there.
    // Apps run as their own users: the marker goes where any user may write.
    const marker = join(tmpdir(), `pier-roll-v3-started-${process.pid}-${Date.now()}`);
    onTestFinished(() => rmSync(marker, { force: true }));
    const failing = `import os\nif os.path.exists(${JSON.stringify(marker)}):\n    raise RuntimeError("second instance refuses")\nopen(${JSON.stringify(marker)}, "w").close()\n${answering('r3')}`;
    const aborting = new SteadyLoad(`http://127.0.0.1:${balancer.port}/`, 'roll.localhost', 4, 5);
    aborting.start();
    const v3 = await upload(appVersion('roll-v3', failing), 'roll', '?strategy=rolling');
    const failed = await settled(v3, 'roll');
    expect(failed.status).toBe('failed');
    expect(failed.error).toContain('RuntimeError: second instance refuses');
    await waitFor(() => onBoth(v2), { name: 'r2 back on both runners', timeoutMs: 20_000, intervalMs: 100 });
    await waitFor(async () => (await api<{ instances: Instance[] }>('GET', '/v1/apps/roll/instances')).json.instances.every((i) => i.release === v2), {
      name: 'r3 instances gone', timeoutMs: 10_000, intervalMs: 100,
    });
    const aborted = await aborting.stop();
    console.log(`[deploys] aborted rolling: ${aborted.ok} ok / ${aborted.failed} failed`);
    expect(aborted.failures).toEqual([]);
    for (let i = 0; i < 6; i++) expect(await get2()).toEqual({ status: 200, body: 'r2' });

    const { json } = await api<{ deploy: { steps: Array<{ step: string; detail: string }> } }>('GET', `/v1/apps/roll/deploys/v${v2}`);
    const steps = json.deploy.steps.map((s) => s.step);
    expect(steps[0]).toBe('created');
    expect(steps[1]).toBe('locked');
    expect(steps).toContain('instance ready');
    expect(steps.indexOf('live')).toBeGreaterThan(steps.indexOf('instance ready'));
    expect((await api<{ deploys: Array<{ id: number }> }>('GET', '/v1/apps/roll/deploys')).json.deploys.map((d) => d.id)).toEqual([v3, v2, 1]);
    expect((await api('GET', '/v1/apps/roll/deploys/v99')).status).toBe(404);
  }, 120_000);
});
