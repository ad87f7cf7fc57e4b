/**
 * The nexus side of a deploy, with the test playing the runner over the real control protocol: upload checks,
 * placement on a live runner, blue/green switch when ready, a failed release changing nothing public, config
 * changes as releases, scaling.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packDirectory } from '../../src/archive/index.js';
import { createOwner, withTransaction } from '../../src/db/index.js';
import type { Instance, Release } from '../../src/protocol/index.js';
import { HeartbeatPublisher, type ControlClient } from '../../src/transport/index.js';
import { tarGz } from '../archive/fixtures.js';
import { controlClient, onCleanup, startNexus, testSockets, type NexusHandle } from '../helpers/daemons.js';
import { testDatabase, testPool } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);
const { token } = await withTransaction(pool, (tx) => createOwner(tx, 'deployer'));
let appDir: string;
let artifact: Buffer;

beforeAll(async () => {
  appDir = mkdtempSync(join(tmpdir(), 'pier-deploy-app-'));
  writeFileSync(join(appDir, 'wsgi.py'), 'def application(env, start):\n    start("200 OK", [])\n    return [b"hi"]\n');
  artifact = await packDirectory(appDir);
});
afterAll(() => rmSync(appDir, { recursive: true, force: true }));

async function api<T>(n: NexusHandle, method: string, path: string, body?: unknown, type = 'application/json'): Promise<{ status: number; json: T }> {
  const res = await fetch(`${n.api}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': type }) },
    body: body === undefined ? undefined : Buffer.isBuffer(body) ? body : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as T };
}

/** Registers a runner and keeps it alive with real heartbeats. */
async function fakeRunner(n: NexusHandle, client: ControlClient, id: string): Promise<void> {
  await client.call('node.register', { nodeId: id, kind: 'runner', address: '127.0.0.1' });
  const beat = new HeartbeatPublisher({ nodeId: id, kind: 'runner', endpoints: [n.heartbeats], intervalMs: 50, sockets: testSockets() });
  beat.start();
  onCleanup(async () => beat.stop());
}

async function instancesOf(n: NexusHandle, app: string): Promise<Instance[]> {
  return (await api<{ instances: Instance[] }>(n, 'GET', `/v1/apps/${app}/instances`)).json.instances;
}

