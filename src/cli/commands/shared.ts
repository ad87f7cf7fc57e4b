/** Option helpers and the wrapper that turns any failure into a one-line error and an exit code. */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { printError } from '../output.js';

export function appOption(command: Command): Command {
  return command.option('-a, --app <name>', 'app name (default: $PIER_APP)');
}

export function jsonOption(command: Command): Command {
  return command.option('--json', 'print JSON');
}

/** Wraps a command body: errors print as one line on stderr and set the exit code. */
export function action<A extends unknown[]>(ctx: CliContext, body: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await body(...args);
    } catch (err) {
      process.exitCode = printError(err, ctx.env.PIER_DEBUG === '1' || process.argv.includes('--debug'));
    }
  };
}
