/** pier apps, apps:create, apps:info, apps:destroy, owners:create. */
import type { Command } from 'commander';
import { ValidationError } from '../../core/errors.js';
import type { AddonView } from '../../protocol/addons.js';
import type { App, Owner } from '../../protocol/common.js';
import { checkAppName, seg, type CliContext } from '../context.js';
import { ago, print, printFields, printJson, printTable } from '../output.js';
import { action, appOption, jsonOption } from './shared.js';

/** The URL the balancer serves an app at, as the API says (an older nexus says nothing: the one-machine default). */
export function appUrl(name: string, url?: string): string {
  return url ?? `http://${name}.localhost:8080/`;
}

export function registerAppCommands(program: Command, ctx: CliContext): void {
  jsonOption(program.command('apps').description('list your apps')).action(
    action(ctx, async (opts: { json?: boolean }) => {
      const { apps } = await ctx.api().get<{ apps: App[] }>('/v1/apps');
      if (opts.json) return printJson(apps);
      if (apps.length === 0) return print("no apps yet; create one with 'pier apps:create NAME'");
      printTable(['name', 'owner', 'hostnames', 'created'], apps.map((a) => [a.name, a.owner, a.hostnames.join(',') || '-', ago(a.createdAt)]));
    }),
  );

  jsonOption(program.command('apps:create').description('create an app').argument('<name>', 'app name (lowercase letters, digits, dashes)')).action(
    action(ctx, async (name: string, opts: { json?: boolean }) => {
      const { app, url } = await ctx.api().post<{ app: App; url?: string }>('/v1/apps', { name: checkAppName(name) });
      if (opts.json) return printJson(app);
      print(`created app '${app.name}'; once deployed it answers at ${appUrl(app.name, url)}`);
    }),
  );

  jsonOption(appOption(program.command('apps:info').description("show an app's details"))).action(
    action(ctx, async (opts: { app?: string; json?: boolean }) => {
      const name = ctx.app(opts);
      const { app, url } = await ctx.api().get<{ app: App; url?: string }>(`/v1/apps/${seg(name)}`);
      if (opts.json) return printJson(app);
      const { addons } = await ctx.api().get<{ addons: AddonView[] }>(`/v1/apps/${seg(name)}/addons`);
      printFields([
        ['name', app.name],
        ['owner', app.owner],
        ['url', appUrl(app.name, url)],
        ['hostnames', app.hostnames.join(', ') || '-'],
        ['web scale', app.webScale],
        ['add-ons', addons.map((a) => `${a.name} (${a.configVar})`).join(', ') || '-'],
        ['created', new Date(app.createdAt).toISOString()],
      ]);
    }),
  );

  appOption(
    program
      .command('apps:destroy')
      .description('destroy an app and everything in it')
      .argument('[name]', 'app to destroy (or -a)')
      .requiredOption('--confirm <name>', 'the app name again, to confirm'),
  ).action(
    action(ctx, async (positional: string | undefined, opts: { app?: string; confirm: string }) => {
      const name = positional === undefined ? ctx.app(opts) : checkAppName(positional);
      if (opts.confirm !== name) {
        throw new ValidationError(`this destroys app '${name}' and everything in it; to proceed, repeat with --confirm ${name}`);
      }
      await ctx.api().delete(`/v1/apps/${seg(name)}`);
      print(`destroyed app '${name}'`);
    }),
  );

  jsonOption(program.command('owners:create').description('create an app owner and print its API token (operators)').argument('<name>', 'owner name')).action(
    action(ctx, async (name: string, opts: { json?: boolean }) => {
      const created = await ctx.api().post<{ owner: Owner; token?: string; message?: string }>('/v1/owners', { name: checkAppName(name, 'owner name') });
      if (opts.json) return printJson(created);
      // A retry of a request the nexus had already applied: the token was only in the first (lost) answer.
      if (created.token === undefined) return print(created.message ?? `created owner '${created.owner.name}'`);
      print(`created owner '${created.owner.name}'; their API token (shown once):`);
      print(created.token);
    }),
  );
}
