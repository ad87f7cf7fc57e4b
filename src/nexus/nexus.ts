/**
 * One nexus replica: control ROUTER, event PUB, heartbeat SUB, JSON API, leader election and the event relay.
 * Replicas hold no state that matters (PostgreSQL does), so any number can run side by side.
 */
import type pg from 'pg';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApi } from '../api/index.js';
import type { PierConfig } from '../config/index.js';
import { NodeLiveness } from '../core/liveness.js';
import { Lifecycle, type Service } from '../core/service.js';
import { createPool, migrate, upsertNexus, pruneRequests } from '../db/index.js';
import {
  acquireZap, closeQuietly, ControlServer, ProofVerifier, SocketFactory, StatsClient, type CurveSettings, type Keyring,
} from '../transport/index.js';
import { controlHandlers } from './control-handlers.js';
import { EventRelay } from './event-relay.js';
import { HeartbeatIntake } from './heartbeat-intake.js';
import { VerdictLoop } from './verdict.js';
import { LeaderElector } from './leader.js';
import { SchedulerLoop } from './scheduler-loop.js';
import { SessionsHub } from './sessions-hub.js';
import { addonKinds } from './addons/kinds.js';
import { AddonReaper, AddonService } from './addons/service.js';
import { HealthLoop } from './health-loop.js';
import { RouteIntegrity } from './route-integrity.js';

export interface NexusOptions {
  config: PierConfig;
  /** The PostgreSQL URL (config.db.url, or the embedded server's). */
  dbUrl: string;
  log: Logger;
  /** CURVE keys; when set, every socket is encrypted and clients must hold an allowed key. */
  curve?: CurveSettings;
  /** The keys allowed to connect, with their roles (with curve); this replica's own key is added as 'nexus'. */
  keyring?: Keyring;
}

/** Where a started nexus listens (ports resolved when binding to port 0 / `*`). */
export interface NexusEndpoints {
  control: string;
  events: string;
  heartbeats: string;
  api: string;
  /** One-off sessions ROUTER (runners connect). */
  sessions: string;
}

/** How often the leader retries removing add-ons left 'destroying' (a nexus killed midway, a server away). */
const ADDON_REAP_INTERVAL_MS = 5000;

export class Nexus implements Service {
  readonly id: string;
  endpoints: NexusEndpoints | undefined;
  control: ControlServer | undefined;
  heartbeats: HeartbeatIntake | undefined;
  relay: EventRelay | undefined;
  scheduler: SchedulerLoop | undefined;
  sessions: SessionsHub | undefined;
  /** The leader's remediation ladder and alerts (tests read its webhook counters). */
  health: HealthLoop | undefined;
  /** The leader's check of each balancer's route digest. */
  routeIntegrity: RouteIntegrity | undefined;
  /** Add-ons (the API's), and the leader's retry of those left 'destroying' (tests call its tick()). */
  addons: AddonService | undefined;
  addonReaper: AddonReaper | undefined;
  private readonly lifecycle: Lifecycle;
  private readonly log: Logger;
  private pool: pg.Pool | undefined;
  private leader: LeaderElector | undefined;
  private api: FastifyInstance | undefined;

  constructor(private readonly options: NexusOptions) {
    this.id = options.config.nexus.id;
    this.log = options.log.child({ component: 'nexus', nexusId: this.id });
    this.lifecycle = new Lifecycle(`nexus '${this.id}'`, this.log);
  }

  get isLeader(): boolean {
    return this.leader?.isLeader ?? false;
  }

