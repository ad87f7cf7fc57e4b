/** pier logs [-n N] [-f], pier stats [--since 1h]. */
import type { Command } from 'commander';
import { ValidationError } from '../../core/errors.js';
import type { StatsResponse, StatsRow } from '../../protocol/index.js';
import { parseSince } from '../../protocol/units.js';
import { seg, type CliContext } from '../context.js';
import { print, printJson, printTable } from '../output.js';
import { action, appOption, jsonOption } from './shared.js';

/** Parses `-n`: whole lines 0..10000. */
export function parseLineCount(value: string): number {
  if (!/^\d{1,5}$/.test(value) || Number(value) > 10_000) throw new ValidationError(`-n '${value}' is not a line count from 0 to 10000`);
  return Number(value);
}

export function registerLogCommands(program: Command, ctx: CliContext): void {
  appOption(program.command('logs').description("show an app's recent log lines (its output, uWSGI's and the router's)"))
    .option('-n, --num <N>', 'how many lines (0-10000)', '100')
    .option('-f, --tail', 'keep streaming new lines until interrupted')
    .action(action(ctx, async (opts: { app?: string; num: string; tail?: boolean }) => {
      const app = ctx.app(opts);
      const lines = parseLineCount(opts.num);
      if (!opts.tail) {
        const { lines: got } = await ctx.api().get<{ lines: string[] }>(`/v1/apps/${seg(app)}/logs?lines=${lines}`);
        if (got.length > 0) process.stdout.write(`${got.join('\n')}\n`);
        return;
      }
      const abort = new AbortController();
      const onSignal = (): void => abort.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        await ctx.api().stream(`/v1/apps/${seg(app)}/logs?lines=${lines}&follow=1`, (text) => {
          // Blank keep-alive lines are not log lines.
          const shown = text.replace(/^\n+|(?<=\n)\n+/g, '');
          if (shown !== '') process.stdout.write(shown);
        }, abort.signal);
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    }));

  jsonOption(appOption(program.command('stats').description("show an app's requests per minute (counts, status classes, bytes, p50/p95/p99); with --config, run one stats collector"))
    .option('--since <window>', 'how far back: 15m, 1h, 24h, 7d (at most 30 days)', '1h')
    .option('--config <file>', 'run the stats collector daemon with this config file (TOML); see config/stats.example.toml'))
    .action(action(ctx, async (opts: { app?: string; since: string; json?: boolean; config?: string }) => {
      if (opts.config !== undefined) {
        if (opts.app !== undefined || opts.json) throw new ValidationError('--config runs the collector daemon; it cannot be combined with --app or --json');
        const { main } = await import('../../stats/main.js');
        return main(opts.config, ctx.env);
      }
      const app = ctx.app(opts);
      if (parseSince(opts.since) === undefined) throw new ValidationError(`--since '${opts.since}' is not a window like 15m, 1h, 24h or 7d (at most 30 days)`);
      const { stats } = await ctx.api().get<StatsResponse>(`/v1/apps/${seg(app)}/stats?since=${encodeURIComponent(opts.since)}`);
      if (opts.json) return printJson(stats);
      if (stats.length === 0) return print(`no requests to ${app} in the last ${opts.since}`);
      printTable(['minute', 'requests', '2xx', '3xx', '4xx', '5xx', 'bytes', 'p50', 'p95', 'p99'], stats.map(row));
      const total = stats.reduce((sum, r) => sum + r.requests, 0);
      print(`${total} requests in ${stats.length} minute${stats.length === 1 ? '' : 's'}`);
    }));
}

function row(r: StatsRow): Array<string | number> {
  const minute = new Date(r.minute).toISOString().slice(0, 16).replace('T', ' ');
  return [minute, r.requests, r.s2xx, r.s3xx, r.s4xx, r.s5xx, r.bytes, ms(r.p50Ms), ms(r.p95Ms), ms(r.p99Ms)];
}

function ms(value: number | null): string {
  if (value === null) return '-';
  return value < 10 ? `${value.toFixed(1)}ms` : `${Math.round(value)}ms`;
}
