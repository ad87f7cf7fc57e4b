/**
 * Health checks, probe results, alerts and remediation: the check an app sets (`/v1/apps/:app/checks`), what
 * runners and balancers report (`health.report`), and what the API answers (`/v1/apps/:app/health`, `/v1/alerts`).
 */
import { Type, type Static } from '@sinclair/typebox';
import { ValidationError } from '../core/errors.js';
import { AppName, Hostname, NodeId, Timestamp } from './common.js';
import { formatMs } from './units.js';

const strict = { additionalProperties: false } as const;

/** Bounds of a check (Kubernetes readiness probes and Dokku CHECKS are the references). */
export const CHECK_BOUNDS = {
  /** Between two probes of one target, ms. */
  intervalMs: { minimum: 1000, maximum: 3_600_000 },
  /** Longest wait for one answer, ms (also below the interval). */
  timeoutMs: { minimum: 100, maximum: 60_000 },
  /** An expected HTTP status. */
  status: { minimum: 100, maximum: 599 },
  /** Longest path, characters. */
  pathMaxLength: 1024,
} as const;

/** A request path: starts with '/', printable ASCII without spaces (what goes on an HTTP request line). */
export const CHECK_PATH_PATTERN = '^/[\\x21-\\x7e]*$';

/** An app's check. `status` null: any status below 500 passes. */
export const Check = Type.Object({
  path: Type.String({ pattern: CHECK_PATH_PATTERN, maxLength: CHECK_BOUNDS.pathMaxLength }),
  status: Type.Union([Type.Integer(CHECK_BOUNDS.status), Type.Null()]),
  intervalMs: Type.Integer(CHECK_BOUNDS.intervalMs),
  timeoutMs: Type.Integer(CHECK_BOUNDS.timeoutMs),
}, strict);
export type Check = Static<typeof Check>;

/** The check of an app without one of its own. */
export const DEFAULT_CHECK: Check = Object.freeze({ path: '/', status: null, intervalMs: 10_000, timeoutMs: 2000 });

/** One app's check as carried in snapshots and `checks.changed` events (runners and balancers probe with it). */
export const AppCheck = Type.Object({ app: AppName, check: Check }, strict);
export type AppCheck = Static<typeof AppCheck>;

/** PUT /v1/apps/:app/checks. Left out: status any < 500, interval 10 s, timeout 2 s. */
export const PutCheckBody = Type.Object({
  path: Type.String({ maxLength: CHECK_BOUNDS.pathMaxLength + 1 }),
  status: Type.Optional(Type.Union([Type.Integer(), Type.Null()])),
  intervalMs: Type.Optional(Type.Integer()),
  timeoutMs: Type.Optional(Type.Integer()),
}, strict);
export type PutCheckBody = Static<typeof PutCheckBody>;

export const CheckReply = Type.Object({ app: AppName, check: Check, isDefault: Type.Boolean() }, strict);
export type CheckReply = Static<typeof CheckReply>;

/** One probe's result as a runner (target: an instance) or a balancer (target: a hostname) reports it. */
export const HealthResult = Type.Object({
  kind: Type.Union([Type.Literal('instance'), Type.Literal('hostname')]),
  /** The instance id, or the hostname probed through the balancer. */
  target: Type.String({ minLength: 1, maxLength: 253 }),
  app: AppName,
  ok: Type.Boolean(),
  /** HTTP status answered; null when nothing answered. */
  status: Type.Union([Type.Integer({ minimum: 0, maximum: 999 }), Type.Null()]),
  latencyMs: Type.Union([Type.Number({ minimum: 0, maximum: 3_600_000 }), Type.Null()]),
  /** Why it failed (one line); null when ok. */
  error: Type.Union([Type.String({ maxLength: 500 }), Type.Null()]),
  at: Timestamp,
}, strict);
export type HealthResult = Static<typeof HealthResult>;

/** Largest batch in one `health.report`. */
export const MAX_HEALTH_BATCH = 500;

export const InstanceHealth = Type.Object({
  id: Type.String(),
  name: Type.String(),
  processType: Type.String(),
  release: Type.Integer(),
  runner: NodeId,
  state: Type.String(),
  /** Null while no result is in yet. */
  healthy: Type.Union([Type.Boolean(), Type.Null()]),
  status: Type.Union([Type.Integer(), Type.Null()]),
  latencyMs: Type.Union([Type.Number(), Type.Null()]),
  at: Type.Union([Timestamp, Type.Null()]),
  reason: Type.Union([Type.String(), Type.Null()]),
  /** Balancers do not route it (the remediation ladder took it out). */
  isOutOfRotation: Type.Boolean(),
  /** Remediation rung it is on (0: none). */
  rung: Type.Integer(),
}, strict);

