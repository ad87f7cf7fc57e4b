/**
 * Which module registers which top-level command, in `pier --help` order. main.ts loads only the module of the
 * command being run (each command module pulls in what its actions need), and every module for help, an unknown
 * command or a global option it does not know: the CLI's start-up is most of `pier run`'s time to first byte.
 */
import type { Command } from 'commander';
import type { CliContext } from './context.js';

export type Register = (program: Command, ctx: CliContext) => void;

export interface CommandModule {
  /** The top-level command names the module registers (a test checks this against what it registers). */
  commands: readonly string[];
  load: () => Promise<Register>;
}

export const COMMAND_MODULES: readonly CommandModule[] = [
  { commands: ['up', 'down', 'status', 'nodes', 'nodes:drain', 'login', 'nexus', 'runner', 'balancer'], load: async () => (await import('./commands/platform.js')).registerPlatformCommands },
  { commands: ['apps', 'apps:create', 'apps:info', 'apps:destroy', 'owners:create'], load: async () => (await import('./commands/apps.js')).registerAppCommands },
  { commands: ['hosts', 'hosts:add', 'hosts:remove'], load: async () => (await import('./commands/hosts.js')).registerHostCommands },
  { commands: ['config', 'config:set', 'config:unset'], load: async () => (await import('./commands/config.js')).registerConfigCommands },
  { commands: ['limits', 'limits:set'], load: async () => (await import('./commands/limits.js')).registerLimitCommands },
  { commands: ['checks', 'checks:set', 'health', 'alerts', 'alerts:webhook'], load: async () => (await import('./commands/health.js')).registerHealthCommands },
  { commands: ['releases', 'ps', 'ps:scale'], load: async () => (await import('./commands/releases.js')).registerReleaseCommands },
  { commands: ['deploy', 'promote', 'rollback'], load: async () => (await import('./commands/deploy.js')).registerDeployCommand },
  { commands: ['logs', 'stats'], load: async () => (await import('./commands/logs.js')).registerLogCommands },
  { commands: ['explain'], load: async () => (await import('./commands/explain.js')).registerExplainCommand },
  { commands: ['tokens:rotate'], load: async () => (await import('./commands/tokens.js')).registerTokenCommands },
  { commands: ['addons', 'addons:create', 'addons:info', 'addons:destroy'], load: async () => (await import('./commands/addons.js')).registerAddonCommands },
  { commands: ['run', 'ps:stop'], load: async () => (await import('./commands/run.js')).registerRunCommands },
];

/**
 * The modules to load for `args` (argv without node and the script): the one registering the command named first
 * (after `--debug`, the one global option), or all of them when there is none, it is unknown, or another option
 * comes first (`pier --help`, `pier --version`, `pier help run`: they must see every command).
 */
export function modulesFor(args: readonly string[]): readonly CommandModule[] {
  for (const arg of args) {
    if (arg === '--debug') continue;
    if (arg.startsWith('-')) return COMMAND_MODULES;
    const found = COMMAND_MODULES.find((m) => m.commands.includes(arg));
    return found ? [found] : COMMAND_MODULES;
  }
  return COMMAND_MODULES;
}
