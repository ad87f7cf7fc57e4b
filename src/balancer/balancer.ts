/**
 * The balancer daemon: follows the cluster state from every nexus into its route table (events applied in
 * place, never a reload), serves public HTTP on it, heartbeats and registers as a 'balancer' node, and pushes
 * an access record per request to the stats collectors.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { PierConfig } from '../config/index.js';
import { Lifecycle, type Service } from '../core/service.js';
import { routeDigest } from '../protocol/index.js';
import { ControlClient, EventFollower, HeartbeatPublisher, SocketFactory, type CurveSettings } from '../transport/index.js';
import { AccessLog } from './access-log.js';
import { RouteTable } from './route-table.js';
import { loadHttpClient } from './upstreams.js';
import { ProxyServer } from './server.js';
import { HostProber } from './host-prober.js';
import type { Check } from '../protocol/index.js';

export interface BalancerOptions {
  config: PierConfig;
  log: Logger;
  /** CURVE keys for every ZeroMQ socket (client side); omit when `security.curve` is off. */
  curve?: CurveSettings;
}

/** The balancer daemon as a Service (start once, stop idempotently, drain in-flight requests first). */
export class Balancer implements Service {
  readonly id: string;
  readonly table: RouteTable;
  /** The bound HTTP port (useful when configured as 0); set once started. */
  port: number | undefined;
  /** The HTTP side (proxy, tunnels, upstream pools); set once started. */
  proxyServer: ProxyServer | undefined;
  accessLog: AccessLog | undefined;
  follower: EventFollower | undefined;
  /** Route tables reloaded because the leader's integrity check found drift. */
  repairs = 0;
  private digest: { revision: number; routeDigest: string; routeVersion: number } | undefined;
  private readonly lifecycle: Lifecycle;
  private readonly log: Logger;

  constructor(private readonly options: BalancerOptions) {
    const { balancer } = options.config;
    this.id = balancer.id;
    this.log = options.log.child({ component: 'balancer', balancerId: this.id });
    this.lifecycle = new Lifecycle(`balancer '${this.id}'`, this.log);
    this.table = new RouteTable({ domain: balancer.domain });
  }

  /** `http://host:port` of the public listener, once started. */
  get url(): string | undefined {
    if (this.port === undefined) return undefined;
    const host = this.options.config.balancer.host;
    const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
    return `http://${shown}:${this.port}`;
  }

  /** The digest of the table served now and the version it reflects (recomputed only when the table changed). */
  private routeDigest(): { routeDigest: string; routeVersion: number } | Record<string, never> {
    const { table } = this;
    if (table.version < 0) return {};
    if (this.digest?.revision !== table.revision) {
      this.digest = { revision: table.revision, routeDigest: routeDigest(table.routes()), routeVersion: table.version };
    }
    return { routeDigest: this.digest.routeDigest, routeVersion: this.digest.routeVersion };
  }

  start(): Promise<void> {
    return this.lifecycle.start(async () => {
      const { config } = this.options;
      const { cluster, balancer } = config;
      const defer = this.lifecycle.defer.bind(this.lifecycle);
      const sockets = new SocketFactory({ maxMessageBytes: cluster.maxMessageBytes, curve: this.options.curve });
      await loadHttpClient(); // before a drop of root, while node_modules is readable

      const control = new ControlClient({ endpoints: cluster.nexus.map((n) => n.control), timeoutMs: cluster.controlTimeoutMs, sockets, log: this.log });
      defer('control client', () => control.close());

      const accessLog = new AccessLog({
        endpoints: cluster.stats.map((s) => s.intake), sockets, balancerId: this.id, maxQueue: balancer.accessQueueMax, log: this.log,
      });
      this.accessLog = accessLog;
      accessLog.start();
      defer('access log', () => accessLog.stop());

      const table = this.table;
      // Hostname checks through this balancer's own listener (set once it listens).
      const probeIds = `pier-check-${randomBytes(12).toString('hex')}-`;
      const hostProber = new HostProber({
        balancerId: this.id, control, requestIdPrefix: probeIds, targets: () => table.probeTargets(), log: this.log,
        listener: () => (this.port === undefined ? undefined : { host: new URL(this.url!).hostname.replace(/^\[|\]$/g, ''), port: this.port }),
      });
      const follower = new EventFollower({
        eventEndpoints: cluster.nexus.map((n) => n.events), control, sockets, log: this.log,
        onSnapshot: (snapshot) => {
          table.load(snapshot);
          hostProber.loadChecks(snapshot.checks);
          this.proxyServer?.upstreams.retain(table.addresses());
          this.log.info({ version: snapshot.version, apps: table.size }, 'routes loaded');
        },
        onEvent: (event) => {
          if (event.type === 'checks.changed' && event.app) hostProber.setCheck(event.app, (event.data.check ?? null) as Check | null);
          if (event.type === 'routes.resync' && event.data.nodeId === this.id) {
            // The leader's integrity check found this table differs from the state: reload it from a snapshot.
            this.repairs += 1;
            this.log.warn({ version: event.version, repairs: this.repairs }, 'route table differs from the state; reloading it');
            this.follower?.requestResync();
          }
          if (!table.apply(event)) return;
          if (event.type === 'instance.removed' || event.type === 'instance.released' || event.type === 'instance.changed' || event.type === 'app.destroyed' || event.type === 'release.live') {
            this.proxyServer?.upstreams.retain(table.addresses());
          }
          this.log.debug({ version: event.version, type: event.type, app: event.app }, 'routes updated');
        },
      });
      this.follower = follower;
      defer('event follower', () => follower.stop());
      await follower.start();
      // Held backends get HELD_MAX_MS at most (route-table.ts), even when no event says their vassal stopped.
      const heldTimer = setInterval(() => {
        if (table.expireHeld()) this.proxyServer?.upstreams.retain(table.addresses());
      }, 1000);
      heldTimer.unref();
      defer('held backends', async () => clearInterval(heldTimer));

      const proxyServer = new ProxyServer({ table, settings: balancer, log: this.log, onAccess: (record) => {
        if (!record.requestId.startsWith(probeIds)) accessLog.record(record); // its own hostname checks are not traffic
      } });
      this.proxyServer = proxyServer;
      this.port = await proxyServer.listen(balancer.host, balancer.port);
      defer('http server', () => proxyServer.close());

      const heartbeat = new HeartbeatPublisher({
        nodeId: this.id, kind: 'balancer', endpoints: cluster.nexus.map((n) => n.heartbeats), intervalMs: cluster.heartbeatIntervalMs, sockets,
        sample: () => ({ ...this.routeDigest(), repairs: this.repairs }),
      });
      heartbeat.start();
      defer('heartbeat', () => heartbeat.stop());
      hostProber.start();
      defer('hostname checks', async () => hostProber.stop());

      await control.call('node.register', {
        nodeId: this.id, kind: 'balancer', address: new URL(this.url!).host, info: { host: balancer.host, port: this.port, domain: balancer.domain },
      });
      this.log.info({ url: this.url, version: follower.version, apps: table.size }, 'balancer ready');
    });
  }

  /**
   * Stops accepting connections and lets in-flight requests finish for up to `shutdownGraceMs`; the cleanup
   * steps then force-close what is left (client connections, tunnels, upstream pools, sockets).
   */
  stop(): Promise<void> {
    return this.lifecycle.stop(async () => {
      this.log.info({ inflight: this.proxyServer?.proxy.inflight ?? 0 }, 'balancer stopping');
      await this.proxyServer?.drain(this.options.config.balancer.shutdownGraceMs);
    });
  }
}
