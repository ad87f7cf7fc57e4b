/**
 * /v1/apps/:app/limits: the app's memory, process, open-file, CPU and request-time limits. Owners read their
 * app's; only operators change them (a limit is what protects the app's neighbours, so not the tenant's to lift).
 * A change is a deploy (a new release of the same code and config, as a config change is): the app rolls onto
 * instances with the new limits, under the app's deploy lock.
 */
import type { FastifyInstance } from 'fastify';
import { getAppLimits, mutate, patchAppLimits, requireAdmin, resolveApp } from '../../db/index.js';
import { AppParams, LIMIT_NAMES, PatchLimitsBody, type AppLimits, type LimitsReply } from '../../protocol/index.js';
import { deployClaim, idempotencyKey, principalOf, withDeployLock, type ApiContext } from '../context.js';

export function limitRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get<{ Params: AppParams }>('/v1/apps/:app/limits', { schema: { params: AppParams } }, async (request) => {
    const ref = await resolveApp(ctx.pool, await principalOf(ctx, request), request.params.app);
    return reply(await getAppLimits(ctx.pool, ref));
  });

  app.patch<{ Params: AppParams; Body: PatchLimitsBody }>(
    '/v1/apps/:app/limits',
    { schema: { params: AppParams, body: PatchLimitsBody } },
    async (request) => {
      const principal = await principalOf(ctx, request);
      // Strangers learn nothing (404), the app's owner is told who may (403).
      await resolveApp(ctx.pool, principal, request.params.app);
      requireAdmin(principal);
      const claim = deployClaim(ctx, request, principal);
      const limits = await withDeployLock(ctx, request, () => mutate(ctx.pool, idempotencyKey(request, principal), 'limits.change', async (tx) =>
        patchAppLimits(tx, await resolveApp(tx, principal, request.params.app, true), request.body, principal.ownerId, claim)));
      return reply(limits);
    },
  );
}

function reply(limits: AppLimits): LimitsReply {
  return { limits: Object.fromEntries(LIMIT_NAMES.map((name) => [name, limits[name] ?? null])) as LimitsReply['limits'] };
}
