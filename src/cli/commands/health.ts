/**
 * pier checks, checks:set PATH [--status N] [--interval 10s] [--timeout 2s], pier health, pier alerts [-a APP],
 * pier alerts:webhook URL|--remove. A check change reaches running instances at once (it is not a release).
 */
import type { Command } from 'commander';
import { ValidationError } from '../../core/errors.js';
import type { AlertsReply, CheckReply, HealthReply, Check } from '../../protocol/index.js';
import { formatMs } from '../../protocol/units.js';
import { seg, type CliContext } from '../context.js';
import { ago, print, printJson, printTable } from '../output.js';
import { action, appOption, jsonOption } from './shared.js';

const UNITS: Record<string, number> = { '': 1000, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `10s`, `500ms`, `1m`, `1h`, or a bare number of seconds, in ms. @throws ValidationError naming the option */
export function parseDuration(option: string, text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|)$/.exec(text.trim().toLowerCase());
  if (!match) throw new ValidationError(`--${option} must be a duration like 10s, 500ms or 1m (got '${text}')`);
  return Math.round(Number(match[1]) * UNITS[match[2]!]!);
}

/** --status N: a whole HTTP status. */
export function parseStatus(text: string): number {
  if (!/^\d{3}$/.test(text.trim())) throw new ValidationError(`--status must be an HTTP status such as 200 (got '${text}')`);
  return Number(text);
}

function describeCheck(check: Check): string {
  const expect = check.status === null ? 'any status below 500' : `status ${check.status}`;
  return `GET ${check.path} expecting ${expect}, every ${formatMs(check.intervalMs)}, time-out ${formatMs(check.timeoutMs)}`;
}

function printCheck(reply: CheckReply): void {
  print(`check of ${reply.app}${reply.isDefault ? ' (the default)' : ''}: ${describeCheck(reply.check)}`);
}

function reasonOf(text: string | null): string {
  return text === null ? '' : text.split('\n')[0]!.slice(0, 120);
}

/** Open alerts, one line each (for `pier status`); nothing when none. */
export async function printOpenAlerts(ctx: CliContext): Promise<void> {
  const { alerts } = await ctx.api().get<AlertsReply>('/v1/alerts');
  const open = alerts.filter((a) => a.clearedAt === null);
  print();
  if (open.length === 0) return print('alerts: none open');
  print(`alerts: ${open.length} open`);
  for (const a of open) print(`  ${a.app}${a.instance ? ` ${a.instance}` : ''}: ${reasonOf(a.reason)} (since ${ago(a.since)})`);
}

