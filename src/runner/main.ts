/** Entry point of `pier runner --config FILE`: load config, run the runner, stop cleanly on SIGTERM/SIGINT. */
import { loadConfig } from '../config/index.js';
import { createLogger } from '../core/logger.js';
import { runDaemon } from '../core/daemon.js';
import { ConfigError } from '../core/errors.js';
import { ensureNodeKey, loadCurve } from '../transport/index.js';
import { Runner } from './runner.js';

export async function main(configFile: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const config = loadConfig({ file: configFile, env });
  if (config.security.user !== '' && config.security.user !== 'root') {
    throw new ConfigError(`security.user '${config.security.user}' is for nexus, balancer and stats daemons: a runner needs root (it creates app users and cgroups and starts each app as its user); remove security.user from the runner's config`);
  }
  const log = createLogger({ level: config.log.level, name: `runner:${config.runner.id}` });
  if (config.security.curve) {
    const { publicKey, isNew } = ensureNodeKey(config.security.keysDir);
    if (isNew) log.warn({ publicKey, allowAs: `allowed/runner/${config.runner.id}.pub` }, 'new node key created; allow it on every nexus and collector');
  }
  const curve = config.security.curve ? loadCurve(config.security.keysDir, 'client') : undefined;
  const parentPid = env.PIER_SUPERVISOR_PID ? Number(env.PIER_SUPERVISOR_PID) : undefined;
  await runDaemon(new Runner({ config, log, curve }), log, { what: 'runner', parentPid });
}