export const HostnameHealth = Type.Object({
  host: Hostname, from: NodeId, healthy: Type.Boolean(),
  status: Type.Union([Type.Integer(), Type.Null()]), latencyMs: Type.Union([Type.Number(), Type.Null()]), at: Timestamp,
  reason: Type.Union([Type.String(), Type.Null()]),
}, strict);

export const HealthRow = Type.Object({
  target: Type.String(), from: NodeId, ok: Type.Boolean(), status: Type.Union([Type.Integer(), Type.Null()]),
  latencyMs: Type.Union([Type.Number(), Type.Null()]), error: Type.Union([Type.String(), Type.Null()]), at: Timestamp,
}, strict);

export const HealthReply = Type.Object({
  app: AppName,
  check: Check,
  instances: Type.Array(InstanceHealth),
  hostnames: Type.Array(HostnameHealth),
  /** Newest raw results first (at most 100). */
  results: Type.Array(HealthRow),
}, strict);
export type HealthReply = Static<typeof HealthReply>;

export const Alert = Type.Object({
  id: Type.Integer(),
  app: AppName,
  instance: Type.Union([Type.String(), Type.Null()]),
  reason: Type.String(),
  since: Timestamp,
  clearedAt: Type.Union([Timestamp, Type.Null()]),
}, strict);
export type Alert = Static<typeof Alert>;

export const AlertsQuery = Type.Object({ app: Type.Optional(Type.String({ maxLength: 64 })) }, strict);
export type AlertsQuery = Static<typeof AlertsQuery>;
export const AlertsReply = Type.Object({ alerts: Type.Array(Alert) }, strict);
export type AlertsReply = Static<typeof AlertsReply>;

/** PUT /v1/apps/:app/alerts/webhook: where the app's alerts are POSTed as JSON (null: none). */
export const WebhookBody = Type.Object({ url: Type.Union([Type.String({ maxLength: 2048 }), Type.Null()]) }, strict);
export type WebhookBody = Static<typeof WebhookBody>;

/** The remediation ladder's rungs, in order (see src/nexus/remediation.ts). */
export const RUNGS = ['out-of-rotation', 'rewrite', 'restart', 'move'] as const;
export type Rung = (typeof RUNGS)[number];

// formatMs: units.ts (no TypeBox, so the CLI loads fast).
export { formatMs } from './units.js';

/**
 * The check a PUT body asks for, defaults filled in, or a ValidationError naming what is wrong and the bound.
 * (The schema only types the body: these rules give one readable line each.)
 */
export function checkFromBody(body: PutCheckBody): Check {
  const { path } = body;
  if (!path.startsWith('/')) throw new ValidationError(`check path must start with '/', e.g. /health (got '${printable(path)}')`);
  if (path.length > CHECK_BOUNDS.pathMaxLength) throw new ValidationError(`check path must be at most ${CHECK_BOUNDS.pathMaxLength} characters (got ${path.length})`);
  if (!new RegExp(CHECK_PATH_PATTERN).test(path)) throw new ValidationError('check path must be printable ASCII with no spaces or control characters (escape others as %XX)');
  const status = body.status ?? null;
  if (status !== null && (status < CHECK_BOUNDS.status.minimum || status > CHECK_BOUNDS.status.maximum)) {
    throw new ValidationError(`check status must be an HTTP status 100..599 (got ${status})`);
  }
  const intervalMs = body.intervalMs ?? DEFAULT_CHECK.intervalMs;
  const { intervalMs: ib, timeoutMs: tb } = CHECK_BOUNDS;
  if (intervalMs < ib.minimum || intervalMs > ib.maximum) throw new ValidationError(`check interval must be 1s..1h (got ${formatMs(intervalMs)})`);
  const timeoutMs = body.timeoutMs ?? Math.min(DEFAULT_CHECK.timeoutMs, Math.floor(intervalMs / 2));
  if (timeoutMs < tb.minimum || timeoutMs > tb.maximum) throw new ValidationError(`check timeout must be 100ms..60s (got ${formatMs(timeoutMs)})`);
  if (timeoutMs >= intervalMs) throw new ValidationError(`check timeout (${formatMs(timeoutMs)}) must be shorter than its interval (${formatMs(intervalMs)})`);
  return { path, status, intervalMs, timeoutMs };
}

function printable(text: string): string {
  return text.slice(0, 40).replace(/[^\x20-\x7e]/g, '?');
}

/** Whether an answered status passes the check. */
export function statusPasses(check: Check, status: number): boolean {
  return check.status === null ? status < 500 : status === check.status;
}

/** A webhook address: an absolute http(s) URL without credentials. @throws ValidationError naming what is wrong */
export function checkWebhookUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ValidationError(`webhook '${printable(text)}' is not a URL; give one like https://hooks.example.com/pier`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ValidationError(`webhook must be an http:// or https:// URL (got ${printable(url.protocol)})`);
  if (url.username || url.password) throw new ValidationError('webhook URL must not carry a user or password; put a secret in its path or query instead');
  return url.toString();
}
