/**
 * The data folder of `pier up`, checked before anything is made in it: as root, the embedded PostgreSQL runs as
 * `postgres` and apps run as their own users, and each must be able to walk down to its folder inside it.
 */
import { join } from 'node:path';
import type { PierConfig } from '../config/index.js';
import { APP_USERS_REACH, POSTGRES_REACH, assertReachableByOthers, isRoot, makeFolders } from '../core/reach.js';
import { platformPaths } from './paths.js';

/**
 * Checks every folder `pier up` will hand to another user, then makes the data folder (mode 0711 when it creates
 * it: others may walk through it, not list it; an existing folder keeps its mode).
 * @throws PierError PIER_CONFIG naming the first folder on the way that others cannot search, and the fix
 */
export function prepareDataDir(config: PierConfig, runners: number): void {
  if (isRoot()) {
    const paths = platformPaths(config.dataDir);
    if (config.db.url === '') assertReachableByOthers(paths.postgresDir, { ...POSTGRES_REACH, orElse: ' or choose another --data folder' });
    if (runners > 0 && config.runner.appUsers) {
      assertReachableByOthers(config.runner.dir || join(config.dataDir, 'runner-runner-1'), APP_USERS_REACH);
    }
  }
  makeFolders(config.dataDir, 0o711);
}
