/** `GET /v1/apps/:app/explain`: one app's timeline (deploys, instances, verdicts, health, alerts, nodes, traffic…). */
import { Type, type Static } from '@sinclair/typebox';
import { AppName, Timestamp } from './common.js';

/** `?since=30m|1h|2d` (checked by parseSince in the route, so a bad value gets a sentence, not a schema path). */
export const ExplainQuery = Type.Object({ since: Type.Optional(Type.String({ maxLength: 16 })) }, { additionalProperties: false });
export type ExplainQuery = Static<typeof ExplainQuery>;

/**
 * What an entry is about. Events of a type the explainer does not know get the type's first word
 * (`backup.done` → `backup`), so new event types show up without a change here.
 */
export const EXPLAIN_KINDS = [
  'app', 'deploy', 'instance', 'verdict', 'health', 'alert', 'remediation', 'node', 'lock', 'traffic', 'config', 'scale', 'host',
] as const;

export const ExplainEntry = Type.Object({
  /** When it happened (ms since the epoch); a traffic burst is at the start of its minute. */
  at: Timestamp,
  /** One of EXPLAIN_KINDS, or the first word of an unknown event type. */
  kind: Type.String({ minLength: 1, maxLength: 40 }),
  /** One human line. */
  summary: Type.String(),
  /** The release version (vN) the entry concerns, when it concerns one. */
  version: Type.Union([Type.Integer({ minimum: 1 }), Type.Null()]),
  /** The event type behind the entry (`release.live`…), or null for a traffic burst (read from request_stats). */
  type: Type.Union([Type.String(), Type.Null()]),
  /** The event's global version (events table id), or null for a traffic burst. */
  event: Type.Union([Type.Integer({ minimum: 1 }), Type.Null()]),
  /** The event's data as recorded (for a burst: minute, requests, s5xx, p95Ms). */
  data: Type.Record(Type.String(), Type.Unknown()),
}, { additionalProperties: false });
export type ExplainEntry = Static<typeof ExplainEntry>;

export const ExplainResponse = Type.Object({
  app: AppName,
  /** Start of the window (ms since the epoch): now − since, never before the app was created. */
  since: Timestamp,
  /** Oldest first. */
  entries: Type.Array(ExplainEntry),
  /** True when the window held more than the limit: the oldest entries were left out (see `note`). */
  truncated: Type.Boolean(),
  /** Why entries are missing, when they are. */
  note: Type.Optional(Type.String()),
}, { additionalProperties: false });
export type ExplainResponse = Static<typeof ExplainResponse>;

/** Most entries one answer holds; a busier window keeps its newest entries. */
export const EXPLAIN_MAX_ENTRIES = 1000;

/** A minute of an app's traffic is a 5xx burst with at least this many 5xx answers… */
export const BURST_MIN_5XX = 5;
/** …that are at least this share of its requests (percent). */
export const BURST_MIN_PERCENT = 5;
