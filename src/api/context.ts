/** What the API's routes need from the nexus that serves them. */
import type pg from 'pg';
import type { FastifyRequest } from 'fastify';
import { ValidationError } from '../core/errors.js';
import { NodeLiveness } from '../core/liveness.js';
import { authenticate, type DeployClaim, type Principal } from '../db/index.js';
import type { StatsClient } from '../transport/index.js';
import type { AddonView, OneOffSpec, ToRunnerMessage } from '../protocol/index.js';

/** The nexus's one-off sessions hub, as the API uses it (src/nexus/sessions-hub.ts). */
export interface SessionsPort {
  pickRunner(): string | undefined;
  launch(session: string, runnerId: string, spec: OneOffSpec, sink: {
    onStarted(): void; onOutput(stream: 1 | 2, data: Uint8Array): void; onInputCredit(bytes: number): void;
    onExit(exit: { code: number | null; signal: string | null; error?: string; isLost?: boolean }): void;
  } | undefined): void;
  send(session: string, message: Exclude<ToRunnerMessage, { type: 'session.start' | 'session.welcome' }>): void;
  detachClient(session: string): void;
  stop(runnerId: string, session: string): boolean;
}

/** The nexus's add-on framework, as the API uses it (src/nexus/addons/service.ts). */
export interface AddonsPort {
  list(principal: Principal, app: string): Promise<AddonView[]>;
  info(principal: Principal, app: string, name: string): Promise<AddonView>;
  create(principal: Principal, app: string, kind: string, mutation: AddonMutationPort): Promise<AddonView>;
  destroy(principal: Principal, app: string, name: string, mutation: AddonMutationPort): Promise<AddonView>;
  /** Removes add-ons left 'destroying' (after apps:destroy). */
  reap(): Promise<void>;
}

export interface AddonMutationPort {
  requestId?: string | undefined;
  claim?: DeployClaim;
  locked?: <T>(run: () => Promise<T>) => Promise<T>;
}

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
  /** Deploy locks the API takes: their lease, and the longest a request waits for one. */
  deployLock?: { leaseMs: number; waitMaxMs: number };
  /** The one liveness rule, with the heartbeats this replica received; without it, stored heartbeat times only. */
  liveness?: NodeLiveness;
  /** The platform's app domains (`<app>.<domain>`): owners may not claim names under them. @default ['localhost'] */
  domains?: readonly string[];
  /** nexus.alertWebhookAllowPrivate: owners' webhooks may point at private addresses too. @default false */
  webhookAllowPrivate?: boolean;
  /** The stats collectors (logs); undefined when none is configured. */
  stats?: StatsClient;
  /** One-off sessions (`pier run`); undefined when this nexus has no sessions socket. */
  sessions?: SessionsPort;
  /** One-offs' default and longest time limits. @default 1 h, 24 h */
  run?: { timeoutMs: number; maxTimeoutMs: number };
  /** Add-ons (`pier addons`); undefined when this nexus offers none. */
  addons?: AddonsPort;
}

const storedOnly = new WeakMap<ApiContext, NodeLiveness>();

/** The liveness rule the routes use: the nexus's own, else one that knows stored heartbeat times only. */
export function livenessOf(ctx: ApiContext): NodeLiveness {
  if (ctx.liveness) return ctx.liveness;
  let liveness = storedOnly.get(ctx);
  if (!liveness) storedOnly.set(ctx, (liveness = new NodeLiveness(ctx.deadAfterMs)));
  return liveness;
}

/** The request's bearer token, if it has one. */
export function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  const match = typeof header === 'string' ? /^Bearer\s+(\S+)$/i.exec(header) : null;
  return match?.[1];
}

/**
 * The caller: the principal the auth hook found before the body was read (every /v1 route has one), else the
 * bearer token looked up now. Tokens are checked against PostgreSQL on every request and never cached, so a
 * rotated token is refused by every replica at once.
 */
export async function principalOf(ctx: ApiContext, request: FastifyRequest): Promise<Principal> {
  return request.principal ?? authenticate(ctx.pool, bearerToken(request));
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

/**
 * How this request claims the app's deploy lock: with `Pier-Lock-Token: N` it deploys under the caller's own lock
 * (checked, PIER_FENCED when stale); otherwise the API takes the lock for the deploy.
 */
export function deployClaim(ctx: ApiContext, request: FastifyRequest, principal: Principal): DeployClaim {
  const header = request.headers['pier-lock-token'];
  const claim: DeployClaim = { holder: principal.name, leaseMs: ctx.deployLock?.leaseMs ?? 60_000 };
  if (header === undefined) return claim;
  if (typeof header !== 'string' || !/^[1-9]\d{0,15}$/.test(header)) throw new ValidationError(`Pier-Lock-Token must be a lock token (a positive whole number), not '${String(header).slice(0, 40)}'`);
  return { ...claim, fenceToken: Number(header) };
}

/**
 * Runs a deploy mutation; while another deploy holds the app's lock (PIER_LOCKED) it retries for up to
 * `Pier-Lock-Wait: SECONDS` (capped by deployLockWaitMaxMs; default 0: answer 423 at once, naming the holder).
 */
export async function withDeployLock<T>(ctx: ApiContext, request: FastifyRequest, run: () => Promise<T>): Promise<T> {
  const header = request.headers['pier-lock-wait'];
  let waitMs = 0;
  if (header !== undefined) {
    if (typeof header !== 'string' || !/^\d{1,4}$/.test(header)) throw new ValidationError(`Pier-Lock-Wait must be whole seconds, not '${String(header).slice(0, 40)}'`);
    waitMs = Math.min(Number(header) * 1000, ctx.deployLock?.waitMaxMs ?? 25_000);
  }
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      return await run();
    } catch (err) {
      if ((err as { code?: string }).code !== 'PIER_LOCKED' || Date.now() >= deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, Math.min(250, Math.max(0, deadline - Date.now()))));
    }
  }
}
