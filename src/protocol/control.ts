/**
 * The control conversation (client DEALER/REQ → nexus ROUTER): every command's request and result schema,
 * and whether it is a mutation (retries with the same id are answered from the first result).
 */
import { Type, type Static, type TObject, type TProperties, type TSchema } from '@sinclair/typebox';
import {
  App, AppName, ConfigKey, Instance, ConfigVars, Hostname, Node, NodeId, NodeKind, OwnerName, RequestId, Timestamp, Token, Version,
  type PeerRole,
} from './common.js';
import { StateEvent } from './events.js';
import { AppLimits } from './limits.js';
import { AppCheck, Check, HealthResult, MAX_HEALTH_BATCH } from './health.js';

interface CommandSpec<Req extends TProperties, Res extends TSchema> {
  /** Fields of the request besides the envelope (`v`, `type`, `id`). */
  request: Req;
  result: Res;
  /** Mutations are recorded by request id and never applied twice. */
  isMutation: boolean;
}

function command<Req extends TProperties, Res extends TSchema>(isMutation: boolean, request: Req, result: Res): CommandSpec<Req, Res> {
  return { request, result, isMutation };
}

const Ok = Type.Object({ ok: Type.Literal(true) }, { additionalProperties: false });
const Authed = { token: Token };
const ForApp = { token: Token, app: AppName };

export const Snapshot = Type.Object({
  /** The version of the last event this state includes. */
  version: Version,
  apps: Type.Array(App),
  nodes: Type.Array(Node),
  instances: Type.Array(Instance),
  /** Apps' own health checks (apps without one use DEFAULT_CHECK). Absent from an older nexus. */
  checks: Type.Optional(Type.Array(AppCheck)),
}, { additionalProperties: false });
export type Snapshot = Static<typeof Snapshot>;

export const InstanceSpec = Type.Object({
  instanceId: Type.String(),
  app: AppName,
  release: Type.Integer({ minimum: 1 }),
  sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  sizeBytes: Type.Integer({ minimum: 0 }),
  processType: Type.String(),
  config: ConfigVars,
  runnerId: NodeId,
  state: Type.String(),
  /** Limits an operator set for the app; the runner's defaults fill the rest. Absent from an older nexus. */
  limits: Type.Optional(AppLimits),
  /** The type runs once across the cluster: the runner holds its lease (`singleton.renew`) while it runs it. */
  singleton: Type.Optional(Type.Boolean()),
  /** The app's health check, which the instance must pass before it is reported ready. Absent: DEFAULT_CHECK. */
  check: Type.Optional(Check),
  /**
   * The app's platform hostname (`<app>.<domain>`): the Host header of the runner's probes, warm-up and checks, so
   * apps that refuse unknown hosts (Django's ALLOWED_HOSTS) answer them as they answer the public. Absent from an
   * older nexus: the probed address.
   */
  hostname: Type.Optional(Hostname),
}, { additionalProperties: false });
export type InstanceSpec = Static<typeof InstanceSpec>;

/** An add-on's name, e.g. 'redis-amber-4821' (what `addons:info NAME` takes). */
export const AddonName = Type.String({ pattern: '^[a-z][a-z0-9-]{1,62}$' });

/** One add-on server a runner is assigned (Redis): what it needs to run it. The password travels only here (CURVE). */
export const AddonAssignment = Type.Object({
  name: AddonName,
  kind: Type.Literal('redis'),
  app: AppName,
  /** Bumped at each placement; a runner refuses an older one than it has applied. */
  generation: Type.Integer({ minimum: 1 }),
  /** false: stop its server (the add-on is being destroyed) and report 'stopped'. */
  run: Type.Boolean(),
  port: Type.Integer({ minimum: 1, maximum: 65535 }),
  password: Type.String({ pattern: '^[A-Za-z0-9]{16,128}$' }),
  /** Redis `maxmemory` (allkeys-lru), in MiB. */
  maxmemoryMb: Type.Integer({ minimum: 1, maximum: 65_536 }),
}, { additionalProperties: false });
export type AddonAssignment = Static<typeof AddonAssignment>;

/** Largest artifact chunk a runner may ask for in one call. */
export const MAX_ARTIFACT_CHUNK_BYTES = 1024 * 1024;

