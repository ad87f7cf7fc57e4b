/**
 * pier limits, limits:set memory=512 processes=64 files=1024 cpu=1024 timeout=30s … (operators), `NAME=default`
 * returns one to the runner's default. Names are short words as on the command line; the API's JSON fields are
 * memoryMb, processes, openFiles, cpuShares and requestTimeoutMs.
 */
import type { Command } from 'commander';
import { ValidationError } from '../../core/errors.js';
import type { LimitsReply } from '../../protocol/index.js';
import { LIMIT_BOUNDS, LIMIT_NAMES, type LimitName } from '../../protocol/units.js';
import { seg, type CliContext } from '../context.js';
import { print, printJson } from '../output.js';
import { action, appOption, jsonOption } from './shared.js';

/** A limit change is a deploy: it waits up to 20 s for a running deploy of the app to finish. */
const LIMITS_LOCK_WAIT = { 'pier-lock-wait': '20' };

/** Command-line name → API field, with the unit a bare number is in. */
const NAMES: Record<string, { field: LimitName; unit: string }> = {
  memory: { field: 'memoryMb', unit: 'MB' },
  processes: { field: 'processes', unit: '' },
  files: { field: 'openFiles', unit: '' },
  cpu: { field: 'cpuShares', unit: 'shares' },
  timeout: { field: 'requestTimeoutMs', unit: 'ms' },
};
const LABEL: Record<LimitName, string> = Object.fromEntries(Object.entries(NAMES).map(([name, { field }]) => [field, name])) as Record<LimitName, string>;
const MULTIPLIERS: Record<LimitName, Record<string, number>> = {
  memoryMb: { '': 1, mb: 1, m: 1, gb: 1024, g: 1024 },
  processes: { '': 1 },
  openFiles: { '': 1 },
  cpuShares: { '': 1 },
  requestTimeoutMs: { '': 1, ms: 1, s: 1000, m: 60_000, h: 3_600_000 },
};

/** Parses NAME=VALUE arguments into a PATCH body; every argument is checked before anything is sent. */
export function parseLimits(args: string[]): Record<string, number | null> {
  const body: Record<string, number | null> = {};
  for (const arg of args) {
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const known = NAMES[name];
    if (!known) throw new ValidationError(`unknown limit '${name}'; use ${Object.keys(NAMES).join(', ')} (e.g. memory=512)`);
    if (eq <= 0) throw new ValidationError(`'${arg}' is not NAME=VALUE (e.g. ${name}=${name === 'timeout' ? '30s' : '512'}, or ${name}=default)`);
    const value = arg.slice(eq + 1).trim().toLowerCase();
    if (value === 'default') {
      body[known.field] = null;
      continue;
    }
    const match = /^(\d+)\s*([a-z]*)$/.exec(value);
    const multiplier = match ? MULTIPLIERS[known.field][match[2]!] : undefined;
    if (!match || multiplier === undefined) {
      throw new ValidationError(`${name} must be a whole number${Object.keys(MULTIPLIERS[known.field]).length > 1 ? ` (units: ${Object.keys(MULTIPLIERS[known.field]).filter(Boolean).join(', ')})` : ''} or 'default', not '${arg.slice(eq + 1)}'`);
    }
    const number = Number(match[1]) * multiplier;
    const { minimum, maximum } = LIMIT_BOUNDS[known.field];
    if (number < minimum || number > maximum) throw new ValidationError(`${name} must be ${minimum}..${maximum}${known.unit ? ` ${known.unit}` : ''}, not ${number}`);
    body[known.field] = number;
  }
  return body;
}

function printLimits(app: string, limits: LimitsReply['limits']): void {
  print(`limits of ${app} (per instance):`);
  for (const field of LIMIT_NAMES) {
    const value = limits[field];
    const unit = NAMES[LABEL[field]]!.unit;
    print(`  ${`${LABEL[field]}:`.padEnd(11)} ${value === null ? "runner's default" : `${value}${unit ? ` ${unit}` : ''}`}`);
  }
}

export function registerLimitCommands(program: Command, ctx: CliContext): void {
  jsonOption(appOption(program.command('limits').description("show an app's limits (memory, processes, files, cpu, timeout)"))).action(
    action(ctx, async (opts: { app?: string; json?: boolean }) => {
      const app = ctx.app(opts);
      const { limits } = await ctx.api().get<LimitsReply>(`/v1/apps/${seg(app)}/limits`);
      if (opts.json) return printJson(limits);
      printLimits(app, limits);
    }),
  );

  jsonOption(appOption(program.command('limits:set')
    .description('operators: set limits, e.g. memory=512 processes=64 files=1024 cpu=512 timeout=30s (NAME=default resets); the app rolls onto them')
    .argument('<NAME=VALUE...>'))).action(
    action(ctx, async (args: string[], opts: { app?: string; json?: boolean }) => {
      const app = ctx.app(opts);
      const { limits } = await ctx.api().patch<LimitsReply>(`/v1/apps/${seg(app)}/limits`, parseLimits(args), LIMITS_LOCK_WAIT);
      if (opts.json) return printJson(limits);
      printLimits(app, limits);
      print(`${app} rolls onto instances with these limits (pier releases -a ${app})`);
    }),
  );
}
