/**
 * Static-file benchmark: `npx tsx bench/static.ts [--seconds N] [--connections N] [--threads N] [--size BYTES]`.
 *
 * Serves one CSS file (`--size` bytes, default 8192, plus its .gz) the way Pier does — a uWSGI vassal rendered
 * by `renderVassal` with the app's `static:` mount (static-routes.ts), behind Pier's proxy (balancer-proxy.ts,
 * the balancer's ProxyServer routing `bench.localhost`) — next to nginx (Debian nginx-light, one worker, like the
 * single Node proxy; `sendfile`, keep-alive) serving the same file from the same folder, in the same run, with
 * the same wrk. Rows: the vassal straight (the ceiling behind any proxy), the vassal through the balancer, with
 * and without uWSGI offload threads, and nginx; each plain and with `Accept-Encoding: gzip` (the .gz). Prints
 * req/s, p50/p99 ms, errors and the balancer/nginx ratio (goal ≥ 50%). Installs wrk and nginx-light with apt-get
 * when missing. Every process and temp file it starts is removed at the end.
 *
 * The ratio comes from a head-to-head (`--rounds N`, default 5): the cached balancer and nginx both up, measured
 * in alternating rounds, so a change in the VM's speed during the run (seen here: ±20% within a minute) hits
 * both alike. Their rows are the median round; the ratio line gives the median of the per-round ratios and
 * their range.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { loadConfig } from '../src/config/index.js';
import { renderVassal } from '../src/runner/vassal.js';
import { freePort } from '../test/helpers/ports.js';
import { ensureTools, start, stop, stopAll, waitForPort, wrk, type Child, type WrkResult } from './balancer-procs.js';
import { intArg } from './common.js';

const HOST = 'bench.localhost';
const here = fileURLToPath(new URL('.', import.meta.url));
const SECONDS = intArg('seconds', 10);
const CONNECTIONS = intArg('connections', 64);
const THREADS = intArg('threads', 2);
const SIZE = intArg('size', 8192, 16);
const ROUNDS = intArg('rounds', 5);
const WARMUP_SECONDS = 2;
const FILE = '/static/css/base.4f3c2a1b9e8d.css';
/**
 * `--pin`: every server (vassal, balancer, nginx) on CPU 1 and wrk on CPU 0, so each server gets the same one core
 * and never competes with the load generator for it; without it the scheduler shares both cores among all of them.
 */
const PIN = process.argv.includes('--pin');
const SERVER_CPUS = '1';
const WRK_CPUS = PIN ? '0' : undefined;

/** `command args` on the servers' CPU when pinned. */
function pinned(command: string, args: string[]): [string, string[]] {
  return PIN ? ['taskset', ['-c', SERVER_CPUS, command, ...args]] : [command, args];
}

interface Row extends WrkResult {
  target: string;
  encoding: string;
}

/** A CSS-looking file of `size` bytes (compressible as real CSS is). */
function css(size: number): string {
  const rule = (i: number): string => `.c${i} { color: #${(i * 2654435761 % 0xffffff).toString(16).padStart(6, '0')}; margin: ${i % 17}px; }\n`;
  let text = '';
  for (let i = 0; text.length < size; i++) text += rule(i);
  return text.slice(0, size);
}

/** The release folder: a wsgi.py (never reached for the file) and staticfiles/ with the file and its .gz. */
function writeRelease(dir: string): string {
  const appDir = join(dir, 'app');
  mkdirSync(join(appDir, 'staticfiles', 'css'), { recursive: true });
  writeFileSync(join(appDir, 'wsgi.py'), "def application(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'app']\n");
  const body = css(SIZE);
  writeFileSync(join(appDir, 'staticfiles', FILE.slice('/static/'.length)), body);
  writeFileSync(join(appDir, 'staticfiles', `${FILE.slice('/static/'.length)}.gz`), gzipSync(body, { level: 9 }));
  return appDir;
}

/** The vassal the runner writes for this app (runner defaults for processes/threads and max-age). */
async function startVassal(dir: string, appDir: string, offloadThreads: number): Promise<{ child: Child; port: number; capacity: number }> {
  const runner = loadConfig({ env: {}, overrides: { dataDir: dir } }).runner;
  const port = await freePort();
  const ini = renderVassal({
    name: `bench-static-${offloadThreads}`, appDir, wsgi: { module: 'wsgi', callable: 'application' }, port, env: {},
    processes: runner.processes, threads: runner.threads,
    static: { mounts: [{ prefix: '/static/', dir: join(appDir, 'staticfiles') }], maxAgeS: Math.floor(runner.staticMaxAgeMs / 1000), offloadThreads },
  });
  // The bench alone: no request log (the runner's vassals log to a file the shipper reads).
  const file = join(dir, `vassal-${offloadThreads}.ini`);
  writeFileSync(file, `${ini}disable-logging = true\nlisten = 1024\n`);
  const child = start(`uwsgi vassal (offload ${offloadThreads})`, ...pinned('uwsgi', ['--ini', file]), 'SIGINT');
  await waitForPort(port);
  return { child, port, capacity: runner.processes * runner.threads };
}

