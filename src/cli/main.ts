#!/usr/bin/env node
/** The `pier` command line: operators run and inspect the cluster; app owners manage their apps. */
import { Command, CommanderError } from 'commander';
import { CliContext } from './context.js';
import { modulesFor } from './command-table.js';
import { oneLine, printError } from './output.js';

export async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const ctx = new CliContext(env);
  const program = new Command('pier')
    .description('Pier: a small platform-as-a-service for Python WSGI apps')
    .option('--debug', 'show stack traces on errors')
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`${oneLine(text)}\n`) });
  // Only the invoked command's module is loaded (all of them for help): see command-table.ts.
  for (const register of await Promise.all(modulesFor(argv.slice(2)).map((m) => m.load()))) register(program, ctx);
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
