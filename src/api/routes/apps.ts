/** /v1/apps: list, create, show, destroy. */
import type { FastifyInstance } from 'fastify';
import { createApp, destroyApp, getApp, listApps, mutate, resolveApp } from '../../db/index.js';
import { AppParams, CreateAppBody } from '../../protocol/index.js';
import { idempotencyKey, principalOf, type ApiContext } from '../context.js';

export function appRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get('/v1/apps', async (request) => ({ apps: await listApps(ctx.pool, await principalOf(ctx, request)) }));

  app.post<{ Body: CreateAppBody }>('/v1/apps', { schema: { body: CreateAppBody } }, async (request, reply) => {
    const principal = await principalOf(ctx, request);
    const created = await mutate(ctx.pool, idempotencyKey(request, principal), 'app.create', (tx) => createApp(tx, principal, request.body.name));
    return reply.status(201).send({ app: created, url: ctx.appUrl(created.name) });
  });

  app.get<{ Params: AppParams }>('/v1/apps/:app', { schema: { params: AppParams } }, async (request) => {
    const principal = await principalOf(ctx, request);
    const found = await getApp(ctx.pool, await resolveApp(ctx.pool, principal, request.params.app));
    // The public URL from the balancer's domain and port as the nexus is configured (the CLI cannot know them).
    return { app: found, url: ctx.appUrl(found.name) };
  });

  app.delete<{ Params: AppParams }>('/v1/apps/:app', { schema: { params: AppParams } }, async (request) => {
    const principal = await principalOf(ctx, request);
    await mutate(ctx.pool, idempotencyKey(request, principal), 'app.destroy', (tx) => destroyApp(tx, principal, request.params.app));
    // Its add-ons went 'destroying' with the app: drop them now (what fails here, the leader retries).
    await ctx.addons?.reap().catch(() => undefined);
    return { ok: true };
  });
}
