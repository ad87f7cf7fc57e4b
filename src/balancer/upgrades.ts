/**
 * Proxies HTTP upgrades (WebSocket): routes by Host like any request, opens a fresh connection to an instance
 * (retrying a connection failure once on another), relays the instance's 101 with our X-Request-Id, then
 * splices the two sockets together until either side closes. Open tunnels are tracked so stop() can end them.
 */
import { forwardedProto, type TrustedPeer } from './trusted-proxies.js';
import { request, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { rawErrorResponse, type BalancerStatus } from './error-pages.js';
import { clientAddress, forwardRawResponseHeaders, forwardRequestHeaders, headerLines, requestIdFor } from './headers.js';
import type { AccessRecord } from './proxy.js';
import type { AppRoute, Backend, RouteTable } from './route-table.js';
import type { UpstreamPools } from './upstreams.js';

export interface UpgradeProxyOptions {
  table: RouteTable;
  upstreams: UpstreamPools;
  connectTimeoutMs: number;
  /** Time the instance gets to answer the upgrade request. */
  responseTimeoutMs: number;
  log: Logger;
  onAccess?: (record: AccessRecord) => void;
  /** Peers whose X-Forwarded-Proto is passed on (trusted-proxies.ts). @default none */
  isTrusted?: TrustedPeer;
}

interface Attempt {
  req: IncomingMessage;
  socket: Duplex;
  head: Buffer;
  host: string;
  requestId: string;
  route: AppRoute;
  startedAt: number;
  at: number;
}

const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'PIER_CONNECT_TIMEOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'EADDRNOTAVAIL']);

function headBlock(statusLine: string, headers: string[]): string {
  return `${statusLine}\r\n${headerLines(headers)}\r\n`;
}

function timeoutError(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

/** The 'upgrade' listener of the public server, tracking open tunnels. */
export class UpgradeProxy {
  /** Client sockets of upgrade requests, from arrival until they close. */
  private readonly sockets = new Set<Duplex>();
  private readonly log: Logger;

  constructor(private readonly options: UpgradeProxyOptions) {
    this.log = options.log.child({ component: 'balancer.upgrades' });
  }

  /** Number of upgrade connections open (pending or tunnelled). */
  get open(): number {
    return this.sockets.size;
  }

  /** The server's 'upgrade' listener. */
  readonly handle = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy()); // a client reset is not our error
    const requestId = requestIdFor(req.headers['x-request-id']);
    const lookup = this.options.table.lookup(req.headers.host);
    const base = { req, socket, head, host: lookup.host, requestId, startedAt: performance.now(), at: Date.now() };
    if (lookup.kind === 'unknown') return this.refuse(base, lookup.host === '' ? 400 : 404, null);
    const attempt: Attempt = { ...base, route: lookup.route };
    const backend = this.options.table.pick(lookup.route, undefined, this.options.upstreams.isUsable);
    if (!backend) return this.refuse(attempt, 503, null);
    this.connect(attempt, backend, 0);
  };

  private connect(attempt: Attempt, backend: Backend, tries: number): void {
    const { req, socket } = attempt;
    const headers = forwardRequestHeaders(req.rawHeaders, {
      clientIp: clientAddress(req.socket.remoteAddress), host: req.headers.host ?? '', requestId: attempt.requestId, isUpgrade: true,
      proto: forwardedProto(this.options.isTrusted?.(req.socket.remoteAddress) === true, req.headers['x-forwarded-proto']),
    });
    const upstreamReq = request({ host: backend.host, port: backend.port, method: req.method, path: req.url, headers, agent: false, setHost: false });
    let timer = setTimeout(() => upstreamReq.destroy(timeoutError('connect timed out', 'PIER_CONNECT_TIMEOUT')), this.options.connectTimeoutMs);
    const onClientGone = (): void => {
      upstreamReq.destroy();
    };
    socket.once('close', onClientGone);
    upstreamReq.once('socket', (upstream) => {
      upstream.once('connect', () => {
        clearTimeout(timer);
        timer = setTimeout(() => upstreamReq.destroy(timeoutError('no answer in time', 'PIER_RESPONSE_TIMEOUT')), this.options.responseTimeoutMs);
      });
    });
    upstreamReq.once('upgrade', (res: IncomingMessage, upstream: Duplex, upstreamHead: Buffer) => {
      clearTimeout(timer);
      socket.off('close', onClientGone);
      this.splice(attempt, backend, res, upstream, upstreamHead);
    });
    upstreamReq.once('response', (res: IncomingMessage) => {
      // The instance declined the upgrade: relay its answer and close (the body is re-framed by the close).
      clearTimeout(timer);
      socket.off('close', onClientGone);
      const headers = forwardRawResponseHeaders(res.rawHeaders, attempt.requestId, false);
      socket.write(headBlock(`HTTP/1.1 ${res.statusCode} ${res.statusMessage}`, [...headers, 'connection', 'close']));
      let bytes = 0;
      res.on('data', (chunk: Buffer) => (bytes += chunk.length));
      res.pipe(socket);
      res.once('end', () => this.record(attempt, backend, res.statusCode ?? 502, bytes));
    });
    upstreamReq.once('error', (err: Error) => {
      clearTimeout(timer);
      socket.off('close', onClientGone);
      if (socket.destroyed) return;
      const code = (err as { code?: string }).code ?? '';
      if (CONNECT_ERRORS.has(code)) {
        this.options.upstreams.coolDown(backend);
        const next = tries === 0 ? this.options.table.pick(attempt.route, backend, this.options.upstreams.isUsable) : undefined;
        if (next) return this.connect(attempt, next, tries + 1);
      }
      this.log.warn({ err: err.message, code, backend: backend.address, app: attempt.route.name, requestId: attempt.requestId }, 'upgrade to instance failed');
      this.refuse(attempt, code === 'PIER_RESPONSE_TIMEOUT' ? 504 : 502, backend);
    });
    upstreamReq.end();
  }

  /** Connects the client and the instance sockets both ways; records the tunnel when it closes. */
  private splice(attempt: Attempt, backend: Backend, res: IncomingMessage, upstream: Duplex, upstreamHead: Buffer): void {
    const { socket, head } = attempt;
    const headers = forwardRawResponseHeaders(res.rawHeaders, attempt.requestId, true);
    socket.write(headBlock(`HTTP/1.1 ${res.statusCode ?? 101} ${res.statusMessage ?? 'Switching Protocols'}`, headers));
    if (upstreamHead.length > 0) socket.write(upstreamHead);
    if (head.length > 0) upstream.write(head);
    let bytes = 0;
    upstream.on('data', (chunk: Buffer) => (bytes += chunk.length));
    upstream.on('error', () => upstream.destroy());
    const close = (): void => {
      upstream.destroy();
      socket.destroy();
    };
    upstream.once('close', close);
    socket.once('close', close);
    upstream.pipe(socket);
    socket.pipe(upstream);
    socket.once('close', () => this.record(attempt, backend, res.statusCode ?? 101, bytes));
  }

  private refuse(attempt: Omit<Attempt, 'route'> & { route?: AppRoute }, status: BalancerStatus, backend: Backend | null): void {
    const response = rawErrorResponse(status, attempt.host, attempt.requestId, attempt.req.headers.accept);
    attempt.socket.end(response);
    this.record(attempt, backend, status, response.length);
  }

  private record(attempt: Omit<Attempt, 'route'> & { route?: AppRoute }, backend: Backend | null, status: number, bytes: number): void {
    const { req } = attempt;
    this.options.onAccess?.({
      app: attempt.route?.name ?? null, host: attempt.host, method: req.method ?? 'GET', path: req.url ?? '/', status, bytes,
      durationMs: performance.now() - attempt.startedAt, backend: backend?.address ?? null, release: backend?.release ?? null, requestId: attempt.requestId, at: attempt.at,
    });
  }

  /** Ends every upgrade connection (at stop, once the grace period is over). */
  destroyAll(): void {
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
  }
}
