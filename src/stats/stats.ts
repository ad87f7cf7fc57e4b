/**
 * The stats collector daemon: PULLs log lines and access records from every node (over CURVE: there is no plain intake),
 * writes each app's lines to chunked files, republishes them on the live tail PUB, answers `logs.tail` and
 * `stats.query` on its ROUTER, and adds per-app, per-minute request aggregates to PostgreSQL every few
 * seconds. It keeps collecting while PostgreSQL is away: aggregates wait in memory (bounded) for the next flush.
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import type * as zmq from 'zeromq';
import type { PierConfig } from '../config/index.js';
import { Lifecycle, type Service } from '../core/service.js';
import { addRequestStats, createPool, migrate, pruneRequestStats, requestStatsSince, type Pool } from '../db/index.js';
import { MAX_TAIL_LINES } from '../protocol/index.js';
import { acquireZap, closeQuietly, ControlClient, EventFollower, HeartbeatPublisher, SocketFactory, type CurveSettings, type Keyring } from '../transport/index.js';
import { AppPurge } from './app-purge.js';
import { RequestAggregator } from './aggregator.js';
import { Collector } from './collector.js';
import { summarize } from './histogram.js';
import { LogStore } from './log-store.js';
import { QueryServer } from './query-server.js';
import { ReleaseWindows } from './release-window.js';
import { TailPublisher } from './tail-publisher.js';

export interface StatsOptions {
  config: PierConfig;
  /** PostgreSQL holding the request aggregates. */
  dbUrl: string;
  log: Logger;
  /** CURVE keys (server side: the collector binds with the collectors' keypair); omit when `security.curve` is off. */
  curve?: CurveSettings;
  /** The keys allowed to connect, with their roles; this collector's own key is added as 'stats'. */
  keyring?: Keyring;
}

/** Where each socket ended up bound (useful when configured with port 0). */
export interface StatsEndpoints {
  intake: string;
  tail: string;
  query: string;
}

const PRUNE_INTERVAL_MS = 3_600_000;
const REGISTER_RETRY_MS = 5_000;

export class StatsDaemon implements Service {
  readonly id: string;
  endpoints: StatsEndpoints | undefined;
  store: LogStore | undefined;
  collector: Collector | undefined;
  aggregator: RequestAggregator | undefined;
  /** Purges destroyed apps' logs and numbers. */
  purge: AppPurge | undefined;
  /** Failed flushes of the aggregates so far (the deltas were kept for the next one). */
  flushFailures = 0;
  private pool: Pool | undefined;
  private flushing: Promise<void> | undefined;
  private readonly lifecycle: Lifecycle;
  private readonly log: Logger;

  constructor(private readonly options: StatsOptions) {
    this.id = options.config.stats.id;
    this.log = options.log.child({ component: 'stats', statsId: this.id });
    this.lifecycle = new Lifecycle(`stats collector '${this.id}'`, this.log);
  }

  start(): Promise<void> {
    return this.lifecycle.start(async () => {
      const { config, curve } = this.options;
      const { cluster, stats } = config;
      const defer = this.lifecycle.defer.bind(this.lifecycle);
      const sockets = new SocketFactory({ maxMessageBytes: cluster.maxMessageBytes, curve });
      if (curve) {
        const keyring = new Map(this.options.keyring ?? []);
        if (!keyring.has(curve.publicKey)) keyring.set(curve.publicKey, { role: 'stats', name: this.id });
        const release = await acquireZap(keyring, this.log);
        defer('zap', release);
      }

      const pool = createPool({ url: this.options.dbUrl, max: Math.min(config.db.poolMax, 4), connectTimeoutMs: config.db.connectTimeoutMs, applicationName: `pier-${this.id}` }, this.log);
      this.pool = pool;
      defer('db pool', () => pool.end());
      await migrate(pool, this.log);

      const tailSocket = sockets.publisher('server', 'pier.query');
      defer('tail socket', () => closeQuietly(tailSocket));
      await tailSocket.bind(stats.tailBind);
      const tail = new TailPublisher(tailSocket);

      const store = new LogStore({
        dir: join(stats.dir === '' ? join(config.dataDir, 'stats') : stats.dir, 'logs'),
        chunkBytes: stats.chunkBytes, retainChunks: stats.retainChunks, log: this.log, onWritten: tail.publish,
      });
      this.store = store;
      await store.start();
      defer('log store', async () => {
        await store.close();
        await tail.drained();
      });

      const aggregator = new RequestAggregator(stats.maxPendingMinutes);
      this.aggregator = aggregator;
      defer('last flush', () => withGrace(this.flush(), stats.shutdownGraceMs));
      const releases = new ReleaseWindows();
      const purge = new AppPurge({ store, aggregator, releases, pool, flushed: () => this.flushing ?? Promise.resolve(), log: this.log });
      this.purge = purge;
      const collector = new Collector({
        store, aggregator, releases, routerLogs: stats.routerLogs, maxMessageBytes: cluster.maxMessageBytes, log: this.log, isPurged: purge.isPurged,
      });
      this.collector = collector;

      const intake = sockets.pull('pier.intake');
      await bindPull(intake, stats.intakeBind, (socket) => collector.consumeIntake(socket), defer);

      const router = sockets.router('pier.query');
      await router.bind(stats.queryBind);
      const query = new QueryServer(router, {
        'logs.tail': async (request) => store.tail(request.app, Math.min(request.lines, MAX_TAIL_LINES), request.maxBytes ?? Math.floor(cluster.maxMessageBytes * 0.9)),
        'stats.query': async (request) => ({ rows: await requestStatsSince(pool, request.app, request.sinceMs) }),
        'stats.release': async (request) => releases.query(request.app, request.release, request.sinceMs, request.untilMs),
      }, cluster.maxMessageBytes, this.log);
      query.start();
      defer('query socket', async () => {
        await query.drain(1000);
        closeQuietly(router);
        await query.closed();
      });

      const flusher = setInterval(() => void this.flush(), stats.flushIntervalMs);
      const pruner = setInterval(() => {
        void this.prune();
        releases.sweep();
      }, PRUNE_INTERVAL_MS);
      defer('timers', () => {
        clearInterval(flusher);
        clearInterval(pruner);
      });
      void this.prune();

      this.endpoints = {
        intake: intake.lastEndpoint ?? stats.intakeBind, tail: tailSocket.lastEndpoint ?? stats.tailBind,
        query: router.lastEndpoint ?? stats.queryBind,
      };
      this.joinCluster(sockets, defer, purge);
      this.log.info({ ...this.endpoints }, 'stats collector ready');
    });
  }

