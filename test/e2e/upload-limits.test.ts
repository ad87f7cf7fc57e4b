/**
 * Attack 5 of issue #10, against a real nexus (PostgreSQL, ZeroMQ control port, HTTP API): a 2 KiB tarball with
 * one 'a/' × 20000 path used to stall the nexus's event loop for seconds per entry (and crash it with four), then
 * a runner. Now it is refused with a 400 naming the limit within 50 ms, while the nexus keeps answering control
 * pings every ~10 ms in ≤ 100 ms, and nothing is stored, so no runner ever sees it. Run on an in-process nexus
 * (the checker's worker loaded from src/ through tsx) and on a `pier nexus` process from dist/.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import { createOwner, withTransaction } from '../../src/db/index.js';
import { TYPE } from '../../src/archive/tar-format.js';
import { CLI } from '../helpers/cli.js';
import { controlClient, onCleanup, startNexus } from '../helpers/daemons.js';
import { testDatabase, testPool } from '../helpers/postgres.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { tarGz, type FakeEntry } from '../archive/fixtures.js';

const dbUrl = await testDatabase();
const pool = testPool(dbUrl);
const { token } = await withTransaction(pool, (tx) => createOwner(tx, `ar-owner-${randomId()}`));

const APP: FakeEntry = { name: 'wsgi.py', data: 'def application(environ, start_response):\n    return []\n' };
const deepName = (i: number): string => `${'a/'.repeat(20_000)}${i}.py`;
/** The attack: one 40 KB path in a pax header. */
const DEEP = tarGz([APP, { name: deepName(0), data: 'x' }]);
/** The same as a GNU long name. */
const DEEP_GNU = tarGz([APP, { name: deepName(0), data: 'x', gnu: true }]);
/** Four such entries, which used to run the nexus out of memory (or be accepted after 14 s). */
const FOUR = tarGz([APP, ...[1, 2, 3, 4].map((i) => ({ name: deepName(i), data: 'x' }))]);
const LIMIT_NAMED = /^archive (entry 'a\/a\/.*…' is \d+ bytes long|has a GNU long name of [\d.]+ KiB), over the 1024-byte limit for a path; shorten it, or leave it out with \.pierignore$/;

interface Upload {
  status: number;
  ms: number;
  error: { code: string; message: string };
}

async function upload(api: string, app: string, bytes: Buffer): Promise<Upload> {
  const started = performance.now();
  const res = await fetch(`${api}/v1/apps/${app}/releases`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/gzip' },
    body: bytes,
  });
  const json = (await res.json()) as { error: Upload['error'] };
  return { status: res.status, ms: performance.now() - started, error: json.error };
}

async function createApp(api: string): Promise<string> {
  const name = `ar-${randomId().slice(0, 8)}`;
  const res = await fetch(`${api}/v1/apps`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name }),
  });
  expect(res.status).toBe(201);
  return name;
}

/** Pings the nexus over its ZeroMQ control port every ~10 ms until stopped; records each round trip. */
function pinger(control: string): { stop: () => Promise<{ count: number; worstMs: number; failures: number }> } {
  const client = controlClient([control], 1000);
  let isRunning = true;
  let count = 0;
  let failures = 0;
  let worstMs = 0;
  const loop = (async () => {
    while (isRunning) {
      const started = performance.now();
      try {
        await client.call('ping', {});
        count++;
      } catch {
        failures++;
      }
      const ms = performance.now() - started;
      worstMs = Math.max(worstMs, ms);
      await sleep(Math.max(0, 10 - ms));
    }
  })();
  return {
    stop: async () => {
      isRunning = false;
      await loop;
      return { count, worstMs, failures };
    },
  };
}

/** Asserts that nothing of these uploads was stored: no release of the app, no artifact with their bytes. */
async function assertNothingStored(api: string, app: string, archives: Buffer[]): Promise<void> {
  const res = await fetch(`${api}/v1/apps/${app}/releases`, { headers: { authorization: `Bearer ${token}` } });
  expect(((await res.json()) as { releases: unknown[] }).releases).toEqual([]);
  const hashes = archives.map((a) => createHash('sha256').update(a).digest('hex'));
  const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM artifacts WHERE sha256 = ANY($1)', [hashes]);
  expect(rows[0]!.n).toBe(0);
}

/**
 * The attack run: single, GNU, four-entry and eight concurrent deep uploads, all under a 10 ms ping loop, after
 * an idle second of the same pings as the baseline. `loopDelay` measures the nexus's own loop when in-process.
 */