  start(): Promise<void> {
    return this.lifecycle.start(async () => {
      const { config } = this.options;
      const { cluster, nexus } = config;
      const deadAfterMs = cluster.heartbeatIntervalMs * cluster.heartbeatMisses;
      const liveness = new NodeLiveness(deadAfterMs);
      const sockets = new SocketFactory({ maxMessageBytes: cluster.maxMessageBytes, curve: this.options.curve });
      const defer = this.lifecycle.defer.bind(this.lifecycle);
      const { curve } = this.options;
      const keyring = new Map(this.options.keyring ?? []);
      if (curve) {
        if (!keyring.has(curve.publicKey)) keyring.set(curve.publicKey, { role: 'nexus', name: this.id });
        // The ZAP handler must be bound before any CURVE server socket; it is released after they close.
        const release = await acquireZap(keyring, this.log);
        defer('zap', release);
      }
      const access = curve?.serverSecretKey ? { serverSecretKey: curve.serverSecretKey, keyring } : undefined;

      const pool = createPool({ url: this.options.dbUrl, max: config.db.poolMax, connectTimeoutMs: config.db.connectTimeoutMs, applicationName: `pier-${this.id}` }, this.log);
      this.pool = pool;
      defer('db pool', () => pool.end());
      await migrate(pool, this.log);

      const leader = new LeaderElector({ url: this.options.dbUrl, pollMs: Math.max(100, Math.floor(cluster.heartbeatIntervalMs)), log: this.log });
      this.leader = leader;
      await leader.start();
      defer('leader', () => leader.stop());

      const publisher = sockets.publisher('server', 'pier.events');
      defer('event socket', () => closeQuietly(publisher));
      await publisher.bind(nexus.eventsBind);
      const relay = new EventRelay({
        pool, url: this.options.dbUrl, publisher, nexusId: this.id, tickIntervalMs: nexus.tickIntervalMs, pollMs: nexus.eventPollMs,
        isLeader: () => leader.isLeader, log: this.log, onPublished: () => this.scheduler?.kick(),
      });
      this.relay = relay;
      await relay.start();
      defer('event relay', () => relay.stop());

      const heartbeatSocket = sockets.subscriber('server', 'pier.heartbeats');
      await heartbeatSocket.bind(nexus.heartbeatsBind);
      const intake = new HeartbeatIntake(heartbeatSocket, liveness, pool, Math.max(cluster.heartbeatIntervalMs, 250), cluster.maxMessageBytes, this.log,
        access ? new ProofVerifier(access.serverSecretKey, keyring) : undefined);
      this.heartbeats = intake;
      const routeIntegrity = new RouteIntegrity({ pool, liveness, isLeader: () => leader.isLeader, intervalMs: cluster.integrityIntervalMs, log: this.log });
      this.routeIntegrity = routeIntegrity;
      intake.onBeat = (beat) => routeIntegrity.onBeat(beat);
      routeIntegrity.start();
      defer('route integrity', () => routeIntegrity.stop());
      intake.start();
      defer('heartbeat intake', async () => {
        closeQuietly(heartbeatSocket);
        await intake.stop();
      });

      const statsClient = new StatsClient({ collectors: cluster.stats, sockets, timeoutMs: cluster.controlTimeoutMs, log: this.log });
      const verdicts = new VerdictLoop({ pool, stats: statsClient, isLeader: () => leader.isLeader, minRequests: nexus.verdictMinRequests, log: this.log });
      verdicts.start();
      defer('verdicts', () => verdicts.stop());

      const scheduler = new SchedulerLoop({
        pool, isLeader: () => leader.isLeader, liveness, intervalMs: nexus.schedulerIntervalMs,
        startTimeoutMs: nexus.instanceStartTimeoutMs, deployLockLeaseMs: nexus.deployLockLeaseMs, verdictWindowMs: nexus.verdictWindowMs, log: this.log,
        singletonLeaseMs: nexus.singletonLeaseMs,
      });
      this.scheduler = scheduler;
      scheduler.start();
      defer('scheduler', () => scheduler.stop());
      const health = new HealthLoop({
        pool, isLeader: () => leader.isLeader, lastSeen: intake.lastSeen, deadAfterMs, retentionMs: nexus.healthRetentionMs,
        ...(nexus.alertWebhookUrl ? { webhookUrl: nexus.alertWebhookUrl } : {}), webhookAllowPrivate: nexus.alertWebhookAllowPrivate, log: this.log,
      });
      this.health = health;
      health.start();
      defer('health', () => health.stop());

      const router = sockets.router('pier.control');
      await router.bind(nexus.controlBind);
      const handlers = controlHandlers({
        pool, nexusId: this.id, heartbeatIntervalMs: cluster.heartbeatIntervalMs, liveness, isLeader: () => leader.isLeader,
        onInstanceReport: () => scheduler.kick(), onHealthTurn: () => health.kick(), domains: [config.balancer.domain], singletonLeaseMs: nexus.singletonLeaseMs,
      });
      const control = new ControlServer(router, handlers, cluster.maxMessageBytes, this.log, access);
      this.control = control;
      control.start();
      defer('control socket', async () => {
        await control.drain(nexus.shutdownGraceMs);
        closeQuietly(router);
        await control.closed();
      });

      const sessionsRouter = sockets.router('pier.sessions');
      await sessionsRouter.bind(nexus.sessionsBind);
      const sessions = new SessionsHub({
        router: sessionsRouter, nexusId: this.id, pool, verifier: access ? new ProofVerifier(access.serverSecretKey, keyring) : undefined,
        deadAfterMs: Math.max(1500, deadAfterMs), maxMessageBytes: cluster.maxMessageBytes, log: this.log,
      });
      this.sessions = sessions;
      sessions.start();
      defer('sessions', () => sessions.close());

      const addons = new AddonService({ pool, kinds: addonKinds({ pool, platformDbUrl: this.options.dbUrl, config, log: this.log }), log: this.log });
      this.addons = addons;
      const addonReaper = new AddonReaper({ service: addons, isLeader: () => leader.isLeader, intervalMs: ADDON_REAP_INTERVAL_MS, log: this.log });
      this.addonReaper = addonReaper;
      addonReaper.start();
      defer('addon reaper', () => addonReaper.stop());

      const api = buildApi(
        {
          pool, nexusId: this.id, deadAfterMs, isLeader: () => leader.isLeader, publishedVersion: () => relay.published,
          appUrl: (app) => `http://${app}.${config.balancer.domain}${config.balancer.port === 80 ? '' : `:${config.balancer.port}`}/`,
          liveness,
          deployLock: { leaseMs: nexus.deployLockLeaseMs, waitMaxMs: nexus.deployLockWaitMaxMs },
          stats: statsClient,
          domains: [config.balancer.domain],
          webhookAllowPrivate: nexus.alertWebhookAllowPrivate,
          sessions, run: { timeoutMs: nexus.runTimeoutMs, maxTimeoutMs: nexus.runMaxTimeoutMs },
          addons,
        },
        { bodyLimitBytes: nexus.apiBodyLimitBytes, maxReleaseBytes: nexus.maxReleaseBytes, log: this.log },
      );
      this.api = api;
      await api.listen({ host: nexus.apiHost, port: nexus.apiPort });
      defer('api', () => api.close());

      const address = api.server.address();
      const apiPort = typeof address === 'object' && address ? address.port : nexus.apiPort;
      this.endpoints = {
        control: router.lastEndpoint ?? nexus.controlBind,
        events: publisher.lastEndpoint ?? nexus.eventsBind,
        heartbeats: heartbeatSocket.lastEndpoint ?? nexus.heartbeatsBind,
        sessions: sessionsRouter.lastEndpoint ?? nexus.sessionsBind,
        api: `http://${nexus.apiHost.includes(':') ? `[${nexus.apiHost}]` : nexus.apiHost}:${apiPort}`,
      };
      await this.announce();
      const announcer = setInterval(() => void this.announce(), Math.max(250, cluster.heartbeatIntervalMs));
      const pruner = setInterval(() => void pruneRequests(pool, nexus.requestRetentionMs).catch(() => undefined), 60_000);
      defer('timers', () => {
        clearInterval(announcer);
        clearInterval(pruner);
      });
      this.log.info({ ...this.endpoints, isLeader: leader.isLeader }, 'nexus ready');
    });
  }

  /** Records this replica (its endpoints and leader-lock session) in the nodes table; doubles as its heartbeat. */
  private async announce(): Promise<void> {
    if (!this.pool || !this.endpoints) return;
    try {
      await upsertNexus(this.pool, this.id, this.endpoints.control, { ...this.endpoints }, this.leader?.backendPid ?? null);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cannot record nexus status');
    }
  }

  stop(): Promise<void> {
    return this.lifecycle.stop(async () => {
      this.log.info('nexus stopping');
    });
  }
}
