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
