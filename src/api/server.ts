/** The JSON API (fastify): routes under /v1 with schema-validated bodies and one error shape. */
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { installAuth } from './auth.js';
import type { ApiContext } from './context.js';
import { errorHandler, sendError } from './http-errors.js';
import { addonRoutes } from './routes/addons.js';
import { appRoutes } from './routes/apps.js';
import { configRoutes } from './routes/config.js';
import { limitRoutes } from './routes/limits.js';
import { healthRoutes } from './routes/health.js';
import { dashboardRoutes } from './routes/dashboard.js';
import { hostRoutes } from './routes/hosts.js';
import { operatorRoutes } from './routes/operators.js';
import { deployRoutes } from './routes/deploys.js';
import { explainRoutes } from './routes/explain.js';
import { dynoRoutes } from './routes/dynos.js';
import { lockRoutes } from './routes/locks.js';
import { logRoutes } from './routes/logs.js';
import { releaseRoutes } from './routes/releases.js';
import { tokenRoutes } from './routes/tokens.js';
import { UploadChecker } from './upload-checker.js';

export interface ApiServerOptions {
  bodyLimitBytes: number;
  /** Largest release upload. */
  maxReleaseBytes: number;
  log: Logger;
}

export function buildApi(ctx: ApiContext, options: ApiServerOptions): FastifyInstance {
  const log = options.log.child({ component: 'api' });
  const app = Fastify({
    bodyLimit: options.bodyLimitBytes,
    // Unknown fields are errors, and types are never coerced: "name": 1 is not the name "1".
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true, allErrors: false } },
    forceCloseConnections: true,
    return503OnClosing: true,
  });
  app.setErrorHandler(errorHandler(log));
  app.setNotFoundHandler((request, reply) => sendError(reply, 'PIER_NOT_FOUND', `no such endpoint: ${request.method} ${request.url.split('?')[0]}`));
  installAuth(app, ctx, log);
  app.addHook('onResponse', async (request, reply) => {
    log.debug({ method: request.method, url: request.url, status: reply.statusCode, durationMs: Math.round(reply.elapsedTime) }, 'api request');
  });
  dashboardRoutes(app);
  operatorRoutes(app, ctx);
  appRoutes(app, ctx);
  hostRoutes(app, ctx);
  configRoutes(app, ctx);
  limitRoutes(app, ctx);
  healthRoutes(app, ctx);
  // Uploads are checked in worker threads, started by the first upload and stopped with the server.
  const checker = new UploadChecker({ maxArchiveBytes: options.maxReleaseBytes, log });
  // Its code is read at listen (before a daemon drops root), never later from disk.
  app.addHook('onReady', async () => checker.prepare());
  app.addHook('onClose', async () => checker.close());
  releaseRoutes(app, ctx, options.maxReleaseBytes, log, checker);
  tokenRoutes(app, ctx);
  logRoutes(app, ctx);
  lockRoutes(app, ctx);
  deployRoutes(app, ctx);
  explainRoutes(app, ctx);
  dynoRoutes(app, ctx, log);
  addonRoutes(app, ctx);
  return app;
}
