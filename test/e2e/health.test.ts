/**
 * Health e2e (#11, Must show 2): an instance whose app starts failing its check (a flag file in the instance's TMPDIR,
 * written as the app's user) leaves rotation within two intervals under paced load with no failed request, raises one
 * alert, climbs the ladder (each rung an event), and its alert clears once it is healthy again; the app's webhook gets
 * its alerts. Check interval 1 s.
 */
import { describe, expect, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import { eventReader, healthApp, healthOf, routedIds, setFlag, webhookServer } from '../helpers/health.js';
import { SteadyLoad } from '../helpers/load.js';
import { platformForFile } from '../helpers/platform.js';
import { waitFor } from '../helpers/wait.js';

const apps: string[] = [];
// 8 threads per instance: more than the load's 4 connections, so the balancer's keep-alive connections (each holds
// a uWSGI thread) never take every thread and the checks are answered at once (see the report on #11).
// The app's webhook below is a local server: the operator's escape hatch lets an owner aim it at loopback.
const p = platformForFile({ prefix: 'hc', apps, runner: { threads: 8 }, nexus: { alertWebhookAllowPrivate: true } });
const events = eventReader(p);
const health = (app: string) => healthOf(p, app);

function newApp(): string {
  const name = `hc${randomId(5)}`;
  apps.push(name);
  return name;
}

describe('health checks e2e', () => {
  it('an instance failing its check leaves rotation within 2 intervals, climbs the ladder, and its alert clears once healthy', { timeout: 120_000 }, async () => {
    const app = newApp();
    expect((await p.deploy(app, p.writeApp(app, healthApp('v1')))).status).toBe('live');
    expect((await p.api('PATCH', `/v1/apps/${app}/formation`, { web: 2 })).status).toBe(200);
    expect((await p.api('PUT', `/v1/apps/${app}/checks`, { path: '/health', status: 200, intervalMs: 1000, timeoutMs: 500 })).status).toBe(200);
    const [a, b] = await waitFor(async () => {
      const h = await health(app);
      const ok = h.instances.filter((i) => i.state === 'ready' && i.healthy === true && i.status === 200);
      return ok.length === 2 ? ok : undefined;
    }, { name: 'two healthy instances', timeoutMs: 30_000 });

    const load = new SteadyLoad(`http://127.0.0.1:${p.balancer.port}/`, `${app}.localhost`, 4, 5);
    load.start();
    await new Promise((r) => setTimeout(r, 500));
    const flaggedAt = Date.now();
    setFlag(p, app, a!.id, true);

    // Out of rotation: recorded as a rung, and the balancer's table no longer has it.
    const out = await waitFor(async () => (await events(app)).find((e) => e.type === 'remediation.rung' && e.data.instance === a!.id && e.data.rung === 'out-of-rotation'),
      { name: 'out-of-rotation rung', timeoutMs: 10_000, intervalMs: 50 });
    const outMs = out.at - flaggedAt;
    await waitFor(() => (p.balancer.table.lookup(`${app}.localhost`).kind === 'app' && !routedIds(p, app).includes(a!.id)) || undefined,
      { name: 'balancer stops routing it', timeoutMs: 2000, intervalMs: 20 });
    const leftMs = Date.now() - flaggedAt;
    expect(routedIds(p, app)).toEqual([b!.id]);
    expect(out.at - flaggedAt).toBeLessThanOrEqual(2000);
    expect(leftMs).toBeLessThanOrEqual(2000); // two intervals of 1 s

    // The ladder: rewrite, restart, then move (stop + a replacement); one rung per interval.
    const move = await waitFor(async () => (await events(app)).find((e) => e.type === 'remediation.rung' && e.data.instance === a!.id && e.data.rung === 'move'),
      { name: 'move rung', timeoutMs: 30_000, intervalMs: 100 });
    const replacement = String(move.data.replacement);
    await waitFor(async () => {
      const h = await health(app);
      const r = h.instances.find((i) => i.id === replacement);
      return r?.healthy === true && !h.instances.some((i) => i.id === a!.id) ? true : undefined;
    }, { name: 'replacement healthy and the old instance gone', timeoutMs: 30_000 });
    await waitFor(async () => (await events(app)).some((e) => e.type === 'alert.cleared' && e.data.instance === a!.id) || undefined,
      { name: 'alert cleared', timeoutMs: 5000 });
    await waitFor(() => routedIds(p, app).length === 2 || undefined, { name: 'two routed again', timeoutMs: 5000, intervalMs: 50 });
    const result = await load.stop();

    const all = await events(app);
    const rungs = all.filter((e) => e.type === 'remediation.rung' && e.data.instance === a!.id);
    expect(rungs.map((e) => e.data.rung)).toEqual(['out-of-rotation', 'rewrite', 'restart', 'move']);
    for (let i = 1; i < rungs.length; i++) expect(rungs[i]!.at - rungs[i - 1]!.at).toBeGreaterThanOrEqual(950);
    // Each rung says why: the check's answer (later rungs may see the restart's refused connections instead).
    expect(String(rungs[0]!.data.reason)).toBe('check GET /health answered 500 (expected 200): flag set: failing on purpose');
    for (const r of rungs) expect(String(r.data.reason)).toMatch(/^check GET \/health (answered 500|failed|got no answer)/);
    const raised = all.filter((e) => e.type === 'alert.raised');
    expect(raised).toHaveLength(1);
    expect(raised[0]!.data).toMatchObject({ app, instance: a!.id });
    expect(all.filter((e) => e.type === 'health.changed' && e.data.instance === a!.id && e.data.healthy === false)).toHaveLength(1);
    // The other instance never left rotation.
    expect(all.some((e) => e.type === 'remediation.rung' && e.data.instance === b!.id)).toBe(false);
    expect(result.failed, result.failures.join('; ')).toBe(0);
    const alerts = (await p.api<{ alerts: Array<{ instance: string; clearedAt: number | null }> }>('GET', `/v1/alerts?app=${app}`)).json.alerts;
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({ instance: a!.id, clearedAt: expect.any(Number) });
    console.log(`[health] flag → out of rotation ${outMs} ms (balancer ${leftMs} ms); rungs at +${rungs.map((r) => r.at - flaggedAt).join(', +')} ms; ` +
      `${result.ok} requests ok, ${result.failed} failed, ${result.rate} req/s`);

    // Back into rotation: the flag removed while out of rotation brings it back, its alert cleared; the app's
    // webhook (a real local server that fails its first delivery) gets both, the first after a retry.
    const hook = await webhookServer([500]);
    expect((await p.api('PUT', `/v1/apps/${app}/alerts/webhook`, { url: hook.url })).json).toEqual({ app, url: hook.url });
    const load2 = new SteadyLoad(`http://127.0.0.1:${p.balancer.port}/`, `${app}.localhost`, 4, 5);
    load2.start();
    setFlag(p, app, b!.id, true);
    await waitFor(async () => (await events(app)).some((e) => e.type === 'remediation.rung' && e.data.instance === b!.id && e.data.rung === 'out-of-rotation') || undefined,
      { name: 'second instance out of rotation', timeoutMs: 10_000, intervalMs: 50 });
    setFlag(p, app, b!.id, false);
    await waitFor(async () => (await events(app)).some((e) => e.type === 'remediation.rung' && e.data.instance === b!.id && e.data.rung === 'restored') || undefined,
      { name: 'restored', timeoutMs: 10_000, intervalMs: 50 });
    await waitFor(() => routedIds(p, app).includes(b!.id) || undefined, { name: 'routed again', timeoutMs: 2000, intervalMs: 20 });
    await waitFor(async () => (await events(app)).some((e) => e.type === 'alert.cleared' && e.data.instance === b!.id) || undefined,
      { name: 'second alert cleared', timeoutMs: 5000 });
    const result2 = await load2.stop();
    await waitFor(() => hook.got.filter((g) => g.type === 'alert.cleared').length === 1 || undefined, { name: 'webhook got the clearing', timeoutMs: 10_000 });
    expect(hook.got.map((g) => g.type)).toEqual(['alert.raised', 'alert.raised', 'alert.cleared']); // the first answered 500
    expect(hook.got[0]!.alert).toMatchObject({ app, instance: b!.id, reason: expect.stringContaining('check GET /health answered 500'), clearedAt: null });
    expect(hook.got[2]!.alert).toMatchObject({ app, instance: b!.id, clearedAt: expect.any(Number) });
    hook.close();
    expect(result2.failed, result2.failures.join('; ')).toBe(0);
    const h = await health(app);
    expect(h.instances.find((i) => i.id === b!.id)).toMatchObject({ healthy: true, isOutOfRotation: false, rung: 0 });
    // The runner's log lines travel through a collector: waited for, not read once.
    const pierLines = async () => (await p.api<{ lines: string[] }>('GET', `/v1/apps/${app}/logs?lines=10000`)).json.lines.filter((l) => l.includes(' pier['));
    const logs = await waitFor(async () => {
      const lines = await pierLines();
      return lines.some((l) => l.includes(`alert cleared for instance ${b!.id}: healthy again`)) ? lines : undefined;
    }, { name: 'the clearing in the app log', timeoutMs: 10_000, intervalMs: 200 }).catch(async () => pierLines());
    expect(logs.some((l) => l.includes(`alert raised for instance ${a!.id}: check GET /health answered 500`)), logs.join('\n')).toBe(true);
    expect(logs.some((l) => l.includes(`alert cleared for instance ${b!.id}: healthy again`)), logs.join('\n')).toBe(true);
  });
});

