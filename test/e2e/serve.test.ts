/**
 * The platform serving apps end to end, all real: a nexus on PostgreSQL, a runner on a uWSGI emperor, a balancer.
 * Upload → live → reachable by Host; config reaches the app; three instances all serve; custom and wildcard
 * hostnames route; a failing release changes nothing public and reports the app's traceback; the app's output,
 * uWSGI's request log and the router's lines reach the stats collector, stream live, and add up to per-minute stats.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packDirectory } from '../../src/archive/index.js';
import { randomId } from '../../src/core/ids.js';
import { silentLogger } from '../../src/core/logger.js';
import { createOwner, withTransaction } from '../../src/db/index.js';
import type { Instance, Release } from '../../src/protocol/index.js';
import { Balancer } from '../../src/balancer/balancer.js';
import { Runner } from '../../src/runner/runner.js';
import { send } from '../balancer/helpers.js';
import { testConfig } from '../helpers/config.js';
import { collectorAddress, startCollector, startNexus, type NexusHandle } from '../helpers/daemons.js';
import { testDatabase, testPool } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';
import { apiCaller } from '../helpers/api.js';
import { searchableTempDir } from '../helpers/data-dir.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);
const { token } = await withTransaction(pool, (tx) => createOwner(tx, 'server-owner'));
const dir = searchableTempDir('pier-serve-');
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

const api = apiCaller(() => nexus.api, token);

async function deploy(app: string, appDir: string): Promise<Release> {
  const up = await api<{ release: Release }>('POST', `/v1/apps/${app}/releases`, await packDirectory(appDir));
  expect(up.status).toBe(201);
  return waitFor(async () => {
    const { release } = (await api<{ release: Release }>('GET', `/v1/apps/${app}/releases/v${up.json.release.version}`)).json;
    return release.status === 'pending' ? undefined : release;
  }, { name: `v${up.json.release.version} of ${app} settled`, timeoutMs: 30_000, intervalMs: 100 });
}

beforeAll(async () => {
  const collector = await collectorAddress();
  nexus = await startNexus(dbUrl, { nexus: { schedulerIntervalMs: 100 }, cluster: { stats: [collector] } }, 'file');
  const cluster = { nexus: [{ control: nexus.control, events: nexus.events, heartbeats: nexus.heartbeats, api: nexus.api }], stats: [collector] };
  await startCollector(dbUrl, { dataDir: dir, cluster }, collector, { flushIntervalMs: 200 });
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

  it("shows the app's output, uWSGI's request log and the router's line in the app's logs", async () => {
    const path = `/logged-${randomId()}`;
    expect((await send(balancer.port!, 'whoami.localhost', { path })).status).toBe(200);
    const lines = await waitFor(async () => {
      const { json } = await api<{ lines: string[] }>('GET', '/v1/apps/whoami/logs?lines=500');
      const mine = json.lines.filter((l) => l.includes(path));
      return mine.length >= 3 ? mine : undefined;
    }, { name: 'request lines in the log', timeoutMs: 5000, intervalMs: 100 });
    expect(lines.some((l) => /^\S+Z router\[balancer-\w+\]: method=GET path="\/logged-\w+" host=whoami.localhost status=200 bytes=\d+ service=/.test(l))).toBe(true);
    expect(lines.some((l) => new RegExp(`^\\S+Z app\\[whoami-v\\d+-\\w+\\]: served ${path}$`).test(l))).toBe(true);
    expect(lines.some((l) => /^\S+Z uwsgi\[whoami-v\d+-\w+\]: \[pid: \d+\|app: 0\|req: /.test(l) && l.includes(`GET ${path} =>`))).toBe(true);
    // The app's start-up output reached the log too.
    const { json } = await api<{ lines: string[] }>('GET', '/v1/apps/whoami/logs?lines=10000');
    expect(json.lines.some((l) => l.endsWith('whoami starting'))).toBe(true);
    expect((await api('GET', '/v1/apps/whoami/logs?lines=abc')).status).toBe(400);
    expect((await api('GET', '/v1/apps/nope/logs')).status).toBe(404);
  }, 20_000);

  it('streams new log lines with ?follow=1 within a second', async () => {
    const abort = new AbortController();
    const res = await fetch(`${nexus.api}/v1/apps/whoami/logs?lines=0&follow=1`, { headers: { authorization: `Bearer ${token}` }, signal: abort.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    const path = `/live-${randomId()}`;
    let text = '';
    await new Promise((resolve) => setTimeout(resolve, 300)); // the subscription reaches the collector
    const sentAt = Date.now();
    expect((await send(balancer.port!, 'whoami.localhost', { path })).status).toBe(200);
    while (!text.includes(`served ${path}`)) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    const latencyMs = Date.now() - sentAt;
    abort.abort();
    expect(text).toContain(`served ${path}`);
    expect(text).toContain(`path="${path}"`);
    expect(latencyMs).toBeLessThan(1000);
  }, 20_000);

  it('adds up requests per minute with status classes and percentiles', async () => {
    const { json: before } = await api<{ stats: Array<{ requests: number }> }>('GET', '/v1/apps/whoami/stats?since=1h');
    const counted = before.stats.reduce((sum, r) => sum + r.requests, 0);
    for (let i = 0; i < 10; i++) expect((await send(balancer.port!, 'whoami.localhost', { path: `/stat-${i}` })).status).toBe(200);
    const rows = await waitFor(async () => {
      const { json } = await api<{ stats: Array<{ requests: number; s2xx: number; bytes: number; p50Ms: number | null; p95Ms: number | null; p99Ms: number | null }> }>('GET', '/v1/apps/whoami/stats?since=15m');
      return json.stats.reduce((sum, r) => sum + r.requests, 0) >= counted + 10 ? json.stats : undefined;
    }, { name: 'stats caught up', timeoutMs: 5000, intervalMs: 100 });
    const last = rows.at(-1)!;
    expect(last.s2xx).toBeGreaterThan(0);
    expect(last.bytes).toBeGreaterThan(0);
    expect(last.p50Ms).toBeGreaterThan(0);
    expect(last.p95Ms!).toBeGreaterThanOrEqual(last.p50Ms!);
    expect(last.p99Ms!).toBeGreaterThanOrEqual(last.p95Ms!);
    expect((await api('GET', '/v1/apps/whoami/stats?since=31d')).status).toBe(400);
    expect((await api('GET', '/v1/apps/whoami/stats?since=soon')).status).toBe(400);
  }, 20_000);

  it("runs each app as its own user, who cannot read other apps' code, the artifacts or the vassal files", async () => {
    const runnerDir = runner.dir;
    const whoami = (await api<{ instances: Instance[] }>('GET', '/v1/apps/whoami/instances')).json.instances.find((i) => i.state === 'ready')!;
    const whoamiVassal = join(runnerDir, 'emperor', 'vassals', `${whoami.id}.ini`);
    const probe = (path: string): string => `        ("${path.replace(/\\/g, '/')}", _can(${JSON.stringify(path)})),`;
    const source = [
      'import json, os, pwd',
      'def _can(path):',
      '    try:',
      '        os.listdir(path) if os.path.isdir(path) else open(path).read(1)',
      '        return True',
      '    except OSError:',
      '        return False',
      'def application(environ, start_response):',
      '    home = os.environ["HOME"]',
      '    open(os.path.join(home, "scratch"), "w").write("ok")',
      '    facts = dict([',
      probe(join(runnerDir, 'releases', 'whoami')),
      probe(join(runnerDir, 'artifacts')),
      probe(whoamiVassal),
      '    ])',
      '    facts["user"] = pwd.getpwuid(os.getuid()).pw_name',
      '    facts["home"] = home',
      '    start_response("200 OK", [("Content-Type", "application/json")])',
      '    return [json.dumps(facts).encode()]',
      '',
    ].join('\n');
    expect((await api('POST', '/v1/apps', { name: 'peek' })).status).toBe(201);
    const release = await deploy('peek', writeApp('peek', source));
    expect(release.status).toBe('live');
    const reply = await waitFor(async () => {
      const r = await send(balancer.port!, 'peek.localhost');
      return r.status === 200 ? r : undefined;
    }, { name: 'peek answers' });
    const facts = JSON.parse(reply.body) as Record<string, unknown>;
    expect(facts.user).toBe('p-peek');
    expect(facts[join(runnerDir, 'releases', 'whoami')]).toBe(false);
    expect(facts[join(runnerDir, 'artifacts')]).toBe(false);
    expect(facts[whoamiVassal]).toBe(false);
    expect(String(facts.home)).toContain(join(runnerDir, 'homes'));
  }, 40_000);
});
