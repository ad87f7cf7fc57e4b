/**
 * A Redis add-on whose runner dies starts again, empty, on another runner (issue #13, Must show 3): two runners
 * (the platform's, in-process, and a second one as its own `pier runner` process); the add-on is placed on the
 * second; `kill -9` of it takes its redis-server down with it (parent-death signal), and within 10 s the add-on
 * answers on the first runner with REDIS_URL updated (a new release) and `note` saying why it is empty. The killed
 * runner then comes back and starts no stale server. A runner frozen (SIGSTOP: silent, its server still running)
 * has its add-on placed elsewhere, and stops the stale server once it runs again. App names start with `rd`.
 */
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import { redisUrl } from '../../src/db/index.js';
import { appUserName } from '../../src/runner/app-users.js';
import { authPing } from '../../src/runner/redis-server.js';
import { createRedisAddon, redisServersOf } from '../helpers/redis.js';
import { isNodeAlive, TestRunner } from '../helpers/second-runner.js';
import { platformForFile } from '../helpers/platform.js';
import { waitFor } from '../helpers/wait.js';

const isRoot = process.getuid?.() === 0;
const apps: string[] = [];
const slot = 31500 + (process.pid % 40) * 10;
const p = platformForFile({ prefix: 'rd', apps, runner: { addonPortMin: slot, addonPortMax: slot + 4 } });

const WSGI = 'def application(environ, start_response):\n    start_response("200 OK", [])\n    return [b"ok"]\n';

/**
 * An app whose Redis add-on is ready on a second runner (`runner-<tag>-…`, its own process): the app is deployed
 * before that runner joins, so its web instance makes the platform's runner the busier one.
 */
async function redisOnSecondRunner(suffix: string, tag: string) {
  const app = `rd${randomId(2)}-${suffix}`;
  apps.push(app);
  expect((await p.deploy(app, p.writeApp(app, { 'wsgi.py': WSGI }))).status).toBe('live');
  const second = `runner-${tag}-${randomId(3)}`;
  const runner = new TestRunner({ id: second, dir: p.dir, nexus: p.nexus, portMin: 23000 + (process.pid % 19) * 50, runner: { addonPortMin: slot + 5, addonPortMax: slot + 9 } });
  await waitFor(() => isNodeAlive(p, second), { name: 'second runner alive', timeoutMs: 15_000, intervalMs: 100 });
  const created = await createRedisAddon(p, app);
  const first = await waitFor(async () => {
    const a = await created.read();
    return a.state === 'ready' ? a : undefined;
  }, { name: 'add-on ready', timeoutMs: 20_000, intervalMs: 50 });
  return { app, second, runner, created, first };
}

