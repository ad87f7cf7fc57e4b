/**
 * A `pier.toml` for a `pier up` under test: every port free (PostgreSQL, balancer, one nexus, one collector) and an
 * instance port range of the test's own, so drills run beside other tests without colliding.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from './ports.js';

export interface UpConfig {
  /** The balancer's public port. */
  webPort: number;
  /** The nexus's API URL. */
  apiUrl: string;
  /** The environment the CLI needs to find this data folder (and nothing of the caller's). */
  env: NodeJS.ProcessEnv;
}

/** Writes `<dataDir>/pier.toml`; `portBase` + `portCount` × (pid % 100) give the runners' instance ports. */
export async function writeUpConfig(dataDir: string, options: { portBase: number; portCount: number }): Promise<UpConfig> {
  const [pg, c1, e1, h1, a1, web, si, st, sq] = await Promise.all(Array.from({ length: 9 }, () => freePort()));
  const apiUrl = `http://127.0.0.1:${a1}`;
  const min = options.portBase + (process.pid % 100) * options.portCount;
  writeFileSync(
    join(dataDir, 'pier.toml'),
    `[log]\nlevel = "info"\n[db]\nembeddedPort = ${pg}\n[balancer]\nport = ${web}\n[runner]\nportMin = ${min}\nportMax = ${min + options.portCount - 1}\n` +
      `[[cluster.stats]]\nintake = "tcp://127.0.0.1:${si}"\ntail = "tcp://127.0.0.1:${st}"\nquery = "tcp://127.0.0.1:${sq}"\n` +
      `[[cluster.nexus]]\ncontrol = "tcp://127.0.0.1:${c1}"\nevents = "tcp://127.0.0.1:${e1}"\nheartbeats = "tcp://127.0.0.1:${h1}"\napi = "${apiUrl}"\n`,
  );
  return { webPort: web!, apiUrl, env: { PIER_DATA: dataDir, XDG_CONFIG_HOME: join(dataDir, 'xdg') } };
}
