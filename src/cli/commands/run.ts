/** pier run [--detach] [--type T] [--timeout 1h] -- CMD ARGS…, pier ps:stop run.N, and the one-off rows of pier ps. */
import type { Command } from 'commander';
import { ValidationError } from '../../core/errors.js';
import type { Dyno } from '../../protocol/index.js';
import { seg, type CliContext } from '../context.js';
import { print, printTable } from '../output.js';
import { attachSession } from '../session-client.js';
import { action, appOption } from './shared.js';

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000 };

/** Parses `--timeout`: 90s, 30m, 2h (or whole seconds). */
export function parseTimeout(value: string): number {
  const match = /^(\d{1,7})(s|m|h)?$/.exec(value);
  if (!match) throw new ValidationError(`--timeout '${value}' is not a duration like 90s, 30m or 2h`);
  return Number(match[1]) * UNIT_MS[match[2] ?? 's']!;
}

export function registerRunCommands(program: Command, ctx: CliContext): void {
  appOption(program.command('run').description("run a one-off command in the app's live release (a terminal when stdin is one); pier run -a APP -- CMD ARGS..."))
    .argument('[command...]', 'the command and its arguments (after --)')
    .option('-d, --detach', "run in the background; its output goes to 'pier logs' (origin run.N)")
    .option('--type <type>', "the process type it is named after (must be in the release's Procfile)")
    .option('--timeout <duration>', 'time limit, e.g. 30m or 2h (default: the platform\'s, 1h)')
    .option('--no-tty', 'plain pipes even when stdin is a terminal')
    .action(action(ctx, async (command: string[], opts: { app?: string; detach?: boolean; type?: string; timeout?: string; tty: boolean }) => {
      const app = ctx.app(opts);
      if (command.length === 0) throw new ValidationError('no command given; put it after --: pier run -a APP -- CMD ARGS...');
      const isTty = opts.tty && !opts.detach && process.stdin.isTTY === true && process.stdout.isTTY === true;
      const body = {
        command, ...(opts.detach ? { detach: true } : {}), ...(opts.type !== undefined ? { type: opts.type } : {}),
        ...(opts.timeout !== undefined ? { timeoutMs: parseTimeout(opts.timeout) } : {}),
        ...(isTty ? { pty: { rows: Math.max(1, process.stdout.rows || 24), cols: Math.max(1, process.stdout.columns || 80), term: termOf(ctx.env.TERM) } } : {}),
      };
      const created = await ctx.api().post<{ dyno: { name: string; runnerId?: string }; attach?: string }>(`/v1/apps/${seg(app)}/dynos`, body);
      if (opts.detach || !created.attach) {
        print(`running '${command.join(' ')}' as ${created.dyno.name} on ${created.dyno.runnerId ?? 'a runner'}; its output: pier logs -a ${app}; stop it: pier ps:stop ${created.dyno.name} -a ${app}`);
        return;
      }
      const { apiUrls, token } = ctx.credentials();
      process.exitCode = await attachSession({
        apiUrls, token: token ?? '', path: created.attach, isTty, onErrorLine: (line) => process.stderr.write(`${line}\n`),
      });
    }));

  appOption(program.command('ps:stop').description('stop a one-off (run.N): SIGTERM, then SIGKILL after the grace'))
    .argument('<dyno>', 'the one-off, e.g. run.1')
    .action(action(ctx, async (dyno: string, opts: { app?: string }) => {
      const app = ctx.app(opts);
      if (!/^run\.[1-9]\d{0,9}$/.test(dyno)) throw new ValidationError(`'${dyno}' is not a one-off; one-offs are named run.N (see 'pier ps -a ${app}'); scale process types with pier ps:scale TYPE=N`);
      await ctx.api().post(`/v1/apps/${seg(app)}/dynos/${seg(dyno)}/stop`, {});
      print(`stopping ${dyno} of ${app}`);
    }));
}

/** The app's running one-offs (for `pier ps`). */
export async function fetchOneOffs(ctx: CliContext, app: string): Promise<Dyno[]> {
  return (await ctx.api().get<{ dynos: Dyno[] }>(`/v1/apps/${seg(app)}/dynos`)).dynos;
}

/** Prints one-offs as `pier ps` shows them: name, command, runner, started. */
export function printOneOffs(dynos: Dyno[]): void {
  if (dynos.length === 0) return;
  print('=== run: one-off processes');
  printTable(['name', 'command', 'runner', 'started'], dynos.map((d) => [d.name, d.command.length > 60 ? `${d.command.slice(0, 57)}...` : d.command, d.runnerId ?? '-', new Date(d.startedAt).toISOString().replace('T', ' ').slice(0, 19)]));
}

function termOf(term: string | undefined): string {
  return term && /^[A-Za-z0-9._+-]{1,64}$/.test(term) ? term : 'xterm';
}
