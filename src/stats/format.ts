/**
 * How a stored log line looks (pure): Heroku's `2026-11-25T04:00:00.123Z app[web.1]: text`, one record per
 * line, plus the `router[...]` line written for each public request.
 */
import { MAX_LOG_LINE_CHARS, type AccessMessage, type LogSource } from '../protocol/index.js';

/** Length of the ISO timestamp every stored line starts with (`2026-11-25T04:00:00.123Z`). */
export const TIMESTAMP_CHARS = 24;

/** Origins end up between brackets in the line: anything but a plain word character becomes '_'. */
function cleanOrigin(origin: string): string {
  const cleaned = origin.replace(/[^A-Za-z0-9._:@/-]/g, '_').slice(0, 128);
  return cleaned === '' ? '-' : cleaned;
}

/**
 * Splits a message into the lines it holds: one trailing newline is dropped, CR before LF too, empty lines are
 * kept only inside the text. Each line is cut at MAX_LOG_LINE_CHARS.
 */
export function splitLogText(text: string): string[] {
  const body = text.endsWith('\n') ? text.slice(0, -1) : text;
  if (body === '') return [];
  return body.split('\n').map((line) => {
    const clean = line.endsWith('\r') ? line.slice(0, -1) : line;
    return clean.length > MAX_LOG_LINE_CHARS ? `${clean.slice(0, MAX_LOG_LINE_CHARS)}…` : clean;
  });
}

/** `2026-11-25T04:00:00.123Z app[i-1]: text`. A time that is not a valid date is shown as the epoch. */
export function formatLogLine(atMs: number, source: LogSource, origin: string, text: string): string {
  const date = new Date(Number.isFinite(atMs) && atMs >= 0 && atMs < 8.64e15 ? atMs : 0);
  const iso = date.getUTCFullYear() > 9999 ? new Date(0).toISOString() : date.toISOString();
  return `${iso} ${source}[${cleanOrigin(origin)}]: ${text}`;
}

/** The router line for a public request, in Heroku's key=value style. */
export function formatAccessLine(access: AccessMessage): string {
  const duration = Math.round(access.durationMs * 10) / 10;
  const fields = [
    `method=${access.method.replace(/[^A-Za-z-]/g, '_')}`,
    `path=${JSON.stringify(access.path)}`,
    `host=${access.host.replace(/[^A-Za-z0-9.:*[\]-]/g, '_')}`,
    `status=${access.status}`,
    `bytes=${access.bytes}`,
    `service=${duration}ms`,
    `backend=${(access.backend ?? '-').replace(/[^A-Za-z0-9.:[\]-]/g, '_')}`,
    `request_id=${access.requestId.replace(/[^A-Za-z0-9._-]/g, '_')}`,
  ];
  return formatLogLine(access.at, 'router', access.balancerId, fields.join(' '));
}

/** The timestamp prefix of a stored line (sorts in time order as text); '' when the line has none. */
export function lineTimestamp(line: string): string {
  return line.length >= TIMESTAMP_CHARS && line[TIMESTAMP_CHARS - 1] === 'Z' ? line.slice(0, TIMESTAMP_CHARS) : '';
}
