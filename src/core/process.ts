/** Process liveness by pid, as a supervisor needs it. */
import { readFileSync } from 'node:fs';

/**
 * True when `pid` is a running process. A zombie (exited, not yet reaped — common in containers whose init
 * does not reap orphans) counts as dead: it holds no port and will never exit on a signal.
 */
export function isProcessAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return true; // no /proc (not Linux): the signal check above is all we have
  }
}

/**
 * Sends `signal` to every process of the group `pgid` leads (a child started `detached` leads its own): a
 * build's helpers, an emperor's vassals. False when there was no such group (already gone) or it is not ours to
 * signal; never throws, since callers run it in exit handlers and clean-ups.
 */
export function killGroup(pgid: number | undefined, signal: NodeJS.Signals = 'SIGKILL'): boolean {
  if (pgid === undefined || !Number.isInteger(pgid) || pgid <= 1) return false;
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false; // ESRCH: gone; EPERM: the pgid now names someone else's group
  }
}
