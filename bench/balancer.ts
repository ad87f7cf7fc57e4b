/**
 * Balancer benchmark: `npx tsx bench/balancer.ts [--seconds N] [--connections N] [--threads N] [--backend node]`.
 *
 * For each backend (uWSGI `http11-socket` and `http-socket` with a tiny wsgi.py when uwsgi + its python3 plugin are
 * installed, else a Node http server), runs wrk with `Host: bench.localhost` against: the backend straight, Pier's
 * proxy (route table filled by hand, access records pushed to a stats PULL socket in this process), a plain
 * http-proxy (http-proxy-3 + keep-alive Agent) and nginx as the same Host-routing keep-alive proxy (one worker,
 * like the single-threaded Node proxies). Prints req/s, p50/p99 latency, the proxy's CPU seconds during the run
 * (utime+stime of its whole process tree, /proc/PID/stat) and requests per proxy CPU-second. Installs wrk and
 * nginx-light with apt-get when missing. Every process and temp file it starts is removed at the end.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pull } from 'zeromq';
import { freePort } from '../test/helpers/ports.js';
import { cpuSeconds, ensureTools, hasCommand, processTree, start, stop, stopAll, waitForPort, wrk, type Child } from './balancer-procs.js';

const HOST = 'bench.localhost';
const here = fileURLToPath(new URL('.', import.meta.url));

function option(name: string, fallback: string): string {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 && process.argv[index + 1] !== undefined ? process.argv[index + 1]! : fallback;
}
const SECONDS = Number(option('seconds', '10'));
const CONNECTIONS = Number(option('connections', '64'));
const THREADS = Number(option('threads', '2'));
const WARMUP_SECONDS = 2;

interface Row {
  backend: string;
  target: string;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  cpuS: number | null;
  errors: number;
}

function hasUwsgiPython(): boolean {
  if (!hasCommand('uwsgi')) return false;
  return spawnSync('sh', ['-c', 'ls /usr/lib/uwsgi/plugins/python3*_plugin.so']).status === 0;
}

async function startUwsgi(dir: string, mode: 'http11-socket' | 'http-socket'): Promise<{ child: Child; port: number }> {
  const port = await freePort();
  const child = start(`uwsgi ${mode}`, 'uwsgi', [
    '--plugins', 'python3', `--${mode}`, `127.0.0.1:${port}`, '--wsgi-file', join(dir, 'wsgi.py'), '--master', '--processes', '2',
    '--disable-logging', '--die-on-term', '--listen', '1024',
  ], 'SIGINT');
  await waitForPort(port);
  return { child, port };
}

async function startNodeBackend(dir: string): Promise<{ child: Child; port: number }> {
  const port = await freePort();
  const script = join(dir, 'backend.mjs');
  writeFileSync(script, `import http from 'node:http';
http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 5 }); res.end('hello'); })
  .listen(${port}, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
`);
  const child = start('node backend', process.execPath, [script]);
  await waitForPort(port);
  return { child, port };
}

async function startNginx(dir: string, backendPort: number): Promise<{ child: Child; port: number }> {
  const port = await freePort();
  const conf = join(dir, `nginx-${port}.conf`);
  writeFileSync(conf, `worker_processes 1;
daemon off;
pid ${dir}/nginx-${port}.pid;
error_log ${dir}/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/nginx-body; proxy_temp_path ${dir}/nginx-proxy;
  fastcgi_temp_path ${dir}/nginx-fcgi; uwsgi_temp_path ${dir}/nginx-uwsgi; scgi_temp_path ${dir}/nginx-scgi;
  upstream bench { server 127.0.0.1:${backendPort}; keepalive 64; }
  server { listen 127.0.0.1:${port} default_server; return 404; }
  server {
    listen 127.0.0.1:${port};
    server_name ${HOST};
    location / {
      proxy_pass http://bench;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Request-Id $request_id;
      add_header X-Request-Id $request_id;
    }
  }
}
`);
  const child = start('nginx', 'nginx', ['-c', conf, '-p', dir, '-e', `${dir}/nginx-error.log`], 'SIGQUIT');
  await waitForPort(port);
  return { child, port };
}

async function startNodeProxy(script: string, backendPort: number, extra: string[] = []): Promise<{ child: Child; port: number }> {
  const port = await freePort();
  const child = start(script, process.execPath, ['--import', 'tsx', join(here, script), String(port), `127.0.0.1:${backendPort}`, ...extra]);
  await waitForPort(port, 20_000);
  return { child, port };
}

/** Warms up, then measures one target; CPU is counted for `cpuOf` (the proxy's process tree), if any. */
async function measure(backend: string, target: string, port: number, cpuOf: Child | null): Promise<Row> {
  await wrk(port, HOST, WARMUP_SECONDS, CONNECTIONS, THREADS);
  const pids = cpuOf ? processTree(cpuOf.process.pid!) : [];
  const before = cpuSeconds(pids);
  const result = await wrk(port, HOST, SECONDS, CONNECTIONS, THREADS);
  const cpuS = cpuOf ? cpuSeconds(pids) - before : null;
  const row: Row = { backend, target, ...result, cpuS };
  console.log(`  ${target}: ${Math.round(result.rps)} req/s`);
  return row;
}

