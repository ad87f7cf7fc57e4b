/** /v1/apps/:app/addons: list, create (POST {kind}), show and destroy an app's add-ons (Heroku's add-ons API). */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { PierError } from '../../core/errors.js';
import { AddonParams, AppParams, CreateAddonBody } from '../../protocol/index.js';
import { deployClaim, idempotencyKey, principalOf, withDeployLock, type AddonsPort, type ApiContext } from '../context.js';

function addonsOf(ctx: ApiContext): AddonsPort {
  if (!ctx.addons) throw new PierError('PIER_UNSUPPORTED', 'this nexus offers no add-ons');
  return ctx.addons;
}

export function addonRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get<{ Params: AppParams }>('/v1/apps/:app/addons', { schema: { params: AppParams } }, async (request) => {
    const principal = await principalOf(ctx, request);
    return { addons: await addonsOf(ctx).list(principal, request.params.app) };
  });

  app.post<{ Params: AppParams; Body: CreateAddonBody }>(
    '/v1/apps/:app/addons',
    { schema: { params: AppParams, body: CreateAddonBody } },
    async (request, reply) => {
      const principal = await principalOf(ctx, request);
      const addon = await addonsOf(ctx).create(principal, request.params.app, request.body.kind, mutationOf(ctx, request, principal));
      return reply.status(201).send({ addon });
    },
  );

  app.get<{ Params: AddonParams }>('/v1/apps/:app/addons/:name', { schema: { params: AddonParams } }, async (request) => {
    const principal = await principalOf(ctx, request);
    return { addon: await addonsOf(ctx).info(principal, request.params.app, request.params.name) };
  });

  app.delete<{ Params: AddonParams }>('/v1/apps/:app/addons/:name', { schema: { params: AddonParams } }, async (request) => {
    const principal = await principalOf(ctx, request);
    return { addon: await addonsOf(ctx).destroy(principal, request.params.app, request.params.name, mutationOf(ctx, request, principal)) };
  });
}

function mutationOf(ctx: ApiContext, request: FastifyRequest, principal: Awaited<ReturnType<typeof principalOf>>) {
  return {
    requestId: idempotencyKey(request, principal),
    claim: deployClaim(ctx, request, principal),
    locked: <T>(run: () => Promise<T>) => withDeployLock(ctx, request, run),
  };
}
