/** Starts daemons in-process for tests and registers their stop, so a test cannot leave one running. */
import { createServer } from 'node:net';
import { afterAll, afterEach, onTestFinished } from 'vitest';
import { deepMerge, type ConfigInput } from '../../src/config/index.js';
import { randomId } from '../../src/core/ids.js';
import { silentLogger } from '../../src/core/logger.js';
import type { StatsAddress } from '../../src/config/index.js';
import { Nexus } from '../../src/nexus/nexus.js';
import { StatsDaemon } from '../../src/stats/stats.js';
import { ControlClient, SocketFactory } from '../../src/transport/index.js';
import { testConfig } from './config.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!().catch(() => undefined);
});

/** Registers a cleanup for the current test (falls back to after-each when called outside a test). */
export function onCleanup(fn: () => Promise<void>): void {
  try {
    onTestFinished(fn);
  } catch {
    cleanups.push(fn);
  }
}

export interface NexusHandle {
  nexus: Nexus;
  control: string;
  events: string;
  heartbeats: string;
  api: string;
  /** One-off sessions ROUTER (runners connect). */
  sessions: string;
}

/**
 * Starts a nexus on free ports against `dbUrl`, stopped after the current test — or, with `scope: 'file'`
 * (for beforeAll), after the file.
 */
export async function startNexus(dbUrl: string, overrides: ConfigInput = {}, scope: 'test' | 'file' = 'test'): Promise<NexusHandle> {
  // Merge, not spread: an override of other nexus settings must keep the unique id.
  const config = testConfig(deepMerge({ nexus: { id: `nexus-${randomId()}` } }, overrides));
  const nexus = new Nexus({ config, dbUrl, log: silentLogger() });
  if (scope === 'file') afterAll(() => nexus.stop());
  else onCleanup(() => nexus.stop());
  await nexus.start();
  return { nexus, ...nexus.endpoints! };
}

export function testSockets(maxMessageBytes = 4 * 1024 * 1024): SocketFactory {
  return new SocketFactory({ maxMessageBytes });
}

/** A control client over the given endpoints, closed after the test. */
export function controlClient(endpoints: string[], timeoutMs = 500): ControlClient {
  const client = new ControlClient({ endpoints, timeoutMs, sockets: testSockets() });
  onCleanup(() => client.close());
  return client;
}

/**
 * Ports for daemons a test configures before they start (collectors, `pier up`'s): below the ephemeral range (32768+), where every outgoing connection and every port-0 or
 * `:*` bind of this machine takes its port — a port found free there could be taken before the collector binds it
 * (a ZeroMQ "Address already in use" seen on CI). Each vitest worker has a slice of its own (files in one worker
 * run one after another), and no test's fixed range reaches 10000-11999.
 */
const COLLECTOR_PORT_MIN = 10_000;
const COLLECTOR_SLICE = 200;
const COLLECTOR_SLICES = 10;
/** Ports handed out by this process: an address is chosen before its collector binds it. */
const handedOut = new Set<number>();

/** `count` free loopback ports of this worker's slice, never handed out twice by this process. */
export async function reservedPorts(count: number): Promise<number[]> {
  const slice = Number(process.env.VITEST_POOL_ID ?? '0') % COLLECTOR_SLICES;
  const min = COLLECTOR_PORT_MIN + slice * COLLECTOR_SLICE;
  const start = Math.floor(Math.random() * COLLECTOR_SLICE);
  const ports: number[] = [];
  for (let i = 0; i < COLLECTOR_SLICE && ports.length < count; i++) {
    const port = min + ((start + i) % COLLECTOR_SLICE);
    if (!handedOut.has(port) && (await isFreePort(port))) ports.push(port);
  }
  if (ports.length < count) throw new Error(`no ${count} free ports in ${min}-${min + COLLECTOR_SLICE - 1}; is something else listening there?`);
  for (const port of ports) handedOut.add(port);
  return ports;
}

/** Endpoints for one stats collector on free loopback ports (known before it starts, so the nexus can list it). */
export async function collectorAddress(): Promise<StatsAddress> {
  const [intake, tail, query] = await reservedPorts(3);
  return { intake: `tcp://127.0.0.1:${intake}`, tail: `tcp://127.0.0.1:${tail}`, query: `tcp://127.0.0.1:${query}` };
}

function isFreePort(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** Starts a stats collector bound at `address`, stopped after the file. */
export async function startCollector(dbUrl: string, config: ConfigInput, address: StatsAddress, stats: ConfigInput = {}): Promise<StatsDaemon> {
  const daemon = new StatsDaemon({
    config: testConfig(deepMerge(config, {
      stats: { id: `stats-${randomId()}`, intakeBind: address.intake, tailBind: address.tail, queryBind: address.query, ...stats },
    })),
    dbUrl, log: silentLogger(),
  });
  afterAll(() => daemon.stop());
  await daemon.start();
  return daemon;
}
