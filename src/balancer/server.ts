/**
 * The public HTTP listener and everything behind it (proxy, upgrade tunnels, upstream pools) over a route table
 * that someone else keeps current — the Balancer from nexus events, tests and the benchmark by hand.
 */
import { createServer, type Server } from 'node:http';
import { createServer as createListener, type AddressInfo, type Server as Listener } from 'node:net';
import type { Logger } from 'pino';
import type { PierConfig } from '../config/index.js';
import { sleep } from '../core/wait.js';
import { HttpProxy, type AccessRecord } from './proxy.js';
import type { RouteTable } from './route-table.js';
import { UpgradeProxy } from './upgrades.js';
import { UpstreamPools } from './upstreams.js';
import { StaticCache } from './static-cache.js';
import { StaticLane } from './static-lane.js';
import { trustedProxies } from './trusted-proxies.js';

/** The proxy settings of the `balancer` config section. */
export type ProxySettings = Pick<
  PierConfig['balancer'],
  | 'connectTimeoutMs' | 'responseTimeoutMs' | 'bodyTimeoutMs' | 'upstreamKeepAliveMs' | 'maxConnectionsPerBackend'
  | 'backendCooldownMs' | 'clientKeepAliveMs'
> & Partial<Pick<PierConfig['balancer'], 'staticCacheBytes' | 'trustedProxies'>>;

export interface ProxyServerOptions {
  table: RouteTable;
  settings: ProxySettings;
  log: Logger;
  /** Called once per finished request (and per closed tunnel); must not block. */
  onAccess?: (record: AccessRecord) => void;
}

/** The public HTTP server of a balancer: listen, drain, close. */
export class ProxyServer {
  readonly upstreams: UpstreamPools;
  readonly proxy: HttpProxy;
  readonly upgrades: UpgradeProxy;
  /** Node's HTTP server: every request the static lane does not answer. */
  readonly server: Server;
  /** Answers static cache hits straight from the socket (static-lane.ts); only with the static cache on. */
  readonly lane: StaticLane | undefined;
  /** What listens: the lane's plain TCP listener, or the HTTP server itself without a lane. */
  private readonly listener: Listener;
  private readonly log: Logger;

  constructor(private readonly options: ProxyServerOptions) {
    const { table, settings, onAccess } = options;
    this.log = options.log.child({ component: 'balancer.server' });
    this.upstreams = new UpstreamPools({
      connectTimeoutMs: settings.connectTimeoutMs, responseTimeoutMs: settings.responseTimeoutMs, bodyTimeoutMs: settings.bodyTimeoutMs,
      keepAliveMs: settings.upstreamKeepAliveMs, maxConnections: settings.maxConnectionsPerBackend, cooldownMs: settings.backendCooldownMs,
      balancers: () => table.balancerCount, log: options.log,
    });
    const staticCache = (settings.staticCacheBytes ?? 0) > 0 ? new StaticCache({ maxBytes: settings.staticCacheBytes! }) : undefined;
    const isTrusted = trustedProxies(settings.trustedProxies ?? []);
    this.proxy = new HttpProxy({ table, upstreams: this.upstreams, log: options.log, onAccess, isTrusted, ...(staticCache ? { staticCache } : {}) });
    this.upgrades = new UpgradeProxy({
      table, upstreams: this.upstreams, connectTimeoutMs: settings.connectTimeoutMs, responseTimeoutMs: settings.responseTimeoutMs,
      log: options.log, onAccess, isTrusted,
    });
    this.server = createServer({ keepAliveTimeout: settings.clientKeepAliveMs }, this.proxy.handle);
    this.server.on('upgrade', this.upgrades.handle);
    if (staticCache) {
      this.lane = new StaticLane(this.proxy, this.server, settings.clientKeepAliveMs);
      // noDelay as Node's HTTP server sets it: an answer goes out at once, not after the client's delayed ACK.
      this.listener = createListener({ noDelay: true }, this.lane.onConnection);
    } else this.listener = this.server;
  }

  /** Listens on host:port (0 picks a free port) and resolves with the bound port. */
  listen(host: string, port: number): Promise<number> {
    const server = this.listener;
    return new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve((server.address() as AddressInfo).port);
      });
    });
  }

  /** Stops accepting connections, closes idle ones, and waits up to `graceMs` for in-flight requests. */
  async drain(graceMs: number): Promise<void> {
    if (this.listener !== this.server) this.listener.close();
    this.server.close();
    this.server.closeIdleConnections();
    this.lane?.endAll();
    const graceOver = new AbortController();
    await Promise.race([this.proxy.idle(), sleep(graceMs, graceOver.signal)]);
    graceOver.abort();
  }

  /** Closes everything that is left: client connections, tunnels, upstream connections. */
  async close(): Promise<void> {
    if (this.proxy.inflight > 0) this.log.warn({ inflight: this.proxy.inflight }, 'requests still running after the grace period; closing them');
    this.upgrades.destroyAll();
    this.lane?.destroyAll();
    this.server.closeAllConnections();
    const closed = new Promise<void>((resolve) => {
      if (!this.listener.listening) return resolve();
      this.listener.close(() => resolve());
    });
    await Promise.all([closed, this.upstreams.destroy()]);
  }
}
