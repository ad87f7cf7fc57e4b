/**
 * Plain values and helpers of the protocol that the CLI needs, without TypeBox (the CLI loads them at start-up):
 * limit bounds, the --since window, durations as shown. limits.ts, stats.ts and health.ts re-export them.
 */

/** Bounds of each limit: low enough bounds that an instance can still start, high enough for any real app. */
export const LIMIT_BOUNDS = {
  /** Memory of an instance's processes together, in MiB. */
  memoryMb: { minimum: 32, maximum: 1_048_576 },
  /** Processes and threads of an instance at once. */
  processes: { minimum: 8, maximum: 65_536 },
  /** Open files per process. */
  openFiles: { minimum: 64, maximum: 1_048_576 },
  /** CPU weight (1024 = one normal share). */
  cpuShares: { minimum: 2, maximum: 262_144 },
  /** Longest request, in ms (applied in whole seconds). */
  requestTimeoutMs: { minimum: 1000, maximum: 86_400_000 },
} as const;

export type LimitName = keyof typeof LIMIT_BOUNDS;
export const LIMIT_NAMES = Object.keys(LIMIT_BOUNDS) as LimitName[];

/** Longest `since` window: 30 days. */
export const MAX_SINCE_MS = 30 * 86_400_000;

/** Turns `15m`/`1h`/`2d`/`90` (minutes) into milliseconds, or undefined when it does not parse or exceeds 30 days. */
export function parseSince(since: string): number | undefined {
  const match = /^([1-9][0-9]{0,4})([mhd]?)$/.exec(since);
  if (!match) return undefined;
  const unitMs = match[2] === 'h' ? 3_600_000 : match[2] === 'd' ? 86_400_000 : 60_000;
  const ms = Number(match[1]) * unitMs;
  return ms <= MAX_SINCE_MS ? ms : undefined;
}

/** `1s`, `500ms`, `2m` as the CLI shows them. */
export function formatMs(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
