/**
 * The data folder of `pier up`, checked before anything is made in it: as root, the embedded PostgreSQL runs as
 * `postgres` and apps run as their own users, and each must be able to walk down to its folder inside it.
 */
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { PierConfig } from '../config/index.js';
import { APP_USERS_REACH, POSTGRES_REACH, assertReachableByOthers, isRoot, makeFolders } from '../core/reach.js';
import { DEFAULT_DAEMON_USER } from '../core/privileges.js';
import { platformPaths } from './paths.js';

/**
 * The user `pier up` runs its nexus, balancer and stats daemons as: `security.user`, or 'pier' when empty; none
 * when not root or when `security.user = "root"` (everything then runs as root, as before).
 */
export function upDaemonUser(config: PierConfig): string | undefined {
  if (!isRoot() || config.security.user === 'root') return undefined;
  return config.security.user || DEFAULT_DAEMON_USER;
}

/**
 * Checks every folder `pier up` will hand to another user, then makes the data folder (mode 0711 when it creates
 * it: others may walk through it, not list it; an existing folder keeps its mode) and its root-only folders:
 * `logs/` (every daemon's log: app names, errors) and `config/` (generated daemon configs), 0700 even when they
 * existed (the daemons get their log as an open file and read their config before dropping root).
 * @throws PierError PIER_CONFIG naming the first folder on the way that others cannot search, and the fix
 */
export function prepareDataDir(config: PierConfig, runners: number): void {
  const paths = platformPaths(config.dataDir);
  if (isRoot()) {
    if (config.db.url === '') assertReachableByOthers(paths.postgresDir, { ...POSTGRES_REACH, orElse: ' or choose another --data folder' });
    if (runners > 0 && config.runner.appUsers) {
      assertReachableByOthers(config.runner.dir || join(config.dataDir, 'runner-runner-1'), APP_USERS_REACH);
    }
    const user = upDaemonUser(config);
    if (user !== undefined) {
      assertReachableByOthers(config.stats.dir || join(config.dataDir, 'stats'), { who: `the stats collectors run as '${user}', which`, orElse: ' or choose another --data folder' });
    }
  }
  makeFolders(config.dataDir, 0o711);
  for (const dir of [paths.logsDir, paths.configDir]) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
  }
}
