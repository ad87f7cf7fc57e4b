/**
 * bench/run: `pier run` start-to-first-byte and one-off output throughput, beside the same commands spawned locally
 * as the app's user with `runuser` (no platform in between), in one run. It starts its own embedded PostgreSQL
 * (temp folder, free port), an in-process nexus and an in-process root runner (app users, cgroups), deploys a
 * one-file WSGI app, and runs the built CLI (dist/cli/main.js: run `npm run build` first) as a user would.
 *
 *   sudo npm run bench:run -- [--n 30] [--mib 10] [--compare OTHER/dist/cli/main.js]
 *
 * Start-to-first-byte is from spawning `pier run -a APP -- echo hi` to its first stdout byte (CLI start, POST
 * /dynos, upgrade, nexus → runner over ZeroMQ, helper, exec); the goal is p50 ≤ 500 ms. Throughput streams
 * `head -c MIB MiB /dev/zero` out through the runner, the nexus and the CLI into this process (goal ≥ 20 MiB/s).
 * Two rows split that time: "API alone" is the same one-off started from this process (POST /dynos and the upgrade
 * on fresh connections, no CLI process), and "CLI start on the run path" is `pier run -a APP` with no command (it
 * loads the run path and fails validation before any request), timed to its exit.
 */
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import type { Socket } from 'node:net';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { packDirectory } from '../src/archive/index.js';
import { validateConfig } from '../src/config/index.js';
import { silentLogger } from '../src/core/logger.js';
import { EmbeddedPostgres, createOwner, createPool, migrate, withTransaction } from '../src/db/index.js';
import { Nexus } from '../src/nexus/nexus.js';
import { appUserName } from '../src/runner/app-users.js';
import { FRAME, FrameReader, SESSION_UPGRADE } from '../src/protocol/index.js';
import { Runner } from '../src/runner/runner.js';
import { freePort, intArg, percentile } from './common.js';

const n = intArg('n', 30);
const mib = intArg('mib', 10);
/** Another build's dist/cli/main.js (e.g. the commit before a change), timed beside this one's in the same runs. */
const compare = process.argv.includes('--compare') ? process.argv[process.argv.indexOf('--compare') + 1] : undefined;
const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const APP = `rn-bench-${process.pid % 10000}`;
const log = silentLogger();

interface Timing { firstByteMs: number; totalMs: number; bytes: number; code: number }

/** Spawns `command args`, counting stdout bytes and timing the first one and the exit. */
function timed(command: string, args: string[], env: NodeJS.ProcessEnv, stderr: 'inherit' | 'ignore' = 'inherit'): Promise<Timing> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const ms = (): number => Number(process.hrtime.bigint() - started) / 1e6;
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', stderr] });
    let firstByteMs = NaN;
    let bytes = 0;
    child.stdout.on('data', (chunk: Buffer) => {
      if (bytes === 0) firstByteMs = ms();
      bytes += chunk.length;
    });
    child.once('error', reject);
    child.once('close', (code) => resolve({ firstByteMs, totalMs: ms(), bytes, code: code ?? 1 }));
  });
}

/** One HTTP request on a fresh connection; resolves with the status and body, or the socket of an upgrade. */
function call(url: string, method: string, headers: Record<string, string>, body?: string): Promise<{ status: number; text: string; socket?: Socket }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, agent: false });
    req.once('upgrade', (res, socket, head) => {
      if (head.length > 0) socket.unshift(head);
      resolve({ status: res.statusCode ?? 0, text: '', socket });
    });
    req.once('response', (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.once('error', reject);
    req.end(body);
  });
}

/** `pier run -a app -- command` without the CLI: POST /dynos, attach, first STDOUT frame, EXIT frame. */
async function apiRun(api: string, token: string, app: string, command: string[]): Promise<Timing> {
  const started = process.hrtime.bigint();
  const ms = (): number => Number(process.hrtime.bigint() - started) / 1e6;
  const auth = { authorization: `Bearer ${token}` };
  const created = await call(`${api}/v1/apps/${app}/dynos`, 'POST', { ...auth, 'content-type': 'application/json' }, JSON.stringify({ command }));
  if (created.status !== 201) throw new Error(`POST /dynos answered ${created.status}: ${created.text}`);
  const { socket } = await call(`${api}${(JSON.parse(created.text) as { attach: string }).attach}`, 'GET', { ...auth, connection: 'Upgrade', upgrade: SESSION_UPGRADE });
  if (!socket) throw new Error('the attach was not upgraded');
  return new Promise((resolve) => {
    const reader = new FrameReader();
    let firstByteMs = NaN;
    let bytes = 0;
    socket.on('data', (chunk: Buffer) => {
      for (const { type, payload } of reader.push(chunk)) {
        if (type === FRAME.STDOUT) {
          if (bytes === 0) firstByteMs = ms();
          bytes += payload.length;
        } else if (type === FRAME.EXIT) {
          const code = (JSON.parse(payload.toString('utf8')) as { code: number | null }).code ?? 1;
          socket.destroy();
          resolve({ firstByteMs, totalMs: ms(), bytes, code });
        }
      }
    });
  });
}