async function benchBackend(dir: string, backend: string, started: { child: Child; port: number }, statsEndpoint: string): Promise<Row[]> {
  console.log(`backend: ${backend}`);
  const rows = [await measure(backend, 'backend direct', started.port, null)];
  for (const [target, launch] of [
    ['pier balancer', () => startNodeProxy('balancer-proxy.ts', started.port, [statsEndpoint])],
    ['http-proxy-3', () => startNodeProxy('balancer-http-proxy.ts', started.port)],
    ['nginx', () => startNginx(dir, started.port)],
  ] as const) {
    const proxy = await launch();
    try {
      rows.push(await measure(backend, target, proxy.port, proxy.child));
    } finally {
      await stop(proxy.child);
    }
  }
  await stop(started.child);
  return rows;
}

function printTable(rows: Row[]): void {
  const header = ['backend', 'target', 'req/s', 'p50 ms', 'p99 ms', 'proxy CPU s', 'req/proxy-CPU-s', 'errors'];
  const lines = rows.map((r) => [
    r.backend, r.target, String(Math.round(r.rps)), r.p50Ms.toFixed(2), r.p99Ms.toFixed(2),
    r.cpuS === null ? '-' : r.cpuS.toFixed(2), r.cpuS ? String(Math.round((r.rps * SECONDS) / r.cpuS)) : '-', String(r.errors),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const format = (cells: string[]): string => `| ${cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  console.log(`\nwrk -t${THREADS} -c${CONNECTIONS} -d${SECONDS}s (after ${WARMUP_SECONDS} s warm-up), Host: ${HOST}, 'hello' responses`);
  console.log(format(header));
  console.log(`|${widths.map((w, i) => (i < 2 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`);
  for (const line of lines) console.log(format(line));
}

async function main(): Promise<void> {
  ensureTools();
  const dir = mkdtempSync(join(tmpdir(), 'pier-bench-'));
  const intake = new Pull({ linger: 0 });
  let received = 0;
  const rows: Row[] = [];
  const cleanup = async (): Promise<void> => {
    await stopAll();
    intake.close();
    rmSync(dir, { recursive: true, force: true });
  };
  const onSignal = (): void => void cleanup().finally(() => process.exit(130));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    await intake.bind('tcp://127.0.0.1:*');
    void (async () => {
      for await (const _frames of intake) received += 1;
    })().catch(() => undefined);
    const statsEndpoint = intake.lastEndpoint!;
    if (hasUwsgiPython() && option('backend', 'uwsgi') === 'uwsgi') {
      writeFileSync(join(dir, 'wsgi.py'), `def application(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', '5')])
    return [b'hello']
`);
      rows.push(...await benchBackend(dir, 'uWSGI http11-socket', await startUwsgi(dir, 'http11-socket'), statsEndpoint));
      rows.push(...await benchBackend(dir, 'uWSGI http-socket', await startUwsgi(dir, 'http-socket'), statsEndpoint));
    } else {
      console.log(hasUwsgiPython() ? 'backend: Node http (--backend node)' : 'uwsgi with the python3 plugin is not installed: using a Node http backend');
      rows.push(...await benchBackend(dir, 'Node http', await startNodeBackend(dir), statsEndpoint));
    }
    printTable(rows);
    console.log(`access records received by the stats PULL socket: ${received}`);
  } finally {
    await cleanup();
  }
}

await main();
