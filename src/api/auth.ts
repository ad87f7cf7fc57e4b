/**
 * Authentication before the body: every /v1 request is authenticated in an `onRequest` hook, before fastify reads
 * a byte of its body, and a refused request that carries a body is answered and its connection closed without the
 * rest of the body being read (Node would otherwise read and discard it to keep the connection alive).
 */
import { STATUS_CODES } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { PierError, httpStatusFor, toPierError } from '../core/errors.js';
import { authenticate, mapDbError, type Principal } from '../db/index.js';
import { bearerToken, type ApiContext } from './context.js';
import { sendError } from './http-errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The caller, set by the auth hook on every /v1 request before its body is read. */
    principal: Principal | null;
  }
}

/**
 * How long a refused connection stays open (not read) after its answer, so the answer reaches the client before
 * the close; closing a socket with unread data sends a reset that can overtake the answer.
 */
const LINGER_MS = 1000;
/** Set on requests that sent `Expect: 100-continue`: the 100 waits until the caller is known. */
const EXPECTS_CONTINUE = Symbol('pier.expectsContinue');

type Flagged = FastifyRequest['raw'] & { [EXPECTS_CONTINUE]?: boolean };

/** True when the request announces a body (a length above zero, or chunked). */
export function hasBody(request: FastifyRequest): boolean {
  const length = request.headers['content-length'];
  return request.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

function isApiPath(url: string): boolean {
  return url === '/v1' || url.startsWith('/v1/') || url.startsWith('/v1?');
}

/** Installs the auth hook, the held `100 Continue` and the principal slot on every request. */
export function installAuth(app: FastifyInstance, ctx: ApiContext, log: Logger): void {
  app.decorateRequest('principal', null);
  // Without a 'checkContinue' listener Node answers `100 Continue` at once, inviting the body before any check.
  app.server.on('checkContinue', (req: Flagged, res) => {
    req[EXPECTS_CONTINUE] = true;
    app.server.emit('request', req, res);
  });
  app.addHook('onRequest', async (request, reply) => {
    if (!isApiPath(request.url)) {
      // Nothing outside /v1 takes a body (the dashboard page and /healthz are GETs).
      if (hasBody(request)) return refuse(request, reply, new PierError('PIER_NOT_FOUND', `no such endpoint: ${request.method} ${request.url.split('?')[0]}`), log);
      return undefined;
    }
    try {
      request.principal = await authenticate(ctx.pool, bearerToken(request));
      return undefined;
    } catch (err) {
      return refuse(request, reply, err, log);
    }
  });
  // Reached only by requests no hook refused: now the body may come.
  app.addHook('preParsing', async (request, reply, payload) => {
    const raw = request.raw as Flagged;
    if (raw[EXPECTS_CONTINUE]) {
      raw[EXPECTS_CONTINUE] = false;
      reply.raw.writeContinue();
    }
    return payload;
  });
}

/** An `onRequest` hook for one route: runs `check` (which may throw) before the route's body is read. */
export function beforeBody(log: Logger, check: (request: FastifyRequest) => Promise<void>) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    if (reply.sent) return reply;
    try {
      await check(request);
      return undefined;
    } catch (err) {
      return refuse(request, reply, err, log);
    }
  };
}

/**
 * Answers `err` in the one error shape. A request without a body gets an ordinary answer (keep-alive); one with a
 * body gets its answer written straight to the socket with `Connection: close`, the socket stops reading, and it
 * is closed shortly after: the unread body is never read.
 */
export function refuse(request: FastifyRequest, reply: FastifyReply, err: unknown, log: Logger): FastifyReply {
  const e = toPierError(mapDbError(err));
  if (e.code === 'PIER_INTERNAL') log.error({ err, url: request.url }, 'request failed');
  const status = httpStatusFor(e.code);
  const message = e.code === 'PIER_INTERNAL' ? 'internal error' : e.message;
  const socket = request.raw.socket;
  const expects = (request.raw as Flagged)[EXPECTS_CONTINUE] === true;
  if (!hasBody(request) && !expects) return sendError(reply, e.code, message);
  const body = JSON.stringify({ error: { code: e.code, message } });
  reply.hijack();
  log.debug({ method: request.method, url: request.url, status }, 'api request refused before its body');
  socket.pause();
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\ncontent-type: application/json; charset=utf-8\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  return reply;
}
