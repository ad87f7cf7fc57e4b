/** Attack: a request that never ends holds its worker forever; the app's request timeout (uWSGI harakiri) cuts it. */
import { describe, expect, it } from 'vitest';
import { send } from '../balancer/helpers.js';
import { platformForFile } from '../helpers/platform.js';
import { waitFor } from '../helpers/wait.js';

const p = platformForFile({ apps: ['rl-slow'] });

const SLOW = `import os, time
def application(environ, start_response):
    if environ["PATH_INFO"] == "/sleep":
        time.sleep(8)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
`;

async function appLog(app: string): Promise<string[]> {
  return (await p.api<{ lines: string[] }>('GET', `/v1/apps/${app}/logs?lines=2000`)).json.lines;
}

describe('request timeout (tenant boundary)', () => {
  it('cuts a request that runs past the app\'s request timeout and respawns the worker', async () => {
    expect((await p.api('POST', '/v1/apps', { name: 'rl-slow' })).status).toBe(201);
    expect((await p.admin('PATCH', '/v1/apps/rl-slow/limits', { requestTimeoutMs: 2000 })).status).toBe(200);
    expect((await p.deploy('rl-slow', p.writeApp('rl-slow', { 'wsgi.py': SLOW }))).status).toBe('live');
    const [slow] = await p.readyInstances('rl-slow');
    await waitFor(async () => (await send(p.balancer.port!, 'rl-slow.localhost')).status === 200, { name: 'rl-slow routed' });
    const before = (await send(p.balancer.port!, 'rl-slow.localhost')).body;
    // Straight to the instance: the balancer retries a GET whose connection was cut once (so the app would run it twice).
    const started = Date.now();
    const cut = await fetch(`http://127.0.0.1:${slow!.port}/sleep`).then((r) => `HTTP ${r.status}`, (err: Error) => (err.cause as Error | undefined)?.message ?? err.message);
    const tookMs = Date.now() - started;
    console.log(`harakiri: a request sleeping 8 s with a 2 s timeout ended after ${tookMs} ms (${cut})`);
    expect(cut).toMatch(/other side closed|socket hang up|ECONNRESET/);
    expect(tookMs).toBeLessThan(5000);
    const after = await waitFor(async () => {
      const r = await send(p.balancer.port!, 'rl-slow.localhost');
      return r.status === 200 ? r.body : undefined;
    }, { name: 'worker respawned', timeoutMs: 5000 });
    expect(after).toMatch(/^\d+$/);
    expect(after).not.toBe(before);
    await waitFor(async () => {
      const log = await appLog('rl-slow');
      return log.some((l) => /\*\*\* HARAKIRI ON WORKER 1 \(pid: \d+, try: 1\) \*\*\*/.test(l)) && log.some((l) => /worker 1 \(pid: \d+\) died, killed by signal 9/.test(l));
    }, { name: 'harakiri in the log', timeoutMs: 5000, intervalMs: 200 });
  }, 30_000);

});
