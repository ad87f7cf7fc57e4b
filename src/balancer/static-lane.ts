/**
 * The static lane: the balancer's listener reads each new connection's requests itself and answers the ones its
 * static cache holds (static-cache.ts) straight from the socket; at the first request it does not answer it hands
 * the connection, unread bytes included, to Node's HTTP server for good.
 *
 * Why: bench/static.ts measured the cache answering through Node's `http` server at 40–47% of nginx serving the
 * same file on the same core; a Node `http` server that does nothing but `res.end(buffer)` reached about 60%, and a
 * bare `net` server writing a ready response about 100%. Node's per-request HTTP machinery (IncomingMessage,
 * ServerResponse, header validation, events, ticks) was the cost, not the kernel. A connection that starts with
 * static files (a browser's extra asset connections, a CDN pulling assets) stays on the lane.
 *
 * The lane parses less than HTTP and never guesses: a request is answered here only when its head arrived whole
 * in what was read, is `GET`/`HEAD <origin-form> HTTP/1.1` with plain `name: value` header lines of printable
 * ASCII, carries exactly one Host and none of the headers it reads twice, and has none of Content-Length,
 * Transfer-Encoding, Connection, Upgrade, Expect, Range, TE or Keep-Alive — so it has no body and ends at its blank
 * line. Anything else (a partial head, an obs-fold, a bare LF, a byte outside printable ASCII, HTTP/1.0, a miss)
 * goes to Node's parser from its first byte, which answers it exactly as if the lane were not there. The two
 * parsers therefore never disagree on where a request ends (no request smuggling through the lane).
 *
 * The lane writes responses in request order and, once a MiB of them waits for a client that does not read, stops
 * reading its requests until the socket drains (a request of 50 bytes can ask for a large file). A connection is
 * closed when idle for the client keep-alive time once it sent a request, or for Node's headers time-out before.
 */
import type { IncomingHttpHeaders, Server } from 'node:http';
import type { Socket } from 'node:net';
import { headerLines, requestIdFor } from './headers.js';
import type { HttpProxy } from './proxy.js';
import { isNotModified, notModifiedHeaders } from './static-cache.js';

/** The longest request head the lane reads (Node's default maxHeaderSize); a longer one goes to Node. */
const MAX_HEAD_BYTES = 16 * 1024;
const MAX_HEADERS = 100;
/** Answer bytes a connection may have queued before the lane stops reading its requests. */
const MAX_QUEUED_BYTES = 1024 * 1024;
/** Headers that give a request a body, connection semantics or a partial answer: Node's parser handles those. */
const NOT_HERE = new Set(['content-length', 'transfer-encoding', 'connection', 'upgrade', 'expect', 'range', 'http2-settings', 'proxy-connection', 'keep-alive', 'te']);

/** The request headers the lane's answer depends on; only these are kept (each at most once). */
export interface LaneHeaders {
  [name: string]: string | undefined;
  host: string | undefined;
  'accept-encoding': string | undefined;
  'cache-control': string | undefined;
  pragma: string | undefined;
  'if-none-match': string | undefined;
  'if-modified-since': string | undefined;
  'x-request-id': string | undefined;
}
const KEPT = new Set<string>(['host', 'accept-encoding', 'cache-control', 'pragma', 'if-none-match', 'if-modified-since', 'x-request-id']);
/** The lengths of the names the lane keeps or refuses: other names are never made into strings. */
const NAME_LENGTHS = new Set([...KEPT, ...NOT_HERE].map((name) => name.length));

/** A request head the lane may answer. */
export interface LaneRequest {
  method: 'GET' | 'HEAD';
  target: string;
  headers: LaneHeaders;
  /** Offset just past the head's blank line. */
  end: number;
}

const CR = 13;
const LF = 10;
const SP = 32;
const COLON = 58;
/** tchar (RFC 9110 §5.6.2) by byte: 1 for a token character. */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 48; c <= 57; c++) TCHAR[c] = 1;
for (let c = 65; c <= 90; c++) TCHAR[c] = TCHAR[c + 32] = 1;

/** Whether `buffer[at…]` starts with the ASCII bytes of `text`. */
function startsWith(buffer: Buffer, at: number, text: string): boolean {
  if (at + text.length > buffer.length) return false;
  for (let i = 0; i < text.length; i++) if (buffer[at + i] !== text.charCodeAt(i)) return false;
  return true;
}

