/**
 * bench/heartbeats: the cost of heartbeat intake on one nexus, and how fast it reports a silent node dead.
 * It starts an embedded PostgreSQL (temp folder, free port) and one nexus as a child process (`pier nexus
 * --config`, through tsx, so its CPU can be read from /proc/PID/stat), registers --nodes runner nodes over the
 * control protocol, and publishes their heartbeats from this process: the same message as
 * `HeartbeatPublisher`, each node on its own PUB socket by default, send times spread evenly over the interval.
 * After a warm-up it measures the nexus's CPU (fraction of one core) and RSS for --seconds. Then it silences
 * --kill nodes and polls `GET /v1/nodes` every 50 ms until the nexus reports each one dead.
 *
 *   npx tsx bench/heartbeats.ts [--nodes 1000] [--hz 2] [--seconds 20] [--kill 10] [--sockets N] [--warmup 5] [--misses 3]
 *
 * --sockets spreads the nodes over N PUB sockets (default: one per node, as real runners have); --misses sets
 * cluster.heartbeatMisses (the dead budget is interval × misses).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { newToken } from '../src/core/ids.js';
import { silentLogger } from '../src/core/logger.js';
import { EmbeddedPostgres, createPool, ensureAdmin, migrate, withTransaction } from '../src/db/index.js';
import { encode, type HeartbeatMessage, type Node } from '../src/protocol/index.js';
import { ControlClient, SerialSender, SocketFactory, closeQuietly } from '../src/transport/index.js';
import type * as zmq from 'zeromq';
import { cpuSeconds, processTree } from './balancer-procs.js';
import { freePort, intArg, percentile } from './common.js';


const nodeCount = intArg('nodes', 1000);
const hz = intArg('hz', 2);
const seconds = intArg('seconds', 20);
const killCount = Math.min(intArg('kill', 10, 0), nodeCount);
const socketCount = Math.min(intArg('sockets', nodeCount), nodeCount);
const warmupSeconds = intArg('warmup', 5);
const INTERVAL_MS = Math.round(1000 / hz);
const MISSES = intArg('misses', 3);
const BUDGET_MS = INTERVAL_MS * MISSES;
const POLL_MS = 50;
const REGISTER_CONCURRENCY = 32;
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const log = silentLogger();

let isInterrupted = false;
let wake: (() => void) | undefined;
// Ctrl-C cuts the current phase short; the finally block still stops the nexus and PostgreSQL and removes the
// temp folder. Repeated signals are ignored too (tsx relays the one it gets): every cleanup step is bounded.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    isInterrupted = true;
    wake?.();
  });
}

/** Sleeps, but returns at once on Ctrl-C. */
function pause(ms: number): Promise<void> {
  if (isInterrupted) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      wake = undefined;
      resolve();
    }
    wake = done;
  });
}



/** Resident set size in bytes, from /proc/PID/status (0 once the process is gone). */
function rssBytes(pid: number): number {
  try {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Migrates the fresh database and creates the admin owner whose token `GET /v1/nodes` needs (as `pier up` does). */
async function prepareDatabase(url: string): Promise<string> {
  const pool = createPool({ url, max: 1, connectTimeoutMs: 5000 }, log);
  try {
    await migrate(pool, log);
    const token = newToken();
    await withTransaction(pool, (tx) => ensureAdmin(tx, 'bench-admin', token));
    return token;
  } finally {
    await pool.end();
  }
}

interface NexusProcess { child: ChildProcess; logFile: string; control: string; heartbeats: string; api: string }

/** Writes the nexus config and starts `pier nexus --config FILE` through tsx (so src/ changes need no build). */
async function spawnNexus(dir: string, dbUrl: string): Promise<NexusProcess> {
  const [control, events, heartbeats, api] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const file = join(dir, 'nexus.toml');
  writeFileSync(file, [
    `dataDir = ${JSON.stringify(dir)}`,
    '[log]', 'level = "warn"',
    '[security]', 'curve = false',
    '[cluster]', `heartbeatIntervalMs = ${INTERVAL_MS}`, `heartbeatMisses = ${MISSES}`,
    '[nexus]', 'id = "nexus-bench"',
    `controlBind = "tcp://127.0.0.1:${control}"`, `eventsBind = "tcp://127.0.0.1:${events}"`,
    `heartbeatsBind = "tcp://127.0.0.1:${heartbeats}"`, 'apiHost = "127.0.0.1"', `apiPort = ${api}`, '',
  ].join('\n'));
  // Our own PIER_* variables must not leak into its config; the db URL carries a password, so it goes by env.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PIER_') && k !== 'DATABASE_URL'));
  const logFile = join(dir, 'nexus.log');
  const fd = openSync(logFile, 'a');
  try {
    // Its own process group, so Ctrl-C reaches only us and we stop it in order; PIER_SUPERVISOR_PID makes it
    // stop by itself should this process be killed outright.
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'nexus', '--config', file], {
      cwd: ROOT, env: { ...env, PIER_DB_URL: dbUrl, PIER_SUPERVISOR_PID: String(process.pid) }, stdio: ['ignore', fd, fd], detached: true,
    });
    return { child, logFile, control: `tcp://127.0.0.1:${control}`, heartbeats: `tcp://127.0.0.1:${heartbeats}`, api: `http://127.0.0.1:${api}` };
  } finally {
    closeSync(fd);
  }
}

