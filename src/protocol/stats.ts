/**
 * The stats conversations: what every node PUSHes to the collectors (logs, access records), the live lines they
 * PUBlish, the query requests they answer on their ROUTER (same envelope as the control protocol), and the
 * HTTP shapes of `/v1/apps/:app/logs` and `/v1/apps/:app/stats`.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { ProtocolError } from '../core/errors.js';
import { AppName, NodeId, RequestId, Timestamp } from './common.js';
import { check, decodeEnvelope, unpackFrame } from './codec.js';

/** Where a log line came from: 'app' (stdout/stderr), 'uwsgi' (request log), 'router' (balancer), 'pier' (platform). */
export const LogSource = Type.Union([Type.Literal('app'), Type.Literal('uwsgi'), Type.Literal('router'), Type.Literal('pier')]);
export type LogSource = Static<typeof LogSource>;

/** Longest log line kept, in characters; longer ones are cut. */
export const MAX_LOG_LINE_CHARS = 16 * 1024;

/** One line of an app's log: its own output, uWSGI's, or the platform's (deploys). */
export const LogMessage = Type.Object({
  v: Type.Literal(1),
  type: Type.Literal('log'),
  app: AppName,
  source: LogSource,
  /** Instance or node that produced it. */
  origin: Type.String({ maxLength: 128 }),
  line: Type.String({ maxLength: MAX_LOG_LINE_CHARS }),
  at: Timestamp,
}, { additionalProperties: false });
export type LogMessage = Static<typeof LogMessage>;

/** One public request as the balancer saw it. */
export const AccessMessage = Type.Object({
  v: Type.Literal(1),
  type: Type.Literal('access'),
  /** Null when the Host matched no app (404). */
  app: Type.Union([AppName, Type.Null()]),
  host: Type.String({ maxLength: 255 }),
  method: Type.String({ maxLength: 16 }),
  path: Type.String({ maxLength: 2048 }),
  status: Type.Integer({ minimum: 100, maximum: 599 }),
  bytes: Type.Integer({ minimum: 0 }),
  durationMs: Type.Number({ minimum: 0 }),
  /** host:port of the instance that answered, or null. */
  backend: Type.Union([Type.String({ maxLength: 300 }), Type.Null()]),
  /** Release version of the instance that answered (the deploy verdict compares releases), or null. */
  release: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()])),
  requestId: Type.String({ maxLength: 200 }),
  balancerId: NodeId,
  at: Timestamp,
}, { additionalProperties: false });
export type AccessMessage = Static<typeof AccessMessage>;

export const StatsIntakeMessage = Type.Union([LogMessage, AccessMessage]);
export type StatsIntakeMessage = LogMessage | AccessMessage;

/** Decodes one intake frame (LogMessage or AccessMessage). @throws ProtocolError naming what is wrong */
export function decodeIntake(frame: Uint8Array, maxBytes?: number): StatsIntakeMessage {
  const value = unpackFrame(frame, maxBytes) as { type?: unknown } | null;
  const type = typeof value === 'object' && value !== null ? value.type : undefined;
  if (type === 'log') return check(LogMessage, value, "'log' message");
  if (type === 'access') return check(AccessMessage, value, "'access' message");
  throw new ProtocolError(`unknown intake message type ${typeof type === 'string' ? `'${type.slice(0, 64)}'` : 'missing'}`, { code: 'PIER_UNKNOWN_TYPE' });
}

/** Live tail PUB topic of an app. SUB filters by prefix (`log.web` also matches `log.web-2`): compare the topic frame exactly. */
export function tailTopic(app: string): string {
  return `log.${app}`;
}

/** What a collector publishes after storing lines: [topic `log.<app>`, this message]. Lines are formatted as stored. */
export const LogLines = Type.Object({
  v: Type.Literal(1),
  type: Type.Literal('log.lines'),
  app: AppName,
  lines: Type.Array(Type.String()),
}, { additionalProperties: false });
export type LogLines = Static<typeof LogLines>;

/** Most lines one `logs.tail` (and the API) returns. */
export const MAX_TAIL_LINES = 10_000;

/** One app-minute of request aggregates. Latencies are in ms (null when the minute had no requests). */
export const StatsRow = Type.Object({
  /** Start of the minute, ms since the epoch. */
  minute: Timestamp,
  requests: Type.Integer({ minimum: 0 }),
  s2xx: Type.Integer({ minimum: 0 }),
  s3xx: Type.Integer({ minimum: 0 }),
  s4xx: Type.Integer({ minimum: 0 }),
  s5xx: Type.Integer({ minimum: 0 }),
  bytes: Type.Integer({ minimum: 0 }),
  p50Ms: Type.Union([Type.Number(), Type.Null()]),
  p95Ms: Type.Union([Type.Number(), Type.Null()]),
  p99Ms: Type.Union([Type.Number(), Type.Null()]),
}, { additionalProperties: false });
export type StatsRow = Static<typeof StatsRow>;

