import { mkdtemp, readdir, rm, utimes } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import { silentLogger } from '../../src/core/logger.js';
import { addRequestStats, requestStatsSince } from '../../src/db/stats.js';
import { encode, type AccessMessage, type App, type LogMessage } from '../../src/protocol/index.js';
import { RequestAggregator } from '../../src/stats/aggregator.js';
import { AppPurge } from '../../src/stats/app-purge.js';
import { Collector } from '../../src/stats/collector.js';
import { summarize } from '../../src/stats/histogram.js';
import { chunkName, LogStore } from '../../src/stats/log-store.js';
import { ReleaseWindows } from '../../src/stats/release-window.js';
import { testDatabase, testPool } from '../helpers/postgres.js';

const pool = testPool(await testDatabase());
let dir: string;
let store: LogStore;
let aggregator: RequestAggregator;
let releases: ReleaseWindows;
let purge: AppPurge;
let collector: Collector;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pier-ds-purge-'));
  store = new LogStore({ dir, chunkBytes: 1024 * 1024, retainChunks: 4, log: silentLogger() });
  await store.start();
  aggregator = new RequestAggregator(1000);
  releases = new ReleaseWindows();
  purge = new AppPurge({ store, aggregator, releases, pool, flushed: async () => undefined, log: silentLogger() });
  collector = new Collector({ store, aggregator, releases, routerLogs: true, maxMessageBytes: 64 * 1024, log: silentLogger(), isPurged: purge.isPurged });
});

afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

function log(app: string, line: string, at: number): LogMessage {
  return { v: 1, type: 'log', app, source: 'app', origin: `${app}-v1-abc`, line, at };
}

function access(app: string, at: number): AccessMessage {
  return {
    v: 1, type: 'access', app, host: `${app}.localhost`, method: 'GET', path: '/', status: 200, bytes: 10, durationMs: 5,
    backend: '127.0.0.1:1', release: 1, requestId: randomId(), balancerId: 'balancer-1', at,
  };
}

function app(name: string, createdAt: number): App {
  return { name, owner: 'o', webScale: 1, hostnames: [], createdAt };
}

describe('AppPurge', () => {
  it("deletes a destroyed app's logs, pending minutes, release windows and stored minutes, and drops its late lines", async () => {
    const name = `ds-${randomId(3)}`;
    const before = Date.now() - 1000;
    collector.intake([encode(log(name, 'old line', before))]);
    collector.intake([encode(access(name, before))]);
    await store.flush();
    await addRequestStats(pool, aggregator.take(), summarize);
    collector.intake([encode(access(name, before))]); // pending again
    expect((await store.tail(name, 10)).lines.length).toBe(3); // the line and two router lines
    expect(releases.query(name, 1, 0, Date.now() + 1).requests).toBe(2);

    const destroyedAt = Date.now();
    await purge.destroyed(name, destroyedAt);
    expect(existsSync(join(dir, name))).toBe(false);
    expect(aggregator.size).toBe(0);
    expect(releases.query(name, 1, 0, Date.now() + 1).requests).toBe(0);
    expect(await requestStatsSince(pool, name, 0)).toEqual([]);

    // Still in flight from a runner or balancer: stamped before the destroy, dropped; the new app's lines are kept.
    collector.intake([encode(log(name, 'late old line', destroyedAt - 10))]);
    collector.intake([encode(access(name, destroyedAt - 10))]);
    collector.intake([encode(log(name, 'new app line', destroyedAt + 10))]);
    await store.flush();
    const { lines } = await store.tail(name, 10);
    expect(lines.map((l) => l.replace(/^\S+ /, ''))).toEqual([`app[${name}-v1-abc]: new app line`]);
    expect(aggregator.size).toBe(0);
  });

  it('after a snapshot, deletes logs of apps that no longer exist and chunks older than a re-created app', async () => {
    const gone = `ds-${randomId(3)}`;
    const recreated = `ds-${randomId(3)}`;
    const kept = `ds-${randomId(3)}`;
    const old = Date.now() - 60_000;
    for (const name of [gone, recreated, kept]) collector.intake([encode(log(name, 'line', old))]);
    await store.flush();
    await store.close(); // as after a restart
    for (const name of [gone, recreated, kept]) await utimes(join(dir, name, chunkName(1)), old / 1000, old / 1000);
    store = new LogStore({ dir, chunkBytes: 1024 * 1024, retainChunks: 4, log: silentLogger() });
    await store.start();
    purge = new AppPurge({ store, aggregator, releases, pool, flushed: async () => undefined, log: silentLogger() });

    await purge.sweep([app(recreated, Date.now() - 1000), app(kept, old - 60_000)]);
    expect(existsSync(join(dir, gone))).toBe(false);
    expect(await readdir(join(dir, recreated))).toEqual([]);
    expect(await readdir(join(dir, kept))).toEqual([chunkName(1)]);
  });
});

