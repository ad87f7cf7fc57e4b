/** Field schemas shared by every conversation: names, hostnames, config keys, node ids. */
import { Type, type Static } from '@sinclair/typebox';
import { APP_NAME_PATTERN, CONFIG_KEY_PATTERN, CONFIG_VALUE_PATTERN, HOSTNAME_PATTERN } from './patterns.js';

// The patterns and their wording live in patterns.ts (no TypeBox, so the CLI loads fast).
export { APP_NAME_PATTERN, CONFIG_KEY_PATTERN, CONFIG_VALUE_PATTERN, HOSTNAME_PATTERN, PATTERN_HINTS } from './patterns.js';

export const AppName = Type.String({ pattern: APP_NAME_PATTERN, maxLength: 30 });

/** Owners follow the same rule as apps. */
export const OwnerName = Type.String({ pattern: APP_NAME_PATTERN, maxLength: 30 });

export const Hostname = Type.String({ pattern: HOSTNAME_PATTERN, minLength: 1, maxLength: 253 });

export const ConfigKey = Type.String({ pattern: CONFIG_KEY_PATTERN, maxLength: 255 });
export const ConfigValue = Type.String({ maxLength: 32 * 1024, pattern: CONFIG_VALUE_PATTERN });
/** Keys outside the pattern are rejected, not ignored (a Record is patternProperties underneath). */
export const ConfigVars = Type.Record(Type.String({ pattern: CONFIG_KEY_PATTERN }), ConfigValue, { maxProperties: 500, additionalProperties: false });

export const NodeId = Type.String({ pattern: '^[a-z0-9][a-z0-9.-]{0,62}$' });
export const NodeKind = Type.Union([Type.Literal('nexus'), Type.Literal('runner'), Type.Literal('balancer'), Type.Literal('stats')]);
export type NodeKind = Static<typeof NodeKind>;

/**
 * What a CURVE key may do: each allowed key carries one role (its file sits in `keys/allowed/<role>/`). Node
 * roles match node kinds; `operator` keys are for tools that call the owner commands over ZeroMQ.
 */
export const PEER_ROLES = ['nexus', 'runner', 'balancer', 'stats', 'operator'] as const;
export type PeerRole = (typeof PEER_ROLES)[number];

/** Request and reply ids: UUIDs or any short printable token. */
export const RequestId = Type.String({ minLength: 1, maxLength: 128, pattern: '^[\\x21-\\x7e]+$' });

/** An API token as given by the caller (validated by lookup, not by shape). */
export const Token = Type.String({ minLength: 1, maxLength: 256 });

/** Milliseconds since the epoch. */
export const Timestamp = Type.Integer({ minimum: 0 });

/** Event versions are the `events` table's ids. */
export const Version = Type.Integer({ minimum: 0 });

export const App = Type.Object({
  name: AppName,
  owner: OwnerName,
  webScale: Type.Integer({ minimum: 0 }),
  hostnames: Type.Array(Hostname),
  createdAt: Timestamp,
}, { additionalProperties: false });
export type App = Static<typeof App>;

export const ReleaseStatus = Type.Union([
  Type.Literal('pending'), Type.Literal('staged'), Type.Literal('live'), Type.Literal('superseded'), Type.Literal('failed'),
]);
export type ReleaseStatus = Static<typeof ReleaseStatus>;

/** A release: an uploaded artifact plus the config vars it runs with. */
export const Release = Type.Object({
  version: Type.Integer({ minimum: 1 }),
  sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  sizeBytes: Type.Integer({ minimum: 0 }),
  status: ReleaseStatus,
  description: Type.String(),
  createdBy: Type.Union([OwnerName, Type.Null()]),
  createdAt: Timestamp,
  error: Type.Union([Type.String(), Type.Null()]),
}, { additionalProperties: false });
export type Release = Static<typeof Release>;

export const InstanceState = Type.Union([
  Type.Literal('assigned'), Type.Literal('starting'), Type.Literal('ready'), Type.Literal('failed'), Type.Literal('stopping'),
]);
export type InstanceState = Static<typeof InstanceState>;

/** One app instance placed on a runner; balancers route to `ready` instances of the app's live release. */
export const Instance = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 64 }),
  app: AppName,
  /** Release version number (vN). */
  release: Type.Integer({ minimum: 1 }),
  /** Whether this instance's release is the one the balancer routes the app to. */
  isLive: Type.Boolean(),
  /** Whether this instance's release is on the app's stage slot (stage.<app>.<domain>). */
  isStage: Type.Optional(Type.Boolean()),
  processType: Type.String({ pattern: '^[a-z][a-z0-9_-]{0,29}$' }),
  /** Per-app, per-type process name (`web.1`, `worker.2`) that logs and `pier ps` show; null for older rows. */
  name: Type.Optional(Type.Union([Type.String({ pattern: '^[a-z][a-z0-9_-]{0,29}\\.[0-9]{1,4}$' }), Type.Null()])),
  /** When it was placed (ms since the epoch), for `pier ps`'s uptime. */
  createdAt: Type.Optional(Timestamp),
  runnerId: NodeId,
  /** Host the runner's instances are reachable at. */
  host: Type.String({ minLength: 1, maxLength: 255 }),
  port: Type.Union([Type.Integer({ minimum: 1, maximum: 65535 }), Type.Null()]),
  state: InstanceState,
  /** Taken out of rotation by the remediation ladder: balancers do not route it. Absent: false. */
  isOutOfRotation: Type.Optional(Type.Boolean()),
  /** Requests it serves at once (uWSGI processes x threads), as its runner reported; absent when not reported. */
  capacity: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
}, { additionalProperties: false });
export type Instance = Static<typeof Instance>;

export const Node = Type.Object({
  id: NodeId,
  kind: NodeKind,
  address: Type.String(),
  status: Type.Union([Type.Literal('alive'), Type.Literal('dead'), Type.Literal('unknown')]),
  lastHeartbeatAt: Type.Union([Timestamp, Type.Null()]),
  isLeader: Type.Boolean(),
  info: Type.Record(Type.String(), Type.Unknown()),
  /** From its newest heartbeat, when the answering replica received one: 1-minute load average of its machine. */
  load: Type.Optional(Type.Number({ minimum: 0 })),
  /** From its newest heartbeat: instances it runs (runners). */
  instances: Type.Optional(Type.Integer({ minimum: 0 })),
  /** From its newest heartbeat: drift its integrity checks repaired since it started (runners, balancers). */
  repairs: Type.Optional(Type.Integer({ minimum: 0 })),
  /** A runner an operator drains (`pier nodes:drain`): since when. Absent: not draining. */
  drainingSince: Type.Optional(Timestamp),
}, { additionalProperties: false });
export type Node = Static<typeof Node>;

export const Owner = Type.Object({
  name: OwnerName,
  isAdmin: Type.Boolean(),
  createdAt: Timestamp,
}, { additionalProperties: false });
export type Owner = Static<typeof Owner>;

