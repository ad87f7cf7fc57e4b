/** Operator endpoints (admin token): owners, nodes, events; and /v1/status for everyone. */
import type { FastifyInstance } from 'fastify';
import {
  createOwner, currentVersion, eventsSince, listApps, listNodes, listOwners, mutate, requireAdmin, setNodeDraining, tokenShownOnce, withTransaction, type OnceOptions,
} from '../../db/index.js';
import { CreateOwnerBody, EventsQuery, NodeParams, type Node, type Owner } from '../../protocol/index.js';
import { idempotencyKey, livenessOf, principalOf, type ApiContext } from '../context.js';

/**
 * The token is answered once and never stored: a retry with the same Idempotency-Key answers
 * `{"owner": {...}, "message": "...showed its API token..."}` and no token.
 */
const ownerOnce: OnceOptions<{ owner: Owner; token?: string; message?: string }> = {
  store: ({ owner }) => ({ owner }),
  replay: (stored) => {
    const { owner } = stored as { owner: Owner };
    return { owner, message: tokenShownOnce(owner.name) };
  },
};

export function operatorRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get('/healthz', async () => ({ ok: true, nexusId: ctx.nexusId, isLeader: ctx.isLeader() }));

  app.get('/v1/status', async (request) => {
    const principal = await principalOf(ctx, request);
    const apps = await listApps(ctx.pool, principal);
    const nodes = principal.isAdmin ? await listNodes(ctx.pool, livenessOf(ctx)) : [];
    return {
      nexusId: ctx.nexusId,
      isLeader: ctx.isLeader(),
      version: await currentVersion(ctx.pool),
      owner: principal.name,
      isAdmin: principal.isAdmin,
      nodes,
      apps,
    };
  });

  app.get('/v1/owners', async (request) => {
    requireAdmin(await principalOf(ctx, request));
    return { owners: await listOwners(ctx.pool) };
  });

  app.post<{ Body: CreateOwnerBody }>('/v1/owners', { schema: { body: CreateOwnerBody } }, async (request, reply) => {
    const principal = await principalOf(ctx, request);
    requireAdmin(principal);
    const created = await mutate(ctx.pool, idempotencyKey(request, principal), 'owner.create', (tx) =>
      createOwner(tx, request.body.name, request.body.isAdmin ?? false), ownerOnce);
    return reply.status(201).send(created);
  });

  app.get('/v1/nodes', async (request) => {
    requireAdmin(await principalOf(ctx, request));
    return { nodes: await listNodes(ctx.pool, livenessOf(ctx)) };
  });

  // Drain a runner (`pier nodes:drain NODE`): nothing new goes there, what runs there moves; DELETE undoes it.
  for (const [method, isDraining] of [['POST', true], ['DELETE', false]] as const) {
    app.route<{ Params: NodeParams }>({
      method, url: '/v1/nodes/:node/drain', schema: { params: NodeParams },
      handler: async (request) => {
        requireAdmin(await principalOf(ctx, request));
        await withTransaction(ctx.pool, (tx) => setNodeDraining(tx, request.params.node, isDraining));
        const node: Node | undefined = (await listNodes(ctx.pool, livenessOf(ctx))).find((n) => n.id === request.params.node);
        return { node };
      },
    });
  }

  app.get<{ Querystring: EventsQuery }>('/v1/events', { schema: { querystring: EventsQuery } }, async (request) => {
    requireAdmin(await principalOf(ctx, request));
    const events = await eventsSince(ctx.pool, Number(request.query.after ?? 0), Number(request.query.limit ?? 100));
    return { events };
  });
}