/**
 * Reads one request head from `buffer` at `start`: the request, or 'other' when the lane must not answer it
 * (incomplete, malformed, unusual or with a body: see the module comment). Pure. It walks the bytes once (no
 * string is made of what it does not keep): this is the lane's hottest code.
 */
export function readHead(buffer: Buffer, start: number): LaneRequest | 'other' {
  const limit = Math.min(buffer.length, start + MAX_HEAD_BYTES);
  // The request line: GET or HEAD, one space, an origin-form target of visible ASCII, one space, HTTP/1.1, CRLF.
  const method = startsWith(buffer, start, 'GET /') ? 'GET' : startsWith(buffer, start, 'HEAD /') ? 'HEAD' : undefined;
  if (method === undefined) return 'other';
  const targetStart = start + method.length + 1;
  let i = targetStart;
  while (i < limit && buffer[i]! > SP && buffer[i]! < 127) i++;
  if (!startsWith(buffer, i, ' HTTP/1.1\r\n')) return 'other';
  const target = buffer.toString('latin1', targetStart, i);
  i += 11;
  const headers: LaneHeaders = {
    host: undefined, 'accept-encoding': undefined, 'cache-control': undefined, pragma: undefined, 'if-none-match': undefined,
    'if-modified-since': undefined, 'x-request-id': undefined,
  };
  for (let count = 0; ; count++) {
    if (i + 1 >= limit) return 'other'; // the head did not end within what was read (or within the limit)
    if (buffer[i] === CR) {
      if (buffer[i + 1] !== LF) return 'other';
      if (headers.host === undefined) return 'other';
      return { method, target, headers, end: i + 2 };
    }
    if (count === MAX_HEADERS) return 'other';
    // name: one or more tchar (so no obs-fold, no space before the colon), then the colon
    const nameStart = i;
    while (i < limit && buffer[i]! < 128 && TCHAR[buffer[i]!] === 1) i++;
    if (i === nameStart || i >= limit || buffer[i] !== COLON) return 'other';
    const nameEnd = i;
    i++;
    // value: tab or printable ASCII up to CRLF; a bare CR or LF, a control byte or a byte above 126 is refused
    const valueStart = i;
    while (i < limit && (buffer[i] === 9 || (buffer[i]! >= SP && buffer[i]! < 127))) i++;
    if (i + 1 >= limit || buffer[i] !== CR || buffer[i + 1] !== LF) return 'other';
    const valueEnd = i;
    i += 2;
    const length = nameEnd - nameStart;
    // Only names as long as one the lane keeps or refuses are read as strings.
    if (!NAME_LENGTHS.has(length)) continue;
    const name = buffer.toString('latin1', nameStart, nameEnd).toLowerCase();
    if (NOT_HERE.has(name)) return 'other';
    if (!KEPT.has(name)) continue;
    const key = name as keyof LaneHeaders;
    if (headers[key] !== undefined) return 'other';
    headers[key] = buffer.toString('latin1', valueStart, valueEnd).trim();
  }
}

/** Counters for tests and `pier status`. */
export interface LaneCounters {
  /** Requests the lane answered. */
  answered: number;
  /** Connections handed to Node's HTTP server. */
  handedOff: number;
}

/** See the module comment. */
export class StaticLane {
  readonly counters: LaneCounters = { answered: 0, handedOff: 0 };
  private readonly sockets = new Set<Socket>();
  private readonly keepAlive: string;
  private date = '';
  private dateSecond = -1;

  constructor(
    private readonly proxy: HttpProxy,
    private readonly http: Server,
    private readonly keepAliveMs: number,
  ) {
    this.keepAlive = `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(keepAliveMs / 1000)}\r\n`;
  }

