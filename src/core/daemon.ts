/**
 * Runs a daemon from its main.ts: start, wait for SIGTERM/SIGINT (or the death of the supervisor that started
 * it), stop, flush logs. A second signal exits at once. Only entry points call this (it installs process-wide
 * signal handlers).
 */
import type { Logger } from 'pino';
import { PierError } from './errors.js';
import { dropPrivileges, type UnixUser } from './privileges.js';
import { isProcessAlive } from './process.js';
import type { Service } from './service.js';

export interface RunDaemonOptions {
  /** Names the daemon in the start-failure message. @default 'daemon' */
  what?: string;
  /** Called once the service has started. */
  onReady?: () => void;
  /** Stop when this process (the supervisor) is gone, so a killed `pier up` leaves no orphans. */
  parentPid?: number;
  /**
   * Drop root to this user once the service has started (sockets bound, files open, modules loaded), before it
   * says `ready`; start fails if the drop does. @default undefined (keep the current user)
   */
  runAs?: UnixUser | undefined;
}

export async function runDaemon(service: Service, log: Logger, options: RunDaemonOptions = {}): Promise<void> {
  try {
    await service.start();
    if (options.runAs) {
      dropPrivileges(options.runAs);
      log.info({ user: options.runAs.name, uid: options.runAs.uid }, 'dropped root');
    }
  } catch (err) {
    log.fatal({ err }, 'start failed');
    await service.stop().catch(() => undefined);
    log.flush();
    const reason = err instanceof Error ? err.message : String(err);
    throw new PierError('PIER_ILLEGAL_STATE', `${options.what ?? 'daemon'} failed to start: ${reason}`, { cause: err });
  }
  log.info('ready');
  options.onReady?.();
  const reason = await new Promise<string>((resolve) => {
    let parentWatch: NodeJS.Timeout | undefined;
    const done = (why: string): void => {
      clearInterval(parentWatch);
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      process.once('SIGTERM', () => process.exit(1));
      process.once('SIGINT', () => process.exit(1));
      resolve(why);
    };
    const onSignal = (signal: NodeJS.Signals): void => done(signal);
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    const parentPid = options.parentPid;
    if (parentPid !== undefined) {
      parentWatch = setInterval(() => {
        if (!isProcessAlive(parentPid)) done('supervisor gone');
      }, 1000);
    }
  });
  log.info({ reason }, 'stopping');
  await service.stop();
  log.info('stopped');
  log.flush();
}
