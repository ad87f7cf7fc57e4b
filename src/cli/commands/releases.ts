/** pier releases, ps, ps:scale. */
import type { Command } from 'commander';
import { ValidationError } from '../../core/errors.js';
import type { Instance, Release } from '../../protocol/common.js';
import { seg, type CliContext } from '../context.js';
import { ago, print, printJson, printTable } from '../output.js';
import { action, appOption, jsonOption } from './shared.js';

/** Parses `web=N` (Heroku's ps:scale syntax); only the web process type exists for now. */
export function parseScale(args: string[]): { web: number } {
  let web: number | undefined;
  for (const arg of args) {
    const match = /^([a-z][a-z0-9_-]*)=(\d{1,3})$/.exec(arg);
    if (!match) throw new ValidationError(`'${arg}' is not TYPE=COUNT (for example web=2)`);
    if (match[1] !== 'web') throw new ValidationError(`unknown process type '${match[1]}'; only 'web' can be scaled`);
    const count = Number(match[2]);
    if (count > 100) throw new ValidationError(`web=${count} is more than the limit of 100 instances`);
    web = count;
  }
  if (web === undefined) throw new ValidationError('nothing to scale; use web=N');
  return { web };
}

export function registerReleaseCommands(program: Command, ctx: CliContext): void {
  jsonOption(appOption(program.command('releases').description("list an app's releases"))).action(
    action(ctx, async (opts: { app?: string; json?: boolean }) => {
      const app = ctx.app(opts);
      const { releases } = await ctx.api().get<{ releases: Release[] }>(`/v1/apps/${seg(app)}/releases`);
      if (opts.json) return printJson(releases);
      if (releases.length === 0) return print(`no releases yet; deploy with 'pier deploy DIR -a ${app}'`);
      printTable(
        ['version', 'status', 'sha256', 'by', 'when', 'description'],
        releases.map((r) => [`v${r.version}`, r.status, r.sha256.slice(0, 12), r.createdBy ?? '-', ago(r.createdAt), r.error ? `${r.description} (${r.error.split('\n')[0]})` : r.description]),
      );
    }),
  );

  jsonOption(appOption(program.command('ps').description("list an app's instances"))).action(
    action(ctx, async (opts: { app?: string; json?: boolean }) => {
      const app = ctx.app(opts);
      const { instances } = await ctx.api().get<{ instances: Instance[] }>(`/v1/apps/${seg(app)}/instances`);
      if (opts.json) return printJson(instances);
      if (instances.length === 0) return print('no instances running');
      printTable(
        ['instance', 'type', 'release', 'state', 'runner', 'address'],
        instances.map((i) => [i.id, i.processType, `v${i.release}${i.isLive ? ' (live)' : ''}`, i.state, i.runnerId, i.port === null ? '-' : `${i.host}:${i.port}`]),
      );
    }),
  );

  appOption(program.command('ps:scale').description('set how many web instances run').argument('<TYPE=COUNT...>', 'e.g. web=3')).action(
    action(ctx, async (args: string[], opts: { app?: string }) => {
      const app = ctx.app(opts);
      const { web } = await ctx.api().patch<{ web: number }>(`/v1/apps/${seg(app)}/formation`, parseScale(args));
      print(`scaled ${app} to web=${web}`);
    }),
  );
}
