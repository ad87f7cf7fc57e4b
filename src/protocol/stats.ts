/** Messages every node PUSHes to the stats collectors (logs, access records), and live lines they republish. */
import { Type, type Static } from '@sinclair/typebox';
import { AppName, NodeId, Timestamp } from './common.js';

/** One line of an app's log: its own output, uWSGI's, or the platform's (deploys). */
export const LogMessage = Type.Object({
  v: Type.Literal(1),
  type: Type.Literal('log'),
  app: AppName,
  /** 'app' (stdout/stderr), 'uwsgi' (request log and server messages), 'router' (balancer), 'pier' (platform). */
  source: Type.Union([Type.Literal('app'), Type.Literal('uwsgi'), Type.Literal('router'), Type.Literal('pier')]),
  /** Instance or node that produced it. */
  origin: Type.String({ maxLength: 128 }),
  line: Type.String({ maxLength: 16 * 1024 }),
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
  requestId: Type.String({ maxLength: 200 }),
  balancerId: NodeId,
  at: Timestamp,
}, { additionalProperties: false });
export type AccessMessage = Static<typeof AccessMessage>;

export const StatsIntakeMessage = Type.Union([LogMessage, AccessMessage]);
export type StatsIntakeMessage = LogMessage | AccessMessage;
