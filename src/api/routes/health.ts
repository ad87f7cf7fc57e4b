/**
 * Health: /v1/apps/:app/checks (the app's check; a change reaches running instances at once, it is not a release),
 * /v1/apps/:app/health (each instance's and hostname's newest result, plus recent raw results), /v1/alerts and
 * /v1/apps/:app/alerts/webhook. Owner-scoped like every app route.
 */
import type { FastifyInstance } from 'fastify';
import {
  appHealth, getAlertWebhook, getAppCheck, listAlerts, mutate, resolveApp, setAlertWebhook, setAppCheck,
} from '../../db/index.js';
import {
  AlertsQuery, AppParams, checkFromBody, checkWebhookUrl, DEFAULT_CHECK, PutCheckBody, WebhookBody, type CheckReply,
} from '../../protocol/index.js';
import { ValidationError } from '../../core/errors.js';
import { webhookTargetRefusal } from '../../core/webhook-target.js';
import { idempotencyKey, principalOf, type ApiContext } from '../context.js';

export function healthRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get<{ Params: AppParams }>('/v1/apps/:app/checks', { schema: { params: AppParams } }, async (request): Promise<CheckReply> => {
    const ref = await resolveApp(ctx.pool, await principalOf(ctx, request), request.params.app);
    const check = await getAppCheck(ctx.pool, ref.id);
    return { app: ref.name, check: check ?? DEFAULT_CHECK, isDefault: check === undefined };
  });

  app.put<{ Params: AppParams; Body: PutCheckBody }>(
    '/v1/apps/:app/checks',
    { schema: { params: AppParams, body: PutCheckBody } },
    async (request): Promise<CheckReply> => {
      const principal = await principalOf(ctx, request);
      const check = checkFromBody(request.body); // before any write: a bad body changes nothing
      return mutate(ctx.pool, idempotencyKey(request, principal), 'checks.set', async (tx) => {
        const ref = await resolveApp(tx, principal, request.params.app, true);
        await setAppCheck(tx, ref, check);
        return { app: ref.name, check, isDefault: false };
      });
    },
  );

  app.get<{ Params: AppParams }>('/v1/apps/:app/health', { schema: { params: AppParams } }, async (request) => {
    const ref = await resolveApp(ctx.pool, await principalOf(ctx, request), request.params.app);
    return appHealth(ctx.pool, ref);
  });

  app.get<{ Querystring: AlertsQuery }>('/v1/alerts', { schema: { querystring: AlertsQuery } }, async (request) => {
    return { alerts: await listAlerts(ctx.pool, await principalOf(ctx, request), request.query.app) };
  });

  app.get<{ Params: AppParams }>('/v1/apps/:app/alerts/webhook', { schema: { params: AppParams } }, async (request) => {
    const ref = await resolveApp(ctx.pool, await principalOf(ctx, request), request.params.app);
    return { app: ref.name, url: await getAlertWebhook(ctx.pool, ref.id) };
  });

  app.put<{ Params: AppParams; Body: WebhookBody }>(
    '/v1/apps/:app/alerts/webhook',
    { schema: { params: AppParams, body: WebhookBody } },
    async (request) => {
      const principal = await principalOf(ctx, request);
      const url = request.body.url === null ? null : checkWebhookUrl(request.body.url);
      // Before any write: an address an app's alerts must not go to is a 400 naming its rule.
      const refusal = url === null || ctx.webhookAllowPrivate ? undefined : await webhookTargetRefusal(new URL(url));
      if (refusal) throw new ValidationError(refusal);
      return mutate(ctx.pool, idempotencyKey(request, principal), 'alerts.webhook', async (tx) => {
        const ref = await resolveApp(tx, principal, request.params.app, true);
        await setAlertWebhook(tx, ref.id, url);
        return { app: ref.name, url };
      });
    },
  );
}