export function registerHealthCommands(program: Command, ctx: CliContext): void {
  jsonOption(appOption(program.command('checks').description("show an app's health check"))).action(
    action(ctx, async (opts: { app?: string; json?: boolean }) => {
      const reply = await ctx.api().get<CheckReply>(`/v1/apps/${seg(ctx.app(opts))}/checks`);
      if (opts.json) return printJson(reply);
      printCheck(reply);
    }),
  );

  jsonOption(appOption(program.command('checks:set')
    .description('set the health check: deploys wait for it, instances failing it are healed; takes effect at once (not a release)')
    .argument('<path>', 'path requested, e.g. /health')
    .option('--status <code>', 'expected status (default: any status below 500)')
    .option('--interval <duration>', 'time between probes, 1s..1h (default 10s)')
    .option('--timeout <duration>', 'longest wait for an answer, 100ms..60s and below the interval (default 2s)'))).action(
    action(ctx, async (path: string, opts: { app?: string; json?: boolean; status?: string; interval?: string; timeout?: string }) => {
      const app = ctx.app(opts);
      const body = {
        path,
        ...(opts.status === undefined ? {} : { status: parseStatus(opts.status) }),
        ...(opts.interval === undefined ? {} : { intervalMs: parseDuration('interval', opts.interval) }),
        ...(opts.timeout === undefined ? {} : { timeoutMs: parseDuration('timeout', opts.timeout) }),
      };
      const reply = await ctx.api().send<CheckReply>('PUT', `/v1/apps/${seg(app)}/checks`, body);
      if (opts.json) return printJson(reply);
      printCheck(reply);
      print('running instances are probed with it from now on; the next deploy waits for it');
    }),
  );

  jsonOption(appOption(program.command('health').description("an app's instances and hostnames as their checks see them"))).action(
    action(ctx, async (opts: { app?: string; json?: boolean }) => {
      const app = ctx.app(opts);
      const health = await ctx.api().get<HealthReply>(`/v1/apps/${seg(app)}/health`);
      if (opts.json) return printJson(health);
      print(`check: ${describeCheck(health.check)}`);
      print();
      if (health.instances.length === 0) print('instances: none');
      else printTable(
        ['instance', 'type', 'release', 'runner', 'state', 'health', 'status', 'latency', 'checked', 'note'],
        health.instances.map((i) => [
          i.id, i.processType, `v${i.release}`, i.runner, i.state, i.healthy === null ? 'unknown' : i.healthy ? 'healthy' : 'UNHEALTHY',
          i.status ?? '-', i.latencyMs === null ? '-' : `${i.latencyMs.toFixed(1)} ms`, i.at === null ? '-' : ago(i.at),
          [i.isOutOfRotation ? 'out of rotation' : '', i.rung > 0 ? `remediation rung ${i.rung}` : '', reasonOf(i.reason)].filter(Boolean).join('; '),
        ]),
      );
      if (health.hostnames.length > 0) {
        print();
        printTable(
          ['hostname', 'through', 'health', 'status', 'latency', 'checked', 'note'],
          health.hostnames.map((h) => [h.host, h.from, h.healthy ? 'healthy' : 'UNHEALTHY', h.status ?? '-',
            h.latencyMs === null ? '-' : `${h.latencyMs.toFixed(1)} ms`, ago(h.at), reasonOf(h.reason)]),
        );
      }
    }),
  );

  jsonOption(program.command('alerts').description('open alerts first, then recently cleared ones')
    .option('-a, --app <name>', 'only this app (default: every app you own)')).action(
    action(ctx, async (opts: { app?: string; json?: boolean }) => {
      const app = opts.app ?? ctx.env.PIER_APP;
      const reply = await ctx.api().get<AlertsReply>(`/v1/alerts${app ? `?app=${encodeURIComponent(app)}` : ''}`);
      if (opts.json) return printJson(reply);
      if (reply.alerts.length === 0) return print(app ? `no alerts for ${app}` : 'no alerts');
      printTable(
        ['id', 'app', 'instance', 'since', 'cleared', 'reason'],
        reply.alerts.map((a) => [a.id, a.app, a.instance ?? '-', ago(a.since), a.clearedAt === null ? 'OPEN' : ago(a.clearedAt), reasonOf(a.reason)]),
      );
    }),
  );

  jsonOption(appOption(program.command('alerts:webhook')
    .description("POST the app's alerts (raised and cleared) as JSON to URL (a public http(s) address; no redirects followed); --remove stops it")
    .argument('[url]').option('--remove', 'remove the webhook'))).action(
    action(ctx, async (url: string | undefined, opts: { app?: string; json?: boolean; remove?: boolean }) => {
      const app = ctx.app(opts);
      if (url === undefined && !opts.remove) throw new ValidationError('give the webhook URL, e.g. pier alerts:webhook https://hooks.example.com/pier, or --remove');
      if (url !== undefined && opts.remove) throw new ValidationError('give either a URL or --remove, not both');
      const reply = await ctx.api().send<{ app: string; url: string | null }>('PUT', `/v1/apps/${seg(app)}/alerts/webhook`, { url: url ?? null });
      if (opts.json) return printJson(reply);
      print(reply.url === null ? `${app}: alerts go to no webhook` : `${app}: alerts are POSTed to ${reply.url}`);
    }),
  );
}
