/**
 * One-off sessions (`pier run`): the messages a nexus and a runner exchange over the sessions socket (each runner
 * keeps a DEALER to every nexus's sessions ROUTER), and the binary frames the CLI and the nexus exchange over the
 * upgraded HTTP connection. Flow control is by credits both ways: a runner sends output only while the client has
 * granted bytes for it, a client sends input only while the runner has granted bytes for it.
 */
import { Type, type Static } from '@sinclair/typebox';
import { ProtocolError } from '../core/errors.js';
import { AppName, ConfigVars, NodeId } from './common.js';
import { AppLimits } from './limits.js';
import { check, unpackFrame } from './codec.js';
import { SESSION_CHUNK_BYTES } from './session-frames.js';

/** Longest command line (all arguments together). */
export const MAX_COMMAND_BYTES = 64 * 1024;

const SessionId = Type.String({ pattern: '^[a-z0-9-]{8,64}$' });
const Bytes = Type.Integer({ minimum: 0, maximum: 1 << 30 });
const Size = Type.Object({ rows: Type.Integer({ minimum: 1, maximum: 1000 }), cols: Type.Integer({ minimum: 1, maximum: 1000 }) }, { additionalProperties: false });
/** Signals a client may deliver to a one-off without a terminal (with one, Ctrl-C and friends are bytes). */
export const SessionSignal = Type.Union([Type.Literal('SIGINT'), Type.Literal('SIGTERM'), Type.Literal('SIGHUP'), Type.Literal('SIGQUIT')]);
export type SessionSignal = Static<typeof SessionSignal>;

/** What a runner needs to run a one-off in an app's release. */
export const OneOffSpec = Type.Object({
  app: AppName,
  release: Type.Integer({ minimum: 1 }),
  sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  sizeBytes: Type.Integer({ minimum: 0 }),
  config: ConfigVars,
  limits: Type.Optional(AppLimits),
  /** `run.N`: the name in `pier ps` and the log origin. */
  dyno: Type.String({ pattern: '^run\\.[1-9][0-9]{0,9}$' }),
  command: Type.Array(Type.String({ maxLength: MAX_COMMAND_BYTES }), { minItems: 1, maxItems: 4096 }),
  /** `--type`: the process type whose environment the one-off is named after; the runner checks the release has it. */
  type: Type.Optional(Type.String({ pattern: '^[a-z][a-z0-9_-]{0,62}$' })),
  /** A terminal of this size and TERM, or null for plain pipes. */
  pty: Type.Union([Type.Null(), Type.Object({ rows: Size.properties.rows, cols: Size.properties.cols, term: Type.String({ pattern: '^[A-Za-z0-9._+-]{1,64}$' }) }, { additionalProperties: false })]),
  /** Output goes to the app's log (origin `dyno`), stdin is empty, nobody is attached. */
  detach: Type.Boolean(),
  timeoutMs: Type.Integer({ minimum: 1000, maximum: 7 * 86_400_000 }),
}, { additionalProperties: false });
export type OneOffSpec = Static<typeof OneOffSpec>;

const Msg = <K extends string, T extends Parameters<typeof Type.Object>[0]>(type: K, props: T) =>
  Type.Object({ v: Type.Literal(1), type: Type.Literal(type), ...props }, { additionalProperties: false });

/** Nexus → runner. */
export const ToRunner = {
  /** Answer to a hello: the nexus is alive (the runner ends the sessions of a nexus that stops answering). */
  'session.welcome': Msg('session.welcome', { nexusId: NodeId }),
  'session.start': Msg('session.start', { session: SessionId, spec: OneOffSpec }),
  'session.in': Msg('session.in', { session: SessionId, data: Type.Uint8Array({ maxByteLength: SESSION_CHUNK_BYTES }) }),
  'session.eof': Msg('session.eof', { session: SessionId }),
  'session.resize': Msg('session.resize', { session: SessionId, ...Size.properties }),
  'session.signal': Msg('session.signal', { session: SessionId, signal: SessionSignal }),
  /** More output bytes the client can take. */
  'session.credit': Msg('session.credit', { session: SessionId, bytes: Bytes }),
  /** The client went away: hang up, kill after the grace. */
  'session.hangup': Msg('session.hangup', { session: SessionId }),
  /** `pier ps:stop run.N`: SIGTERM, SIGKILL after the grace. */
  'session.stop': Msg('session.stop', { session: SessionId }),
} as const;

