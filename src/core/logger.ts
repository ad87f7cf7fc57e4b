/** Creates the root pino logger of a process; modules derive children with `log.child({ component })`. */
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger } from 'pino';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface LoggerOptions {
  /** Minimum level written. @default 'info' */
  level: LogLevel;
  /** Name bound to every line (the daemon). */
  name?: string;
}

/** Paths never written to logs. */
const REDACT = ['token', '*.token', 'password', '*.password', 'db.url', 'authorization', '*.authorization', 'headers.authorization', '*.headers.authorization'];

export function createLogger(options: LoggerOptions, destination?: DestinationStream): Logger {
  const base = options.name === undefined ? { pid: process.pid } : { pid: process.pid, name: options.name };
  return pino({ level: options.level, base, redact: REDACT }, destination);
}

/** A logger that writes nothing, for tests and library callers. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
