/**
 * The platform serving apps end to end, all real: a nexus on PostgreSQL, a runner on a uWSGI emperor, a balancer.
 * Upload → live → reachable by Host; config reaches the app; three instances all serve; custom and wildcard
 * hostnames route; a failing release changes nothing public and reports the app's traceback.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packDirectory } from '../../src/archive/index.js';
import { randomId } from '../../src/core/ids.js';
import { silentLogger } from '../../src/core/logger.js';
import { createOwner, withTransaction } from '../../src/db/index.js';
import type { Release } from '../../src/protocol/index.js';
import { Balancer } from '../../src/balancer/balancer.js';
import { Runner } from '../../src/runner/runner.js';
import { send } from '../balancer/helpers.js';
import { testConfig } from '../helpers/config.js';
import { startNexus, type NexusHandle } from '../helpers/daemons.js';
import { testDatabase, testPool } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);
const { token } = await withTransaction(pool, (tx) => createOwner(tx, 'server-owner'));
const dir = mkdtempSync(join(tmpdir(), 'pier-serve-'));
let nexus: NexusHandle;
let runner: Runner;
let balancer: Balancer;

/** An app that tells which instance answered (its PORT) and what GREETING is. */
function writeApp(name: string, source: string): string {
  const appDir = join(dir, 'src', name);
  mkdirSync(appDir, { recursive: true });
  writeFileSync(join(appDir, 'wsgi.py'), source);
  return appDir;
}
const WHOAMI = `import os\nprint("whoami starting", flush=True)\ndef application(environ, start_response):\n    print("served", environ["PATH_INFO"], flush=True)\n    start_response("200 OK", [("Content-Type", "text/plain")])\n    return [("port=%s greeting=%s" % (os.environ["PORT"], os.environ.get("GREETING", "-"))).encode()]\n`;

async function api<T>(method: string, path: string, body?: unknown): Promise<{ status: number; json: T }> {
  const isBytes = Buffer.isBuffer(body);
  const res = await fetch(`${nexus.api}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': isBytes ? 'application/gzip' : 'application/json' }) },
    body: body === undefined ? undefined : isBytes ? body : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as T };
}

async function deploy(app: string, appDir: string): Promise<Release> {
  const up = await api<{ release: Release }>('POST', `/v1/apps/${app}/releases`, await packDirectory(appDir));
  expect(up.status).toBe(201);
  return waitFor(async () => {
    const { release } = (await api<{ release: Release }>('GET', `/v1/apps/${app}/releases/v${up.json.release.version}`)).json;
    return release.status === 'pending' ? undefined : release;
  }, { name: `v${up.json.release.version} of ${app} settled`, timeoutMs: 30_000, intervalMs: 100 });
}

beforeAll(async () => {
  nexus = await startNexus(dbUrl, { nexus: { schedulerIntervalMs: 100 } }, 'file');
  const cluster = { nexus: [{ control: nexus.control, events: nexus.events, heartbeats: nexus.heartbeats, api: nexus.api }], stats: [] };
  const base = 21000 + (process.pid % 80) * 100;
  runner = new Runner({ config: testConfig({ dataDir: dir, cluster, runner: { id: `runner-${randomId()}`, dir: join(dir, 'runner'), portMin: base, portMax: base + 99, startTimeoutMs: 15_000 } }), log: silentLogger() });
  await runner.start();
  balancer = new Balancer({ config: testConfig({ cluster, balancer: { id: `balancer-${randomId()}`, host: '127.0.0.1', port: 0 } }), log: silentLogger() });
  await balancer.start();
}, 60_000);

afterAll(async () => {
  await balancer?.stop();
  await runner?.stop();
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe('serving apps end to end', () => {
  it('deploys an app and serves it by Host through the balancer', async () => {
    await api('POST', '/v1/apps', { name: 'whoami' });
    const started = Date.now();
    const release = await deploy('whoami', writeApp('whoami', WHOAMI));
    expect(release).toMatchObject({ version: 1, status: 'live' });
    const reply = await waitFor(async () => {
      const r = await send(balancer.port!, 'whoami.localhost');
      return r.status === 200 ? r : undefined;
    }, { name: 'first 200', timeoutMs: 5000 });
    expect(reply.body).toMatch(/^port=\d+ greeting=-$/);
    expect(Date.now() - started).toBeLessThan(15_000);
  }, 40_000);

  it('rolls a config change onto the app', async () => {
    expect((await api('PATCH', '/v1/apps/whoami/config', { GREETING: 'bonjour' })).status).toBe(200);
    await waitFor(async () => (await send(balancer.port!, 'whoami.localhost')).body.endsWith('greeting=bonjour'), { name: 'new greeting', timeoutMs: 20_000, intervalMs: 100 });
  }, 30_000);

  it('spreads traffic over three instances when scaled to web=3', async () => {
    expect((await api('PATCH', '/v1/apps/whoami/formation', { web: 3 })).status).toBe(200);
    const ports = await waitFor(async () => {
      const seen = new Set<string>();
      for (let i = 0; i < 12; i++) seen.add((await send(balancer.port!, 'whoami.localhost')).body.split(' ')[0]!);
      return seen.size === 3 ? seen : undefined;
    }, { name: 'three instances answering', timeoutMs: 20_000, intervalMs: 200 });
    expect(ports.size).toBe(3);
  }, 30_000);

  it('routes a custom hostname and a wildcard to the app, and 404s the rest', async () => {
    expect((await api('POST', '/v1/apps/whoami/hostnames', { hostname: 'www.example.test' })).status).toBe(201);
    expect((await api('POST', '/v1/apps/whoami/hostnames', { hostname: '*.whoami.test' })).status).toBe(201);
    await waitFor(async () => (await send(balancer.port!, 'www.example.test')).status === 200, { name: 'custom host' });
    await waitFor(async () => (await send(balancer.port!, 'deep.sub.whoami.test:8080')).status === 200, { name: 'wildcard host' });
    expect((await send(balancer.port!, 'whoami.test')).status).toBe(404);
    expect((await send(balancer.port!, 'other.example.test')).status).toBe(404);
  });

  it('fails a release that cannot import, with the traceback, and keeps serving the live one', async () => {
    const broken = writeApp('whoami-broken', 'raise RuntimeError("kaput at import")\ndef application(environ, start_response):\n    pass\n');
    const before = (await send(balancer.port!, 'whoami.localhost')).body;
    const up = await api<{ release: Release }>('POST', '/v1/apps/whoami/releases', await packDirectory(broken));
    const failed = await waitFor(async () => {
      const { release } = (await api<{ release: Release }>('GET', `/v1/apps/whoami/releases/v${up.json.release.version}`)).json;
      return release.status === 'failed' ? release : undefined;
    }, { name: 'release failed', timeoutMs: 20_000, intervalMs: 100 });
    expect(failed.error).toContain('RuntimeError: kaput at import');
    for (let i = 0; i < 6; i++) {
      const r = await send(balancer.port!, 'whoami.localhost');
      expect(r.status).toBe(200);
      expect(r.body).toMatch(/greeting=bonjour$/);
    }
    expect(before).toMatch(/greeting=bonjour$/);
  }, 30_000);
});
