/**
 * Draining a runner (`pier nodes:drain NODE`, operators): nothing new goes there, its web instances start on the
 * other runner before they stop there (the public sees no failure), its worker stops there and starts on the other
 * runner; `pier nodes` says so; `--undo` makes it take new instances again. Bad input gets one line.
 */
import { describe, expect, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import { redisUrl } from '../../src/db/index.js';
import type { Instance, Node } from '../../src/protocol/index.js';
import { runCli } from '../helpers/cli.js';
import { SteadyLoad } from '../helpers/load.js';
import { platformForFile } from '../helpers/platform.js';
import { createRedisAddon } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';

const apps: string[] = [];
const p = platformForFile({ prefix: 'dr', apps, runners: 2, runner: { startTimeoutMs: 15_000 } });

const FILES = {
  'wsgi.py': 'def application(environ, start_response):\n    start_response("200 OK", [("Content-Type", "text/plain")])\n    return [b"ok"]\n',
  'worker.py': 'import time\nwhile True:\n    time.sleep(1)\n',
  Procfile: 'web: wsgi:application\nworker: python3 worker.py\n',
};

const operator = () => ({ PIER_API_URL: p.nexus.api, PIER_TOKEN: p.tokens.admin });
const running = async (app: string): Promise<Instance[]> =>
  (await p.api<{ instances: Instance[] }>('GET', `/v1/apps/${app}/instances`)).json.instances.filter((i) => i.state === 'ready');

describe('draining a runner', () => {
  it('moves its web instances without a failed request and its worker, places nothing new there, and undoes', { timeout: 120_000 }, async () => {
    const app = `dr${randomId(4)}`;
    apps.push(app);
    const [a, b] = [p.runners[0]!.id, p.runners[1]!.id];
    expect((await p.deploy(app, p.writeApp(app, FILES))).status).toBe('live');
    expect((await p.api('PATCH', `/v1/apps/${app}/formation`, { web: 2, worker: 2 })).status).toBe(200);
    const spread = (list: Instance[], type: string) => new Set(list.filter((i) => i.processType === type).map((i) => i.runnerId)).size === 2;
    await waitFor(async () => {
      const list = await running(app);
      return list.length === 4 && spread(list, 'web') && spread(list, 'worker') || undefined;
    }, { name: 'web and worker instances on both runners', timeoutMs: 30_000, intervalMs: 100 });
    const onA = (await running(app)).filter((i) => i.runnerId === a);
    expect(onA.map((i) => i.processType).sort()).toEqual(['web', 'worker']);

    const load = new SteadyLoad(`http://127.0.0.1:${p.balancer.port}/`, `${app}.localhost`, 4, 5);
    load.start();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const drainedAt = Date.now();
    const drained = await runCli(['nodes:drain', a], operator());
    expect(drained.stderr).toBe('');
    expect(drained.stdout.trim()).toMatch(new RegExp(`^draining ${a}: nothing new goes there; `));
    const moved = await waitFor(async () => {
      const list = await running(app);
      const all = (await p.api<{ instances: Instance[] }>('GET', `/v1/apps/${app}/instances`)).json.instances;
      const isDone = all.every((i) => i.runnerId === b) && list.filter((i) => i.processType === 'web').length === 2 && list.filter((i) => i.processType === 'worker').length === 2;
      return isDone ? list : undefined;
    }, { name: `everything of the app on ${b}`, timeoutMs: 30_000, intervalMs: 100 });
    const movedMs = Date.now() - drainedAt;
    await new Promise((resolve) => setTimeout(resolve, 500));
    const result = await load.stop();
    console.log(`[drain] ${onA.length} instance(s) moved off ${a} in ${movedMs} ms; public ${result.ok} ok / ${result.failed} failed at ${result.rate} req/s`);
    expect(result.failed, result.failures.join('; ')).toBe(0);
    expect(moved.filter((i) => onA.some((o) => o.id === i.id))).toEqual([]);

    // pier nodes says so; a new release goes only to the other runner.
    const nodes = await runCli(['nodes'], operator());
    expect(nodes.stdout).toMatch(new RegExp(`^${a} +runner +alive, draining `, 'm'));
    const listed = JSON.parse((await runCli(['nodes', '--json'], operator())).stdout) as Node[];
    expect(listed.find((n) => n.id === a)?.drainingSince).toBeGreaterThanOrEqual(drainedAt - 1000);
    expect(listed.find((n) => n.id === b)?.drainingSince).toBeUndefined();
    expect((await p.api('PATCH', `/v1/apps/${app}/config`, { ROLL: '1' })).status).toBe(200);
    await waitFor(async () => {
      const list = await running(app);
      return list.filter((i) => i.processType === 'web' && i.release === 2).length === 2 || undefined;
    }, { name: 'v2 ready', timeoutMs: 30_000, intervalMs: 100 });
    expect((await running(app)).filter((i) => i.runnerId === a)).toEqual([]);

    // Undone: it takes new instances again.
    const undone = await runCli(['nodes:drain', a, '--undo'], operator());
    expect(undone.stdout.trim()).toBe(`${a} is no longer draining: new instances may go there again`);
    expect((await p.api('PATCH', `/v1/apps/${app}/formation`, { web: 3 })).status).toBe(200);
    await waitFor(async () => (await running(app)).some((i) => i.runnerId === a && i.processType === 'web') || undefined,
      { name: `a web instance on ${a} again`, timeoutMs: 30_000, intervalMs: 100 });
  });

  it.runIf(process.getuid?.() === 0)('moves a Redis add-on off a drained runner, empty, with REDIS_URL following', { timeout: 60_000 }, async () => {
    const app = `dr${randomId(4)}`;
    apps.push(app);
    expect((await p.deploy(app, p.writeApp(app, { 'wsgi.py': FILES['wsgi.py'] }))).status).toBe('live');
    const created = await createRedisAddon(p, app);
    const first = await waitFor(async () => {
      const a = await created.read();
      return a.state === 'ready' ? a : undefined;
    }, { name: 'add-on ready', timeoutMs: 20_000, intervalMs: 50 });
    expect((await runCli(['nodes:drain', first.runnerId!], operator())).code).toBe(0);
    const moved = await waitFor(async () => {
      const a = await created.read();
      return a.state === 'ready' && a.runnerId !== first.runnerId ? a : undefined;
    }, { name: 'add-on ready on the other runner', timeoutMs: 20_000, intervalMs: 50 });
    expect(moved.note).toBe(`runner ${first.runnerId} drained; restarted empty`);
    const vars = (await p.api<{ vars: Record<string, string> }>('GET', `/v1/apps/${app}/config`)).json.vars;
    expect(vars.REDIS_URL).toBe(redisUrl('127.0.0.1', moved.port!, moved.secret));
    expect((await runCli(['nodes:drain', first.runnerId!, '--undo'], operator())).code).toBe(0);
    expect((await p.api('DELETE', `/v1/apps/${app}/addons/${created.name}`)).status).toBe(200);
  });

  it('answers bad input in one line and changes nothing', async () => {
    const unknown = await runCli(['nodes:drain', 'nope'], operator());
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr.trim()).toBe("error: no node 'nope'; run 'pier nodes' (PIER_NOT_FOUND)");
    const balancer = await runCli(['nodes:drain', p.balancer.id], operator());
    expect(balancer.stderr.trim()).toBe(`error: only runners can be drained; '${p.balancer.id}' is a balancer (PIER_VALIDATION)`);
    const byOwner = await runCli(['nodes:drain', p.runners[0]!.id], { PIER_API_URL: p.nexus.api, PIER_TOKEN: p.tokens.owner });
    expect(byOwner.stderr.trim()).toBe('error: this needs an operator (admin) token (PIER_FORBIDDEN)');
    const missing = await runCli(['nodes:drain'], operator());
    expect(missing.code).not.toBe(0);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    const { nodes } = (await p.admin<{ nodes: Node[] }>('GET', '/v1/nodes')).json;
    expect(nodes.filter((n) => n.drainingSince !== undefined)).toEqual([]);
  });
});
