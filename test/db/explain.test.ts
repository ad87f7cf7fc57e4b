/**
 * explainApp on a real PostgreSQL: the app's events oldest first (known types rendered, unknown ones generically),
 * node.down/up only for runners that held one of the app's instances then, 5xx bursts by the stated rule, a
 * re-created name that inherits nothing, the 1,000-entry bound (newest kept, with a note), and index use.
 */
import { describe, expect, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import {
  APP_EVENTS_SQL, NODE_EVENTS_SQL, addRequestStats, appendEvent, authenticate, createApp, createOwner, destroyApp, explainApp,
  withTransaction, type AppRef, type Principal,
} from '../../src/db/index.js';
import type { EventType } from '../../src/protocol/index.js';
import { newHistogram, summarize } from '../../src/stats/histogram.js';
import { testDatabase, testPool } from '../helpers/postgres.js';

const pool = testPool(await testDatabase());
const HOUR = 3_600_000;

async function owner(): Promise<Principal> {
  const { token } = await withTransaction(pool, (tx) => createOwner(tx, `dash-exp-${randomId()}`));
  return authenticate(pool, token);
}

async function newApp(principal: Principal, name = `dash${randomId().slice(0, 8)}`): Promise<AppRef> {
  const app = await withTransaction(pool, (tx) => createApp(tx, principal, name));
  const { rows } = await pool.query<{ id: number }>('SELECT id FROM apps WHERE name = $1', [app.name]);
  return { id: rows[0]!.id, name: app.name };
}

/** Appends events in one transaction each (types the protocol may not list yet are allowed: the table takes any). */
async function events(list: Array<[string, string | null, Record<string, unknown>]>): Promise<void> {
  for (const [type, app, data] of list) await withTransaction(pool, (tx) => appendEvent(tx, type as EventType, app, data));
}

const instance = (app: string, id: string, runnerId: string, state: string, release = 1): [string, string, Record<string, unknown>] =>
  ['instance.changed', app, { id, app, release, runnerId, host: '127.0.0.1', port: state === 'assigned' ? null : 20001, state, isLive: true, processType: 'web' }];

describe('explainApp', () => {
  it('lists the app\'s events oldest first, with kinds, versions and one line each; unknown types generically', async () => {
    const app = await newApp(await owner());
    await events([
      ['release.created', app.name, { version: 1, sha256: 'a'.repeat(64), description: 'upload of 3 files' }],
      ['release.live', app.name, { release: 1 }],
      ['health.changed', app.name, { instance: `${app.name}-v1-a`, healthy: false, reason: 'GET /health answered 503' }],
      ['alert.raised', app.name, { id: 7, app: app.name, instance: `${app.name}-v1-a`, reason: 'failing its check', since: Date.now() }],
      ['remediation.rung', app.name, { instance: `${app.name}-v1-a`, rung: 'out of rotation', reason: 'unhealthy for 2 intervals' }],
      ['alert.cleared', app.name, { id: 7, app: app.name, instance: `${app.name}-v1-a`, reason: 'healthy again', since: Date.now() }],
      ['config.changed', app.name, { set: ['SECRET_KEY'], unset: ['OLD'] }],
      ['formation.changed', app.name, { web: 3, worker: 1 }],
      ['backup.finished', app.name, { release: 1, bytes: 1024 }],
      ['release.failed', app.name, { release: 2, error: 'line one\nline two \u001b[31mred\u001b[0m' }],
    ]);
    const body = await explainApp(pool, app, Date.now() - HOUR);
    expect(body).toMatchObject({ app: app.name, truncated: false });
    expect(body.entries.map((e) => [e.kind, e.summary, e.version])).toEqual([
      ['app', expect.stringMatching(/^app created by dash-exp-/), null],
      ['deploy', 'v1 created: upload of 3 files', 1],
      ['deploy', 'v1 live: balancers route to it', 1],
      ['health', `${app.name}-v1-a unhealthy: GET /health answered 503`, null],
      ['alert', `alert 7 raised for ${app.name}-v1-a: failing its check`, null],
      ['remediation', `${app.name}-v1-a: out of rotation (unhealthy for 2 intervals)`, null],
      ['alert', `alert 7 cleared for ${app.name}-v1-a: healthy again`, null],
      ['config', 'config set SECRET_KEY; unset OLD', null],
      ['scale', 'scaled web=3 worker=1', null],
      // jsonb keeps keys in its own order.
      ['backup', 'backup.finished {"bytes":1024,"release":1}', 1],
      // One line, and no terminal escape survives.
      ['deploy', 'v2 failed: line one line two [31mred[0m', 2],
    ]);
    expect(body.entries.every((e, i) => i === 0 || e.at >= body.entries[i - 1]!.at)).toBe(true);
    expect(body.entries.find((e) => e.type === 'alert.raised')!.data).toMatchObject({ id: 7, reason: 'failing its check' });
  });

  it('includes a node.down/up only for a runner that held one of the app\'s instances then', async () => {
    const app = await newApp(await owner());
    const [a, b, c] = ['a', 'b', 'c'].map((x) => `runner-dash-${x}-${randomId()}`);
    await events([
      instance(app.name, `${app.name}-1`, a!, 'ready'),
      instance(app.name, `${app.name}-2`, c!, 'ready'),
      ['instance.removed', app.name, { id: `${app.name}-2` }],
      instance(app.name, `${app.name}-3`, c!, 'failed'),
      ['node.down', null, { id: a, kind: 'runner' }],
      ['node.down', null, { id: b, kind: 'runner' }],
      ['node.down', null, { id: c, kind: 'runner' }],
      ['node.up', null, { id: a, kind: 'runner' }],
      ['node.up', null, { id: b, kind: 'runner' }],
    ]);
    // The removal of -2 happened just before c's down: within a long dead-after it still counts as held.
    const strict = await explainApp(pool, app, Date.now() - HOUR, { deadAfterMs: 0 });
    expect(strict.entries.filter((e) => e.kind === 'node').map((e) => e.summary)).toEqual([
      `runner ${a} down, it held ${app.name}-1`,
      `runner ${a} up again`,
    ]);
    const tolerant = await explainApp(pool, app, Date.now() - HOUR, { deadAfterMs: 60_000 });
    expect(tolerant.entries.filter((e) => e.kind === 'node').map((e) => e.summary)).toEqual([
      `runner ${a} down, it held ${app.name}-1`,
      `runner ${c} down, it held ${app.name}-2`,
      `runner ${a} up again`,
    ]);
  });

  it('shows a minute as a 5xx burst with at least 5 5xx that are at least 5% of its requests', async () => {
    const principal = await owner();
    const minute = Math.floor(Date.now() / 60_000) * 60_000;
    const cases: Array<[number, number, boolean]> = [[10, 4, false], [100, 5, true], [101, 5, false], [1000, 50, true]];
    for (const [requests, s5xx, isBurst] of cases) {
      const app = await newApp(principal);
      await addRequestStats(pool, [{ app: app.name, minute, requests, s2xx: requests - s5xx, s3xx: 0, s4xx: 0, s5xx, bytes: 0, histogram: newHistogram() }], summarize);
      const traffic = (await explainApp(pool, app, Date.now() - HOUR)).entries.filter((e) => e.kind === 'traffic');
      expect(traffic.length, `${s5xx} of ${requests}`).toBe(isBurst ? 1 : 0);
      if (isBurst) expect(traffic[0]).toMatchObject({ at: minute, type: null, event: null, data: { requests, s5xx } });
    }
  });

  it('gives a re-created name none of the old app\'s history', async () => {
    const principal = await owner();
    const old = await newApp(principal);
    await events([['release.created', old.name, { version: 1, sha256: 'b'.repeat(64), description: 'old app' }], ['node.down', null, { id: 'runner-x', kind: 'runner' }]]);
    await events([instance(old.name, `${old.name}-1`, 'runner-y', 'ready')]);
    await withTransaction(pool, (tx) => destroyApp(tx, principal, old.name));
    const again = await newApp(principal, old.name);
    await events([['node.down', null, { id: 'runner-y', kind: 'runner' }]]);
    const body = await explainApp(pool, again, Date.now() - HOUR, { deadAfterMs: 60_000 });
    expect(body.entries.map((e) => e.type)).toEqual(['app.created']);
  });

  it('keeps the newest 1,000 entries of a busier window and says so', async () => {
    const app = await newApp(await owner());
    await withTransaction(pool, async (tx) => {
      for (let i = 1; i <= 1005; i++) await appendEvent(tx, 'host.added', app.name, { hostname: `h${i}.example.com` });
    });
    const body = await explainApp(pool, app, Date.now() - HOUR);
    expect(body.truncated).toBe(true);
    expect(body.entries).toHaveLength(1000);
    expect(body.entries.at(-1)!.summary).toBe('hostname h1005.example.com added');
    expect(body.entries[0]!.summary).toBe('hostname h6.example.com added');
    expect(body.note).toMatch(/^more than 1000 entries since .+: the oldest are left out; ask for a shorter window$/);
  });

  it('reads through its indexes on a large events table', async () => {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      // 100,000 events of other apps and nodes, rolled back at the end.
      await client.query(`INSERT INTO events (id, type, app, data, created_at)
        SELECT (SELECT coalesce(max(id), 0) FROM events) + g, CASE WHEN g % 50 = 0 THEN 'node.down' ELSE 'instance.changed' END,
               CASE WHEN g % 50 = 0 THEN NULL ELSE 'other' || (g % 500) END,
               jsonb_build_object('id', 'runner-' || (g % 7), 'runnerId', 'runner-' || (g % 7), 'state', 'ready'),
               now() - (g || ' seconds')::interval
        FROM generate_series(1, 100000) g`);
      await client.query('ANALYZE events');
      const plan = async (sql: string, params: unknown[]): Promise<string> =>
        JSON.stringify((await client.query(`EXPLAIN (FORMAT JSON) ${sql}`, params)).rows[0]);
      const since = new Date(Date.now() - HOUR);
      const own = await plan(APP_EVENTS_SQL, ['other7', since, 1001]);
      expect(own).toContain('events_app_created_idx');
      expect(own).not.toContain('"Seq Scan"');
      const nodes = await plan(NODE_EVENTS_SQL, ['other7', since, 1001, new Date(0), 1500]);
      expect(nodes).not.toContain('"Seq Scan"');
      const started = performance.now();
      await client.query(NODE_EVENTS_SQL, ['other7', since, 1001, new Date(0), 1500]);
      await client.query(APP_EVENTS_SQL, ['other7', since, 1001]);
      console.log(`[explain] both timeline queries over 100,000 events: ${(performance.now() - started).toFixed(1)} ms`);
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });
});
