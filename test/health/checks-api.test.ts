/**
 * Checks config: `GET/PUT /v1/apps/:app/checks` and `pier checks:set` — defaults, bounds, one-line errors for
 * bad input with nothing changed, owner scoping, and the `checks.changed` event (no release).
 */
import { describe, expect, it } from 'vitest';
import { newToken, randomId } from '../../src/core/ids.js';
import { createOwner, ensureAdmin, eventsSince, withTransaction } from '../../src/db/index.js';
import { apiCaller } from '../helpers/api.js';
import { runCli } from '../helpers/cli.js';
import { startNexus } from '../helpers/daemons.js';
import { testDatabase, testPool } from '../helpers/postgres.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);
const adminToken = newToken();
await withTransaction(pool, (tx) => ensureAdmin(tx, 'admin', adminToken));

describe('checks api', () => {
  it('answers the default, stores a check with defaults filled, and records checks.changed without a release', async () => {
    const n = await startNexus(dbUrl);
    const { token } = await withTransaction(pool, (tx) => createOwner(tx, `hc-o-${randomId(6)}`));
    const api = apiCaller(() => n.api, token);
    const app = `hc-${randomId(6)}`;
    expect((await api('POST', '/v1/apps', { name: app })).status).toBe(201);
    const before = await api<Record<string, unknown>>('GET', `/v1/apps/${app}/checks`);
    expect(before).toEqual({ status: 200, json: { app, check: { path: '/', status: null, intervalMs: 10_000, timeoutMs: 2000 }, isDefault: true } });

    const put = await api('PUT', `/v1/apps/${app}/checks`, { path: '/health', status: 200, intervalMs: 5000, timeoutMs: 1000 });
    expect(put).toEqual({ status: 200, json: { app, check: { path: '/health', status: 200, intervalMs: 5000, timeoutMs: 1000 }, isDefault: false } });
    expect((await api('GET', `/v1/apps/${app}/checks`)).json).toEqual(put.json);
    // Left out: any status below 500, 10 s, 2 s; a 1 s interval gets a half-interval time-out.
    expect((await api('PUT', `/v1/apps/${app}/checks`, { path: '/up' })).json).toMatchObject({ check: { path: '/up', status: null, intervalMs: 10_000, timeoutMs: 2000 } });
    expect((await api('PUT', `/v1/apps/${app}/checks`, { path: '/up', intervalMs: 1000 })).json).toMatchObject({ check: { intervalMs: 1000, timeoutMs: 500 } });

    const events = (await eventsSince(pool, 0, 10_000)).filter((e) => e.app === app);
    const changed = events.filter((e) => e.type === 'checks.changed');
    expect(changed).toHaveLength(3);
    expect(changed[0]!.data).toEqual({ app, check: { path: '/health', status: 200, intervalMs: 5000, timeoutMs: 1000 } });
    expect(events.some((e) => e.type === 'release.created')).toBe(false);

    // Another owner sees nothing of it.
    const { token: other } = await withTransaction(pool, (tx) => createOwner(tx, `hc-x-${randomId(6)}`));
    const stranger = apiCaller(() => n.api, other);
    expect((await stranger('GET', `/v1/apps/${app}/checks`)).status).toBe(404);
    expect((await stranger('PUT', `/v1/apps/${app}/checks`, { path: '/x' })).status).toBe(404);
    expect((await stranger('GET', `/v1/apps/${app}/health`)).status).toBe(404);
  });

  it('refuses bad bodies with one line naming the field and bound, changing nothing', async () => {
    const n = await startNexus(dbUrl);
    const api = apiCaller(() => n.api, adminToken);
    const app = `hc-${randomId(6)}`;
    expect((await api('POST', '/v1/apps', { name: app })).status).toBe(201);
    const cases: Array<[unknown, RegExp]> = [
      [{ path: 'health' }, /^check path must start with '\/', e\.g\. \/health/],
      [{ path: `/${'a'.repeat(1024)}` }, /^check path must be at most 1024 characters/],
      [{ path: '/a b' }, /^check path must be printable ASCII with no spaces or control characters/],
      [{ path: '/a\u0001' }, /^check path must be printable ASCII/],
      [{ path: '/', status: 99 }, /^check status must be an HTTP status 100\.\.599 \(got 99\)$/],
      [{ path: '/', intervalMs: 999 }, /^check interval must be 1s\.\.1h \(got 999ms\)$/],
      [{ path: '/', intervalMs: 3_600_001 }, /^check interval must be 1s\.\.1h/],
      [{ path: '/', timeoutMs: 99 }, /^check timeout must be 100ms\.\.60s \(got 99ms\)$/],
      [{ path: '/', intervalMs: 2000, timeoutMs: 2000 }, /^check timeout \(2s\) must be shorter than its interval \(2s\)$/],
      [{ path: '/', extra: 1 }, /extra/],
      [{ status: 200 }, /path/],
      [{ path: '/', intervalMs: '10s' }, /intervalMs/],
    ];
    for (const [body, message] of cases) {
      const reply = await api<{ error: { code: string; message: string } }>('PUT', `/v1/apps/${app}/checks`, body);
      expect(reply.status, JSON.stringify(body)).toBe(400);
      expect(reply.json.error.message, JSON.stringify(body)).toMatch(message);
      expect(reply.json.error.message).not.toContain('\n');
    }
    expect((await api('GET', `/v1/apps/${app}/checks`)).json).toMatchObject({ isDefault: true });
  });

  it('pier checks:set and pier checks print the check; bad flags fail in one line before anything is sent', { timeout: 60_000 }, async () => {
    const n = await startNexus(dbUrl);
    const app = `hc-${randomId(6)}`;
    const api = apiCaller(() => n.api, adminToken);
    expect((await api('POST', '/v1/apps', { name: app })).status).toBe(201);
    const env = { PIER_API_URL: n.api, PIER_TOKEN: adminToken };
    const set = await runCli(['checks:set', '/health', '-a', app, '--status', '204', '--interval', '3s', '--timeout', '500ms'], env);
    expect(set.stderr).toBe('');
    expect(set.code).toBe(0);
    expect(set.stdout).toContain(`check of ${app}: GET /health expecting status 204, every 3s, time-out 500ms`);
    const show = await runCli(['checks', '-a', app, '--json'], env);
    expect(JSON.parse(show.stdout)).toEqual({ app, check: { path: '/health', status: 204, intervalMs: 3000, timeoutMs: 500 }, isDefault: false });
    for (const [args, message] of [
      [['--interval', 'soon'], "error: --interval must be a duration like 10s, 500ms or 1m (got 'soon') (PIER_VALIDATION)"],
      [['--status', 'ok'], "error: --status must be an HTTP status such as 200 (got 'ok') (PIER_VALIDATION)"],
      [['--interval', '1s', '--timeout', '1s'], 'error: check timeout (1s) must be shorter than its interval (1s) (PIER_VALIDATION)'],
    ] as Array<[string[], string]>) {
      const bad = await runCli(['checks:set', '/x', '-a', app, ...args], env);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr.trim()).toBe(message);
    }
    const unchanged = await runCli(['checks', '-a', app, '--json'], env);
    expect(JSON.parse(unchanged.stdout).check.path).toBe('/health');
  });
});
