/** /v1/tokens/rotate: replace an API token (the caller's own, or an operator names any owner). */
import type { FastifyInstance } from 'fastify';
import { rotateToken, withTransaction } from '../../db/index.js';
import { RotateTokenBody, type RotateTokenReply } from '../../protocol/index.js';
import { principalOf, type ApiContext } from '../context.js';

export function tokenRoutes(app: FastifyInstance, ctx: ApiContext): void {
  // Never through the idempotency store: its reply would hold the new token. A retry is authenticated with the
  // old token, which the first rotation already refused, so it cannot rotate twice.
  app.post<{ Body: RotateTokenBody | undefined }>('/v1/tokens/rotate', { schema: { body: RotateTokenBody } }, async (request): Promise<RotateTokenReply> => {
    const principal = await principalOf(ctx, request);
    return withTransaction(ctx.pool, (tx) => rotateToken(tx, principal, request.body?.owner));
  });
}