describe('deploy flow on the nexus', () => {
  it('rejects hostile or app-less uploads with 400 and records nothing', async () => {
    const n = await startNexus(dbUrl);
    await api(n, 'POST', '/v1/apps', { name: 'hostile' });
    const cases: Array<[Buffer, RegExp]> = [
      [tarGz([{ name: 'wsgi.py', data: 'x' }, { name: '../escape.txt', data: 'x' }]), /escape/],
      [tarGz([{ name: 'wsgi.py', data: 'x' }, { name: 'link', type: '2', linkname: '/etc/passwd' }]), /link/],
      [tarGz([{ name: 'wsgi.py', data: 'x' }, { name: 'dev', type: '3' }]), /device/],
      [tarGz([{ name: 'readme.txt', data: 'x' }]), /no wsgi\.py and no Procfile/],
      [Buffer.from('not a tarball at all'), /gzip|archive/i],
    ];
    for (const [body, message] of cases) {
      const res = await api<{ error: { code: string; message: string } }>(n, 'POST', '/v1/apps/hostile/releases', body, 'application/gzip');
      expect(res.status, message.source).toBe(400);
      expect(res.json.error.message).toMatch(message);
    }
    expect((await api<{ releases: Release[] }>(n, 'GET', '/v1/apps/hostile/releases')).json.releases).toEqual([]);
    const { rows } = await pool.query('SELECT count(*)::int AS n FROM artifacts');
    expect(rows[0].n).toBe(0);
  });

  it('places a release on a live runner, switches live when ready, and keeps the live release when the next fails', async () => {
    const n = await startNexus(dbUrl, { nexus: { schedulerIntervalMs: 50 } });
    const client = controlClient([n.control], 1000);
    await fakeRunner(n, client, 'runner-flow');
    await api(n, 'POST', '/v1/apps', { name: 'flow' });

    const up = await api<{ release: Release }>(n, 'POST', '/v1/apps/flow/releases', artifact, 'application/gzip');
    expect(up.status).toBe(201);
    expect(up.json.release).toMatchObject({ version: 1, status: 'pending' });
    const [first] = await waitFor(async () => {
      const list = await instancesOf(n, 'flow');
      return list.length === 1 ? list : undefined;
    }, { name: 'instance placed', timeoutMs: 5000 });
    expect(first).toMatchObject({ runnerId: 'runner-flow', state: 'assigned', release: 1, isLive: false });

    const spec = await client.call('instance.spec', { instanceId: first!.id });
    expect(spec).toMatchObject({ app: 'flow', release: 1, sha256: up.json.release.sha256 });
    const chunk = await client.call('artifact.fetch', { sha256: spec.sha256, offset: 0, length: 1024 * 1024 });
    expect(Buffer.from(chunk.data).equals(artifact)).toBe(true);

    await client.call('instance.report', { nodeId: 'runner-flow', instanceId: first!.id, state: 'starting', port: 23456 });
    await client.call('instance.report', { nodeId: 'runner-flow', instanceId: first!.id, state: 'ready', port: 23456 });
    await waitFor(async () => (await api<{ release: Release }>(n, 'GET', '/v1/apps/flow/releases/v1')).json.release.status === 'live', { name: 'v1 live' });
    expect((await instancesOf(n, 'flow'))[0]).toMatchObject({ state: 'ready', isLive: true, port: 23456 });

    // A config change is a new release of the same code; its instance fails: v1 stays live and untouched.
    expect((await api(n, 'PATCH', '/v1/apps/flow/config', { GREETING: 'hi' })).status).toBe(200);
    const second = await waitFor(async () => (await instancesOf(n, 'flow')).find((i) => i.release === 2), { name: 'v2 placed' });
    await client.call('instance.report', { nodeId: 'runner-flow', instanceId: second.id, state: 'failed', error: 'ImportError: no module named nope' });
    const failed = await waitFor(async () => {
      const r = (await api<{ release: Release }>(n, 'GET', '/v1/apps/flow/releases/v2')).json.release;
      return r.status === 'failed' ? r : undefined;
    }, { name: 'v2 failed' });
    expect(failed.error).toContain('ImportError');
    expect(failed.sha256).toBe(up.json.release.sha256);
    const live = (await instancesOf(n, 'flow')).filter((i) => i.isLive);
    expect(live.map((i) => [i.id, i.state])).toEqual([[first!.id, 'ready']]);
  });

  it('scales web instances and stops the extras when scaled down', async () => {
    // A database of its own: runners of the other tests must not take part in the spread.
    const scaleDb = await testDatabase();
    await withTransaction(testPool(scaleDb), (tx) => createOwner(tx, 'deployer', false, token));
    const n = await startNexus(scaleDb, { nexus: { schedulerIntervalMs: 50 } });
    const client = controlClient([n.control], 1000);
    await fakeRunner(n, client, 'runner-scale-a');
    await fakeRunner(n, client, 'runner-scale-b');
    await api(n, 'POST', '/v1/apps', { name: 'scaled' });
    await api(n, 'POST', '/v1/apps/scaled/releases', artifact, 'application/gzip');
    expect((await api(n, 'PATCH', '/v1/apps/scaled/formation', { web: 4 })).status).toBe(200);
    const placed = await waitFor(async () => {
      const list = await instancesOf(n, 'scaled');
      return list.length === 4 ? list : undefined;
    }, { name: 'four instances' });
    const perRunner = placed.reduce<Record<string, number>>((acc, i) => ({ ...acc, [i.runnerId]: (acc[i.runnerId] ?? 0) + 1 }), {});
    expect(perRunner).toEqual({ 'runner-scale-a': 2, 'runner-scale-b': 2 });
    expect((await api(n, 'PATCH', '/v1/apps/scaled/formation', { web: 101 })).status).toBe(400);
    expect((await api(n, 'PATCH', '/v1/apps/scaled/formation', { web: 1 })).status).toBe(200);
    await waitFor(async () => (await instancesOf(n, 'scaled')).filter((i) => i.state === 'stopping').length === 3, { name: 'three stopping' });
  });
});
