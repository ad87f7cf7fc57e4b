/**
 * Attack: a request that never ends holds its worker forever; the app's request timeout (uWSGI harakiri) cuts it.
 * The operator sets that timeout with the CLI (`pier limits:set timeout=2s`), which app owners cannot.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { send } from '../balancer/helpers.js';
import { runCli } from '../helpers/cli.js';
import { platformForFile } from '../helpers/platform.js';
import { waitFor } from '../helpers/wait.js';

// uWSGI 2.0's harakiri is one timer per worker, which a request finishing on another thread of that worker clears
// (unbit/uwsgi#2706): a health probe answered during the sleep would reset it. With one thread per worker the timeout
// holds; with more it is a known gap (docs/SECURITY.md).
const p = platformForFile({ apps: ['rl-slow'], runner: { threads: 1 } });

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
  it('shows and sets limits from the CLI (pier limits, limits:set), operators only', async () => {
    expect((await p.api('POST', '/v1/apps', { name: 'rl-slow' })).status).toBe(201);
    const as = (token: string) => ({ PIER_API_URL: p.nexus.api, PIER_TOKEN: token });
    const shown = await runCli(['limits', '-a', 'rl-slow', '--json'], as(p.tokens.owner));
    expect(shown.stderr).toBe('');
    expect(JSON.parse(shown.stdout)).toEqual({ memoryMb: null, processes: null, openFiles: null, cpuShares: null, requestTimeoutMs: null });
    const refused = await runCli(['limits:set', 'timeout=1h', '-a', 'rl-slow'], as(p.tokens.owner));
    expect(refused.code).not.toBe(0);
    expect(refused.stderr.trim()).toBe('error: this needs an operator (admin) token (PIER_FORBIDDEN)');
    const bad = await runCli(['limits:set', 'memory=8', '-a', 'rl-slow'], as(p.tokens.admin));
    expect(bad.stderr.trim()).toBe('error: memory must be 32..1048576 MB, not 8 (PIER_VALIDATION)');
    const set = await runCli(['limits:set', 'memory=1g', 'timeout=45s', '-a', 'rl-slow'], as(p.tokens.admin));
    expect(set.stderr).toBe('');
    expect(set.stdout).toMatch(/memory: +1024 MB\n/);
    expect(set.stdout).toMatch(/timeout: +45000 ms\n/);
    expect(set.stdout).toMatch(/files: +runner's default\n/);
    expect((await runCli(['limits:set', 'memory=default', 'timeout=2s', '-a', 'rl-slow'], as(p.tokens.admin))).code).toBe(0);
    expect((await p.api<{ limits: object }>('GET', '/v1/apps/rl-slow/limits')).json.limits).toMatchObject({ memoryMb: null, requestTimeoutMs: 2000 });
  }, 30_000);

  it('cuts a request that runs past the app\'s request timeout and respawns the worker', async () => {
    expect((await p.deploy('rl-slow', p.writeApp('rl-slow', { 'wsgi.py': SLOW }))).status).toBe('live');
    const [slow] = await p.readyInstances('rl-slow');
    expect(readFileSync(`${p.runner.dir}/emperor/vassals/${slow!.id}.ini`, 'utf8')).toMatch(/^harakiri = 2$/m);
    await waitFor(async () => (await send(p.balancer.port!, 'rl-slow.localhost')).status === 200, { name: 'rl-slow routed' });
    const before = (await send(p.balancer.port!, 'rl-slow.localhost')).body;
    // Straight to the instance: the balancer retries a GET whose connection was cut once (so the app would run it twice).
    const started = Date.now();
    const cut = await fetch(`http://127.0.0.1:${slow!.port}/sleep`).then((r) => `HTTP ${r.status}`, (err: Error) => (err.cause as Error | undefined)?.message ?? err.message);
    const tookMs = Date.now() - started;
    console.log(`harakiri: a request sleeping 8 s with a 2 s timeout ended after ${tookMs} ms (${cut})`);
    expect(cut).toMatch(/other side closed|socket hang up|ECONNRESET/);
    // Cut before the 8 s the request asked for (one thread per worker: uWSGI's master checks once a second and
    // measured 3–6 s here, depending on where the worker's timer stood).
    expect(tookMs).toBeLessThan(7500);
    const after = await waitFor(async () => {
      const r = await send(p.balancer.port!, 'rl-slow.localhost');
      return r.status === 200 ? r.body : undefined;
    }, { name: 'worker respawned', timeoutMs: 5000 });
    expect(after).toMatch(/^\d+$/);
    expect(after).not.toBe(before);
    await waitFor(async () => {
      const log = await appLog('rl-slow');
      return log.some((l) => /\*\*\* HARAKIRI ON WORKER 1 \(pid: \d+, try: 1\) \*\*\*/.test(l)) && log.some((l) => /worker 1 \(pid: \d+\) died, killed by signal 9/.test(l));
    }, { name: 'harakiri in the log', timeoutMs: 10_000, intervalMs: 200 }); // shipped through a collector, under CI load
  }, 30_000);


  it('rolls a live app onto new limits when an operator changes them', async () => {
    const [old] = await p.readyInstances('rl-slow');
    const set = await p.admin<{ limits: { requestTimeoutMs: number } }>('PATCH', '/v1/apps/rl-slow/limits', { requestTimeoutMs: 5000 }, { 'pier-lock-wait': '20' });
    expect(set.status).toBe(200);
    const fresh = await waitFor(async () => {
      const ready = await p.readyInstances('rl-slow');
      return ready.length === 1 && ready[0]!.id !== old!.id ? ready[0] : undefined;
    }, { name: 'rolled onto a new instance', timeoutMs: 20_000, intervalMs: 200 });
    expect(readFileSync(`${p.runner.dir}/emperor/vassals/${fresh!.id}.ini`, 'utf8')).toMatch(/^harakiri = 5$/m);
    const { releases } = (await p.api<{ releases: Array<{ version: number; status: string; description: string }> }>('GET', '/v1/apps/rl-slow/releases')).json;
    expect(releases[0]).toMatchObject({ version: 2, status: 'live', description: 'limits: requestTimeoutMs=5000' });
  }, 30_000);
});
