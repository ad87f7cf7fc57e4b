/** /v1/apps/:app/explain?since=1h: the app's timeline (src/db/explain.ts), for its owner (or an operator). */
import type { FastifyInstance } from 'fastify';
import { ValidationError } from '../../core/errors.js';
import { explainApp, resolveApp } from '../../db/index.js';
import { AppParams, ExplainQuery, parseSince, type ExplainResponse } from '../../protocol/index.js';
import { principalOf, type ApiContext } from '../context.js';

const DEFAULT_SINCE_MS = 3_600_000;

/** `since` as milliseconds, or a one-line error naming the value and what is accepted. */
export function explainWindowMs(since: string | undefined): number {
  if (since === undefined) return DEFAULT_SINCE_MS;
  const ms = parseSince(since);
  if (ms === undefined) throw new ValidationError(`since '${since}' is not a window like 30m, 1h or 2d (at most 30 days)`);
  return ms;
}

export function explainRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get<{ Params: AppParams; Querystring: ExplainQuery }>(
    '/v1/apps/:app/explain',
    { schema: { params: AppParams, querystring: ExplainQuery } },
    async (request): Promise<ExplainResponse> => {
      const windowMs = explainWindowMs(request.query.since);
      const ref = await resolveApp(ctx.pool, await principalOf(ctx, request), request.params.app);
      return explainApp(ctx.pool, ref, Date.now() - windowMs, { deadAfterMs: ctx.deadAfterMs });
    },
  );
}
