/**
 * The HTTP/1.1 reverse proxy: routes each request by Host, forwards it over a keep-alive connection pool to one
 * of the app's instances, retries a connection failure once on another instance, and answers by itself when it
 * cannot (404 unknown host, 503 no instance, 502 unreachable, 504 too slow).
 *
 * Upstream is undici's Pool driven through `dispatch` with a handler object, not http-proxy-3. Measured here with
 * wrk (-t2 -c64, 5 s, Node backend answering 'hello', one proxy process on a 2-core VM), requests per proxy
 * CPU-second: http-proxy-3 1.23 + keep-alive http.Agent ≈ 6–7.5k; Node http.request + Agent ≈ 11k; undici
 * Pool.stream ≈ 16k; undici Pool.dispatch ≈ 18.5–20.5k (the handler API used here measured the same as the
 * deprecated raw one). Dispatch skips the stream and promise layers and hands us parsed headers and body chunks,
 * which we write straight to the client response; it also gives explicit connect/headers/body timeouts and an
 * abort handle per request, which the retry and client-abort rules below need.
 */
import { randomUUID } from 'node:crypto';
import { forwardedProto, type TrustedPeer } from './trusted-proxies.js';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import type { Logger } from 'pino';
import { renderErrorPage, type BalancerStatus } from './error-pages.js';
import { clientAddress, forwardRequestHeaders, forwardResponseHeaders, requestIdFor } from './headers.js';
import { translateStaticValidator } from './static-validators.js';
import { isNotModified, notModifiedHeaders, wantsOrigin, type CachedFile, type StaticCache } from './static-cache.js';
import type { AppRoute, Backend, RouteTable } from './route-table.js';
import type { UpstreamPools } from './upstreams.js';

/** What the balancer reports about one request (the AccessMessage body without envelope and balancer id). */
export interface AccessRecord {
  app: string | null;
  host: string;
  method: string;
  path: string;
  status: number;
  bytes: number;
  durationMs: number;
  backend: string | null;
  /** Release of the instance that answered. */
  release: number | null;
  requestId: string;
  at: number;
}

export interface ProxyOptions {
  table: RouteTable;
  upstreams: UpstreamPools;
  log: Logger;
  /** Called once per finished request; must not block. */
  onAccess?: (record: AccessRecord) => void;
  /** Holds hot static files (static-cache.ts). @default none */
  staticCache?: StaticCache;
  /** Peers whose X-Forwarded-Proto is passed on (trusted-proxies.ts). @default none */
  isTrusted?: TrustedPeer;
}

/** Counters for `pier status` and tests. */
export interface ProxyCounters {
  requests: number;
  retries: number;
  clientAborts: number;
  /** Answers the balancer made by itself, by status. */
  answered: Record<BalancerStatus, number>;
}

/** Status recorded for a request whose client went away first (nginx's convention). */
export const CLIENT_CLOSED = 499;

/** Errors that mean the instance was never reached: safe to try another, whatever the request. */
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'EADDRNOTAVAIL', 'ETIMEDOUT']);
/** Errors of a connection that closed before any response: a stale keep-alive connection, usually. */
const RESET_ERRORS = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE']);
const TIMEOUT_ERRORS = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS']);

type Failure = 'connect' | 'reset' | 'timeout' | 'other';

function classify(err: Error): Failure {
  const code = (err as { code?: string }).code ?? '';
  if (CONNECT_ERRORS.has(code)) return 'connect';
  if (TIMEOUT_ERRORS.has(code)) return 'timeout';
  if (RESET_ERRORS.has(code)) return 'reset';
  return 'other';
}

/** Whether the request carries a body (Content-Length > 0 or any Transfer-Encoding). */
function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** Origin-form path; an absolute-form target (`GET http://host/x`) is reduced to its path. */
function originPath(url: string | undefined): string {
  if (url === undefined || url === '') return '/';
  if (url.charCodeAt(0) === 47 /* / */) return url;
  try {
    const parsed = new URL(url);
    return `${parsed.pathname}${parsed.search}`;
  } catch {
    return '/';
  }
}

/** The instance ids of each backends list (the table replaces the list whenever it changes), joined. */
const scopes = new WeakMap<readonly Backend[], string>();

/**
 * The instances a route holds, in the table's stable order, joined by commas: part of a static cache key.
 * Computed once per backends list, so a cache hit joins nothing.
 */
function instanceScope(route: AppRoute): string {
  let scope = scopes.get(route.backends);
  if (scope === undefined) {
    scope = route.backends.map((b) => b.id).join(',');
    scopes.set(route.backends, scope);
  }
  return scope;
}

