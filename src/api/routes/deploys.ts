/** /v1/apps/:app/deploys: every deploy (one per release) and, for one, its steps as they happened. */
import type { FastifyInstance } from 'fastify';
import { getDeploy, listDeploys, resolveApp, verdictUntil } from '../../db/index.js';
import { AppParams, DeployParams } from '../../protocol/index.js';
import { principalOf, type ApiContext } from '../context.js';

export function deployRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get<{ Params: AppParams }>('/v1/apps/:app/deploys', { schema: { params: AppParams } }, async (request) => {
    const ref = await resolveApp(ctx.pool, await principalOf(ctx, request), request.params.app);
    return { deploys: await listDeploys(ctx.pool, ref) };
  });

  app.get<{ Params: DeployParams }>('/v1/apps/:app/deploys/:id', { schema: { params: DeployParams } }, async (request) => {
    const ref = await resolveApp(ctx.pool, await principalOf(ctx, request), request.params.app);
    const deploy = await getDeploy(ctx.pool, ref, Number(request.params.id.replace(/^v/, '')));
    const url = ctx.appUrl(ref.name);
    // While the live-traffic verdict watches this release: until when (the previous release stays up meanwhile).
    const until = await verdictUntil(ctx.pool, ref, deploy.id);
    return { deploy: { ...deploy, url, stageUrl: url.replace('://', '://stage.'), verdict: until === undefined ? null : { until } } };
  });
}
