/**
 * /v1/apps/:app/lock: the app's deploy lock, for tools that hold it across several steps (a CI job that migrates,
 * then deploys with `Pier-Lock-Token`). Leases renew with PATCH at half their length; a holder that paused past
 * its lease gets PIER_FENCED on its next write.
 */
import type { FastifyInstance } from 'fastify';
import { acquireLock, deployLockName, getLock, mutate, releaseLock, renewLock, resolveApp, withTransaction } from '../../db/index.js';
import { AppParams, LockBody, ReleaseLockQuery, RenewLockBody } from '../../protocol/index.js';
import { idempotencyKey, principalOf, withDeployLock, type ApiContext } from '../context.js';

const DEFAULT_LEASE_MS = 30_000;

export function lockRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get<{ Params: AppParams }>('/v1/apps/:app/lock', { schema: { params: AppParams } }, async (request) => {
    const ref = await resolveApp(ctx.pool, await principalOf(ctx, request), request.params.app);
    return { lock: (await getLock(ctx.pool, deployLockName(ref.name))) ?? null };
  });

  app.post<{ Params: AppParams; Body: LockBody }>('/v1/apps/:app/lock', { schema: { params: AppParams, body: LockBody } }, async (request, reply) => {
    const principal = await principalOf(ctx, request);
    const lock = await withDeployLock(ctx, request, () => mutate(ctx.pool, idempotencyKey(request, principal), 'lock.acquire', async (tx) => {
      const ref = await resolveApp(tx, principal, request.params.app, true);
      return acquireLock(tx, deployLockName(ref.name), request.body?.holder ?? principal.name, request.body?.leaseMs ?? DEFAULT_LEASE_MS);
    }));
    return reply.status(201).send({ lock });
  });

  app.patch<{ Params: AppParams; Body: RenewLockBody }>('/v1/apps/:app/lock', { schema: { params: AppParams, body: RenewLockBody } }, async (request) => {
    const principal = await principalOf(ctx, request);
    const lock = await withTransaction(ctx.pool, async (tx) => {
      const ref = await resolveApp(tx, principal, request.params.app);
      return renewLock(tx, deployLockName(ref.name), request.body.token, request.body.leaseMs ?? DEFAULT_LEASE_MS);
    });
    return { lock };
  });

  app.delete<{ Params: AppParams; Querystring: ReleaseLockQuery }>(
    '/v1/apps/:app/lock',
    { schema: { params: AppParams, querystring: ReleaseLockQuery } },
    async (request) => {
      const principal = await principalOf(ctx, request);
      const released = await withTransaction(ctx.pool, async (tx) => {
        const ref = await resolveApp(tx, principal, request.params.app);
        return releaseLock(tx, deployLockName(ref.name), Number(request.query.token));
      });
      return { released };
    },
  );
}
