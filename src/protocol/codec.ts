/**
 * Encoding and validating decoding of every ZeroMQ message (standard MessagePack, no record extension),
 * and the one place that turns an `error` reply back into a PierError.
 */
import { C1, Packr } from 'msgpackr';
import type { Static, TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { PierError, ProtocolError, isErrorCode, toPierError } from '../core/errors.js';
import {
  COMMANDS, ControlReply, ErrorMessage, REQUEST_SCHEMAS, isCommandType,
  type CommandResult, type CommandType, type ControlRequest,
} from './control.js';
import { PATTERN_HINTS, RequestId } from './common.js';

/** Plain MessagePack: maps decode to plain objects, nothing msgpackr-specific on the wire. */
const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false, int64AsType: 'number' });

/** Largest message the protocol layer accepts when the caller gives no limit. */
export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

const compiled = new WeakMap<TSchema, TypeCheck<TSchema>>();

/** Compiles (once) and returns the validator for a schema. */
export function validatorFor<T extends TSchema>(schema: T): TypeCheck<T> {
  let check = compiled.get(schema);
  if (!check) {
    check = TypeCompiler.Compile(schema);
    compiled.set(schema, check);
  }
  return check as TypeCheck<T>;
}

// Compile every request and result schema at module load, so the first message pays nothing.
const REQUEST_CHECKS = Object.fromEntries(
  Object.entries(REQUEST_SCHEMAS).map(([type, schema]) => [type, validatorFor(schema)]),
) as Record<CommandType, TypeCheck<TSchema>>;
for (const spec of Object.values(COMMANDS)) validatorFor(spec.result);

export function encode(message: object): Buffer {
  return packr.pack(message);
}

/** Unpacks a frame, enforcing the size limit; throws ProtocolError on anything that is not one MessagePack value. */
export function unpackFrame(frame: Uint8Array, maxBytes = DEFAULT_MAX_MESSAGE_BYTES): unknown {
  if (frame.byteLength > maxBytes) {
    throw new ProtocolError(`message of ${frame.byteLength} bytes exceeds the limit of ${maxBytes} bytes`, { code: 'PIER_TOO_LARGE' });
  }
  if (frame.byteLength === 0) throw new ProtocolError('empty frame; expected a MessagePack map');
  let value: unknown;
  try {
    value = packr.unpack(frame);
  } catch (err) {
    throw new ProtocolError('malformed MessagePack frame', { cause: err });
  }
  // msgpackr decodes the never-used byte 0xc1 to a placeholder instead of failing.
  if (value === C1) throw new ProtocolError('malformed MessagePack frame');
  return value;
}

/** Checks `value` against `schema`; the error names the first bad path. */
export function check<T extends TSchema>(schema: T, value: unknown, what = 'message'): Static<T> {
  const validator = validatorFor(schema);
  if (validator.Check(value)) return value as Static<T>;
  const first = validator.Errors(value).First();
  const path = first?.path ? first.path : '/';
  const pattern = first?.schema.pattern as string | undefined;
  const reason = pattern && PATTERN_HINTS[pattern] ? PATTERN_HINTS[pattern] : first ? lowerFirst(first.message) : 'is invalid';
  throw new ProtocolError(`invalid ${what}: ${path} ${reason}`, {
    details: { path },
  });
}

/** Decodes and validates a frame against one schema. */
export function decode<T extends TSchema>(frame: Uint8Array, schema: T, maxBytes?: number): Static<T> {
  return check(schema, unpackFrame(frame, maxBytes));
}

/** What a nexus knows about a request it could not accept: the id to answer to, when one was readable. */
export class RequestDecodeError extends ProtocolError {
  constructor(
    readonly re: string | null,
    cause: ProtocolError,
  ) {
    super(cause.message, { code: cause.code as 'PIER_PROTOCOL', details: cause.details, cause });
  }
}

/** Decodes a control request: envelope, known type, then the type's schema. */
export function decodeRequest(frame: Uint8Array, maxBytes?: number): ControlRequest {
  return decodeEnvelope(frame, maxBytes, (type) => (isCommandType(type) ? REQUEST_SCHEMAS[type] : undefined)) as ControlRequest;
}

/**
 * Decodes a request of the envelope protocol (`{v: 1, type, id, …}`): MessagePack, a map, version 1, a type
 * `schemaOf` knows, then that type's schema. @throws RequestDecodeError carrying the id when it is itself valid
 */
export function decodeEnvelope(frame: Uint8Array, maxBytes: number | undefined, schemaOf: (type: string) => TSchema | undefined): { type: string; id: string } {
  let value: unknown;
  try {
    value = unpackFrame(frame, maxBytes);
  } catch (err) {
    throw new RequestDecodeError(null, err as ProtocolError);
  }
  const obj = typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  // Only an id that is itself valid is echoed back: the error reply must pass the client's own schema.
  const re = obj && validatorFor(RequestId).Check(obj.id) ? (obj.id as string) : null;
  try {
    if (!obj) throw new ProtocolError('invalid request: expected a map with v, type and id');
    if (obj.v !== 1) throw new ProtocolError(`invalid request: unsupported protocol version ${(JSON.stringify(obj.v) ?? 'undefined').slice(0, 32)}; expected 1`);
    const schema = typeof obj.type === 'string' ? schemaOf(obj.type) : undefined;
    if (!schema) {
      const shown = typeof obj.type === 'string' ? `'${obj.type.slice(0, 64)}'` : 'missing';
      throw new ProtocolError(`unknown message type ${shown}`, { code: 'PIER_UNKNOWN_TYPE' });
    }
    check(schema, obj, `'${String(obj.type)}' request`);
    return obj as { type: string; id: string };
  } catch (err) {
    throw new RequestDecodeError(re, err as ProtocolError);
  }
}

export function encodeReply(re: string, result: unknown): Buffer {
  return encode({ v: 1, type: 'reply', re, result });
}

export function encodeError(re: string | null, err: unknown): Buffer {
  const e = toPierError(err);
  const message: ErrorMessage = { v: 1, type: 'error', re, code: e.code, message: e.message };
  if (e.details !== undefined) message.details = e.details;
  return encode(message);
}

/** Decodes a control reply (either kind), leaving the result unchecked. */
export function decodeReply(frame: Uint8Array, maxBytes?: number): ControlReply {
  return decode(frame, ControlReply, maxBytes) as ControlReply;
}

/** Turns a reply into the command's result, or throws the PierError an `error` reply describes. */
export function resultOf<T extends CommandType>(type: T, reply: ControlReply): CommandResult<T> {
  if (reply.type === 'error') throw errorFromReply(reply);
  return check(COMMANDS[type].result, reply.result, `'${type}' result`) as CommandResult<T>;
}

/** The single place a wire error becomes a PierError again. */
export function errorFromReply(reply: ErrorMessage): PierError {
  const code = isErrorCode(reply.code) ? reply.code : 'PIER_INTERNAL';
  return new PierError(code, reply.message, reply.details === undefined ? {} : { details: reply.details });
}

function lowerFirst(s: string): string {
  return s.charAt(0).toLowerCase() + s.slice(1);
}
