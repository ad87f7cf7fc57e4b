/** Paths the CLI needs without loading the config schema (TypeBox): kept apart so `pier` starts fast. */
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';

/** The data folder used when none is configured. */
export function defaultDataDir(env: Record<string, string | undefined> = {}): string {
  if (env.PIER_DATA) return env.PIER_DATA;
  // Embedded PostgreSQL runs as the `postgres` user, which must be able to enter the data folder: not /root.
  return userInfo().uid === 0 ? '/var/lib/pier' : join(homedir(), '.local', 'share', 'pier');
}
