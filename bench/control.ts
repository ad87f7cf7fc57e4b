/**
 * bench/control: round-trip latency of a control call through a nexus (zeromq.js DEALER → nexus ROUTER →
 * PostgreSQL → reply) beside a raw zeromq.js DEALER→ROUTER echo measured in the same run, so the ratio is
 * meaningful on a noisy machine. Starts its own embedded PostgreSQL and nexus, and stops them.
 *
 *   npx tsx bench/control.ts [--n 3000]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as zmq from 'zeromq';
import { validateConfig } from '../src/config/index.js';
import { silentLogger } from '../src/core/logger.js';
import { EmbeddedPostgres, createOwner, createPool, migrate, withTransaction } from '../src/db/index.js';
import { Nexus } from '../src/nexus/nexus.js';
import { encode } from '../src/protocol/index.js';
import { ControlClient, SocketFactory } from '../src/transport/index.js';

const n = Number(process.argv[process.argv.indexOf('--n') + 1] || 3000) || 3000;
const log = silentLogger();

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function measure(name: string, call: () => Promise<unknown>): Promise<{ name: string; p50: number; p99: number; mean: number; perSec: number }> {
  for (let i = 0; i < Math.min(500, n); i++) await call(); // warm-up
  const samples: number[] = [];
  const started = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await call();
    samples.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  const totalMs = Number(process.hrtime.bigint() - started) / 1e6;
  samples.sort((a, b) => a - b);
  return { name, p50: percentile(samples, 50), p99: percentile(samples, 99), mean: samples.reduce((a, b) => a + b, 0) / n, perSec: (n / totalMs) * 1000 };
}

const dir = mkdtempSync(join(tmpdir(), 'pier-bench-control-'));
const postgres = new EmbeddedPostgres({ dataDir: join(dir, 'postgres'), port: 7000 + Math.floor(Math.random() * 400), log });
const echo = new zmq.Router({ linger: 0 });
const raw = new zmq.Dealer({ linger: 0 });
let nexus: Nexus | undefined;
let client: ControlClient | undefined;
try {
  await postgres.start();
  const pool = createPool({ url: postgres.url, max: 2, connectTimeoutMs: 5000 }, log);
  await migrate(pool, log);
  const { token } = await withTransaction(pool, (tx) => createOwner(tx, 'bench'));
  await pool.end();
  const config = validateConfig({
    log: { level: 'silent' }, security: { curve: false },
    nexus: { controlBind: 'tcp://127.0.0.1:*', eventsBind: 'tcp://127.0.0.1:*', heartbeatsBind: 'tcp://127.0.0.1:*', apiPort: 0 },
  });
  nexus = new Nexus({ config, dbUrl: postgres.url, log });
  await nexus.start();
  client = new ControlClient({ endpoints: [nexus.endpoints!.control], timeoutMs: 5000, sockets: new SocketFactory({ maxMessageBytes: 1 << 22 }) });
  await client.call('app.create', { token, name: 'bench-app' });

  await echo.bind('tcp://127.0.0.1:*');
  raw.connect(echo.lastEndpoint!);
  void (async () => {
    for await (const [id, payload] of echo) await echo.send([id!, payload!]);
  })().catch(() => undefined);
  const frame = encode({ v: 1, type: 'ping', id: '00000000-0000-0000-0000-000000000000' });
  const receive = raw[Symbol.asyncIterator]();

  const rows = [
    await measure('raw zeromq.js DEALER→ROUTER echo', async () => {
      await raw.send(frame);
      await receive.next();
    }),
    await measure('nexus ping (reads the event version)', () => client!.call('ping', {})),
    await measure('nexus app.list (token lookup + query)', () => client!.call('app.list', { token })),
    await measure('nexus config.set (mutation: request id, row, event, NOTIFY)', () => client!.call('config.set', { token, app: 'bench-app', vars: { K: String(Math.random()) } })),
  ];
  console.log(`control round trips, ${n} sequential calls each (ms)`);
  console.log(`${'call'.padEnd(62)} ${'p50'.padStart(7)} ${'p99'.padStart(7)} ${'mean'.padStart(7)} ${'calls/s'.padStart(8)}`);
  for (const r of rows) {
    console.log(`${r.name.padEnd(62)} ${r.p50.toFixed(3).padStart(7)} ${r.p99.toFixed(3).padStart(7)} ${r.mean.toFixed(3).padStart(7)} ${Math.round(r.perSec).toString().padStart(8)}`);
  }
  console.log(`nexus ping p50 / raw p50 = ${(rows[1]!.p50 / rows[0]!.p50).toFixed(1)}x`);
} finally {
  raw.close();
  echo.close();
  await client?.close();
  await nexus?.stop();
  await postgres.stop();
  rmSync(dir, { recursive: true, force: true });
}