export const COMMANDS = {
  ping: command(false, {}, Type.Object({ nexusId: NodeId, version: Version, isLeader: Type.Boolean(), at: Timestamp })),
  snapshot: command(false, {}, Snapshot),
  'events.since': command(
    false,
    { after: Version, limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })) },
    Type.Object({ version: Version, events: Type.Array(StateEvent) }),
  ),
  'node.register': command(
    true,
    { nodeId: NodeId, kind: NodeKind, address: Type.String({ maxLength: 512 }), info: Type.Optional(Type.Record(Type.String(), Type.Unknown())) },
    Type.Object({ nodeId: NodeId, heartbeatIntervalMs: Type.Integer(), version: Version }),
  ),
  'artifact.fetch': command(
    false,
    { sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }), offset: Type.Integer({ minimum: 0 }), length: Type.Integer({ minimum: 1, maximum: MAX_ARTIFACT_CHUNK_BYTES }) },
    Type.Object({ data: Type.Uint8Array(), totalBytes: Type.Integer({ minimum: 0 }) }),
  ),
  'instance.spec': command(false, { instanceId: Type.String({ minLength: 1, maxLength: 64 }) }, InstanceSpec),
  'instance.report': command(
    true,
    {
      nodeId: NodeId,
      instanceId: Type.String({ minLength: 1, maxLength: 64 }),
      state: Type.Union([Type.Literal('starting'), Type.Literal('ready'), Type.Literal('failed'), Type.Literal('stopped')]),
      port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
      /** Requests the instance serves at once (uWSGI processes x threads); sent with its port. */
      capacity: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
      error: Type.Optional(Type.String({ maxLength: 16 * 1024 })),
    },
    Type.Object({ applied: Type.Boolean() }),
  ),
  /** Output lines of an instance's build (`build:`, pip) or of the release phase's task, shown in its deploy. */
  'release.output': command(
    true,
    {
      nodeId: NodeId,
      instanceId: Type.String({ minLength: 1, maxLength: 64 }),
      phase: Type.Union([Type.Literal('build'), Type.Literal('release')]),
      lines: Type.Array(Type.String({ maxLength: 2000 }), { minItems: 1, maxItems: 200 }),
    },
    Type.Object({ applied: Type.Boolean() }),
  ),
  /**
   * Renews the lease of a singleton instance this runner runs (see db/singletons.ts); PIER_FENCED when it is lost,
   * and the runner must have stopped the process already. Not once-only: a retry renews again.
   */
  'singleton.renew': command(
    false,
    { nodeId: NodeId, instanceId: Type.String({ minLength: 1, maxLength: 64 }) },
    Type.Object({ token: Type.Integer({ minimum: 1 }), leaseMs: Type.Integer({ minimum: 1 }) }),
  ),
  /** A batch of probe results from a runner (its instances) or a balancer (hostnames through it); not a mutation. */
  'health.report': command(
    false,
    { nodeId: NodeId, results: Type.Array(HealthResult, { minItems: 1, maxItems: MAX_HEALTH_BATCH }) },
    Type.Object({ accepted: Type.Integer({ minimum: 0 }) }),
  ),
  /** The token is in the first answer only (never stored); a retried request id answers `message` instead. */
  'owner.create': command(true, { ...Authed, name: OwnerName }, Type.Object({ name: OwnerName, token: Type.Optional(Type.String()), message: Type.Optional(Type.String()) })),
  'app.list': command(false, Authed, Type.Object({ apps: Type.Array(App) })),
  'app.info': command(false, ForApp, Type.Object({ app: App })),
  'app.create': command(true, { ...Authed, name: AppName }, Type.Object({ app: App })),
  'app.destroy': command(true, ForApp, Ok),
  'host.add': command(true, { ...ForApp, hostname: Hostname }, Type.Object({ hostnames: Type.Array(Hostname) })),
  'host.remove': command(true, { ...ForApp, hostname: Hostname }, Type.Object({ hostnames: Type.Array(Hostname) })),
  'config.get': command(false, ForApp, Type.Object({ vars: ConfigVars })),
  'config.set': command(true, { ...ForApp, vars: ConfigVars }, Type.Object({ vars: ConfigVars })),
  'config.unset': command(true, { ...ForApp, keys: Type.Array(ConfigKey, { minItems: 1, maxItems: 500 }) }, Type.Object({ vars: ConfigVars })),
  /** The add-on servers (Redis) a runner must run, or stop and report (`run: false`); pulled on `addon.*` events and at start. */
  'addons.assigned': command(false, { nodeId: NodeId }, Type.Object({ addons: Type.Array(AddonAssignment, { maxItems: 10_000 }) })),
  /** A runner's word on an add-on server it was assigned: up (answers AUTH + PING), failed, or stopped. */
  'addon.report': command(
    true,
    {
      nodeId: NodeId,
      name: AddonName,
      generation: Type.Integer({ minimum: 1 }),
      state: Type.Union([Type.Literal('up'), Type.Literal('failed'), Type.Literal('stopped')]),
      /** Why it failed, or why an 'up' server started empty again on the same runner (it exited and was restarted). */
      note: Type.Optional(Type.String({ maxLength: 2000 })),
    },
    Type.Object({ applied: Type.Boolean() }),
  ),
} as const;

