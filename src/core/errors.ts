/**
 * Pier's error classes and the one table that maps each public error code to an HTTP status and a CLI exit code.
 * Codes are public API: add new ones, never rename existing ones.
 */

/** Every public error code, with the HTTP status and CLI exit code it maps to. */
export const ERROR_CODES = {
  PIER_INTERNAL: { http: 500, exit: 1 },
  PIER_CONFIG: { http: 500, exit: 78 },
  PIER_VALIDATION: { http: 400, exit: 64 },
  PIER_BAD_REQUEST: { http: 400, exit: 64 },
  PIER_PROTOCOL: { http: 400, exit: 76 },
  PIER_UNKNOWN_TYPE: { http: 400, exit: 76 },
  PIER_TOO_LARGE: { http: 413, exit: 64 },
  PIER_UNAUTHORIZED: { http: 401, exit: 77 },
  PIER_FORBIDDEN: { http: 403, exit: 77 },
  PIER_NOT_FOUND: { http: 404, exit: 66 },
  PIER_CONFLICT: { http: 409, exit: 65 },
  /** A lock is held by someone else (details: holder, token, expiresAt). */
  PIER_LOCKED: { http: 423, exit: 75 },
  /** A write carried a fencing token older than the lock's current one: its holder lost the lock. */
  PIER_FENCED: { http: 409, exit: 65 },
  PIER_TIMEOUT: { http: 504, exit: 75 },
  PIER_NEXUS_UNAVAILABLE: { http: 503, exit: 69 },
  PIER_DB_UNAVAILABLE: { http: 503, exit: 69 },
  PIER_STATS_UNAVAILABLE: { http: 503, exit: 69 },
  PIER_ILLEGAL_STATE: { http: 409, exit: 70 },
  PIER_EVENTS_TRIMMED: { http: 410, exit: 70 },
  /** A deploy the CLI followed failed (a build, the release phase, an instance) or was reverted; nothing public changed. */
  PIER_DEPLOY_FAILED: { http: 409, exit: 70 },
  /** No runner is alive to run a one-off, or its runner was lost mid-session. */
  PIER_NO_RUNNER: { http: 503, exit: 69 },
  /** The platform does not offer what was asked for here (an add-on kind it has no driver for). */
  PIER_UNSUPPORTED: { http: 422, exit: 69 },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code);
}

/** HTTP status for an error code; unknown codes are server faults. */
export function httpStatusFor(code: string): number {
  return isErrorCode(code) ? ERROR_CODES[code].http : 500;
}

/** CLI exit code for an error code; unknown codes exit 1. */
export function exitCodeFor(code: string): number {
  return isErrorCode(code) ? ERROR_CODES[code].exit : 1;
}

export interface PierErrorOptions extends ErrorOptions {
  /** Structured extra information, safe to show to the caller. */
  details?: Record<string, unknown>;
}

/** Base class of every error Pier throws on purpose. */
export class PierError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: PierErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = options.details;
  }
}

export class ConfigError extends PierError {
  constructor(message: string, options?: PierErrorOptions) {
    super('PIER_CONFIG', message, options);
  }
}

/** Input that failed validation; `details.path` names the first bad field when known. */
export class ValidationError extends PierError {
  constructor(message: string, options?: PierErrorOptions) {
    super('PIER_VALIDATION', message, options);
  }
}

export class NotFoundError extends PierError {
  constructor(message: string, options?: PierErrorOptions) {
    super('PIER_NOT_FOUND', message, options);
  }
}

export class ConflictError extends PierError {
  constructor(message: string, options?: PierErrorOptions) {
    super('PIER_CONFLICT', message, options);
  }
}

/** A frame or message that could not be decoded or is not a known, valid message. */
export class ProtocolError extends PierError {
  constructor(message: string, options?: PierErrorOptions & { code?: 'PIER_PROTOCOL' | 'PIER_UNKNOWN_TYPE' | 'PIER_TOO_LARGE' }) {
    super(options?.code ?? 'PIER_PROTOCOL', message, options);
  }
}

export class TimeoutError extends PierError {
  constructor(message: string, options?: PierErrorOptions) {
    super('PIER_TIMEOUT', message, options);
  }
}

export class IllegalStateError extends PierError {
  constructor(message: string, options?: PierErrorOptions) {
    super('PIER_ILLEGAL_STATE', message, options);
  }
}

/** Turns anything thrown into a PierError, keeping the original as the cause. */
export function toPierError(err: unknown): PierError {
  if (err instanceof PierError) return err;
  return new PierError('PIER_INTERNAL', 'internal error', { cause: err });
}
