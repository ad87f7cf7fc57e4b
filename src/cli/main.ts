#!/usr/bin/env node
/** The `pier` command line: operators run and inspect the cluster; app owners manage their apps. */
import { Command, CommanderError } from 'commander';
import { CliContext } from './context.js';
import { registerAppCommands } from './commands/apps.js';
import { registerConfigCommands } from './commands/config.js';
import { registerLimitCommands } from './commands/limits.js';
import { registerHealthCommands } from './commands/health.js';
import { registerDeployCommand } from './commands/deploy.js';
import { registerExplainCommand } from './commands/explain.js';
import { registerHostCommands } from './commands/hosts.js';
import { registerLogCommands } from './commands/logs.js';
import { registerPlatformCommands } from './commands/platform.js';
import { registerReleaseCommands } from './commands/releases.js';
import { registerTokenCommands } from './commands/tokens.js';
import { registerRunCommands } from './commands/run.js';
import { oneLine, printError } from './output.js';

export async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const ctx = new CliContext(env);
  const program = new Command('pier')
    .description('Pier: a small platform-as-a-service for Python WSGI apps')
    .option('--debug', 'show stack traces on errors')
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`${oneLine(text)}\n`) });
  registerPlatformCommands(program, ctx);
  registerAppCommands(program, ctx);
  registerHostCommands(program, ctx);
  registerConfigCommands(program, ctx);
  registerLimitCommands(program, ctx);
  registerHealthCommands(program, ctx);
  registerReleaseCommands(program, ctx);
  registerDeployCommand(program, ctx);
  registerLogCommands(program, ctx);
  registerExplainCommand(program, ctx);
  registerTokenCommands(program, ctx);
  registerRunCommands(program, ctx);
  for (const command of program.commands) command.exitOverride().configureOutput({ outputError: (text, write) => write(`${oneLine(text)}\n`) });
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 64;
    return printError(err, argv.includes('--debug'));
  } finally {
    await ctx.close();
  }
  return typeof process.exitCode === 'number' ? process.exitCode : 0;
}

process.exitCode = await main(process.argv, process.env);
