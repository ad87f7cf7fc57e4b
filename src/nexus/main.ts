/** Entry point of `pier nexus --config FILE`: load config, start one replica, stop cleanly on SIGTERM/SIGINT. */
import { loadConfig } from '../config/index.js';
import { createLogger } from '../core/logger.js';
import { runDaemon } from '../core/daemon.js';
import { resolveDaemonUser } from '../core/privileges.js';
import { Nexus } from './nexus.js';
import { serverSecurity, UNROLED_FIX } from '../transport/index.js';

export async function main(configFile: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const config = loadConfig({ file: configFile, env });
  const log = createLogger({ level: config.log.level, name: `nexus:${config.nexus.id}` });
  if (config.db.url === '') {
    log.fatal('db.url is empty: a standalone nexus needs DATABASE_URL (or db.url in its config); pier up sets it');
    process.exitCode = 78;
    return;
  }
  const { curve, keyring, unroled } = serverSecurity(config.security, 'nexus');
  if (unroled.length > 0) log.warn({ files: unroled, fix: UNROLED_FIX }, 'allowed key files without a role are ignored');
  const runAs = resolveDaemonUser(config.security.user);
  const parentPid = env.PIER_SUPERVISOR_PID ? Number(env.PIER_SUPERVISOR_PID) : undefined;
  await runDaemon(new Nexus({ config, dbUrl: config.db.url, log, curve, keyring }), log, { what: 'nexus', parentPid, runAs });
}