/** The 'request' listener of the public server, with its counters and in-flight tracking. */
export class HttpProxy {
  readonly counters: ProxyCounters = { requests: 0, retries: 0, clientAborts: 0, answered: { 400: 0, 404: 0, 502: 0, 503: 0, 504: 0 } };
  /** Requests started and not yet finished. */
  inflight = 0;
  readonly log: Logger;
  private idleWaiters: Array<() => void> = [];

  constructor(readonly options: ProxyOptions) {
    this.log = options.log.child({ component: 'balancer.proxy' });
  }

  /** The server's 'request' listener. */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    this.counters.requests += 1;
    const lookup = this.options.table.lookup(req.headers.host);
    const probe = lookup.kind === 'app' ? this.probeCache(lookup.route, req.method, req.headers, req.url ?? '/') : undefined;
    if (probe?.entry && lookup.kind === 'app') return this.serveCached(req, res, lookup.host, lookup.route, probe.entry);
    this.inflight += 1;
    const requestId = requestIdFor(req.headers['x-request-id']);
    const exchange = new Exchange(this, req, res, lookup.host, requestId);
    if (lookup.kind === 'unknown') return exchange.answer(lookup.host === '' ? 400 : 404);
    exchange.route = lookup.route;
    exchange.cacheKey = probe?.key;
    const backend = this.options.table.pick(lookup.route, undefined, this.options.upstreams.isUsable);
    if (!backend) return exchange.answer(503);
    try {
      exchange.send(backend);
    } catch (err) {
      // A throw here would escape into Node's server and end the process; one bad request must not.
      this.log.error({ err, requestId, app: lookup.route.name }, 'cannot forward request');
      exchange.answer(502);
    }
  };

  /** The static cache's key for a request to `route` and its fresh entry (a hit), or undefined when not cacheable. */
  private probeCache(route: AppRoute, method: string | undefined, headers: IncomingHttpHeaders, target: string): { key: string; entry: CachedFile | undefined } | undefined {
    const cache = this.options.staticCache;
    const key = cache?.keyFor(route.name, instanceScope(route), method, headers, target);
    if (key === undefined) return undefined;
    const entry = wantsOrigin(headers) ? undefined : cache!.get(key);
    if (entry && cache!.needsRefresh(entry)) this.refresh(route, key, entry, headers.host ?? '', headers['accept-encoding'], target);
    return { key, entry };
  }

  /**
   * Fetches a cached file again from one of the route's instances, in the background, and holds the new answer
   * under the same key (StaticCache.needsRefresh). A refresh that brings nothing cacheable (the file is gone, the
   * instance failed) leaves the entry to expire, and the next try waits a second.
   */
  private refresh(route: AppRoute, key: string, entry: CachedFile, host: string, acceptEncoding: string | undefined, target: string): void {
    const cache = this.options.staticCache!;
    const { table, upstreams } = this.options;
    const backend = table.pick(route, undefined, upstreams.isUsable);
    const giveUp = (): void => {
      entry.isRefreshing = false;
      entry.refreshAt = Date.now() + 1000;
    };
    if (!backend) return giveUp();
    // What makes the instance pick the same file and variant: the target and the accepted encodings.
    const headers = ['host', host, 'x-request-id', randomUUID()];
    if (acceptEncoding !== undefined) headers.push('accept-encoding', acceptEncoding);
    upstreams.pool(backend).request({ path: originPath(target), method: 'GET', headers, reset: backend.capacity === 1 })
      .then(async ({ statusCode, headers: answer, body }) => {
        const lifetimeMs = cache.cacheableFor(statusCode, answer);
        if (lifetimeMs === undefined) {
          await body.dump();
          return giveUp();
        }
        cache.store(key, route.name, backend.release, answer, Buffer.from(await body.arrayBuffer()), lifetimeMs);
      })
      .catch((err: Error) => {
        this.log.debug({ err: err.message, app: route.name, target }, 'static cache refresh failed');
        giveUp();
      });
  }

  /** The static cache's answer to a request the static lane read (static-lane.ts), or undefined on a miss. */
  cachedAnswer(hostHeader: string, method: string, headers: IncomingHttpHeaders, target: string): { host: string; route: AppRoute; entry: CachedFile } | undefined {
    const lookup = this.options.table.lookup(hostHeader);
    if (lookup.kind !== 'app') return undefined;
    const entry = this.probeCache(lookup.route, method, headers, target)?.entry;
    return entry ? { host: lookup.host, route: lookup.route, entry } : undefined;
  }

  /**
   * Answers from the static cache: the file, its headers only (HEAD), or a 304 to a matching validator. The hot
   * path of static files (bench/static.ts), so it is kept lean: synchronous (never in flight), no Exchange, no
   * listeners, no header array built for a 200.
   */
  private serveCached(req: IncomingMessage, res: ServerResponse, host: string, route: AppRoute, entry: CachedFile): void {
    const startedAt = performance.now();
    const requestId = requestIdFor(req.headers['x-request-id']);
    let status = 200;
    let bytes = 0;
    if ((req.headers['if-none-match'] !== undefined || req.headers['if-modified-since'] !== undefined) && isNotModified(entry, req.headers)) {
      status = 304;
      res.writeHead(304, [...notModifiedHeaders(entry), 'x-request-id', requestId]);
      res.end();
    } else {
      const headers = entry.headersWithId;
      headers[headers.length - 1] = requestId; // writeHead copies the list into the header block before returning
      res.writeHead(200, headers);
      if (req.method === 'HEAD') res.end();
      else {
        res.end(entry.body);
        bytes = entry.body.length;
      }
    }
    this.noteCached(route, entry, host, req.method ?? '', req.url ?? '/', status, bytes, startedAt, requestId, Date.now());
  }

  /** @internal The access record of an answer from the static cache (here or on the static lane). */
  noteCached(route: AppRoute, entry: CachedFile, host: string, method: string, path: string, status: number, bytes: number, startedAt: number, requestId: string, at: number): void {
    this.options.onAccess?.({
      app: route.name, host, method, path, status, bytes, durationMs: performance.now() - startedAt, backend: null, release: entry.release, requestId, at,
    });
  }

  /** Resolves once no request is in flight. */
  idle(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** @internal Called exactly once per request. */
  finished(record: AccessRecord): void {
    this.inflight -= 1;
    if (this.inflight === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
    this.options.onAccess?.(record);
  }
}

/** One client request and its (at most two) upstream attempts; also the undici handler for them. */
class Exchange implements Dispatcher.DispatchHandler {
  route: AppRoute | undefined;
  private backend: Backend | undefined;
  private controller: Dispatcher.DispatchController | undefined;
  private readonly startedAt = performance.now();
  private readonly at = Date.now();
  private attempt = 0;
  private status = 0;
  private bytes = 0;
  private isDone = false;
  private isBodyTouched = false;
  private headers: string[] | undefined;
  /** The Pier static ETag the request revalidates (static-validators.ts): a 304 gets it back. */
  private staticTag: string | undefined;
  /** The static cache key of this request, when the cache may answer it (static-cache.ts). */
  cacheKey: string | undefined;
  /** An answer being read into the cache. */
  private capture: { headers: IncomingHttpHeaders; chunks: Buffer[]; lifetimeMs: number } | undefined;

  constructor(
    private readonly proxy: HttpProxy,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly host: string,
    private readonly requestId: string,
  ) {
    res.once('close', this.onClientClose);
  }

  /** Sends the request to `backend` (first attempt or the retry). */
  send(backend: Backend): void {
    this.backend = backend;
    const { req } = this;
    if (!this.headers) {
      const forwarded = forwardRequestHeaders(req.rawHeaders, {
        clientIp: clientAddress(req.socket.remoteAddress), host: req.headers.host ?? '', requestId: this.requestId,
        proto: forwardedProto(this.proxy.options.isTrusted?.(req.socket.remoteAddress) === true, req.headers['x-forwarded-proto']),
      });
      const validation = translateStaticValidator(req.method, forwarded);
      this.headers = validation.headers;
      this.staticTag = validation.etag;
    }
    // undici accepts async iterables as bodies (documented), though its types list only streams and buffers.
    const body = hasBody(req) ? (this.body() as unknown as Dispatcher.DispatchOptions['body']) : null;
    // An instance serving one request at a time gets no kept-alive connection: held, it would be its only thread.
    this.proxy.options.upstreams.pool(backend).dispatch(
      { path: originPath(req.url), method: req.method ?? 'GET', headers: this.headers, body, reset: backend.capacity === 1 },
      this,
    );
  }

  /** The request body as an async iterable that records whether any of it was read (then no retry). */
  private async *body(): AsyncGenerator<Buffer> {
    this.isBodyTouched = true;
    // destroyOnReturn: false — if the upstream attempt ends early, the client's socket must stay usable.
    for await (const chunk of this.req.iterator({ destroyOnReturn: false })) yield chunk as Buffer;
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.isDone) controller.abort(new Error('client went away'));
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    if (statusCode < 200 || this.isDone) return; // 1xx interim responses are not forwarded
    this.status = statusCode;
    const cache = this.proxy.options.staticCache;
    const lifetimeMs = cache && this.cacheKey !== undefined && this.req.method === 'GET' ? cache.cacheableFor(statusCode, headers) : undefined;
    this.capture = lifetimeMs === undefined ? undefined : { headers, chunks: [], lifetimeMs };
    const out = forwardResponseHeaders(headers, this.requestId);
    if (statusCode === 304 && this.staticTag !== undefined && headers.etag === undefined) out.push('etag', this.staticTag);
    this.res.writeHead(statusCode, statusMessage || undefined, out);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.bytes += chunk.length;
    this.capture?.chunks.push(chunk);
    if (!this.res.write(chunk)) {
      controller.pause();
      this.res.once('drain', () => controller.resume());
    }
  }

  onResponseEnd(): void {
    if (this.isDone) return;
    const { capture } = this;
    if (capture && this.backend && this.route) {
      this.proxy.options.staticCache?.store(this.cacheKey!, this.route.name, this.backend.release, capture.headers, Buffer.concat(capture.chunks), capture.lifetimeMs);
    }
    this.res.end();
    this.finish(this.status);
  }

  onResponseError(controller: Dispatcher.DispatchController, err: Error): void {
    if (this.isDone) return; // the client left; the abort that caused this error was ours
    const { res } = this;
    const failure = classify(err);
    if (res.headersSent) {
      // Too late for an error page: cut the connection so the client sees a truncated response, not a whole one.
      this.proxy.log.warn({ err: err.message, backend: this.backend?.address, requestId: this.requestId }, 'response from instance cut short');
      res.destroy();
      this.finish(this.status);
      return;
    }
    if (failure === 'connect') this.proxy.options.upstreams.coolDown(this.backend!);
    if (this.retry(failure)) return;
    const status = failure === 'timeout' ? 504 : 502;
    this.proxy.log.warn(
      { err: err.message, code: (err as { code?: string }).code, backend: this.backend?.address, app: this.route?.name, requestId: this.requestId, status },
      'instance failed',
    );
    this.answer(status);
  }

  /**
   * Retries once on another instance when the instance was never reached (connect refused or timed out), or,
   * for GET/HEAD/OPTIONS without a body, when a kept-alive connection turned out to be closed. A request whose
   * body was already (partly) read from the client is never retried: those bytes are gone.
   */
  private retry(failure: Failure): boolean {
    if (this.attempt > 0 || this.isBodyTouched || !this.route) return false;
    const isIdempotent = IDEMPOTENT.has(this.req.method ?? '') && !hasBody(this.req);
    if (failure !== 'connect' && !(failure === 'reset' && isIdempotent)) return false;
    const { table, upstreams } = this.proxy.options;
    // A reset may be a stale keep-alive connection or a dying instance: prefer another instance, else the same
    // one again (on a fresh connection).
    const next = failure === 'connect'
      ? table.pick(this.route, this.backend, upstreams.isUsable)
      : (table.pick(this.route, this.backend, upstreams.isUsable) ?? this.backend);
    if (!next) return false;
    this.attempt += 1;
    this.proxy.counters.retries += 1;
    this.proxy.log.debug({ failure, from: this.backend?.address, to: next.address, requestId: this.requestId }, 'retrying on another instance');
    this.controller = undefined;
    this.send(next);
    return true;
  }

  /** Answers with the balancer's own page. */
  answer(status: BalancerStatus): void {
    const { res } = this;
    if (this.isDone) return;
    this.proxy.counters.answered[status] += 1;
    const page = renderErrorPage(status, this.host, this.requestId, this.req.headers.accept);
    if (!res.headersSent && !res.destroyed) {
      res.writeHead(status, [
        'content-type', page.contentType, 'content-length', String(page.body.length), 'cache-control', 'no-store', 'x-request-id', this.requestId,
      ]);
      res.end(this.req.method === 'HEAD' ? undefined : page.body);
    }
    this.bytes = page.body.length;
    this.finish(status);
  }

  private readonly onClientClose = (): void => {
    if (this.isDone) return;
    // The client closed before the whole response was written: stop the upstream request so its connection
    // is released (undici closes it, as its response would otherwise have to be read to the end).
    this.proxy.counters.clientAborts += 1;
    this.finish(CLIENT_CLOSED);
    this.controller?.abort(new Error('client went away'));
  };

  private finish(status: number): void {
    if (this.isDone) return;
    this.isDone = true;
    this.res.off('close', this.onClientClose);
    const { req } = this;
    this.proxy.finished({
      app: this.route?.name ?? null, host: this.host, method: req.method ?? '', path: req.url ?? '/', status, bytes: this.bytes,
      durationMs: performance.now() - this.startedAt, backend: this.backend?.address ?? null, release: this.backend?.release ?? null,
      requestId: this.requestId, at: this.at,
    });
  }
}
