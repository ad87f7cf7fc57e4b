/** /v1/apps/:app/config: show, and PATCH (a string sets a var, null unsets it), as Heroku's config-vars API. */
import type { FastifyInstance } from 'fastify';
import { changeConfigVars, getConfigVars, mutate, resolveApp } from '../../db/index.js';
import { AppParams, PatchConfigBody } from '../../protocol/index.js';
import { deployClaim, idempotencyKey, principalOf, withDeployLock, type ApiContext } from '../context.js';
import { checkStaticMaxAge, STATIC_MAX_AGE_VAR } from '../../runner/static-routes.js';

export function configRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get<{ Params: AppParams }>('/v1/apps/:app/config', { schema: { params: AppParams } }, async (request) => {
    const ref = await resolveApp(ctx.pool, await principalOf(ctx, request), request.params.app);
    return { vars: await getConfigVars(ctx.pool, ref) };
  });

  app.patch<{ Params: AppParams; Body: PatchConfigBody }>(
    '/v1/apps/:app/config',
    { schema: { params: AppParams, body: PatchConfigBody } },
    async (request) => {
      const principal = await principalOf(ctx, request);
      const set: Record<string, string> = {};
      const unset: string[] = [];
      for (const [key, value] of Object.entries(request.body)) {
        if (value === null) unset.push(key);
        else set[key] = value;
      }
      // Checked here so a bad value is a 400 now, not a failed deploy of the release it would roll.
      if (set[STATIC_MAX_AGE_VAR] !== undefined) checkStaticMaxAge(set[STATIC_MAX_AGE_VAR]);
      const claim = deployClaim(ctx, request, principal);
      // Config values are secrets: the idempotency store keeps none; a retry answers the vars as they are now.
      const vars = await withDeployLock(ctx, request, () => mutate(ctx.pool, idempotencyKey(request, principal), 'config.change', async (tx) =>
        changeConfigVars(tx, await resolveApp(tx, principal, request.params.app, true), set, unset, principal.ownerId, claim), {
        store: () => null,
        replay: async (_stored, tx) => getConfigVars(tx, await resolveApp(tx, principal, request.params.app)),
      }));
      return { vars };
    },
  );
}
