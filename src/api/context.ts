/** What the API's routes need from the nexus that serves them. */
import type pg from 'pg';
import type { FastifyRequest } from 'fastify';
import { authenticate, type Principal } from '../db/index.js';
import type { StatsClient } from '../transport/index.js';

export interface ApiContext {
  pool: pg.Pool;
  nexusId: string;
  /** A node is dead after this long without a heartbeat. */
  deadAfterMs: number;
  isLeader: () => boolean;
  /** Version of the last event this replica published. */
  publishedVersion: () => number;
  /** The public URL an app answers at through the balancer. */
  appUrl: (app: string) => string;
  /** Node id → ms of the newest heartbeat this replica received (fresher than the stored time). */
  lastSeen?: ReadonlyMap<string, number>;
  /** The stats collectors (logs); undefined when none is configured. */
  stats?: StatsClient;
}

/** Authenticates the request's bearer token. */
export function principalOf(ctx: ApiContext, request: FastifyRequest): Promise<Principal> {
  const header = request.headers.authorization;
  const match = typeof header === 'string' ? /^Bearer\s+(\S+)$/i.exec(header) : null;
  return authenticate(ctx.pool, match?.[1]);
}

/**
 * The Idempotency-Key header, when the caller sent one: a retried mutation with it is applied once. Keys are
 * scoped to the owner and the route, so one owner's key can never return another's answer.
 */
export function idempotencyKey(request: FastifyRequest, principal: Principal): string | undefined {
  const key = request.headers['idempotency-key'];
  if (typeof key !== 'string' || key.length === 0 || key.length > 128) return undefined;
  return `api:${principal.ownerId}:${request.method}:${request.url.split('?')[0]}:${key}`;
}
