/**
 * Keep-alive connection pools to instances (one undici Pool per `host:port`) and the short cool-down of an
 * instance that refused a connection, so the next requests go to the others instead of paying a retry each.
 */
import { createServer } from 'node:net';
import { Pool } from 'undici';
import type { Logger } from 'pino';
import type { Backend } from './route-table.js';

export interface UpstreamOptions {
  /** Time to open a connection. */
  connectTimeoutMs: number;
  /** Time to receive the response headers once the request is sent. */
  responseTimeoutMs: number;
  /** Longest silence between two response body chunks. */
  bodyTimeoutMs: number;
  /** Idle keep-alive connections are closed after this long (or the instance's `Keep-Alive: timeout` hint, if lower). */
  keepAliveMs: number;
  /** Most connections per instance. */
  maxConnections: number;
  /** How long an instance that refused a connection is avoided. */
  cooldownMs: number;
  /** How many balancers share each instance's threads (RouteTable.balancerCount). @default 1 */
  balancers?: () => number;
  log: Logger;
}

/**
 * Connections kept to one instance. A uWSGI thread serves one kept-alive connection until it closes, so balancers
 * holding as many connections as the instance has threads leave every further connection (a burst past that, the
 * runner's health probe, another balancer's) waiting for uWSGI's 4 s socket time-out. Each of `balancers` keeps
 * its share of the instance's capacity (processes x threads, as its runner reports) less one, so one thread stays
 * free; requests past it queue here. At least one each: an instance of capacity 1 gets one connection, closed
 * after each response (proxy.ts), so its thread is free between.
 */
export function connectionsFor(capacity: number | undefined, maxConnections: number, balancers = 1): number {
  if (capacity === undefined) return maxConnections;
  return Math.max(1, Math.min(maxConnections, Math.floor((capacity - 1) / Math.max(1, balancers))));
}

/** One keep-alive pool per instance address, created on first use and retired when the instance leaves. */
export class UpstreamPools {
  private readonly pools = new Map<string, { pool: Pool; connections: number }>();
  private readonly coolingUntil = new Map<string, number>();
  private readonly log: Logger;

  constructor(private readonly options: UpstreamOptions) {
    this.log = options.log.child({ component: 'balancer.upstreams' });
  }

  /** The pool for a backend, created on first use (and again when the instance at that address serves a different number at once). */
  pool(backend: Backend): Pool {
    const connections = connectionsFor(backend.capacity, this.options.maxConnections, this.options.balancers?.() ?? 1);
    const known = this.pools.get(backend.address);
    if (known && known.connections === connections) return known.pool;
    if (known) this.retire(backend.address, known.pool);
    const { options } = this;
    const pool = new Pool(`http://${backend.address}`, {
      connections,
      pipelining: 1,
      connectTimeout: options.connectTimeoutMs,
      headersTimeout: options.responseTimeoutMs,
      bodyTimeout: options.bodyTimeoutMs,
      keepAliveTimeout: options.keepAliveMs,
      keepAliveMaxTimeout: options.keepAliveMs,
      // A body that does not match its Content-Length fails the request instead of reaching the app malformed.
      strictContentLength: true,
    });
    this.pools.set(backend.address, { pool, connections });
    return pool;
  }

  /** Avoid this backend for a while (it refused or timed out a connection). */
  coolDown(backend: Backend, now = Date.now()): void {
    if (this.options.cooldownMs > 0) this.coolingUntil.set(backend.address, now + this.options.cooldownMs);
  }

  /** False while the backend cools down after a connection failure. */
  readonly isUsable = (backend: Backend): boolean => {
    if (this.coolingUntil.size === 0) return true;
    const until = this.coolingUntil.get(backend.address);
    if (until === undefined) return true;
    if (until > Date.now()) return false;
    this.coolingUntil.delete(backend.address);
    return true;
  };

  /** Closes (gracefully) the pools of instances no longer routed to. */
  retain(addresses: ReadonlySet<string>): void {
    for (const [address, { pool }] of this.pools) {
      if (addresses.has(address)) continue;
      this.coolingUntil.delete(address);
      this.retire(address, pool);
    }
  }

  /** Requests still running on it finish; then its sockets close. A failure here changes nothing for clients. */
  private retire(address: string, pool: Pool): void {
    this.pools.delete(address);
    pool.close().catch((err: Error) => this.log.debug({ err: err.message, backend: address }, 'pool close failed'));
  }

  /** Open pools (one per instance ever routed to and not yet retired). */
  get size(): number {
    return this.pools.size;
  }

  /** Waits for running requests, then closes every connection. */
  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.allSettled(pools.map(({ pool }) => pool.close()));
  }

  /** Aborts everything still running and closes every connection at once. */
  async destroy(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.allSettled(pools.map(({ pool }) => pool.destroy()));
  }
}

/**
 * Makes undici load and compile its HTTP parser now: it does so at its first connection, reading files under
 * node_modules, which a balancer that has dropped root (security.user) may not be able to read (a checkout in
 * /root). One request to a throwaway loopback listener.
 */
export async function loadHttpClient(): Promise<void> {
  const server = createServer((socket) => {
    socket.once('data', () => socket.end('HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n'));
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 1 });
  try {
    const res = await pool.request({ path: '/', method: 'GET' });
    await res.body.dump();
  } finally {
    await pool.close();
    await new Promise((resolve) => server.close(resolve));
  }
}
