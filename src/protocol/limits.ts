/**
 * Per-app limits: what operators may set (`PATCH /v1/apps/:app/limits`), what the nexus hands a runner in an
 * instance's spec, and their bounds. A field left unset (or set to null) means the runner's default
 * (`runner.limits.*` in its config).
 */
import { Type, type Static } from '@sinclair/typebox';
import { LIMIT_BOUNDS, type LimitName } from './units.js';

// The bounds and names: units.ts (no TypeBox, so the CLI loads fast).
export { LIMIT_BOUNDS, LIMIT_NAMES, type LimitName } from './units.js';

const limit = (name: LimitName) => Type.Integer(LIMIT_BOUNDS[name]);

/** An app's limits as stored: only the ones an operator set. */
export const AppLimits = Type.Object({
  memoryMb: Type.Optional(limit('memoryMb')),
  processes: Type.Optional(limit('processes')),
  openFiles: Type.Optional(limit('openFiles')),
  cpuShares: Type.Optional(limit('cpuShares')),
  requestTimeoutMs: Type.Optional(limit('requestTimeoutMs')),
}, { additionalProperties: false });
export type AppLimits = Static<typeof AppLimits>;

const settable = (name: LimitName) => Type.Optional(Type.Union([limit(name), Type.Null()]));

/** PATCH body: a number sets a limit, null returns it to the runner's default; other fields are kept. */
export const PatchLimitsBody = Type.Object({
  memoryMb: settable('memoryMb'),
  processes: settable('processes'),
  openFiles: settable('openFiles'),
  cpuShares: settable('cpuShares'),
  requestTimeoutMs: settable('requestTimeoutMs'),
}, { additionalProperties: false, minProperties: 1 });
export type PatchLimitsBody = Static<typeof PatchLimitsBody>;

/** GET/PATCH reply: every limit, null where the runner's default applies. */
export const LimitsReply = Type.Object({
  limits: Type.Object({
    memoryMb: Type.Union([Type.Integer(), Type.Null()]),
    processes: Type.Union([Type.Integer(), Type.Null()]),
    openFiles: Type.Union([Type.Integer(), Type.Null()]),
    cpuShares: Type.Union([Type.Integer(), Type.Null()]),
    requestTimeoutMs: Type.Union([Type.Integer(), Type.Null()]),
  }),
});
export type LimitsReply = Static<typeof LimitsReply>;