/** Requests a collector's query ROUTER answers: request fields (besides `v`, `type`, `id`) and result. */
export const STATS_QUERIES = {
  'logs.tail': {
    request: {
      app: AppName,
      lines: Type.Integer({ minimum: 1, maximum: MAX_TAIL_LINES }),
      /** Stop before the reply would exceed this many bytes of text. @default the collector's message limit */
      maxBytes: Type.Optional(Type.Integer({ minimum: 1024 })),
    },
    result: Type.Object({ lines: Type.Array(Type.String()), truncated: Type.Boolean() }, { additionalProperties: false }),
  },
  'stats.query': {
    request: { app: AppName, sinceMs: Timestamp },
    result: Type.Object({ rows: Type.Array(StatsRow) }, { additionalProperties: false }),
  },
  /** One release's requests in [sinceMs, untilMs) from the collector's recent memory (10 s buckets, last 10 min). */
  'stats.release': {
    request: { app: AppName, release: Type.Integer({ minimum: 1 }), sinceMs: Timestamp, untilMs: Timestamp },
    result: Type.Object({
      requests: Type.Integer({ minimum: 0 }),
      s5xx: Type.Integer({ minimum: 0 }),
      /** Requests per latency bucket (see src/core/histogram.ts); [] when none. */
      histogram: Type.Array(Type.Integer({ minimum: 0 }), { maxItems: 1000 }),
    }, { additionalProperties: false }),
  },
} as const;

export type StatsQueryType = keyof typeof STATS_QUERIES;
export type StatsQueryResult<T extends StatsQueryType> = Static<(typeof STATS_QUERIES)[T]['result']>;

/** Full request schemas, envelope included. */
export const STATS_QUERY_SCHEMAS = {
  'logs.tail': Type.Object({ v: Type.Literal(1), type: Type.Literal('logs.tail'), id: RequestId, ...STATS_QUERIES['logs.tail'].request }, { additionalProperties: false }),
  'stats.query': Type.Object({ v: Type.Literal(1), type: Type.Literal('stats.query'), id: RequestId, ...STATS_QUERIES['stats.query'].request }, { additionalProperties: false }),
  'stats.release': Type.Object({ v: Type.Literal(1), type: Type.Literal('stats.release'), id: RequestId, ...STATS_QUERIES['stats.release'].request }, { additionalProperties: false }),
};

function isStatsQueryType(type: unknown): type is StatsQueryType {
  return typeof type === 'string' && Object.hasOwn(STATS_QUERIES, type);
}

/** A decoded query request of type T, envelope included. */
export type StatsQueryRequest<T extends StatsQueryType = StatsQueryType> = Static<(typeof STATS_QUERY_SCHEMAS)[T]>;
/** The body a caller passes for query T (no envelope). */
export type StatsQueryBody<T extends StatsQueryType> = Omit<StatsQueryRequest<T>, 'v' | 'type' | 'id'>;

/** Decodes a query request: envelope, known type, then its schema. @throws RequestDecodeError (carrying the id when valid) */
export function decodeStatsQuery(frame: Uint8Array, maxBytes?: number): StatsQueryRequest {
  return decodeEnvelope(frame, maxBytes, (type) => (isStatsQueryType(type) ? STATS_QUERY_SCHEMAS[type] : undefined)) as StatsQueryRequest;
}

// ---- HTTP: /v1/apps/:app/logs and /v1/apps/:app/stats (query strings arrive as text; types are never coerced)

/** `?lines=N` (1..10000, default 100) and `?follow=1`. */
export const LogsQuery = Type.Object({
  lines: Type.Optional(Type.String({ pattern: '^(0|[1-9][0-9]{0,3}|10000)$' })),
  follow: Type.Optional(Type.Union([Type.Literal('1'), Type.Literal('0'), Type.Literal('true'), Type.Literal('false')])),
}, { additionalProperties: false });
export type LogsQuery = Static<typeof LogsQuery>;

export const LogsResponse = Type.Object({ lines: Type.Array(Type.String()) }, { additionalProperties: false });
export type LogsResponse = Static<typeof LogsResponse>;

/** `15m`, `1h`, `24h`, `7d`, or plain digits meaning minutes. */
export const SINCE_PATTERN = '^[1-9][0-9]{0,4}[mhd]?$';
export const StatsQuery = Type.Object({ since: Type.Optional(Type.String({ pattern: SINCE_PATTERN })) }, { additionalProperties: false });
export type StatsQuery = Static<typeof StatsQuery>;

export const StatsResponse = Type.Object({ stats: Type.Array(StatsRow) }, { additionalProperties: false });
export type StatsResponse = Static<typeof StatsResponse>;

// MAX_SINCE_MS and parseSince: units.ts (no TypeBox, so the CLI loads fast).
export { MAX_SINCE_MS, parseSince } from './units.js';