/** Runner → nexus. */
export const ToNexus = {
  /** Sent every heartbeat interval to every nexus: who this runner is and which sessions it runs. */
  'session.hello': Msg('session.hello', { nodeId: NodeId, running: Type.Array(SessionId, { maxItems: 100_000 }) }),
  'session.started': Msg('session.started', { session: SessionId }),
  'session.out': Msg('session.out', { session: SessionId, stream: Type.Union([Type.Literal(1), Type.Literal(2)]), data: Type.Uint8Array({ maxByteLength: SESSION_CHUNK_BYTES }) }),
  /** More input bytes the process has taken. */
  'session.credit': Msg('session.credit', { session: SessionId, bytes: Bytes }),
  /** The process ended (code, or the signal that killed it), or could not start (`error`). */
  'session.exit': Msg('session.exit', {
    session: SessionId, code: Type.Union([Type.Integer(), Type.Null()]), signal: Type.Union([Type.String({ maxLength: 16 }), Type.Null()]),
    error: Type.Optional(Type.String({ maxLength: 4096 })),
  }),
} as const;

export type ToRunnerType = keyof typeof ToRunner;
export type ToNexusType = keyof typeof ToNexus;
export type ToRunnerMessage = { [K in ToRunnerType]: Static<(typeof ToRunner)[K]> }[ToRunnerType];
export type ToNexusMessage = { [K in ToNexusType]: Static<(typeof ToNexus)[K]> }[ToNexusType];

function decodeFrom<M>(table: Record<string, Parameters<typeof check>[0]>, frame: Uint8Array, maxBytes: number | undefined, what: string): M {
  const value = unpackFrame(frame, maxBytes) as { type?: unknown } | null;
  const type = typeof value === 'object' && value !== null ? value.type : undefined;
  if (typeof type !== 'string' || !Object.hasOwn(table, type)) {
    throw new ProtocolError(`unknown ${what} message type ${typeof type === 'string' ? `'${type.slice(0, 64)}'` : 'missing'}`, { code: 'PIER_UNKNOWN_TYPE' });
  }
  return check(table[type]!, value, `'${type}' message`) as M;
}

/** Decodes a message a runner received. @throws ProtocolError */
export function decodeToRunner(frame: Uint8Array, maxBytes?: number): ToRunnerMessage {
  return decodeFrom<ToRunnerMessage>(ToRunner, frame, maxBytes, 'session');
}

/** Decodes a message a nexus received on its sessions socket. @throws ProtocolError */
export function decodeToNexus(frame: Uint8Array, maxBytes?: number): ToNexusMessage {
  return decodeFrom<ToNexusMessage>(ToNexus, frame, maxBytes, 'session');
}

/** The JSON body of `POST /v1/apps/:app/dynos`. */
export const DynoCreate = Type.Object({
  command: Type.Array(Type.String({ maxLength: MAX_COMMAND_BYTES }), { maxItems: 4096 }),
  /** Only the type whose environment a one-off gets; every type shares the release's. @default 'run' */
  type: Type.Optional(Type.String({ maxLength: 64 })),
  detach: Type.Optional(Type.Boolean()),
  /** A terminal of this size (the CLI's stdin is one). */
  pty: Type.Optional(Type.Object({ rows: Size.properties.rows, cols: Size.properties.cols, term: Type.String({ maxLength: 64 }) }, { additionalProperties: false })),
  timeoutMs: Type.Optional(Type.Integer()),
}, { additionalProperties: false });
export type DynoCreate = Static<typeof DynoCreate>;

/** One one-off, as `GET /v1/apps/:app/dynos` and `pier ps` show it. */
export const Dyno = Type.Object({
  name: Type.String(),
  command: Type.String(),
  runnerId: Type.Union([Type.String(), Type.Null()]),
  state: Type.Union([Type.Literal('starting'), Type.Literal('running'), Type.Literal('exited')]),
  detach: Type.Boolean(),
  startedAt: Type.Integer(),
  exitCode: Type.Union([Type.Integer(), Type.Null()]),
});
export type Dyno = Static<typeof Dyno>;

// CLI <-> nexus frames and the window sizes: session-frames.ts (no TypeBox, so the CLI loads fast).
export * from './session-frames.js';