export type CommandType = keyof typeof COMMANDS;
export const COMMAND_TYPES = Object.keys(COMMANDS) as CommandType[];

const OWNER: readonly PeerRole[] = ['operator'];
/**
 * The roles whose keys may call each command (enforced with CURVE on). Who really calls what: runners follow
 * the state, register, fetch artifacts and specs and report instances; balancers follow the state and
 * register; collectors only register; owner commands come from operator tools (the CLI uses the HTTP API).
 * A node role may also only register or report as the node its key is named for.
 */
export const COMMAND_ROLES: { readonly [T in CommandType]: readonly PeerRole[] } = {
  ping: ['nexus', 'runner', 'balancer', 'stats', 'operator'],
  snapshot: ['runner', 'balancer', 'stats', 'operator'],
  'events.since': ['runner', 'balancer', 'stats', 'operator'],
  'node.register': ['runner', 'balancer', 'stats'],
  'artifact.fetch': ['runner'],
  'instance.spec': ['runner'],
  'instance.report': ['runner'],
  'release.output': ['runner'],
  'singleton.renew': ['runner'],
  'health.report': ['runner', 'balancer'],
  'owner.create': OWNER,
  'app.list': OWNER,
  'app.info': OWNER,
  'app.create': OWNER,
  'app.destroy': OWNER,
  'host.add': OWNER,
  'host.remove': OWNER,
  'config.get': OWNER,
  'config.set': OWNER,
  'config.unset': OWNER,
  'addons.assigned': ['runner'],
  'addon.report': ['runner'],
};

type Spec<T extends CommandType> = (typeof COMMANDS)[T];
/** The body a caller passes for command T (no envelope). */
export type CommandBody<T extends CommandType> = Static<TObject<Spec<T>['request']>>;
/** The result command T returns. */
export type CommandResult<T extends CommandType> = Static<Spec<T>['result']>;

/** Full request schemas, envelope included, keyed by type. */
export const REQUEST_SCHEMAS = Object.fromEntries(
  COMMAND_TYPES.map((type) => [
    type,
    Type.Object(
      { v: Type.Literal(1), type: Type.Literal(type), id: RequestId, ...COMMANDS[type].request },
      { additionalProperties: false },
    ),
  ]),
) as unknown as { [T in CommandType]: TSchema };

export type ControlRequest<T extends CommandType = CommandType> = { v: 1; type: T; id: string } & CommandBody<T>;

export const ReplyMessage = Type.Object({
  v: Type.Literal(1),
  type: Type.Literal('reply'),
  re: RequestId,
  result: Type.Unknown(),
}, { additionalProperties: false });
export type ReplyMessage = Static<typeof ReplyMessage>;

export const ErrorMessage = Type.Object({
  v: Type.Literal(1),
  type: Type.Literal('error'),
  /** The request id, or null when the request was too broken to carry one. */
  re: Type.Union([RequestId, Type.Null()]),
  code: Type.String(),
  message: Type.String(),
  details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
}, { additionalProperties: false });
export type ErrorMessage = Static<typeof ErrorMessage>;

export const ControlReply = Type.Union([ReplyMessage, ErrorMessage]);
export type ControlReply = ReplyMessage | ErrorMessage;

export function isCommandType(type: unknown): type is CommandType {
  return typeof type === 'string' && Object.hasOwn(COMMANDS, type);
}
