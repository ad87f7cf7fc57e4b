/** HTTP API bodies (JSON Schema via TypeBox), for fastify's validation and the API docs. */
import { Type, type Static } from '@sinclair/typebox';
import { AppName, ConfigKey, ConfigValue, Hostname, OwnerName } from './common.js';

const strict = { additionalProperties: false } as const;

export const AppParams = Type.Object({ app: Type.String({ maxLength: 64 }) }, strict);
export type AppParams = Static<typeof AppParams>;
/** `/v1/nodes/:node/…` (a name only; an unknown node is a 404). */
export const NodeParams = Type.Object({ node: Type.String({ maxLength: 64 }) }, strict);
export type NodeParams = Static<typeof NodeParams>;
export const HostParams = Type.Object({ app: Type.String({ maxLength: 64 }), hostname: Type.String({ maxLength: 253 }) }, strict);
export type HostParams = Static<typeof HostParams>;

export const CreateAppBody = Type.Object({ name: AppName }, strict);
export type CreateAppBody = Static<typeof CreateAppBody>;

export const CreateOwnerBody = Type.Object({ name: OwnerName, isAdmin: Type.Optional(Type.Boolean()) }, strict);
export type CreateOwnerBody = Static<typeof CreateOwnerBody>;

export const AddHostBody = Type.Object({ hostname: Hostname }, strict);
export type AddHostBody = Static<typeof AddHostBody>;

/** Heroku-style PATCH: a string sets a var, null unsets it. */
export const PatchConfigBody = Type.Record(
  Type.String({ pattern: ConfigKey.pattern }),
  Type.Union([ConfigValue, Type.Null()]),
  { maxProperties: 500, minProperties: 1, additionalProperties: false },
);
export type PatchConfigBody = Static<typeof PatchConfigBody>;

/** Query strings arrive as text (types are never coerced), so numbers are digit strings here. */
export const EventsQuery = Type.Object({
  after: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$' })),
  limit: Type.Optional(Type.String({ pattern: '^([1-9][0-9]{0,2}|1000)$' })),
}, strict);
export type EventsQuery = Static<typeof EventsQuery>;

export const ApiError = Type.Object({
  error: Type.Object({ code: Type.String(), message: Type.String(), details: Type.Optional(Type.Unknown()) }),
});
export type ApiError = Static<typeof ApiError>;

export const ReleaseParams = Type.Object({ app: Type.String({ maxLength: 64 }), version: Type.String({ pattern: '^v?[0-9]{1,9}$' }) }, strict);
export type ReleaseParams = Static<typeof ReleaseParams>;
export const DeployParams = Type.Object({ app: Type.String({ maxLength: 64 }), id: Type.String({ pattern: '^v?[0-9]{1,9}$' }) }, strict);
export type DeployParams = Static<typeof DeployParams>;

export const ReleaseQuery = Type.Object({
  description: Type.Optional(Type.String({ maxLength: 200 })),
  /** `stage=1`: put the release on the stage slot (stage.<app>.<domain>) instead of deploying it live. */
  stage: Type.Optional(Type.Union([Type.Literal('1'), Type.Literal('0'), Type.Literal('true'), Type.Literal('false')])),
  /** `bluegreen` (default): all new instances beside the old, one switch. `rolling`: runner by runner. */
  strategy: Type.Optional(Type.Union([Type.Literal('bluegreen'), Type.Literal('rolling')])),
}, strict);
export type ReleaseQuery = Static<typeof ReleaseQuery>;

/** `POST /v1/apps/:app/rollback`: the release to go back to (default: the previous good one). */
export const RollbackBody = Type.Object({ version: Type.Optional(Type.Integer({ minimum: 1, maximum: 2_147_483_647 })) }, strict);
export type RollbackBody = Static<typeof RollbackBody>;

/** `POST /v1/apps/:app/lock`: take the app's deploy lock (deploys then carry `Pier-Lock-Token`). */
export const LockBody = Type.Object({
  holder: Type.Optional(Type.String({ minLength: 1, maxLength: 100, pattern: '^[^\\u0000-\\u001f]+$' })),
  leaseMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 600_000 })),
}, strict);
export type LockBody = Static<typeof LockBody>;
/** `PATCH /v1/apps/:app/lock`: renew with the current token. */
export const RenewLockBody = Type.Object({
  token: Type.Integer({ minimum: 1 }),
  leaseMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 600_000 })),
}, strict);
export type RenewLockBody = Static<typeof RenewLockBody>;
export const ReleaseLockQuery = Type.Object({ token: Type.String({ pattern: '^[1-9][0-9]{0,15}$' }) }, strict);
export type ReleaseLockQuery = Static<typeof ReleaseLockQuery>;

/**
 * `PATCH /v1/apps/:app/formation`: counts by process type, e.g. `{"web": 2, "worker": 1}` (Heroku's formation);
 * types left out keep their count. Which types exist is checked against the app's current release.
 */
export const FormationBody = Type.Record(Type.String({ pattern: '^[a-z][a-z0-9_-]{0,29}$' }), Type.Integer({ minimum: 0, maximum: 100 }), {
  minProperties: 1, maxProperties: 32, additionalProperties: false,
});
export type FormationBody = Static<typeof FormationBody>;
/** `?singleton=true`: the types in the body run at most once across the cluster (fenced by a lease); `false` undoes it. */
export const FormationQuery = Type.Object({
  singleton: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false'), Type.Literal('1'), Type.Literal('0')])),
}, strict);
export type FormationQuery = Static<typeof FormationQuery>;

/** `POST /v1/tokens/rotate`: a new token for the caller, or (operators) for `owner`; answers `{ owner, token }`. */
export const RotateTokenBody = Type.Object({ owner: Type.Optional(OwnerName) }, strict);
export type RotateTokenBody = Static<typeof RotateTokenBody>;
export const RotateTokenReply = Type.Object({ owner: OwnerName, token: Type.String() }, strict);
export type RotateTokenReply = Static<typeof RotateTokenReply>;
