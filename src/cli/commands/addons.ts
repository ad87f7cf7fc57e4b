/** pier addons, addons:create KIND, addons:info NAME, addons:destroy NAME --confirm APP. */
import type { Command } from 'commander';
import { ValidationError } from '../../core/errors.js';
import type { AddonView } from '../../protocol/addons.js';
import { ADDON_KIND_NAMES, ADDON_NAME_PATTERN } from '../../protocol/patterns.js';
import { seg, type CliContext } from '../context.js';
import { ago, print, printFields, printJson, printTable } from '../output.js';
import { action, appOption, jsonOption } from './shared.js';

/** Attaching or detaching an add-on changes a config var, so it is a deploy: wait up to 20 s for a running one. */
const LOCK_WAIT = { 'pier-lock-wait': '20' };

/** Names users bring from Heroku, and the short one. */
const KIND_ALIASES: Record<string, (typeof ADDON_KIND_NAMES)[number]> = {
  postgres: 'postgresql', 'heroku-postgresql': 'postgresql', pg: 'postgresql', 'heroku-redis': 'redis',
};

/** The kind a user typed, checked before any request: one of Pier's kinds (or a known alias of one). */
export function parseAddonKind(raw: string): string {
  const kind = raw.trim().toLowerCase().replace(/:.*$/, ''); // Heroku plans ('heroku-postgresql:mini') name no plan here
  const resolved = KIND_ALIASES[kind] ?? kind;
  if (!(ADDON_KIND_NAMES as readonly string[]).includes(resolved)) {
    throw new ValidationError(`unknown add-on kind '${raw}'; choose one of: ${ADDON_KIND_NAMES.join(', ')} (e.g. 'pier addons:create postgresql -a APP')`);
  }
  return resolved;
}

/** An add-on name as `pier addons` lists it. */
export function checkAddonName(name: string): string {
  if (!new RegExp(ADDON_NAME_PATTERN).test(name)) {
    throw new ValidationError(`add-on name '${name}' must be lowercase letters, digits and dashes, as 'pier addons' lists it (e.g. postgresql-amber-48213)`);
  }
  return name;
}

/** addons:destroy's --confirm must repeat the app's name. */
export function checkDestroyConfirm(app: string, name: string, confirm: string | undefined): void {
  if (confirm !== app) {
    throw new ValidationError(`this destroys add-on '${name}' of app '${app}' and all its data; to proceed, repeat with --confirm ${app}`);
  }
}

function detailFields(details: Record<string, unknown>): Array<[string, string | number]> {
  return Object.entries(details)
    .filter(([, v]) => v !== null && v !== undefined && v !== '')
    .map(([k, v]) => [k.replace(/[A-Z]/g, (c) => ` ${c.toLowerCase()}`), typeof v === 'number' ? v : String(v)]);
}

export function registerAddonCommands(program: Command, ctx: CliContext): void {
  jsonOption(appOption(program.command('addons').description("list an app's add-ons (databases, caches)"))).action(
    action(ctx, async (opts: { app?: string; json?: boolean }) => {
      const app = ctx.app(opts);
      const { addons } = await ctx.api().get<{ addons: AddonView[] }>(`/v1/apps/${seg(app)}/addons`);
      if (opts.json) return printJson(addons);
      if (addons.length === 0) return print(`no add-ons on ${app}; add one with 'pier addons:create postgresql -a ${app}'`);
      printTable(['name', 'kind', 'state', 'config var', 'created'], addons.map((a) => [a.name, a.kind, a.state, a.configVar, ago(a.createdAt)]));
    }),
  );

  jsonOption(appOption(program.command('addons:create').description('attach a new add-on to an app').argument('<kind>', `one of: ${ADDON_KIND_NAMES.join(', ')}`))).action(
    action(ctx, async (raw: string, opts: { app?: string; json?: boolean }) => {
      const kind = parseAddonKind(raw);
      const app = ctx.app(opts);
      const { addon } = await ctx.api().post<{ addon: AddonView }>(`/v1/apps/${seg(app)}/addons`, { kind }, LOCK_WAIT);
      if (opts.json) return printJson(addon);
      print(addon.state === 'ready'
        ? `created ${addon.name} for ${app}; ${addon.configVar} is set (see 'pier config -a ${app}')`
        : `creating ${addon.name} for ${app}; ${addon.configVar} is set once it is up (see 'pier addons:info ${addon.name} -a ${app}')`);
    }),
  );

  jsonOption(appOption(program.command('addons:info').description("show an add-on's details").argument('<name>', "add-on name (see 'pier addons')"))).action(
    action(ctx, async (name: string, opts: { app?: string; json?: boolean }) => {
      const app = ctx.app(opts);
      const { addon } = await ctx.api().get<{ addon: AddonView }>(`/v1/apps/${seg(app)}/addons/${seg(checkAddonName(name))}`);
      if (opts.json) return printJson(addon);
      printFields([
        ['name', addon.name], ['kind', addon.kind], ['app', addon.app], ['state', addon.state], ['config var', addon.configVar],
        ...detailFields(addon.details), ['created', new Date(addon.createdAt).toISOString()],
      ]);
    }),
  );

  appOption(
    program
      .command('addons:destroy')
      .description('destroy an add-on and its data')
      .argument('<name>', "add-on name (see 'pier addons')")
      .option('--confirm <app>', 'the app name again, to confirm'),
  ).action(
    action(ctx, async (name: string, opts: { app?: string; confirm?: string }) => {
      const app = ctx.app(opts);
      checkAddonName(name);
      checkDestroyConfirm(app, name, opts.confirm);
      const { addon } = await ctx.api().send<{ addon: AddonView }>('DELETE', `/v1/apps/${seg(app)}/addons/${seg(name)}`, undefined, 'application/json', LOCK_WAIT);
      print(addon.state === 'destroyed'
        ? `destroyed ${addon.name} of ${app}; ${addon.configVar} is unset`
        : `destroying ${addon.name} of ${app}; ${addon.configVar} is unset and the platform finishes removing it`);
    }),
  );
}