async function attack(api: string, control: string, label: string, options: { inProcess?: boolean } = {}): Promise<void> {
  const app = await createApp(api);
  // The checker's workers start with the first upload: wait until one answers, so the figures are the checks'.
  await waitFor(async () => (await upload(api, app, tarGz([{ name: 'nowsgi.txt', data: 'x' }]))).status === 400, { name: 'upload checker', timeoutMs: 10_000 });
  const idle = pinger(control);
  await sleep(1000);
  const baseline = await idle.stop();

  const loop = monitorEventLoopDelay({ resolution: 5 });
  loop.enable();
  const pings = pinger(control);
  await sleep(50);
  const single = await upload(api, app, DEEP);
  const gnu = await upload(api, app, DEEP_GNU);
  const four = await upload(api, app, FOUR);
  const concurrent = await Promise.all(Array.from({ length: 8 }, (_, i) => upload(api, app, i % 2 === 0 ? DEEP : FOUR)));
  await sleep(50);
  const { count, worstMs, failures } = await pings.stop();
  loop.disable();

  for (const reply of [single, gnu, four, ...concurrent]) {
    expect(reply.status).toBe(400);
    expect(reply.error.code).toBe('PIER_VALIDATION');
    expect(reply.error.message).toMatch(LIMIT_NAMED);
  }
  const worstConcurrent = Math.max(...concurrent.map((r) => r.ms));
  const loopMs = loop.max / 1e6;
  console.log(
    `${label}: deep-path upload (${DEEP.length} bytes) → 400 in ${single.ms.toFixed(1)} ms; GNU ${gnu.ms.toFixed(1)} ms; `
    + `four entries ${four.ms.toFixed(1)} ms; 8 concurrent, slowest ${worstConcurrent.toFixed(1)} ms; `
    + `${count} pings, worst ${worstMs.toFixed(1)} ms, ${failures} failed (idle baseline: ${baseline.count} pings, worst ${baseline.worstMs.toFixed(1)} ms)`
    + (options.inProcess ? `; event loop blocked at most ${loopMs.toFixed(1)} ms` : ''),
  );
  expect(DEEP.length).toBeLessThan(2048);
  expect(single.ms).toBeLessThan(50);
  // Before: seconds each (and out of memory with four). Bounds generous for a loaded 2-core machine.
  expect(gnu.ms).toBeLessThan(250);
  expect(four.ms).toBeLessThan(250);
  expect(worstConcurrent).toBeLessThan(1000);
  expect(failures).toBe(0);
  expect(count).toBeGreaterThan(5);
  // In-process, the pinger, the uploading client and the nexus share one event loop (and a loaded machine's CPU):
  // what this variant proves is that the nexus's loop is never held; the ping bound is the separate process's.
  if (options.inProcess) expect(loopMs).toBeLessThanOrEqual(100);
  else expect(worstMs).toBeLessThanOrEqual(100);
  await assertNothingStored(api, app, [DEEP, DEEP_GNU, FOUR]);
}

describe('deep-path uploads against a real nexus', () => {
  it('refuses them with a 400 naming the limit in under 50 ms, never holding the nexus event loop over 100 ms', async () => {
    const n = await startNexus(dbUrl);
    await attack(n.api, n.control, 'in-process nexus', { inProcess: true });
    // Still up and serving.
    const client = controlClient([n.control]);
    expect((await client.call('ping', {})).nexusId).toBe(n.nexus.id);
  });

  it('does the same in a `pier nexus` process started from dist/, which answers every ping in ≤ 100 ms meanwhile', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pier-ar-nexus-'));
    onCleanup(async () => rmSync(dir, { recursive: true, force: true }));
    const config = join(dir, 'nexus.toml');
    writeFileSync(config, [
      `dataDir = "${dir}"`,
      '[log]', 'level = "info"',
      '[security]', 'curve = false',
      '[nexus]', `id = "nexus-ar-${randomId().slice(0, 8)}"`, 'controlBind = "tcp://127.0.0.1:*"', 'eventsBind = "tcp://127.0.0.1:*"',
      'heartbeatsBind = "tcp://127.0.0.1:*"', 'apiHost = "127.0.0.1"', 'apiPort = 0', 'verdictWindowMs = 0', '',
    ].join('\n'));
    const child = spawn(process.execPath, [CLI, 'nexus', '--config', config], {
      env: { PATH: process.env.PATH, HOME: dir, PIER_DB_URL: dbUrl },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    onCleanup(async () => {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const ready = new Promise<{ api: string; control: string }>((resolve, reject) => {
      createInterface({ input: child.stdout }).on('line', (line) => {
        const entry = JSON.parse(line) as { msg?: string; api?: string; control?: string };
        if (entry.msg === 'nexus ready') resolve({ api: entry.api!, control: entry.control! });
      });
      void exited.then((code) => reject(new Error(`pier nexus exited with ${code}: ${stderr}`)));
    });
    const endpoints = await ready;
    await attack(endpoints.api, endpoints.control, 'pier nexus from dist/');
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  }, 30_000);
});
