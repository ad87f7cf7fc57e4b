/**
 * bench/control: round-trip latency of control calls through a nexus (ControlClient DEALER → nexus ROUTER →
 * PostgreSQL → reply), beside a raw zeromq.js DEALER→ROUTER echo of a ping-sized frame measured in the same
 * run, so the ratio stays meaningful on a noisy machine. It starts its own embedded PostgreSQL (temp folder,
 * free port) and an in-process nexus on free ports, and stops both before exiting.
 *
 *   npx tsx bench/control.ts [--n 5000] [--concurrency 1]
 *
 * With --concurrency C, C workers (each with its own socket) run n/C sequential calls each; latencies are per
 * call and calls/s is all calls over the wall time.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as zmq from 'zeromq';
import { validateConfig } from '../src/config/index.js';
import { newRequestId } from '../src/core/ids.js';
import { silentLogger } from '../src/core/logger.js';
import { EmbeddedPostgres, createOwner, createPool, migrate, withTransaction } from '../src/db/index.js';
import { Nexus } from '../src/nexus/nexus.js';
import { encode } from '../src/protocol/index.js';
import { ControlClient, SocketFactory } from '../src/transport/index.js';
import { freePort, intArg, percentile } from './common.js';


const n = intArg('n', 5000);
const concurrency = intArg('concurrency', 1);
const WARMUP_CALLS = Math.min(500, n);
const log = silentLogger();
let isInterrupted = false;
// Ctrl-C ends the measuring loops early so the finally block still stops PostgreSQL and removes the temp folder.
// Repeated signals are ignored too (tsx relays the one it gets): cleanup is bounded, pg stop SIGKILLs after 10 s.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => (isInterrupted = true));


interface Row { name: string; p50: number; p99: number; mean: number; perSec: number }


/** Warms up, then runs n calls over `concurrency` workers; `makeCall(worker)` gives each worker its own call. */
async function measure(name: string, makeCall: (worker: number) => () => Promise<unknown>): Promise<Row> {
  const calls = Array.from({ length: concurrency }, (_, w) => makeCall(w));
  await Promise.all(calls.map(async (call) => {
    for (let i = 0; i < Math.ceil(WARMUP_CALLS / concurrency) && !isInterrupted; i++) await call();
  }));
  const samples: number[] = [];
  const started = process.hrtime.bigint();
  await Promise.all(calls.map(async (call, w) => {
    const share = Math.floor(n / concurrency) + (w < n % concurrency ? 1 : 0);
    for (let i = 0; i < share && !isInterrupted; i++) {
      const t = process.hrtime.bigint();
      await call();
      samples.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
  }));
  const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
  samples.sort((a, b) => a - b);
  const mean = samples.length === 0 ? NaN : samples.reduce((a, b) => a + b, 0) / samples.length;
  return { name, p50: percentile(samples, 50), p99: percentile(samples, 99), mean, perSec: (samples.length / wallMs) * 1000 };
}

function printTable(rows: Row[]): void {
  if (isInterrupted) console.log('interrupted: figures cover the calls made so far');
  console.log(`control round trips: ${n} calls each, concurrency ${concurrency}, after ${WARMUP_CALLS} warm-up calls (latency in ms)`);
  console.log(`${'call'.padEnd(52)} ${'p50'.padStart(8)} ${'p99'.padStart(8)} ${'mean'.padStart(8)} ${'calls/s'.padStart(9)}`);
  for (const r of rows) {
    if (Number.isNaN(r.mean)) continue; // no calls made before an interrupt
    const cells = [r.p50, r.p99, r.mean].map((v) => v.toFixed(3).padStart(8)).join(' ');
    console.log(`${r.name.padEnd(52)} ${cells} ${Math.round(r.perSec).toString().padStart(9)}`);
  }
  const [raw, ping] = rows;
  if (raw && ping && !Number.isNaN(ping.mean)) console.log(`nexus ping p50 / raw echo p50 = ${(ping.p50 / raw.p50).toFixed(1)}x`);
}

/** Migrates the fresh database and creates the owner whose token the authenticated calls use. */
async function createBenchOwner(url: string): Promise<string> {
  const pool = createPool({ url, max: 1, connectTimeoutMs: 5000 }, log);
  try {
    await migrate(pool, log);
    return (await withTransaction(pool, (tx) => createOwner(tx, 'bench'))).token;
  } finally {
    await pool.end();
  }
}

const dir = mkdtempSync(join(tmpdir(), 'pier-bench-control-'));
const postgres = new EmbeddedPostgres({ dataDir: join(dir, 'postgres'), port: await freePort(), log });
const echo = new zmq.Router({ linger: 0 });
const dealers: zmq.Dealer[] = [];
const clients: ControlClient[] = [];
let nexus: Nexus | undefined;
try {
  await postgres.start();
  const token = await createBenchOwner(postgres.url);
  const config = validateConfig({
    dataDir: dir, log: { level: 'silent' }, security: { curve: false },
    nexus: { controlBind: 'tcp://127.0.0.1:*', eventsBind: 'tcp://127.0.0.1:*', heartbeatsBind: 'tcp://127.0.0.1:*', apiHost: '127.0.0.1', apiPort: 0 },
  });
  nexus = new Nexus({ config, dbUrl: postgres.url, log });
  await nexus.start();
  const sockets = new SocketFactory({ maxMessageBytes: config.cluster.maxMessageBytes });
  const control = nexus.endpoints!.control;
  const client = (w: number): ControlClient => (clients[w] ??= new ControlClient({ endpoints: [control], timeoutMs: 5000, sockets }));
  await client(0).call('app.create', { token, name: 'bench-app' });

  // The echo server answers each request with the same frame, so both directions carry a ping-sized payload.
  await echo.bind('tcp://127.0.0.1:*');
  void (async () => {
    for await (const [peer, payload] of echo) await echo.send([peer!, payload!]);
  })().catch(() => undefined); // ends with an error when the socket closes at the end of the run
  const pingFrame = encode({ v: 1, type: 'ping', id: newRequestId() }); // what ControlClient sends for ping

  const rows: Row[] = [];
  rows.push(await measure('raw zeromq.js DEALER→ROUTER echo', (w) => {
    const dealer = (dealers[w] = new zmq.Dealer({ linger: 0 }));
    dealer.connect(echo.lastEndpoint!);
    const replies = dealer[Symbol.asyncIterator]();
    return async () => {
      await dealer.send(pingFrame);
      await replies.next();
    };
  }));
  rows.push(await measure('nexus ping (SELECT max(id) FROM events)', (w) => () => client(w).call('ping', {})));
  rows.push(await measure('nexus app.list (token lookup + list query)', (w) => () => client(w).call('app.list', { token })));
  let counter = 0;
  rows.push(await measure('nexus config.set (transaction, event, NOTIFY)', (w) => () =>
    client(w).call('config.set', { token, app: 'bench-app', vars: { BENCH: String(counter++) } })));
  printTable(rows);
} finally {
  // Reverse start order; every step runs even if one before it failed.
  for (const dealer of dealers) dealer.close();
  echo.close();
  await Promise.allSettled(clients.map((c) => c.close()));
  await nexus?.stop().catch((err: unknown) => console.error('nexus stop failed:', err));
  await postgres.stop().catch((err: unknown) => console.error('postgres stop failed:', err));
  rmSync(dir, { recursive: true, force: true });
  if (isInterrupted) process.exitCode = 130;
}
