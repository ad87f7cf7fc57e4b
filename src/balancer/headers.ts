/**
 * Header rewriting between a client and an instance, pure: hop-by-hop removal (RFC 9110 §7.6.1, including
 * names listed in `Connection`), X-Forwarded-For/-Proto/-Host, and the request id.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

/** Headers that describe one connection, never forwarded in either direction. */
const HOP_BY_HOP = [
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'proxy-authenticate', 'proxy-authorization',
];

/**
 * Request headers not copied as they are: hop-by-hop ones; `expect` (the client's 100-continue was already
 * answered by Node's server, and the upstream client refuses it); and the ones the balancer sets itself.
 */
const REQUEST_REPLACED = new Set([...HOP_BY_HOP, 'expect', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-request-id']);

/** Response headers not copied: hop-by-hop ones and the instance's own request id (ours is authoritative). */
const RESPONSE_REPLACED = new Set([...HOP_BY_HOP, 'x-request-id']);

/** Connection options that are not header names. */
const CONNECTION_OPTIONS = new Set(['close', 'keep-alive', 'upgrade']);

const REQUEST_ID_PATTERN = /^[A-Za-z0-9._-]{1,200}$/;

/** The incoming X-Request-Id when valid (1–200 of `[A-Za-z0-9._-]`), else a new UUID. */
export function requestIdFor(incoming: string | string[] | undefined): string {
  return typeof incoming === 'string' && REQUEST_ID_PATTERN.test(incoming) ? incoming : randomUUID();
}

/** The client's address as it should appear in X-Forwarded-For (IPv4-mapped IPv6 shown as IPv4). */
export function clientAddress(remoteAddress: string | undefined): string {
  if (remoteAddress === undefined) return 'unknown';
  return remoteAddress.startsWith('::ffff:') && remoteAddress.includes('.') ? remoteAddress.slice(7) : remoteAddress;
}

export interface ForwardContext {
  /** The client's address, appended to X-Forwarded-For. */
  clientIp: string;
  /** Scheme the client used. */
  proto: 'http' | 'https';
  /** The Host header as the client sent it (becomes X-Forwarded-Host). */
  host: string;
  requestId: string;
  /** Keep `Connection: upgrade` and `Upgrade` (WebSocket handshakes). */
  isUpgrade?: boolean;
}

/**
 * The headers to send to the instance, as a flat `[name, value, …]` list: the client's headers in order minus
 * hop-by-hop ones, X-Forwarded-For appended to (all incoming values joined), X-Forwarded-Proto and -Host
 * replaced (the balancer is the public edge, so incoming ones are not trusted), and X-Request-Id set.
 */
export function forwardRequestHeaders(raw: readonly string[], ctx: ForwardContext): string[] {
  const out: string[] = [];
  let forwardedFor: string | undefined;
  let connection: string | undefined;
  let upgrade: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const lower = name.toLowerCase();
    if (!REQUEST_REPLACED.has(lower)) {
      out.push(name, value);
    } else if (lower === 'x-forwarded-for') {
      forwardedFor = forwardedFor === undefined ? value : `${forwardedFor}, ${value}`;
    } else if (lower === 'connection') {
      connection = connection === undefined ? value : `${connection}, ${value}`;
    } else if (lower === 'upgrade') {
      upgrade = value;
    }
  }
  const result = connection === undefined ? out : withoutListed(out, connection);
  result.push(
    'x-forwarded-for', forwardedFor === undefined ? ctx.clientIp : `${forwardedFor}, ${ctx.clientIp}`,
    'x-forwarded-proto', ctx.proto,
    'x-forwarded-host', ctx.host,
    'x-request-id', ctx.requestId,
  );
  if (ctx.isUpgrade && upgrade !== undefined) result.push('connection', 'upgrade', 'upgrade', upgrade);
  return result;
}

/** The instance's response headers for the client, as a flat list, with our X-Request-Id added. */
export function forwardResponseHeaders(headers: IncomingHttpHeaders, requestId: string): string[] {
  const out: string[] = [];
  for (const name in headers) {
    if (RESPONSE_REPLACED.has(name)) continue;
    const value = headers[name];
    if (value === undefined) continue;
    if (typeof value === 'string') out.push(name, value);
    else for (const item of value) out.push(name, item);
  }
  const connection = headers.connection;
  const result = connection === undefined ? out : withoutListed(out, Array.isArray(connection) ? connection.join(',') : connection);
  result.push('x-request-id', requestId);
  return result;
}

/** Same as forwardResponseHeaders for a raw `[name, value, …]` list (upgrade responses). */
export function forwardRawResponseHeaders(raw: readonly string[], requestId: string, keepUpgrade: boolean): string[] {
  const out: string[] = [];
  let connection: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (lower === 'connection') connection = raw[i + 1]!;
    if (keepUpgrade && (lower === 'connection' || lower === 'upgrade')) out.push(name, raw[i + 1]!);
    else if (!RESPONSE_REPLACED.has(lower)) out.push(name, raw[i + 1]!);
  }
  const result = connection === undefined || keepUpgrade ? out : withoutListed(out, connection);
  result.push('x-request-id', requestId);
  return result;
}

/** Drops the headers a `Connection` value names (`Connection: close, X-Secret` drops X-Secret). */
function withoutListed(headers: string[], connection: string): string[] {
  const listed = new Set<string>();
  for (const token of connection.split(',')) {
    const name = token.trim().toLowerCase();
    if (name !== '' && !CONNECTION_OPTIONS.has(name)) listed.add(name);
  }
  if (listed.size === 0) return headers;
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    if (!listed.has(headers[i]!.toLowerCase())) out.push(headers[i]!, headers[i + 1]!);
  }
  return out;
}

/** `name: value` CRLF lines of a header list (name, value, …), for answers written to a socket by hand. */
export function headerLines(headers: readonly string[]): string {
  let lines = '';
  for (let i = 0; i < headers.length; i += 2) lines += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return lines;
}
