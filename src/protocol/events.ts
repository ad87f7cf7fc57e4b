/** Messages on the nexus PUB socket (state events, ticks) and on the heartbeat PUB→SUB path. */
import { Type, type Static } from '@sinclair/typebox';
import { AppName, NodeId, NodeKind, Timestamp, Version } from './common.js';

/** Every state-change event type; an event row and its published message carry one of these. */
export const EVENT_TYPES = [
  'owner.created',
  /** data: { owner, by } — the owner's API token was replaced; the old one is refused from now on. */
  'owner.token_rotated',
  'app.created',
  'app.destroyed',
  'host.added',
  'host.removed',
  'config.changed',
  'node.registered',
  /** data: { id, kind } — the leader saw no heartbeat from the node for heartbeatIntervalMs × heartbeatMisses. */
  'node.down',
  /** data: { id, kind } — a node marked down is heartbeating again. */
  'node.up',
  /** data: { id, isDraining } — an operator drained a runner (nothing new goes there, what runs moves) or undid it. */
  'node.drained',
  'release.created',
  /** data: the Instance (as in snapshots). */
  'instance.changed',
  /** data: { id, forgotten? } — forgotten: its runner was declared dead (it may still serve), not stopped. */
  'instance.removed',
  /**
   * data: { id, runnerId } — a restarted runner is stopping the vassal of an instance the state had forgotten (it
   * kept it serving meanwhile): balancers still trying it (held) drop it before its port can be free.
   */
  'instance.released',
  /** data: { release } — the balancer now routes the app to this release's ready instances. */
  'release.live',
  /** data: { release, error, stage? } — the deploy failed; nothing public changed. */
  'release.failed',
  /** data: { release, previous, reason } — the live-traffic verdict switched back to the previous release. */
  'release.reverted',
  /** data: { release, requests, s5xx, p95Ms } — the release passed its live-traffic verdict; the previous one is drained. */
  'release.verdict',
  /** data: { name, holder, token, expiresAt } — a lock was taken (waiters for it can stop waiting). */
  'lock.acquired',
  /** data: { name, token } — a lock was released by its holder. */
  'lock.released',
  /** data: { name, holder, token } — a lock's lease ran out; its holder's token is refused from now on. */
  'lock.expired',
  /** data: { release } — stage.<app>.<domain> now routes to this release's ready instances (null: none). */
  'release.staged',
  'formation.changed',
  /** data: { release, phase: 'build' | 'release', runnerId, instance, lines } — output of a release's build or release phase. */
  'release.output',
  /** data: { app, check } — the app's health check changed (check null: the default); not a release. */
  'checks.changed',
  /** data: { instance, healthy, reason } — an instance's health turned (its probes, or a crash loop). */
  'health.changed',
  /** data: { id, app, instance, reason, since } — an alert opened. */
  'alert.raised',
  /** data: { id, app, instance, reason, since, clearedAt } — an alert closed. */
  'alert.cleared',
  /** data: { instance, rung, reason } — the remediation ladder acted on an instance (rung: out-of-rotation, rewrite, restart, move, restored). */
  'remediation.rung',
  /**
   * data: { nodeId, version, expected, got } — the leader's integrity check found balancer nodeId's route table
   * differs from the state at event version `version` (digests `got` ≠ `expected`): that balancer reloads a snapshot.
   */
  'routes.resync',
  /** data: { name, kind } — an add-on was attached to the app (its config var, when already known, came with it). */
  'addon.created',
  /** data: { name, kind } — an add-on was detached (state 'destroying'); its database or server is being removed. */
  'addon.destroyed',
  /**
   * data: { name, kind, runnerId, previousRunnerId, generation } — an add-on server (Redis) was placed on a runner
   * (again, starting empty): both runners pull their add-on assignments (`addons.assigned`).
   */
  'addon.placed',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export const StateEvent = Type.Object({
  /** Global, strictly increasing version (the events table id). */
  version: Version,
  type: Type.Union(EVENT_TYPES.map((t) => Type.Literal(t))),
  /** The app the event concerns, when it concerns one. */
  app: Type.Union([AppName, Type.Null()]),
  data: Type.Record(Type.String(), Type.Unknown()),
  at: Timestamp,
}, { additionalProperties: false });
export type StateEvent = Omit<Static<typeof StateEvent>, 'type'> & { type: EventType };

/** One state change, published on topic `ev.<type>`. */
export const EventMessage = Type.Object({
  v: Type.Literal(1),
  type: Type.Literal('event'),
  event: StateEvent,
}, { additionalProperties: false });
export type EventMessage = Omit<Static<typeof EventMessage>, 'event'> & { event: StateEvent };

/** Published on topic `tick` while idle, so a subscriber that missed the last event notices the gap. */
export const TickMessage = Type.Object({
  v: Type.Literal(1),
  type: Type.Literal('tick'),
  nexusId: NodeId,
  version: Version,
  isLeader: Type.Boolean(),
  at: Timestamp,
}, { additionalProperties: false });
export type TickMessage = Static<typeof TickMessage>;

export const PubMessage = Type.Union([EventMessage, TickMessage]);
export type PubMessage = EventMessage | TickMessage;

/** Topic frames on the nexus PUB socket. */
export const TOPIC_EVENT_PREFIX = 'ev.';
export const TOPIC_TICK = 'tick';

/** What every node publishes to every nexus, every heartbeat interval. */
export const HeartbeatMessage = Type.Object({
  v: Type.Literal(1),
  type: Type.Literal('heartbeat'),
  nodeId: NodeId,
  kind: NodeKind,
  seq: Type.Integer({ minimum: 0 }),
  intervalMs: Type.Integer({ minimum: 1 }),
  sentAt: Timestamp,
  /** 1-minute load average of the machine. */
  load: Type.Optional(Type.Number({ minimum: 0 })),
  /** Instances this node runs (runners). */
  instances: Type.Optional(Type.Integer({ minimum: 0 })),
  /** Drift this node's integrity checks repaired since it started (runners: vassals; balancers: table reloads). */
  repairs: Type.Optional(Type.Integer({ minimum: 0 })),
  /** Balancers: digest of the route table they serve (routeDigest() in protocol/route-digest.ts) … */
  routeDigest: Type.Optional(Type.String({ pattern: '^[0-9a-f]{64}$' })),
  /** … and the event version that table reflects. */
  routeVersion: Type.Optional(Type.Integer({ minimum: 0 })),
}, { additionalProperties: false });
export type HeartbeatMessage = Static<typeof HeartbeatMessage>;
