/** The state file of a running `pier up`, and the clean-up of processes a killed supervisor left behind. */
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { NexusAddress, StatsAddress } from '../config/index.js';
import { isProcessAlive } from '../core/process.js';
import { sleep } from '../core/wait.js';
import type { PlatformPaths } from './paths.js';

export interface PlatformState {
  pid: number;
  startedAt: number;
  dataDir: string;
  apiUrls: string[];
  postgres: { pid: number; port: number; dir: string } | null;
  children: Array<{ name: string; pid: number; logFile: string }>;
  nexus: Array<NexusAddress & { id: string }>;
  /** Every stats collector (absent in state files written before collectors existed). */
  stats?: Array<StatsAddress & { id: string }>;
  /** Public URL of the balancer (apps answer at http://<app>.<domain>:<port>/). */
  balancerUrl: string;
  domain: string;
}

export function readState(paths: PlatformPaths): PlatformState | undefined {
  try {
    return JSON.parse(readFileSync(paths.stateFile, 'utf8')) as PlatformState;
  } catch {
    return undefined;
  }
}

export const isAlive = isProcessAlive;

/** True when `pid` is still a process started for this data folder (guards against a recycled pid). */
function belongsTo(pid: number, marker: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker);
  } catch {
    return false;
  }
}

/** Sends `signal`, waits up to `graceMs` for the exit, then SIGKILLs. Returns true if it had to kill. */
export async function terminate(pid: number, signal: NodeJS.Signals, graceMs: number): Promise<boolean> {
  if (!isAlive(pid)) return false;
  process.kill(pid, signal);
  const deadline = Date.now() + graceMs;
  while (isAlive(pid) && Date.now() < deadline) await sleep(50);
  if (!isAlive(pid)) return false;
  process.kill(pid, 'SIGKILL');
  while (isAlive(pid)) await sleep(20);
  return true;
}

/**
 * After a supervisor was killed (kill -9, power loss), its daemons and PostgreSQL may still run: stop the ones
 * recorded in the state file that still belong to this data folder.
 */
export async function cleanupStale(paths: PlatformPaths, log: Logger): Promise<void> {
  const state = readState(paths);
  if (!state || (state.pid !== process.pid && isAlive(state.pid) && belongsTo(state.pid, 'up'))) return;
  for (const child of state.children) {
    if (isAlive(child.pid) && belongsTo(child.pid, paths.configDir)) {
      log.warn({ child: child.name, pid: child.pid }, 'stopping a daemon left running by an earlier pier up');
      await terminate(child.pid, 'SIGTERM', 10_000);
    }
  }
  // Emperors outlive a killed runner on purpose (so a restarted runner adopts them); with the whole platform
  // gone, nothing will adopt them: stop them and their apps.
  for (const entry of existsSync(paths.dataDir) ? readdirSync(paths.dataDir) : []) {
    const file = join(paths.dataDir, entry, 'emperor', 'emperor.json');
    if (!entry.startsWith('runner-') || !existsSync(file)) continue;
    try {
      const { pid, vassalDir } = JSON.parse(readFileSync(file, 'utf8')) as { pid: number; vassalDir: string };
      if (isAlive(pid) && belongsTo(pid, vassalDir)) {
        log.warn({ pid }, 'stopping a uWSGI emperor left running by an earlier pier up');
        await terminate(pid, 'SIGTERM', 10_000);
      }
    } catch {
      // an unreadable record: nothing we can safely signal
    }
  }
  const postmaster = join(paths.postgresDir, 'postmaster.pid');
  if (existsSync(postmaster)) {
    const pid = Number(readFileSync(postmaster, 'utf8').split('\n')[0]);
    if (isAlive(pid) && belongsTo(pid, paths.postgresDir)) {
      log.warn({ pid }, 'stopping PostgreSQL left running by an earlier pier up');
      await terminate(pid, 'SIGINT', 15_000);
    }
  }
  rmSync(paths.stateFile, { force: true });
}
