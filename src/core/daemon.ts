/**
 * Runs a daemon from its main.ts: start, wait for SIGTERM/SIGINT, stop, flush logs. A second signal exits at
 * once. Only entry points call this (it installs process-wide signal handlers).
 */
import type { Logger } from 'pino';
import { PierError } from './errors.js';
import type { Service } from './service.js';

export async function runDaemon(service: Service, log: Logger, what = 'daemon', onReady?: () => void): Promise<void> {
  try {
    await service.start();
  } catch (err) {
    log.fatal({ err }, 'start failed');
    await service.stop().catch(() => undefined);
    log.flush();
    const reason = err instanceof Error ? err.message : String(err);
    throw new PierError('PIER_ILLEGAL_STATE', `${what} failed to start: ${reason}`, { cause: err });
  }
  log.info('ready');
  onReady?.();
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    const onSignal = (sig: NodeJS.Signals): void => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      process.once('SIGTERM', () => process.exit(1));
      process.once('SIGINT', () => process.exit(1));
      resolve(sig);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  log.info({ signal }, 'stopping');
  await service.stop();
  log.info('stopped');
  log.flush();
}