function logTail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** Polls /healthz until the API answers (the `ready` log line is at info, below the bench's `warn`). */
async function waitReady(nexus: NexusProcess, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!isInterrupted) {
    if (!isRunning(nexus.child)) throw new Error(`nexus exited while starting:\n${logTail(nexus.logFile)}`);
    try {
      const response = await fetch(`${nexus.api}/healthz`);
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`nexus not ready after ${timeoutMs / 1000} s:\n${logTail(nexus.logFile)}`);
    await pause(100);
  }
}

/** SIGTERM, then SIGKILL after 10 s; resolves once it has exited. */
async function stopNexus(child: ChildProcess): Promise<void> {
  if (!isRunning(child)) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

async function fetchNodes(api: string, token: string): Promise<Node[]> {
  const response = await fetch(`${api}/v1/nodes`, { headers: { authorization: `Bearer ${token}` } });
  if (!response.ok) throw new Error(`GET /v1/nodes: HTTP ${response.status} ${await response.text()}`);
  return ((await response.json()) as { nodes: Node[] }).nodes;
}

/** One simulated runner: its id, the socket it publishes on, its timers and sequence. */
interface SimNode { id: string; sender: SerialSender; seq: number; lastSentAt: number; timer?: NodeJS.Timeout }

/** Publishes every node's heartbeat each INTERVAL_MS, node i offset by i/n of the interval. */
class HeartbeatSimulator {
  readonly nodes: SimNode[];
  sent = 0;
  private readonly sockets: zmq.Publisher[] = [];
  private readonly senders: SerialSender[];

  constructor(ids: string[], endpoint: string, socketFactory: SocketFactory) {
    for (let s = 0; s < socketCount; s++) {
      const socket = socketFactory.publisher('client');
      socket.connect(endpoint);
      this.sockets.push(socket);
    }
    this.senders = this.sockets.map((s) => new SerialSender(s));
    this.nodes = ids.map((id, i) => ({ id, sender: this.senders[i % this.senders.length]!, seq: 0, lastSentAt: 0 }));
  }

  start(): void {
    this.nodes.forEach((node, i) => {
      node.timer = setTimeout(() => {
        this.beat(node);
        node.timer = setInterval(() => this.beat(node), INTERVAL_MS);
      }, (i * INTERVAL_MS) / this.nodes.length);
    });
  }

  private beat(node: SimNode): void {
    // The message HeartbeatPublisher sends for a runner (instances: what a runner's sample adds).
    const message: HeartbeatMessage = {
      v: 1, type: 'heartbeat', nodeId: node.id, kind: 'runner', seq: node.seq++, intervalMs: INTERVAL_MS,
      sentAt: Date.now(), load: loadavg()[0] ?? 0, instances: 0,
    };
    node.lastSentAt = message.sentAt;
    this.sent += 1;
    void node.sender.send([encode(message)]);
  }

  /** Stops one node's heartbeats (clearTimeout also clears an interval). */
  silence(node: SimNode): void {
    clearTimeout(node.timer);
  }

  /** Sends that failed (a full queue or a closed socket). */
  get sendFailures(): number {
    return this.senders.reduce((sum, sender) => sum + sender.failures, 0);
  }

  close(): void {
    for (const node of this.nodes) clearTimeout(node.timer);
    for (const socket of this.sockets) closeQuietly(socket);
  }
}

/** Registers every node through ControlClient ('node.register'), REGISTER_CONCURRENCY calls at a time. */
async function registerNodes(client: ControlClient, ids: string[]): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: REGISTER_CONCURRENCY }, async () => {
    while (next < ids.length && !isInterrupted) {
      const i = next++;
      await client.call('node.register', { nodeId: ids[i]!, kind: 'runner', address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` });
    }
  }));
}

interface Usage { cpuFraction: number; pgCpuFraction: number; wallMs: number }

/** CPU of the nexus and of PostgreSQL (postmaster and backends) over `ms`, as fractions of one core. */
async function measureUsage(nexusPid: number, pgPid: number, ms: number, each?: () => void): Promise<Usage> {
  const pgPids = processTree(pgPid);
  const [cpu0, pg0, t0] = [cpuSeconds([nexusPid]), cpuSeconds(pgPids), process.hrtime.bigint()];
  const end = Date.now() + ms;
  while (Date.now() < end && !isInterrupted) {
    await pause(Math.min(1000, end - Date.now()));
    each?.();
  }
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
  return { cpuFraction: (cpuSeconds([nexusPid]) - cpu0) / (wallMs / 1000), pgCpuFraction: (cpuSeconds(pgPids) - pg0) / (wallMs / 1000), wallMs };
}

interface Detection { sinceStopMs: number[]; sinceLastBeatMs: number[]; polls: number; pollMs: number[]; falseDead: Set<string>; usage: Usage | undefined }

/** Silences `killCount` nodes spread over the id range and polls GET /v1/nodes until each is reported dead. */
async function detect(sim: HeartbeatSimulator, nexus: NexusProcess, pgPid: number, token: string): Promise<Detection> {
  const victims = Array.from({ length: killCount }, (_, j) => sim.nodes[Math.floor(((j + 0.5) * nodeCount) / killCount)]!);
  const result: Detection = { sinceStopMs: [], sinceLastBeatMs: [], polls: 0, pollMs: [], falseDead: new Set(), usage: undefined };
  const pgPids = processTree(pgPid);
  const [cpu0, pg0, t0] = [cpuSeconds([nexus.child.pid!]), cpuSeconds(pgPids), process.hrtime.bigint()];
  const stoppedAt = Date.now();
  for (const node of victims) sim.silence(node);
  const victimIds = new Set(victims.map((n) => n.id));
  const pending = new Map(victims.map((n) => [n.id, n]));
  const deadline = stoppedAt + BUDGET_MS * 3 + 5000;
  while (pending.size > 0 && Date.now() < deadline && !isInterrupted && isRunning(nexus.child)) {
    const started = Date.now();
    const nodes = await fetchNodes(nexus.api, token);
    const now = Date.now();
    result.polls += 1;
    result.pollMs.push(now - started);
    for (const reported of nodes) {
      if (reported.kind !== 'runner') continue;
      const victim = pending.get(reported.id);
      if (victim && reported.status === 'dead') {
        pending.delete(reported.id);
        result.sinceStopMs.push(now - stoppedAt);
        result.sinceLastBeatMs.push(now - victim.lastSentAt);
      } else if (!victimIds.has(reported.id) && reported.status !== 'alive') {
        result.falseDead.add(reported.id);
      }
    }
    await pause(Math.max(0, POLL_MS - (Date.now() - started)));
  }
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
  result.usage = { cpuFraction: (cpuSeconds([nexus.child.pid!]) - cpu0) / (wallMs / 1000), pgCpuFraction: (cpuSeconds(pgPids) - pg0) / (wallMs / 1000), wallMs };
  return result;
}

const pct = (fraction: number): string => `${(fraction * 100).toFixed(1)}%`;

function printTable(steady: Usage, rssMaxBytes: number, sentPerSec: number, alive: number | undefined, listMs: number | undefined, found: Detection | undefined, sendFailures: number): void {
  const row = (name: string, ...cells: string[]): void => console.log(`${name.padEnd(52)} ${cells.map((c) => c.padStart(8)).join(' ')}`);
  if (isInterrupted) console.log('interrupted: figures cover the part that ran');
  const spread = socketCount === nodeCount ? `one PUB socket per node (${socketCount})` : `${socketCount} PUB sockets shared by the nodes`;
  console.log(`heartbeats: ${nodeCount} runner nodes at ${hz} Hz (every ${INTERVAL_MS} ms) on ${spread} → one nexus`);
  console.log(`steady state: ${(steady.wallMs / 1000).toFixed(1)} s measured after ${warmupSeconds} s of warm-up`);
  row('heartbeats sent/s (by this process)', sentPerSec.toFixed(0));
  row('send failures', String(sendFailures));
  row('nexus CPU, % of one core', pct(steady.cpuFraction));
  row('nexus RSS, MiB (max)', (rssMaxBytes / 2 ** 20).toFixed(0));
  row('PostgreSQL CPU, % of one core (all its processes)', pct(steady.pgCpuFraction));
  row('runners alive at end of window (GET /v1/nodes)', alive === undefined ? '-' : `${alive}/${nodeCount}`);
  row('GET /v1/nodes, ms (one call)', listMs === undefined ? '-' : listMs.toFixed(0));
  if (found && found.polls > 0) {
    const ms = (values: number[]): string[] => {
      const sorted = [...values].sort((a, b) => a - b);
      return [sorted[0], percentile(sorted, 50), sorted[sorted.length - 1]].map((v) => (v === undefined || Number.isNaN(v) ? '-' : v.toFixed(0)));
    };
    console.log(`detection: ${killCount} nodes silenced, GET /v1/nodes polled every ${POLL_MS} ms (${found.polls} polls); times in ms`);
    row('', 'min', 'p50', 'max');
    row(`reported dead after heartbeats stopped (${found.sinceStopMs.length}/${killCount})`, ...ms(found.sinceStopMs));
    row('reported dead after the last heartbeat sent', ...ms(found.sinceLastBeatMs));
    row(`budget: interval × misses = ${INTERVAL_MS} × ${MISSES}`, String(BUDGET_MS));
    row('GET /v1/nodes duration while polling', ...ms(found.pollMs));
    row('live runners ever reported not alive', String(found.falseDead.size));
    if (found.usage) row('nexus CPU while polled, % of one core', pct(found.usage.cpuFraction));
  }
  console.log(`nexus CPU: ${(steady.cpuFraction * 100).toFixed(1)}% of one core (goal ≤ 25%)`);
}

const dir = mkdtempSync(join(tmpdir(), 'pier-bench-heartbeats-'));
const postgres = new EmbeddedPostgres({ dataDir: join(dir, 'postgres'), port: await freePort(), log });
let nexus: NexusProcess | undefined;
let client: ControlClient | undefined;
let sim: HeartbeatSimulator | undefined;
try {
  await postgres.start();
  const token = await prepareDatabase(postgres.url);
  nexus = await spawnNexus(dir, postgres.url);
  await waitReady(nexus);
  const nexusPid = nexus.child.pid!;
  const pgPid = postgres.pid!;
  const sockets = new SocketFactory({ maxMessageBytes: 4 * 1024 * 1024 });
  client = new ControlClient({ endpoints: [nexus.control], timeoutMs: 10_000, sockets });
  const ids = Array.from({ length: nodeCount }, (_, i) => `bench-runner-${String(i + 1).padStart(5, '0')}`);
  const registerStarted = Date.now();
  await registerNodes(client, ids);
  if (!isInterrupted) console.log(`registered ${nodeCount} runner nodes in ${((Date.now() - registerStarted) / 1000).toFixed(1)} s`);

  sim = new HeartbeatSimulator(ids, nexus.heartbeats, sockets);
  sim.start();
  await pause(warmupSeconds * 1000);
  let rssMax = rssBytes(nexusPid);
  const sent0 = sim.sent;
  const steady = await measureUsage(nexusPid, pgPid, seconds * 1000, () => (rssMax = Math.max(rssMax, rssBytes(nexusPid))));
  const sentPerSec = ((sim.sent - sent0) / steady.wallMs) * 1000;
  let alive: number | undefined;
  let listMs: number | undefined;
  if (!isInterrupted && isRunning(nexus.child)) {
    const started = Date.now();
    const nodes = await fetchNodes(nexus.api, token);
    listMs = Date.now() - started;
    alive = nodes.filter((n) => n.kind === 'runner' && n.status === 'alive').length;
  }
  const found = killCount > 0 && !isInterrupted ? await detect(sim, nexus, pgPid, token) : undefined;
  if (!isRunning(nexus.child)) console.log(`nexus exited during the run:\n${logTail(nexus.logFile)}`);
  printTable(steady, rssMax, sentPerSec, alive, listMs, found, sim.sendFailures);
  const warnings = logTail(nexus.logFile, 1_000_000).split('\n').filter((l) => l.trim() !== '');
  if (warnings.length > 0) console.log(`nexus logged ${warnings.length} warn+ lines; last ones:\n${warnings.slice(-5).join('\n')}`);
} finally {
  // Reverse start order; every step runs even if one before it failed.
  sim?.close();
  await client?.close().catch((err: unknown) => console.error('control client close failed:', err));
  if (nexus) await stopNexus(nexus.child).catch((err: unknown) => console.error('nexus stop failed:', err));
  await postgres.stop().catch((err: unknown) => console.error('postgres stop failed:', err));
  rmSync(dir, { recursive: true, force: true });
  if (isInterrupted) process.exitCode = 130;
}
