/** /v1/apps/:app/hostnames: list, add, remove. */
import type { FastifyInstance } from 'fastify';
import { addHostname, listHostnames, mutate, removeHostname, resolveApp } from '../../db/index.js';
import { AddHostBody, AppParams, HostParams } from '../../protocol/index.js';
import { idempotencyKey, principalOf, type ApiContext } from '../context.js';

export function hostRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get<{ Params: AppParams }>('/v1/apps/:app/hostnames', { schema: { params: AppParams } }, async (request) => {
    const ref = await resolveApp(ctx.pool, await principalOf(ctx, request), request.params.app);
    return { hostnames: await listHostnames(ctx.pool, ref) };
  });

  app.post<{ Params: AppParams; Body: AddHostBody }>(
    '/v1/apps/:app/hostnames',
    { schema: { params: AppParams, body: AddHostBody } },
    async (request, reply) => {
      const principal = await principalOf(ctx, request);
      const hostnames = await mutate(ctx.pool, idempotencyKey(request, principal), 'host.add', async (tx) =>
        addHostname(tx, await resolveApp(tx, principal, request.params.app, true), request.body.hostname, ctx.domains));
      return reply.status(201).send({ hostnames });
    },
  );

  app.delete<{ Params: HostParams }>('/v1/apps/:app/hostnames/:hostname', { schema: { params: HostParams } }, async (request) => {
    const principal = await principalOf(ctx, request);
    const hostnames = await mutate(ctx.pool, idempotencyKey(request, principal), 'host.remove', async (tx) =>
      removeHostname(tx, await resolveApp(tx, principal, request.params.app, true), request.params.hostname.toLowerCase()));
    return { hostnames };
  });
}
