/** Everything the CLI prints: tables, JSON, key/value blocks, and the one-line error. The only console user. */
import { PierError, exitCodeFor, toPierError } from '../core/errors.js';

export function print(line = ''): void {
  console.log(line);
}

export function printJson(value: unknown): void {
  console.log(JSON.stringify(value, null, 2));
}

/** Prints rows under upper-case headers, columns padded to their widest cell. */
export function printTable(headers: string[], rows: Array<Array<string | number>>): void {
  const cells = [headers.map((h) => h.toUpperCase()), ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  for (const row of cells) console.log(row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd());
}

export function printFields(fields: Array<[string, string | number]>): void {
  const width = Math.max(...fields.map(([k]) => k.length));
  for (const [key, value] of fields) console.log(`${`${key}:`.padEnd(width + 1)} ${value}`);
}

/** Prints `error: <message> (<code>)` on stderr (the stack only with --debug) and returns the exit code. */
export function printError(err: unknown, isDebug: boolean): number {
  const e = err instanceof PierError ? err : toPierError(err);
  const message = e.code === 'PIER_INTERNAL' && e.cause instanceof Error ? e.cause.message : e.message;
  console.error(`error: ${oneLine(message)} (${e.code})`);
  if (isDebug) console.error((e.cause instanceof Error ? e.cause : e).stack);
  return exitCodeFor(e.code);
}

export function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

/** "3s ago", "2m ago" for a timestamp in ms. */
export function ago(at: number | null, now = Date.now()): string {
  if (at === null) return 'never';
  const s = Math.max(0, Math.round((now - at) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}
