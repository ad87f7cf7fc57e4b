/** /v1/tokens/rotate: replace an API token (the caller's own, or an operator names any owner). */
import type { FastifyInstance } from 'fastify';
import { rotateToken, withTransaction } from '../../db/index.js';
import { RotateTokenBody, type RotateTokenReply } from '../../protocol/index.js';
import { principalOf, type ApiContext } from '../context.js';

export function tokenRoutes(app: FastifyInstance, ctx: ApiContext): void {
  // Never through the idempotency store: its reply would hold the new token. A retry is authenticated with the
  // old token, which the first rotation already refused, so it cannot rotate twice.
  app.post<{ Body: RotateTokenBody }>('/v1/tokens/rotate', {
    schema: { body: RotateTokenBody },
    // No body at all (`curl -X POST`) is the empty object: rotate the caller's own token.
    preValidation: async (request) => {
      request.body ??= {};
    },
  }, async (request): Promise<RotateTokenReply> => {
    const principal = await principalOf(ctx, request);
    return withTransaction(ctx.pool, (tx) => rotateToken(tx, principal, request.body.owner));
  });
}