/** The balancer's default static cache size. */
const DEFAULT_CACHE_BYTES = loadConfig({ env: {}, overrides: { dataDir: '/tmp' } }).balancer.staticCacheBytes;

/**
 * balancer-proxy.ts with the balancer's settings, its static cache `cacheBytes` large (0: off), told the vassal's
 * capacity as a runner tells it (without it the balancer keeps more connections than uWSGI has threads, and the
 * extra ones stall for uWSGI's socket time-out: wrk then counts time-outs).
 */
async function startBalancer(backend: { port: number; capacity: number }, cacheBytes: number): Promise<{ child: Child; port: number }> {
  const port = await freePort();
  process.env.PIER_BALANCER_STATIC_CACHE_BYTES = String(cacheBytes); // read by the child's loadConfig at spawn
  const child = start('pier balancer', ...pinned(process.execPath, ['--import', 'tsx', join(here, 'balancer-proxy.ts'), String(port), `127.0.0.1:${backend.port}@${backend.capacity}`]));
  delete process.env.PIER_BALANCER_STATIC_CACHE_BYTES;
  await waitForPort(port, 20_000);
  return { child, port };
}

async function startNginx(dir: string, appDir: string): Promise<{ child: Child; port: number }> {
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, `worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events { worker_connections 4096; }
http {
  include /etc/nginx/mime.types;
  access_log off;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 1000000;
  open_file_cache max=1000 inactive=60s;
  gzip_static on; gzip_vary on;
  client_body_temp_path ${dir}/nginx-body; proxy_temp_path ${dir}/nginx-proxy;
  fastcgi_temp_path ${dir}/nginx-fcgi; uwsgi_temp_path ${dir}/nginx-uwsgi; scgi_temp_path ${dir}/nginx-scgi;
  server {
    listen 127.0.0.1:${port};
    server_name ${HOST};
    location /static/ { alias ${appDir}/staticfiles/; expires 1y; add_header Cache-Control "public, immutable"; }
  }
}
`);
  const child = start('nginx', ...pinned('nginx', ['-c', conf, '-p', dir, '-e', `${dir}/nginx-error.log`]), 'SIGQUIT');
  await waitForPort(port);
  return { child, port };
}

/** One GET of the file (fetch() cannot send a Host header). */
function get(port: number, encoding: string): Promise<{ status: number; bytes: number; encoding: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: FILE, headers: { host: HOST, 'accept-encoding': encoding }, agent: false }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, encoding: res.headers['content-encoding'] }));
    });
    req.on('error', reject);
    req.end();
  });
}

const ENCODINGS = [['identity', []], ['gzip', ['Accept-Encoding: gzip']]] as const;

/** Checks the target serves the file in `encoding` (so a fast 404 is never measured), then warms it up. */
async function prepare(target: string, port: number, encoding: string, headers: readonly string[]): Promise<void> {
  const probe = await get(port, encoding);
  if (probe.status !== 200 || (encoding === 'identity' ? probe.bytes !== SIZE : probe.encoding !== 'gzip')) {
    throw new Error(`${target} answered ${probe.status} with ${probe.bytes} bytes (${probe.encoding ?? 'identity'}) for ${FILE}; not measuring it`);
  }
  await wrk(port, HOST, WARMUP_SECONDS, CONNECTIONS, THREADS, FILE, [...headers], WRK_CPUS);
}

/** Measures one target, each encoding once after a warm-up. */
async function measure(target: string, port: number): Promise<Row[]> {
  const rows: Row[] = [];
  for (const [encoding, headers] of ENCODINGS) {
    await prepare(target, port, encoding, headers);
    const result = await wrk(port, HOST, SECONDS, CONNECTIONS, THREADS, FILE, [...headers], WRK_CPUS);
    console.log(`  ${target} (${encoding}): ${Math.round(result.rps)} req/s`);
    rows.push({ target, encoding, ...result });
  }
  return rows;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The median round of one target (by req/s), with the errors of every round. */
function medianRow(target: string, encoding: string, results: WrkResult[]): Row {
  const sorted = [...results].sort((a, b) => a.rps - b.rps);
  const mid = sorted[Math.floor(sorted.length / 2)]!;
  return { target, encoding, ...mid, rps: median(results.map((r) => r.rps)), errors: results.reduce((sum, r) => sum + r.errors, 0) };
}

interface HeadToHead {
  rows: Row[];
  /** Per encoding, the balancer/nginx ratio of each round. */
  ratios: Map<string, number[]>;
}

/** `a` and `b` in ROUNDS alternating rounds per encoding (see the module comment); `a` goes first in odd rounds. */
async function headToHead(a: { target: string; port: number }, b: { target: string; port: number }): Promise<HeadToHead> {
  const rows: Row[] = [];
  const ratios = new Map<string, number[]>();
  for (const [encoding, headers] of ENCODINGS) {
    await prepare(a.target, a.port, encoding, headers);
    await prepare(b.target, b.port, encoding, headers);
    const results = { a: [] as WrkResult[], b: [] as WrkResult[] };
    const perRound: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? (['a', 'b'] as const) : (['b', 'a'] as const);
      for (const side of order) {
        const { port } = side === 'a' ? a : b;
        results[side].push(await wrk(port, HOST, SECONDS, CONNECTIONS, THREADS, FILE, [...headers], WRK_CPUS));
      }
      perRound.push(results.a[round]!.rps / results.b[round]!.rps);
      console.log(`  round ${round + 1} (${encoding}): ${a.target} ${Math.round(results.a[round]!.rps)}, ${b.target} ${Math.round(results.b[round]!.rps)} req/s`);
    }
    rows.push(medianRow(a.target, encoding, results.a), medianRow(b.target, encoding, results.b));
    ratios.set(encoding, perRound);
  }
  return { rows, ratios };
}

