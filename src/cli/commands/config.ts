/** pier config, config:set K=V…, config:unset K…. */
import type { Command } from 'commander';
import { ValidationError } from '../../core/errors.js';
import { CONFIG_KEY_PATTERN, CONFIG_VALUE_PATTERN, PATTERN_HINTS } from '../../protocol/patterns.js';
import { seg, type CliContext } from '../context.js';
import { print, printJson } from '../output.js';
import { action, appOption, jsonOption } from './shared.js';

const KEY = new RegExp(CONFIG_KEY_PATTERN);
const VALUE = new RegExp(CONFIG_VALUE_PATTERN, 'u');

function checkKey(key: string): string {
  if (!KEY.test(key)) throw new ValidationError(`config var name '${key}' ${PATTERN_HINTS[CONFIG_KEY_PATTERN]}`);
  return key;
}

/** Parses K=V arguments (the value may contain '='); every argument is checked before anything is sent. */
/** A config change is a deploy: it waits up to 20 s for a running deploy of the app to finish. */
const CONFIG_LOCK_WAIT = { 'pier-lock-wait': '20' };

export function parseAssignments(args: string[]): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const arg of args) {
    const eq = arg.indexOf('=');
    if (eq <= 0) throw new ValidationError(`'${arg}' is not KEY=VALUE`);
    const key = checkKey(arg.slice(0, eq));
    const value = arg.slice(eq + 1);
    if (!VALUE.test(value)) throw new ValidationError(`value of ${key} ${PATTERN_HINTS[CONFIG_VALUE_PATTERN]}`);
    vars[key] = value;
  }
  return vars;
}

function printVars(vars: Record<string, string>): void {
  const keys = Object.keys(vars);
  if (keys.length === 0) return print('no config vars set');
  const width = Math.max(...keys.map((k) => k.length));
  for (const key of keys) print(`${`${key}:`.padEnd(width + 1)} ${vars[key]}`);
}

export function registerConfigCommands(program: Command, ctx: CliContext): void {
  jsonOption(appOption(program.command('config').description("show an app's config vars"))).action(
    action(ctx, async (opts: { app?: string; json?: boolean }) => {
      const app = ctx.app(opts);
      const { vars } = await ctx.api().get<{ vars: Record<string, string> }>(`/v1/apps/${seg(app)}/config`);
      if (opts.json) return printJson(vars);
      printVars(vars);
    }),
  );

  jsonOption(appOption(program.command('config:set').description('set config vars').argument('<KEY=VALUE...>'))).action(
    action(ctx, async (args: string[], opts: { app?: string; json?: boolean }) => {
      const app = ctx.app(opts);
      const { vars } = await ctx.api().patch<{ vars: Record<string, string> }>(`/v1/apps/${seg(app)}/config`, parseAssignments(args), CONFIG_LOCK_WAIT);
      if (opts.json) return printJson(vars);
      print(`set ${args.map((a) => a.slice(0, a.indexOf('='))).join(', ')} on ${app}`);
    }),
  );

  jsonOption(appOption(program.command('config:unset').description('unset config vars').argument('<KEY...>'))).action(
    action(ctx, async (keys: string[], opts: { app?: string; json?: boolean }) => {
      const app = ctx.app(opts);
      const body = Object.fromEntries(keys.map((k) => [checkKey(k), null]));
      const { vars } = await ctx.api().patch<{ vars: Record<string, string> }>(`/v1/apps/${seg(app)}/config`, body, CONFIG_LOCK_WAIT);
      if (opts.json) return printJson(vars);
      print(`unset ${keys.join(', ')} on ${app}`);
    }),
  );
}
