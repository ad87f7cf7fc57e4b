/**
 * A runner restarted within the dead-after budget keeps its Redis add-ons (issue #13): its servers stop with it
 * (SIGTERM: stopped; kill -9: parent-death signal), and the restarted runner starts them again from its assignments,
 * same generation and REDIS_URL, empty, with `note` saying why. App names start with `rd`.
 */
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import { redisUrl, type Addon } from '../../src/db/index.js';
import { appUserName } from '../../src/runner/app-users.js';
import { authPing } from '../../src/runner/redis-server.js';
import { createRedisAddon, redisServersOf } from '../helpers/redis.js';
import { isNodeAlive, TestRunner } from '../helpers/second-runner.js';
import { platformForFile } from '../helpers/platform.js';
import { waitFor } from '../helpers/wait.js';

const isRoot = process.getuid?.() === 0;
const apps: string[] = [];
const slot = 32000 + (process.pid % 40) * 10;
// A 10 s dead-after budget (100 ms × 100): a runner restarted within it keeps its add-ons, and must start them again.
const p = platformForFile({ prefix: 'rd', apps, runner: { addonPortMin: slot, addonPortMax: slot + 4 }, cluster: { heartbeatMisses: 100 } });

const WSGI = 'def application(environ, start_response):\n    start_response("200 OK", [])\n    return [b"ok"]\n';

describe.runIf(isRoot)('a redis add-on whose runner restarts in time', () => {
  it('starts again on the same runner, same generation and REDIS_URL, empty, saying why (after SIGTERM and after kill -9)', async () => {
    const app = `rd${randomId(2)}-again`;
    apps.push(app);
    expect((await p.deploy(app, p.writeApp(app, { 'wsgi.py': WSGI }))).status).toBe('live');
    const second = `runner-rd4-${randomId(3)}`;
    const portMin = 23000 + (process.pid % 19) * 50;
    const runner = new TestRunner({ id: second, dir: p.dir, nexus: p.nexus, portMin: portMin, heartbeatMisses: 100, runner: { addonPortMin: slot + 5, addonPortMax: slot + 9 } });
    await waitFor(() => isNodeAlive(p, second), { name: 'second runner alive', timeoutMs: 15_000, intervalMs: 100 });
    const created = await createRedisAddon(p, app);
    const readySince = (after: number) => waitFor(async () => {
      const a = await created.read();
      return a.state === 'ready' && a.startedAt && a.startedAt.getTime() > after && (await authPing('127.0.0.1', a.port!, a.secret, 500)) ? a : undefined;
    }, { name: 'add-on ready', timeoutMs: 20_000, intervalMs: 50 });
    const first = await readySince(0);
    expect(first.runnerId).toBe(second);
    const url = redisUrl('127.0.0.1', first.port!, first.secret);
    const uid = Number(execFileSync('id', ['-u', appUserName(app)]).toString().trim());
    const setKey = (a: Addon) => execFileSync('redis-cli', ['-p', String(a.port), '--no-auth-warning', '-a', a.secret, 'SET', 'k', 'v']);
    const hasKey = (a: Addon) => execFileSync('redis-cli', ['-p', String(a.port), '--no-auth-warning', '-a', a.secret, 'EXISTS', 'k']).toString().trim();
    setKey(first);

    let previous = first;
    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      const [oldPid] = await redisServersOf(uid);
      await runner.kill(signal);
      // Its server is gone with it (stopped, or killed by the parent-death signal) before the runner is back.
      await waitFor(async () => !(await redisServersOf(uid)).includes(oldPid!) || undefined, { name: `server gone after ${signal}`, timeoutMs: 5000, intervalMs: 20 });
      runner.start();
      const again = await readySince(previous.startedAt!.getTime());
      expect({ runner: again.runnerId, generation: again.generation, port: again.port, note: again.note }).toEqual({
        runner: second, generation: first.generation, port: first.port, note: `runner ${second} restarted; restarted empty`,
      });
      expect((await p.api<{ vars: Record<string, string> }>('GET', `/v1/apps/${app}/config`)).json.vars.REDIS_URL).toBe(url);
      expect(hasKey(again)).toBe('0');
      expect((await redisServersOf(uid)).length).toBe(1);
      setKey(again);
      previous = again;
    }
  }, 90_000);
});
