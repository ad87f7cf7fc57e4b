/**
 * Keep-alive and uWSGI threads: a uWSGI thread serves one kept-alive connection until it closes, so a balancer
 * holding as many connections as an instance has threads would leave every further connection waiting for
 * uWSGI's 4 s socket time-out. The balancer keeps one connection fewer than the instance's capacity (its runner
 * reports processes x threads), so bursts past it queue in the balancer, and the runner's health probe always
 * finds a free thread.
 */
import { describe, expect, it } from 'vitest';
import { SteadyLoad } from '../helpers/load.js';
import { eventReader } from '../helpers/health.js';
import { platformForFile } from '../helpers/platform.js';

const apps = ['ka-slow'];
// Two threads per instance; the check every second, so the probe runs often while the load holds the threads.
const p = platformForFile({ prefix: 'ka', apps, runner: { threads: 2 } });
const events = eventReader(p);
const SLOW = `import time
def application(environ, start_response):
    time.sleep(0.02)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"slow"]
`;

describe('kept-alive connections and uWSGI threads', () => {
  it('serves more concurrent clients than the instance has threads without a stall, and its health probe still answers', { timeout: 60_000 }, async () => {
    expect((await p.deploy('ka-slow', p.writeApp('ka-slow', { 'wsgi.py': SLOW }))).status).toBe('live');
    expect((await p.api('PUT', '/v1/apps/ka-slow/checks', { path: '/', status: 200, intervalMs: 1000, timeoutMs: 500 })).status).toBe(200);
    const [instance] = await p.readyInstances('ka-slow');
    expect(instance!.capacity).toBe(2);
    const load = new SteadyLoad(`http://127.0.0.1:${p.balancer.port}/`, 'ka-slow.localhost', 6, 0);
    load.start();
    await new Promise((resolve) => setTimeout(resolve, 4000));
    const result = await load.stop();
    console.log(`[keepalive] 6 clients, 2 threads: ${result.ok} ok / ${result.failed} failed at ${result.rate} req/s, p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms, max ${result.maxMs} ms`);
    expect(result.failed, result.failures.join('; ')).toBe(0);
    // One thread: 20 ms a request, 6 clients queue behind it (~120 ms); a stall behind a held thread took 4 s.
    expect(result.maxMs).toBeLessThan(1000);
    // The runner's probe of the instance never went unanswered (the balancer's hostname check may have seen the deploy's 503).
    const sick = (await events('ka-slow')).filter((e) => e.type === 'health.changed' && e.data.instance === instance!.id && e.data.healthy === false);
    expect(sick.map((e) => e.data.reason)).toEqual([]);
  });
});
