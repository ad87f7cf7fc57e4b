/** The layout of a `pier up` data folder. */
import { join } from 'node:path';

export interface PlatformPaths {
  dataDir: string;
  /** Embedded PostgreSQL cluster. */
  postgresDir: string;
  /** One log file per daemon, plus up.log for the supervisor. */
  logsDir: string;
  /** Generated per-daemon config files. */
  configDir: string;
  keysDir: string;
  /** API URLs and the admin token, read by the CLI on this machine (mode 0600). */
  adminFile: string;
  /** Pid of the running supervisor. */
  pidFile: string;
  /** What is running where (supervisor pid, children, URLs), written once ready. */
  stateFile: string;
}

export function platformPaths(dataDir: string): PlatformPaths {
  return {
    dataDir,
    postgresDir: join(dataDir, 'postgres'),
    logsDir: join(dataDir, 'logs'),
    configDir: join(dataDir, 'config'),
    keysDir: join(dataDir, 'keys'),
    adminFile: join(dataDir, 'admin.json'),
    pidFile: join(dataDir, 'pier.pid'),
    stateFile: join(dataDir, 'up.json'),
  };
}
