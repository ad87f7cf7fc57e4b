/** pier explain -a APP [--since 1h] [--json]: the app's timeline, one line per entry, oldest first. */
import type { Command } from 'commander';
import { ValidationError } from '../../core/errors.js';
import type { ExplainResponse } from '../../protocol/index.js';
import { parseSince } from '../../protocol/units.js';
import { seg, type CliContext } from '../context.js';
import { print, printJson } from '../output.js';
import { action, appOption, jsonOption } from './shared.js';

/** `--since` checked before any call: a window like 30m, 1h, 2d (plain digits are minutes), at most 30 days. */
export function parseExplainSince(value: string): number {
  const ms = parseSince(value);
  if (ms === undefined) throw new ValidationError(`--since '${value}' is not a window like 30m, 1h or 2d (at most 30 days)`);
  return ms;
}

/** What the server sent, safe for a terminal: no escape sequences or other control characters. */
function safe(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x1f\x7f-\x9f]/g, '?');
}

/** `2026-12-01T10:00:00.000Z  deploy   v3 created by alice`, kinds padded to the widest (at least 8). */
export function formatExplain(body: ExplainResponse): string[] {
  const width = Math.max(8, ...body.entries.map((e) => e.kind.length));
  return body.entries.map((e) => `${new Date(e.at).toISOString()}  ${safe(e.kind).padEnd(width)} ${safe(e.summary)}`);
}

export function registerExplainCommand(program: Command, ctx: CliContext): void {
  jsonOption(appOption(program.command('explain').description("show what happened to an app, oldest first: deploys, instances, verdicts, health, alerts, remediation, nodes, locks, 5xx bursts, config and scale changes"))
    .option('--since <window>', 'how far back: 30m, 1h, 2d (at most 30 days)', '1h'))
    .action(action(ctx, async (opts: { app?: string; since: string; json?: boolean }) => {
      const app = ctx.app(opts);
      parseExplainSince(opts.since);
      const body = await ctx.api().get<ExplainResponse>(`/v1/apps/${seg(app)}/explain?since=${encodeURIComponent(opts.since)}`);
      if (opts.json) return printJson(body);
      if (body.truncated && body.note) print(`note: ${safe(body.note)}`);
      if (body.entries.length === 0) return print(`nothing happened to ${app} in the last ${opts.since}`);
      for (const text of formatExplain(body)) print(text);
    }));
}