  /** Heartbeats to every nexus and registers as a 'stats' node (retried in the background: a collector never waits for the control plane). */
  private joinCluster(sockets: SocketFactory, defer: (name: string, run: () => unknown) => void, purge: AppPurge): void {
    const { cluster } = this.options.config;
    const heartbeat = new HeartbeatPublisher({
      nodeId: this.id, kind: 'stats', endpoints: cluster.nexus.map((n) => n.heartbeats), intervalMs: cluster.heartbeatIntervalMs, sockets,
    });
    heartbeat.start();
    defer('heartbeat', () => heartbeat.stop());
    const control = new ControlClient({ endpoints: cluster.nexus.map((n) => n.control), timeoutMs: cluster.controlTimeoutMs, sockets, log: this.log });
    let timer: NodeJS.Timeout | undefined;
    let isStopped = false;
    defer('control client', () => {
      isStopped = true;
      clearTimeout(timer);
      control.close();
    });
    const register = async (): Promise<void> => {
      try {
        await control.call('node.register', { nodeId: this.id, kind: 'stats', address: this.endpoints!.intake, info: { ...this.endpoints } });
      } catch (err) {
        if (isStopped) return;
        this.log.warn({ reason: (err as Error).message }, 'cannot register with the nexus yet; retrying');
        timer = setTimeout(() => void register(), REGISTER_RETRY_MS);
      }
    };
    void register();
    this.followApps(sockets, control, defer, purge, () => isStopped);
  }

  /**
   * Follows the nexus's events for `app.destroyed` (and snapshots), so a destroyed app's logs and numbers go here
   * too; started in the background and retried, like registering.
   */
  private followApps(
    sockets: SocketFactory, control: ControlClient, defer: (name: string, run: () => unknown) => void, purge: AppPurge, isStopped: () => boolean,
  ): void {
    const { cluster } = this.options.config;
    let follower: EventFollower | undefined;
    let timer: NodeJS.Timeout | undefined;
    let isDone = false;
    const begin = async (): Promise<void> => {
      const next = new EventFollower({
        eventEndpoints: cluster.nexus.map((n) => n.events), control, sockets, log: this.log,
        onSnapshot: (snapshot) => purge.sweep(snapshot.apps),
        onEvent: async (event) => {
          if (event.type === 'app.destroyed' && event.app) await purge.destroyed(event.app, event.at);
        },
      });
      follower = next;
      try {
        await next.start();
      } catch (err) {
        await next.stop();
        if (isDone || isStopped()) return;
        this.log.warn({ reason: (err as Error).message }, 'cannot follow the nexus events yet; retrying');
        timer = setTimeout(() => void begin(), REGISTER_RETRY_MS);
      }
    };
    defer('event follower', async () => {
      isDone = true;
      clearTimeout(timer);
      await follower?.stop();
    });
    void begin();
  }

  /** Adds the aggregates gathered since the last flush to PostgreSQL; on failure keeps them for the next one. */
  flush(): Promise<void> {
    this.flushing ??= (async () => {
      const aggregator = this.aggregator;
      const pool = this.pool;
      if (!aggregator || !pool || aggregator.size === 0) return;
      const deltas = aggregator.take();
      try {
        await addRequestStats(pool, deltas, summarize);
      } catch (err) {
        aggregator.restore(deltas);
        this.flushFailures += 1;
        this.log.warn({ reason: (err as Error).message, pending: aggregator.size }, 'cannot store request aggregates; keeping them for the next flush');
      }
    })().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async prune(): Promise<void> {
    if (!this.pool) return;
    try {
      const removed = await pruneRequestStats(this.pool, Date.now() - this.options.config.stats.statsRetentionMs);
      if (removed > 0) this.log.info({ removed }, 'old request aggregates pruned');
    } catch (err) {
      this.log.warn({ reason: (err as Error).message }, 'cannot prune request aggregates');
    }
  }

  stop(): Promise<void> {
    return this.lifecycle.stop();
  }
}

/** Binds a PULL and runs `consume` on it; at stop the socket is closed, then its loop awaited. */
async function bindPull(
  socket: zmq.Pull, endpoint: string, consume: (socket: zmq.Pull) => Promise<void>, defer: (name: string, run: () => unknown) => void,
): Promise<void> {
  let loop: Promise<void> | undefined;
  defer(`socket ${endpoint}`, async () => {
    closeQuietly(socket);
    await loop;
  });
  await socket.bind(endpoint);
  loop = consume(socket);
}

function withGrace(work: Promise<void>, graceMs: number): Promise<unknown> {
  return Promise.race([work, new Promise((resolve) => setTimeout(resolve, graceMs).unref())]);
}