describe.runIf(isRoot)('a redis add-on whose runner dies', () => {
  it('is back, empty, on a live runner within 10 s with REDIS_URL updated, and the dead runner starts nothing stale', async () => {
    const { app, second, runner, created, first } = await redisOnSecondRunner('move', 'rd2');
    expect(first.runnerId).toBe(second); // the less busy runner
    const config = async () => (await p.api<{ vars: Record<string, string> }>('GET', `/v1/apps/${app}/config`)).json.vars;
    expect((await config()).REDIS_URL).toBe(redisUrl('127.0.0.1', first.port!, first.secret));
    const uid = Number(execFileSync('id', ['-u', appUserName(app)]).toString().trim());
    const [oldPid] = await redisServersOf(uid);
    expect(oldPid).toBeGreaterThan(1);
    // Some data, to see it start empty.
    execFileSync('redis-cli', ['-p', String(first.port), '--no-auth-warning', '-a', first.secret, 'SET', 'k', 'v']);

    await runner.kill('SIGKILL');
    const killedAt = Date.now();
    await waitFor(async () => !(await redisServersOf(uid)).includes(oldPid!) || undefined, { name: "the dead runner's redis gone", timeoutMs: 2000, intervalMs: 20 });
    const goneMs = Date.now() - killedAt;
    const moved = await waitFor(async () => {
      const a = await created.read();
      if (a.state !== 'ready' || a.runnerId !== p.runner.id) return undefined;
      if ((await config()).REDIS_URL !== redisUrl('127.0.0.1', a.port!, a.secret)) return undefined;
      return (await authPing('127.0.0.1', a.port!, a.secret, 500)) ? a : undefined;
    }, { name: 'add-on ready on the live runner, REDIS_URL updated', timeoutMs: 10_000, intervalMs: 50 });
    const movedMs = Date.now() - killedAt;
    console.log(`[redis] runner kill -9: its redis-server gone after ${goneMs} ms; answering on ${moved.runnerId}:${moved.port} with REDIS_URL updated after ${(movedMs / 1000).toFixed(2)} s`);
    expect(movedMs).toBeLessThan(10_000);
    expect(moved.generation).toBe(first.generation + 1);
    expect(moved.note).toBe(`runner ${second} lost; restarted empty`);
    expect(moved.startedAt!.getTime()).toBeGreaterThan(first.startedAt!.getTime());
    // Empty: a cache, not a copy.
    expect(execFileSync('redis-cli', ['-p', String(moved.port), '--no-auth-warning', '-a', moved.secret, 'EXISTS', 'k']).toString().trim()).toBe('0');
    // The new release with the new REDIS_URL goes live.
    await waitFor(async () => {
      const { releases } = (await p.api<{ releases: Array<{ status: string; config?: Record<string, string>; description?: string }> }>('GET', `/v1/apps/${app}/releases`)).json;
      return releases.some((r) => r.status === 'live' && (r.description ?? '').includes('REDIS_URL')) || undefined;
    }, { name: 'a release with the new REDIS_URL live', timeoutMs: 20_000, intervalMs: 200 });

    // The killed runner comes back: nothing of the moved add-on starts there.
    runner.start();
    await waitFor(() => isNodeAlive(p, second), { name: 'second runner back', timeoutMs: 15_000, intervalMs: 100 });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(await redisServersOf(uid)).toEqual([p.runner.addons!.servers().find((s) => s.name === created.name)!.pid]);
    expect((await created.read()).generation).toBe(moved.generation);
  }, 90_000);

  it('is placed elsewhere when its runner goes silent, and the runner stops its stale server when it is back', async () => {
    const { app, second, runner, created, first } = await redisOnSecondRunner('stale', 'rd3');
    expect(first.runnerId).toBe(second);
    const uid = Number(execFileSync('id', ['-u', appUserName(app)]).toString().trim());
    const [stalePid] = await redisServersOf(uid);

    // Frozen, not dead: its heartbeats stop, its redis-server keeps running (no parent death).
    runner.child!.kill('SIGSTOP');
    const moved = await waitFor(async () => {
      const a = await created.read();
      return a.state === 'ready' && a.runnerId === p.runner.id ? a : undefined;
    }, { name: 'add-on ready on the live runner', timeoutMs: 10_000, intervalMs: 50 });
    expect(moved.note).toBe(`runner ${second} lost; restarted empty`);
    expect((await redisServersOf(uid)).sort()).toEqual([stalePid!, p.runner.addons!.servers().find((s) => s.name === first.name)!.pid!].sort());

    // Back: it learns its assignment is gone and stops the stale server; the live one stays.
    runner.child!.kill('SIGCONT');
    const backAt = Date.now();
    await waitFor(async () => !(await redisServersOf(uid)).includes(stalePid!) || undefined, { name: 'stale server stopped', timeoutMs: 10_000, intervalMs: 50 });
    console.log(`[redis] a frozen runner resumed: its stale redis-server stopped after ${Date.now() - backAt} ms`);
    expect(await redisServersOf(uid)).toEqual([p.runner.addons!.servers().find((s) => s.name === first.name)!.pid]);
    expect((await created.read()).generation).toBe(moved.generation);
  }, 90_000);
});
