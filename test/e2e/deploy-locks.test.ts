/**
 * One deploy per app at a time, with fenced leases (real nexus, runner on uWSGI, PostgreSQL): a second deploy is
 * refused naming the holder, or waits for the first with Pier-Lock-Wait; a holder that paused past its lease
 * cannot deploy with its stale token.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packDirectory } from '../../src/archive/index.js';
import { silentLogger } from '../../src/core/logger.js';
import { createOwner, eventsSince, withTransaction } from '../../src/db/index.js';
import type { Release } from '../../src/protocol/index.js';
import { Runner } from '../../src/runner/runner.js';
import { testConfig } from '../helpers/config.js';
import { startNexus, type NexusHandle } from '../helpers/daemons.js';
import { testDatabase, testPool } from '../helpers/postgres.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { apiCaller } from '../helpers/api.js';
import { searchableTempDir } from '../helpers/data-dir.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);
const { token } = await withTransaction(pool, (tx) => createOwner(tx, 'lock-owner'));
const dir = searchableTempDir('pier-locks-');
let nexus: NexusHandle;
let runner: Runner;
let slowApp: Buffer;
let quickApp: Buffer;

const api = apiCaller(() => nexus.api, token);

async function settled(app: string, version: number): Promise<Release> {
  return waitFor(async () => {
    const { release } = (await api<{ release: Release }>('GET', `/v1/apps/${app}/releases/v${version}`)).json;
    return release.status === 'pending' ? undefined : release;
  }, { name: `v${version} settled`, timeoutMs: 30_000, intervalMs: 50 });
}

function appDir(name: string, source: string): string {
  const folder = join(dir, name);
  mkdirSync(folder, { recursive: true });
  writeFileSync(join(folder, 'wsgi.py'), source);
  return folder;
}

beforeAll(async () => {
  nexus = await startNexus(dbUrl, { nexus: { schedulerIntervalMs: 100 } }, 'file');
  const cluster = { nexus: [{ control: nexus.control, events: nexus.events, heartbeats: nexus.heartbeats, api: nexus.api }], stats: [] };
  const base = 26000 + (process.pid % 80) * 50;
  runner = new Runner({ config: testConfig({ dataDir: dir, cluster, runner: { id: 'runner-locks', portMin: base, portMax: base + 49, startTimeoutMs: 15_000, drainMs: 0 } }), log: silentLogger() });
  await runner.start();
  const answer = 'def application(environ, start_response):\n    start_response("200 OK", [])\n    return [b"ok"]\n';
  slowApp = await packDirectory(appDir('slow', `import time\ntime.sleep(2)\n${answer}`));
  quickApp = await packDirectory(appDir('quick', answer));
}, 60_000);

afterAll(async () => {
  await runner?.stop();
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe('deploy locks', () => {
  it('refuses a second deploy naming the first, or waits for it with Pier-Lock-Wait', async () => {
    expect((await api('POST', '/v1/apps', { name: 'locky' })).status).toBe(201);
    const first = await api<{ release: Release }>('POST', '/v1/apps/locky/releases', slowApp);
    expect(first.status).toBe(201);
    const { json: held } = await api<{ lock: { holder: string; token: number } | null }>('GET', '/v1/apps/locky/lock');
    expect(held.lock?.holder).toBe('lock-owner deploying v1');

    const refused = await api<{ error: { code: string; message: string } }>('POST', '/v1/apps/locky/releases', quickApp);
    expect(refused.status).toBe(423);
    expect(refused.json.error.code).toBe('PIER_LOCKED');
    expect(refused.json.error.message).toMatch(/^lock 'deploy:locky' is held by lock-owner deploying v1 \(token \d+, lease ends in \d+ s\)$/);
    const config = await api<{ error: { code: string } }>('PATCH', '/v1/apps/locky/config', { A: '1' });
    expect(config.json.error.code).toBe('PIER_LOCKED'); // a config change is a deploy too

    const started = Date.now();
    const waited = await api<{ release: Release }>('POST', '/v1/apps/locky/releases', quickApp, { 'pier-lock-wait': '20' });
    const waitedMs = Date.now() - started;
    expect(waited.status).toBe(201);
    expect(waited.json.release.version).toBe(2);
    expect((await api<{ release: Release }>('GET', '/v1/apps/locky/releases/v1')).json.release.status).not.toBe('pending');
    console.log(`[locks] the second deploy waited ${waitedMs} ms for the first`);
    expect(waitedMs).toBeGreaterThan(500);
    expect(await settled('locky', 2)).toMatchObject({ status: 'live' });
    await waitFor(async () => (await api<{ lock: unknown }>('GET', '/v1/apps/locky/lock')).json.lock === null, { name: 'lock released' });
  }, 60_000);

  it('refuses the stale token of a holder that paused past its lease', async () => {
    expect((await api('POST', '/v1/apps', { name: 'fenced' })).status).toBe(201);
    const { json: status } = await api<{ version: number }>('GET', '/v1/status');
    const a = await api<{ lock: { token: number } }>('POST', '/v1/apps/fenced/lock', { holder: 'ci-a', leaseMs: 300 });
    expect(a.status).toBe(201);
    const busy = await api<{ error: { code: string; message: string } }>('POST', '/v1/apps/fenced/lock', { holder: 'ci-b' });
    expect(busy.status).toBe(423);
    expect(busy.json.error.message).toContain('held by ci-a');

    await sleep(600); // ci-a pauses past its lease
    const b = await api<{ lock: { token: number } }>('POST', '/v1/apps/fenced/lock', { holder: 'ci-b', leaseMs: 30_000 });
    expect(b.status).toBe(201);
    expect(b.json.lock.token).toBeGreaterThan(a.json.lock.token);

    const stale = await api<{ error: { code: string; message: string } }>('POST', '/v1/apps/fenced/releases', quickApp, { 'pier-lock-token': String(a.json.lock.token) });
    expect(stale.status).toBe(409);
    expect(stale.json.error.code).toBe('PIER_FENCED');
    expect(stale.json.error.message).toBe(`fencing token ${a.json.lock.token} for 'deploy:fenced' is stale: it is now held by ci-b with token ${b.json.lock.token}`);
    expect((await api<{ error: { code: string } }>('PATCH', '/v1/apps/fenced/lock', { token: a.json.lock.token })).json.error.code).toBe('PIER_FENCED');
    expect((await api<{ releases: Release[] }>('GET', '/v1/apps/fenced/releases')).json.releases).toEqual([]);

    // The current holder deploys under its lock, and the lock stays its own until it lets go.
    const mine = await api<{ release: Release }>('POST', '/v1/apps/fenced/releases', quickApp, { 'pier-lock-token': String(b.json.lock.token) });
    expect(mine.status).toBe(201);
    expect(await settled('fenced', 1)).toMatchObject({ status: 'live' });
    expect((await api<{ lock: { token: number } }>('GET', '/v1/apps/fenced/lock')).json.lock.token).toBe(b.json.lock.token);
    expect((await api<{ released: boolean }>('DELETE', `/v1/apps/fenced/lock?token=${b.json.lock.token}`)).json.released).toBe(true);

    const events = await eventsSince(pool, status.version, 1000);
    const locks = events.filter((e) => e.type.startsWith('lock.') && e.app === 'fenced').map((e) => `${e.type} ${String(e.data.token)}`);
    expect(locks).toEqual([
      `lock.acquired ${a.json.lock.token}`, `lock.expired ${a.json.lock.token}`, `lock.acquired ${b.json.lock.token}`, `lock.released ${b.json.lock.token}`,
    ]);
    expect((await api('POST', '/v1/apps/fenced/releases', quickApp, { 'pier-lock-token': 'abc' })).status).toBe(400);
    expect((await api('POST', '/v1/apps/fenced/lock', { leaseMs: 5 })).status).toBe(400);
  }, 60_000);
});