  /** The listener's 'connection' handler. */
  readonly onConnection = (socket: Socket): void => {
    this.sockets.add(socket);
    let hasRead = false;
    /** Answers what `chunk` holds; false when the socket must not be read on (paused, or handed to Node). */
    const take = (chunk: Buffer): boolean => {
      if (!hasRead) {
        hasRead = true;
        socket.setTimeout(this.keepAliveMs); // from its first request on, idle means the client keep-alive time
      }
      let offset = 0;
      while (offset < chunk.length) {
        if (socket.writableLength > MAX_QUEUED_BYTES) {
          // The client sends requests faster than it reads the answers (a few bytes each, up to a MiB back):
          // read none of them until what is queued is out, then go on where this stopped.
          const rest = chunk.subarray(offset);
          socket.pause();
          socket.once('drain', () => {
            if (this.sockets.has(socket) && take(rest)) socket.resume();
          });
          return false;
        }
        const next = this.answer(socket, chunk, offset);
        if (next === undefined) {
          this.handOff(socket, chunk.subarray(offset), listeners);
          return false;
        }
        offset = next;
      }
      return true;
    };
    const onData = (chunk: Buffer): void => void take(chunk);
    const onTimeout = (): void => void socket.destroy();
    const onError = (): void => void socket.destroy();
    const onClose = (): void => void this.sockets.delete(socket);
    const listeners = { onData, onTimeout, onError, onClose };
    // Until its first request, a connection gets what Node's server gives it for a request head.
    socket.setTimeout(this.http.headersTimeout);
    socket.on('data', onData);
    socket.on('timeout', onTimeout);
    socket.on('error', onError);
    socket.once('close', onClose);
  };

  /** Bytes of answers queued on the lane's connections (not yet taken by the kernel). */
  queuedBytes(): number {
    let bytes = 0;
    for (const socket of this.sockets) bytes += socket.writableLength;
    return bytes;
  }

  /** Ends every connection the lane holds once what was written to it is out (a drain: they are all idle). */
  endAll(): void {
    for (const socket of this.sockets) socket.destroySoon();
  }

  /** Destroys every connection the lane holds. */
  destroyAll(): void {
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
  }

  /** Answers the request at `offset` from the cache; the offset after it, or undefined when it is not answered here. */
  private answer(socket: Socket, chunk: Buffer, offset: number): number | undefined {
    const request = readHead(chunk, offset);
    if (request === 'other') return undefined;
    // The kept headers under their lower-case names: what the cache reads of a request's headers.
    const headers: IncomingHttpHeaders = request.headers;
    const hit = this.proxy.cachedAnswer(request.headers.host!, request.method, headers, request.target);
    if (!hit) return undefined;
    const { route, entry, host } = hit;
    const startedAt = performance.now();
    const proxy = this.proxy;
    proxy.counters.requests += 1;
    this.counters.answered += 1;
    const requestId = requestIdFor(request.headers['x-request-id']);
    const now = Date.now();
    // The status line and the lines that change per request first, then the entry's own lines and body as one
    // buffer: two chunks, one writev (measured: three chunks, or a string among buffers, cost more per hit).
    const lines = `x-request-id: ${requestId}\r\nDate: ${this.dateAt(now)}\r\n${this.keepAlive}`;
    let status = 200;
    let bytes = 0;
    socket.cork();
    if ((headers['if-none-match'] !== undefined || headers['if-modified-since'] !== undefined) && isNotModified(entry, headers)) {
      status = 304;
      socket.write(`HTTP/1.1 304 Not Modified\r\n${lines}${headerLines(notModifiedHeaders(entry))}\r\n`, 'latin1');
    } else {
      socket.write(`HTTP/1.1 200 OK\r\n${lines}`, 'latin1');
      if (request.method === 'GET') {
        socket.write(entry.wire);
        bytes = entry.body.length;
      } else socket.write(entry.wireHead);
    }
    socket.uncork();
    proxy.noteCached(route, entry, host, request.method, request.target, status, bytes, startedAt, requestId, now);
    return request.end;
  }

  /** Gives the connection to Node's HTTP server, `rest` (what the lane read and did not answer) first. */
  private handOff(socket: Socket, rest: Buffer, listeners: { onData: (c: Buffer) => void; onTimeout: () => void; onError: () => void; onClose: () => void }): void {
    this.counters.handedOff += 1;
    this.sockets.delete(socket);
    socket.off('data', listeners.onData);
    socket.off('timeout', listeners.onTimeout);
    socket.off('error', listeners.onError);
    socket.off('close', listeners.onClose);
    socket.setTimeout(0);
    socket.pause();
    socket.unshift(rest);
    // Node's server takes the socket over (documented: 'connection' may be emitted to inject a socket); the bytes
    // put back are read first, once the socket flows again.
    this.http.emit('connection', socket);
    process.nextTick(() => socket.resume());
  }

  /** The Date header's value for epoch ms `now` (the same string for a whole second, as Node's). */
  private dateAt(now: number): string {
    const second = Math.floor(now / 1000);
    if (second !== this.dateSecond) {
      this.dateSecond = second;
      this.date = new Date(second * 1000).toUTCString();
    }
    return this.date;
  }
}
