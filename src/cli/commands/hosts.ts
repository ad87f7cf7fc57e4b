/** pier hosts, hosts:add, hosts:remove. */
import type { Command } from 'commander';
import { ValidationError } from '../../core/errors.js';
import { HOSTNAME_PATTERN, PATTERN_HINTS } from '../../protocol/patterns.js';
import { seg, type CliContext } from '../context.js';
import { print, printJson } from '../output.js';
import { action, appOption, jsonOption } from './shared.js';

function checkHostname(host: string): string {
  const lower = host.toLowerCase();
  if (lower.length > 253 || !new RegExp(HOSTNAME_PATTERN).test(lower)) throw new ValidationError(`hostname '${host}' ${PATTERN_HINTS[HOSTNAME_PATTERN]}`);
  return lower;
}

export function registerHostCommands(program: Command, ctx: CliContext): void {
  jsonOption(appOption(program.command('hosts').description("list an app's hostnames"))).action(
    action(ctx, async (opts: { app?: string; json?: boolean }) => {
      const app = ctx.app(opts);
      const { hostnames } = await ctx.api().get<{ hostnames: string[] }>(`/v1/apps/${seg(app)}/hostnames`);
      if (opts.json) return printJson(hostnames);
      print(`${app}.localhost (default)`);
      for (const host of hostnames) print(host);
    }),
  );

  appOption(program.command('hosts:add').description('route a hostname (or *.domain wildcard) to an app').argument('<hostname>')).action(
    action(ctx, async (host: string, opts: { app?: string }) => {
      const app = ctx.app(opts);
      const hostname = checkHostname(host);
      await ctx.api().post(`/v1/apps/${seg(app)}/hostnames`, { hostname });
      print(`added ${hostname} to ${app}`);
    }),
  );

  appOption(program.command('hosts:remove').description('stop routing a hostname to an app').argument('<hostname>')).action(
    action(ctx, async (host: string, opts: { app?: string }) => {
      const app = ctx.app(opts);
      const hostname = checkHostname(host);
      await ctx.api().delete(`/v1/apps/${seg(app)}/hostnames/${seg(hostname)}`);
      print(`removed ${hostname} from ${app}`);
    }),
  );
}