function summary(samples: number[]): { p50: number; p99: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99) };
}

if (process.getuid?.() !== 0) throw new Error('bench/run needs root: the runner runs one-offs as app users');
const dir = mkdtempSync(join(tmpdir(), 'pier-bench-run-'));
chmodSync(dir, 0o711); // app users walk to their release folders
const postgres = new EmbeddedPostgres({ dataDir: join(dir, 'postgres'), port: await freePort(), log });
let nexus: Nexus | undefined;
let runner: Runner | undefined;
try {
  await postgres.start();
  const pool = createPool({ url: postgres.url, max: 2, connectTimeoutMs: 5000 }, log);
  await migrate(pool, log);
  const { token } = await withTransaction(pool, (tx) => createOwner(tx, `bench-${process.pid}`));
  await pool.end();
  const base = { dataDir: dir, log: { level: 'silent' as const }, security: { curve: false } };
  nexus = new Nexus({
    config: validateConfig({ ...base, cluster: { stats: [] }, nexus: { controlBind: 'tcp://127.0.0.1:*', eventsBind: 'tcp://127.0.0.1:*', heartbeatsBind: 'tcp://127.0.0.1:*', sessionsBind: 'tcp://127.0.0.1:*', apiHost: '127.0.0.1', apiPort: 0, verdictWindowMs: 0 } }),
    dbUrl: postgres.url, log,
  });
  await nexus.start();
  const e = nexus.endpoints!;
  const portMin = await freePort();
  runner = new Runner({
    config: validateConfig({ ...base, cluster: { stats: [], nexus: [{ control: e.control, events: e.events, heartbeats: e.heartbeats, api: e.api, sessions: e.sessions }] }, runner: { id: 'runner-bench', dir: join(dir, 'runner'), portMin, portMax: portMin + 20 } }),
    log,
  });
  await runner.start();
  const api = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> => {
    const isBytes = Buffer.isBuffer(body);
    const res = await fetch(`${e.api}${path}`, {
      method, headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': isBytes ? 'application/gzip' : 'application/json' }) },
      body: body === undefined ? undefined : isBytes ? body : JSON.stringify(body),
    });
    return { status: res.status, json: await res.json() };
  };
  await api('POST', '/v1/apps', { name: APP });
  const appDir = join(dir, 'app');
  mkdirSync(appDir);
  writeFileSync(join(appDir, 'wsgi.py'), 'def application(e, s):\n    s("200 OK", [])\n    return [b"ok"]\n');
  const up = await api('POST', `/v1/apps/${APP}/releases`, await packDirectory(appDir));
  for (let i = 0; ; i++) {
    const { json } = await api('GET', `/v1/apps/${APP}/releases/v${up.json.release.version}`);
    if (json.release.status === 'live') break;
    if (json.release.status !== 'pending' || i > 600) throw new Error(`the bench app did not go live: ${JSON.stringify(json.release)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const cliEnv = { PATH: process.env.PATH, HOME: process.env.HOME, PIER_API_URL: e.api, PIER_TOKEN: token };
  const localEnv = { PATH: process.env.PATH };
  const user = appUserName(APP);
  const pierRun = (cmd: string[]): Promise<Timing> => timed(process.execPath, [CLI, 'run', '-a', APP, '--', ...cmd], cliEnv);
  const local = (cmd: string[]): Promise<Timing> => timed('runuser', ['-u', user, '--', ...cmd], localEnv);

  // Warm-up: the release is prepared on the runner at the first one-off; the page cache holds the CLI after it.
  for (let i = 0; i < 3; i++) await pierRun(['echo', 'hi']);
  const rows: Array<[string, ReturnType<typeof summary>, ReturnType<typeof summary>]> = [];
  const runPathStart = async (): Promise<Timing> => {
    const t = await timed(process.execPath, [CLI, 'run', '-a', APP], cliEnv, 'ignore');
    return { ...t, firstByteMs: t.totalMs, code: t.code === 64 ? 0 : t.code || 1 }; // 64: "no command given", as asked
  };
  const cases: Array<readonly [string, () => Promise<Timing>]> = [
    ['pier run -a APP -- echo hi', () => pierRun(['echo', 'hi'])],
    ['runuser -u p-APP -- echo hi (local baseline)', () => local(['echo', 'hi'])],
    ['node dist/cli/main.js help (CLI start alone)', () => timed(process.execPath, [CLI, 'help'], cliEnv)],
    ['API alone: POST /dynos + attach, echo hi (no CLI)', () => apiRun(e.api, token, APP, ['echo', 'hi'])],
    ['pier run -a APP (CLI start on the run path; exit)', runPathStart],
  ];
  if (compare) cases.splice(1, 0, [`pier run -a APP -- echo hi, CLI of --compare`, () => timed(process.execPath, [compare, 'run', '-a', APP, '--', 'echo', 'hi'], cliEnv)]);
  // Round-robin: the i-th run of every row in turn, so a load swing on this machine touches every row alike.
  const first = cases.map((): number[] => []);
  const total = cases.map((): number[] => []);
  for (let i = 0; i < n; i++) {
    for (const [at, [name, run]] of cases.entries()) {
      const t = await run();
      if (t.code !== 0) throw new Error(`${name} exited ${t.code}`);
      first[at]!.push(t.firstByteMs);
      total[at]!.push(t.totalMs);
    }
  }
  for (const [at, [name]] of cases.entries()) rows.push([name, summary(first[at]!), summary(total[at]!)]);
  console.log(`start-to-first-byte, ${n} runs each (ms)`);
  console.log(`${'command'.padEnd(52)} ${'p50'.padStart(8)} ${'p99'.padStart(8)} ${'exit p50'.padStart(9)} ${'exit p99'.padStart(9)}`);
  for (const [name, first, total] of rows) console.log(`${name.padEnd(52)} ${first.p50.toFixed(1).padStart(8)} ${first.p99.toFixed(1).padStart(8)} ${total.p50.toFixed(1).padStart(9)} ${total.p99.toFixed(1).padStart(9)}`);

  const bytes = mib * 1024 * 1024;
  const stream = ['head', '-c', String(bytes), '/dev/zero'];
  console.log(`\nthroughput: ${mib} MiB out of one one-off, best of 3 (MiB/s; "stream" is first byte to exit, "whole" is start to exit)`);
  const rates: number[] = [];
  for (const [name, run] of [['pier run -a APP -- head -c N /dev/zero', () => pierRun(stream)], ['runuser -u p-APP -- head -c N /dev/zero (local baseline)', () => local(stream)]] as const) {
    let bestStream = 0;
    let bestWhole = 0;
    for (let i = 0; i < 3; i++) {
      const t = await run();
      if (t.bytes !== bytes) throw new Error(`${name} gave ${t.bytes} bytes, not ${bytes} (exit ${t.code})`);
      bestStream = Math.max(bestStream, mib / ((t.totalMs - t.firstByteMs) / 1000));
      bestWhole = Math.max(bestWhole, mib / (t.totalMs / 1000));
    }
    rates.push(bestStream);
    console.log(`${name.padEnd(60)} stream ${bestStream.toFixed(1).padStart(8)}   whole ${bestWhole.toFixed(1).padStart(8)}`);
  }
  console.log(`\ngoals: start-to-first-byte p50 ≤ 500 ms (got ${rows[0]![1].p50.toFixed(0)} ms, of which the API alone ${rows[compare ? 4 : 3]![1].p50.toFixed(0)} ms and the CLI's start on the run path ${rows[compare ? 5 : 4]![1].p50.toFixed(0)} ms); stream ≥ 20 MiB/s (got ${rates[0]!.toFixed(1)} MiB/s)`);
} finally {
  await runner?.stop().catch((err: unknown) => console.error('runner stop failed:', err));
  await nexus?.stop().catch((err: unknown) => console.error('nexus stop failed:', err));
  await postgres.stop().catch((err: unknown) => console.error('postgres stop failed:', err));
  try {
    execFileSync('userdel', [appUserName(APP)], { stdio: 'ignore' });
  } catch {
    // never created
  }
  rmSync(dir, { recursive: true, force: true });
}
