/** Entry point of `pier balancer --config FILE`: load config, run the balancer, stop cleanly on SIGTERM/SIGINT. */
import { loadConfig } from '../config/index.js';
import { createLogger } from '../core/logger.js';
import { runDaemon } from '../core/daemon.js';
import { resolveDaemonUser } from '../core/privileges.js';
import { ensureNodeKey, loadCurve } from '../transport/index.js';
import { Balancer } from './balancer.js';

/** Runs the balancer until SIGTERM/SIGINT (or the supervisor's death); `env` supplies PIER_* settings. */
export async function main(configFile: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const config = loadConfig({ file: configFile, env });
  const log = createLogger({ level: config.log.level, name: `balancer:${config.balancer.id}` });
  if (config.security.curve) {
    const { publicKey, isNew } = ensureNodeKey(config.security.keysDir);
    if (isNew) log.warn({ publicKey, allowAs: `allowed/balancer/${config.balancer.id}.pub` }, 'new node key created; allow it on every nexus and collector');
  }
  const curve = config.security.curve ? loadCurve(config.security.keysDir, 'client') : undefined;
  const runAs = resolveDaemonUser(config.security.user);
  const parentPid = env.PIER_SUPERVISOR_PID ? Number(env.PIER_SUPERVISOR_PID) : undefined;
  await runDaemon(new Balancer({ config, log, curve }), log, { what: 'balancer', parentPid, runAs });
}
