/** Entry point of `pier stats --config FILE`: load config, run one collector, stop cleanly on SIGTERM/SIGINT. */
import { loadConfig } from '../config/index.js';
import { createLogger } from '../core/logger.js';
import { runDaemon } from '../core/daemon.js';
import { chownTree, resolveDaemonUser } from '../core/privileges.js';
import { assertReachableByOthers } from '../core/reach.js';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { serverSecurity, UNROLED_FIX } from '../transport/index.js';
import { StatsDaemon } from './stats.js';

export async function main(configFile: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const config = loadConfig({ file: configFile, env });
  const log = createLogger({ level: config.log.level, name: `stats:${config.stats.id}` });
  if (config.db.url === '') {
    log.fatal('db.url is empty: a standalone collector needs DATABASE_URL (or db.url in its config) for its request aggregates; pier up sets it');
    process.exitCode = 78;
    return;
  }
  const { curve, keyring, unroled } = serverSecurity(config.security, 'stats');
  if (unroled.length > 0) log.warn({ files: unroled, fix: UNROLED_FIX }, 'allowed key files without a role are ignored');
  const runAs = resolveDaemonUser(config.security.user);
  if (runAs) {
    // The log chunks are written after the drop: the folder is the collector user's alone (0700, no app user reads it).
    const dir = config.stats.dir === '' ? join(config.dataDir, 'stats') : config.stats.dir;
    assertReachableByOthers(dir, { who: `the collector runs as '${runAs.name}', which`, orElse: ' or choose another stats.dir' });
    mkdirSync(join(dir, 'logs'), { recursive: true, mode: 0o700 });
    chownTree(dir, runAs);
  }
  const parentPid = env.PIER_SUPERVISOR_PID ? Number(env.PIER_SUPERVISOR_PID) : undefined;
  await runDaemon(new StatsDaemon({ config, dbUrl: config.db.url, log, curve, keyring }), log, { what: 'stats collector', parentPid, runAs });
}