function printTable(rows: Row[]): void {
  const header = ['target', 'encoding', 'req/s', 'p50 ms', 'p99 ms', 'errors'];
  const lines = rows.map((r) => [r.target, r.encoding, String(Math.round(r.rps)), r.p50Ms.toFixed(2), r.p99Ms.toFixed(2), String(r.errors)]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const format = (cells: string[]): string => `| ${cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  console.log(`\nwrk -t${THREADS} -c${CONNECTIONS} -d${SECONDS}s (after ${WARMUP_SECONDS} s warm-up), GET ${FILE} (${SIZE} bytes), Host: ${HOST}; ${PIN ? `servers pinned to CPU ${SERVER_CPUS}, wrk to CPU ${WRK_CPUS}` : 'not pinned (all share both CPUs)'}`);
  console.log(format(header));
  console.log(`|${widths.map((w, i) => (i < 2 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`);
  for (const line of lines) console.log(format(line));
}

async function main(): Promise<void> {
  ensureTools();
  const dir = mkdtempSync(join(tmpdir(), 'pier-bench-static-'));
  chmodSync(dir, 0o755); // nginx's workers (nobody) read the file too
  const cleanup = async (): Promise<void> => {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  };
  const onSignal = (): void => void cleanup().finally(() => process.exit(130));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const appDir = writeRelease(dir);
    const rows: Row[] = [];
    const withOffload = await startVassal(dir, appDir, 1);
    rows.push(...(await measure('vassal direct, offload-threads 1', withOffload.port)));
    const offloaded = await startBalancer(withOffload, 0);
    rows.push(...(await measure('pier balancer cache off → vassal, offload-threads 1', offloaded.port)));
    await stop(offloaded.child);
    await stop(withOffload.child);
    const vassal = await startVassal(dir, appDir, 0);
    rows.push(...(await measure('vassal direct, offload-threads 0', vassal.port)));
    const uncached = await startBalancer(vassal, 0);
    rows.push(...(await measure('pier balancer cache off → vassal, offload-threads 0', uncached.port)));
    await stop(uncached.child);
    const cached = await startBalancer(vassal, DEFAULT_CACHE_BYTES);
    const nginx = await startNginx(dir, appDir);
    const match = await headToHead({ target: 'pier balancer cache on  → vassal, offload-threads 0', port: cached.port }, { target: 'nginx (1 worker)', port: nginx.port });
    rows.push(...match.rows);
    await stop(nginx.child);
    await stop(cached.child);
    await stop(vassal.child);
    printTable(rows);
    for (const encoding of ['identity', 'gzip']) {
      const nginxRow = rows.find((r) => r.encoding === encoding && r.target.startsWith('nginx'))!;
      const uncachedRow = rows.find((r) => r.encoding === encoding && r.target.startsWith('pier balancer cache off') && r.target.endsWith('offload-threads 0'))!;
      console.log(`${encoding}: pier balancer cache off ${Math.round(uncachedRow.rps)} req/s = ${((100 * uncachedRow.rps) / nginxRow.rps).toFixed(0)}% of nginx's median ${Math.round(nginxRow.rps)} req/s (not head to head)`);
      const perRound = match.ratios.get(encoding)!;
      const percents = perRound.map((r) => (100 * r).toFixed(0));
      console.log(`${encoding}: pier balancer cache on = ${(100 * median(perRound)).toFixed(0)}% of nginx (median of ${ROUNDS} alternating rounds: ${percents.join(', ')}%; goal ≥ 50%)`);
    }
    // With offload threads uWSGI closes the client connection after each offloaded file: wrk counts those as read
    // errors (and reconnects); that is the finding, not a broken run. Any other row with errors is not valid.
    if (rows.some((r) => r.errors > 0 && !r.target.startsWith('vassal direct, offload-threads 1'))) console.log('some rows had errors: the run is not valid');
  } finally {
    await cleanup();
  }
}

await main();
