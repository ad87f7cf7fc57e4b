/**
 * /v1/apps/:app/logs (the last lines from every collector; `?follow=1` then streams new ones as text/plain,
 * like Heroku's log stream) and /v1/apps/:app/stats (per-minute request aggregates from PostgreSQL).
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { PierError } from '../../core/errors.js';
import { getApp, requestStatsSince, resolveApp } from '../../db/index.js';
import { AppParams, LogsQuery, StatsQuery, parseSince, type StatsResponse } from '../../protocol/index.js';
import type { StatsClient } from '../../transport/index.js';
import { principalOf, type ApiContext } from '../context.js';

const DEFAULT_LINES = 100;
const DEFAULT_SINCE_MS = 3_600_000;
/** A blank keep-alive line is sent on an idle stream this often, so proxies and dead clients are noticed. */
const KEEPALIVE_MS = 15_000;

export function logRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get<{ Params: AppParams; Querystring: LogsQuery }>(
    '/v1/apps/:app/logs',
    { schema: { params: AppParams, querystring: LogsQuery } },
    async (request, reply) => {
      const ref = await resolveApp(ctx.pool, await principalOf(ctx, request), request.params.app);
      const stats = configured(ctx.stats);
      const lines = request.query.lines === undefined ? DEFAULT_LINES : Number(request.query.lines);
      const isFollow = request.query.follow === '1' || request.query.follow === 'true';
      // A re-created name never shows the old app's lines (a collector that was away may still hold some).
      const since = new Date((await getApp(ctx.pool, ref)).createdAt).toISOString();
      const isOwn = (line: string): boolean => line.slice(0, since.length) >= since;
      if (!isFollow) {
        if (lines === 0) return { lines: [] };
        return { lines: (await stats.tail(ref.name, lines)).lines.filter(isOwn) };
      }
      return streamLogs(reply, stats, ref.name, lines, isOwn, () => request.log);
    },
  );

  app.get<{ Params: AppParams; Querystring: StatsQuery }>(
    '/v1/apps/:app/stats',
    { schema: { params: AppParams, querystring: StatsQuery } },
    async (request): Promise<StatsResponse> => {
      const ref = await resolveApp(ctx.pool, await principalOf(ctx, request), request.params.app);
      const windowMs = request.query.since === undefined ? DEFAULT_SINCE_MS : parseSince(request.query.since);
      if (windowMs === undefined) throw new PierError('PIER_VALIDATION', `since '${request.query.since}' is longer than 30 days`);
      // A recreated name does not inherit the old app's minutes.
      const { createdAt } = await getApp(ctx.pool, ref);
      const since = Math.max(Date.now() - windowMs, Math.floor(createdAt / 60_000) * 60_000);
      return { stats: await requestStatsSince(ctx.pool, ref.name, since) };
    },
  );
}

function configured(stats: StatsClient | undefined): StatsClient {
  if (!stats?.isConfigured) throw new PierError('PIER_STATS_UNAVAILABLE', 'no stats collector is configured (cluster.stats is empty)');
  return stats;
}

/**
 * Streams the last `lines` lines, then every new line, as text/plain until the client goes away. Subscribes
 * first and holds live lines until the tail is written, dropping those the tail already had.
 */
async function streamLogs(
  reply: FastifyReply, stats: StatsClient, app: string, lines: number, isOwn: (line: string) => boolean, log: () => FastifyReply['log'],
): Promise<void> {
  let held: string[] | undefined = [];
  let write: (text: string) => void = () => undefined;
  const stop = stats.follow(app, (batch) => {
    if (held) held.push(...batch);
    else write(batch.join('\n') + '\n');
  });
  let tail: string[];
  try {
    tail = lines === 0 ? [] : (await stats.tail(app, lines)).lines.filter(isOwn);
  } catch (err) {
    stop();
    throw err;
  }
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' });
  raw.flushHeaders(); // the client sees the stream open even before the first line
  write = (text) => {
    if (!raw.destroyed) raw.write(text);
  };
  const seen = new Set(tail.slice(-1000));
  const live = held.filter((line) => !seen.has(line));
  held = undefined;
  const first = [...tail, ...live];
  if (first.length > 0) write(first.join('\n') + '\n');
  const keepalive = setInterval(() => write('\n'), KEEPALIVE_MS);
  await new Promise<void>((resolve) => {
    raw.on('close', resolve);
    raw.on('error', (err) => {
      log().debug({ err }, 'log stream ended');
      resolve();
    });
  });
  clearInterval(keepalive);
  stop();
}
