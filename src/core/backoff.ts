/**
 * The restart back-off `pier up` uses for every child it supervises (daemons and the embedded PostgreSQL).
 * A process that dies right after its start (bad config, port taken, disk full) waits base, 2×, 4× … up to 30 s
 * between tries, so it cannot spin. A process that served for a while before it died (kill -9, the OOM killer, a
 * crash under load) is restarted after the base delay again: it has shown it can run, and every second it stays
 * down is a second the control plane (or a runner's apps) is away. "A while" is RESET_FACTOR × the delay it was
 * last restarted after, so a server killed every few seconds is back after the base delay each time, while one that dies
 * within that span of each restart keeps doubling. (Before: the streak reset only after a minute up, so three
 * kills in a minute left PostgreSQL down 4 s and more.)
 */

/**
 * Shortest first restart delay (the runner's and PostgreSQL's; the other daemons pass 1000). Short: a runner back
 * within the dead-after budget (1.5 s by default) keeps its instances where they are, and every 100 ms PostgreSQL
 * stays down the control plane answers 503. @default 250
 */
export const RESTART_BASE_MS = 250;
/** Longest restart delay. @default 30000 */
export const RESTART_MAX_MS = 30_000;
/** A run this many times longer than the last delay counts as "served": the next delay is the base again. */
export const RESTART_RESET_FACTOR = 3;

export class RestartBackoff {
  /** Consecutive early deaths (each doubles the delay). */
  private streak = 0;
  private lastDelayMs = RESTART_BASE_MS;

  constructor(
    private readonly baseMs = RESTART_BASE_MS,
    private readonly maxMs = RESTART_MAX_MS,
  ) {}

  /** The delay before the next start of a process that ran `ranMs` before it died (0: it never became ready). */
  next(ranMs: number): number {
    if (ranMs >= RESTART_RESET_FACTOR * this.lastDelayMs) this.streak = 0;
    const delayMs = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(this.streak, 16));
    this.streak += 1;
    this.lastDelayMs = delayMs;
    return delayMs;
  }
}
