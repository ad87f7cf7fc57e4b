/** Starts daemons in-process for tests and registers their stop, so a test cannot leave one running. */
import { afterAll, afterEach, onTestFinished } from 'vitest';
import { deepMerge, type ConfigInput } from '../../src/config/index.js';
import { randomId } from '../../src/core/ids.js';
import { silentLogger } from '../../src/core/logger.js';
import type { StatsAddress } from '../../src/config/index.js';
import { Nexus } from '../../src/nexus/nexus.js';
import { StatsDaemon } from '../../src/stats/stats.js';
import { ControlClient, SocketFactory } from '../../src/transport/index.js';
import { testConfig } from './config.js';
import { freePort } from './ports.js';

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

/** Endpoints for one stats collector on free loopback ports (known before it starts, so the nexus can list it). */
export async function collectorAddress(): Promise<StatsAddress> {
  const [intake, tail, query] = await Promise.all([freePort(), freePort(), freePort()]);
  return { intake: `tcp://127.0.0.1:${intake}`, tail: `tcp://127.0.0.1:${tail}`, query: `tcp://127.0.0.1:${query}` };
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
