/** pier releases, ps, ps:scale. */
import type { Command } from 'commander';
import { ValidationError } from '../../core/errors.js';
import type { Instance, Release } from '../../protocol/common.js';
import { seg, type CliContext } from '../context.js';
import { ago, print, printJson, printTable } from '../output.js';
import { action, appOption, jsonOption } from './shared.js';
import { fetchOneOffs, printOneOffs } from './run.js';

/** Parses `web=2 worker=1` (Heroku's ps:scale syntax) into counts by type; the nexus checks the types exist. */
export function parseScale(args: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const arg of args) {
    const match = /^([a-z][a-z0-9_-]{0,29})=(\d{1,3})$/.exec(arg);
    if (!match) throw new ValidationError(`'${arg}' is not TYPE=COUNT (for example web=2 or worker=1)`);
    const count = Number(match[2]);
    if (count > 100) throw new ValidationError(`${match[1]}=${count} is more than the limit of 100 instances`);
    if (Object.hasOwn(counts, match[1]!)) throw new ValidationError(`'${match[1]}' is given twice`);
    counts[match[1]!] = count;
  }
  if (Object.keys(counts).length === 0) throw new ValidationError('nothing to scale; use TYPE=COUNT, for example web=2 worker=1');
  return counts;
}

/** `web=2 worker=1`, in the formation's order. */
export function formatFormation(formation: Record<string, number>): string {
  return Object.entries(formation).map(([type, count]) => `${type}=${count}`).join(' ');
}

/** How long ago `at` was, as `ps` shows uptime: `42s`, `5m`, `3h`, `2d`. */
function uptime(at: number | undefined): string {
  return at === undefined ? '-' : ago(at).replace(/ ago$/, '');
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
      const oneOffs = await fetchOneOffs(ctx, app);
      if (instances.length === 0 && oneOffs.length === 0) return print(`no processes running; scale with 'pier ps:scale web=1 -a ${app}'`);
      if (instances.length > 0) printTable(
        ['process', 'type', 'release', 'state', 'runner', 'uptime', 'address', 'instance'],
        instances.map((i) => [
          i.name ?? i.id, i.processType, `v${i.release}${i.isLive ? ' (live)' : ''}`, i.state, i.runnerId, uptime(i.createdAt),
          i.port === null ? '-' : `${i.host}:${i.port}`, i.id,
        ]),
      );
      printOneOffs(oneOffs);
    }),
  );

  appOption(program.command('ps:scale').description('set how many instances of each process type run').argument('<TYPE=COUNT...>', 'e.g. web=3 worker=2')
    .option('--singleton', 'the types named run at most once across the cluster, fenced by a lease (e.g. clock=1 --singleton)')
    .option('--no-singleton', 'undo --singleton for the types named')).action(
    action(ctx, async (args: string[], opts: { app?: string; singleton?: boolean }) => {
      const app = ctx.app(opts);
      const query = opts.singleton === undefined ? '' : `?singleton=${opts.singleton}`;
      const formation = await ctx.api().patch<Record<string, number>>(`/v1/apps/${seg(app)}/formation${query}`, parseScale(args));
      print(`scaled ${app} to ${formatFormation(formation)}${opts.singleton ? ` (${Object.keys(parseScale(args)).join(', ')}: singleton)` : ''}`);
    }),
  );
}
