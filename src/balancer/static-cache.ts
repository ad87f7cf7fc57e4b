/**
 * A small shared cache, in the balancer's memory, of the static files vassals serve (Procfile `static:`), so a
 * hot file costs no hop to the instance. bench/static.ts measured the hop as the limit: through the balancer
 * 9–12k req/s, a third of uWSGI straight and a fifth of nginx, with the balancer's process saturated.
 *
 * What it holds, and why that is safe:
 * - Only 200 answers to a GET that the vassal's static routes produced (a `W/"pier-…"` ETag and
 *   `Cache-Control: public, max-age=N`, no Set-Cookie, a Content-Length of at most `maxEntryBytes`), and only the
 *   headers uWSGI's file server sends. An app forging those headers on its own paths only fills its own entries.
 * - Keyed by app, the instances the route holds (a deploy, a scale or a restart starts a new key space, old entries
 *   age out; instance ids are never reused, so a destroyed and re-created app never sees the old one's files),
 *   the raw request target, and the encodings the request accepts as uWSGI reads them (`gzip`, `br` substrings),
 *   so each Vary: Accept-Encoding variant is its own entry.
 * - Fresh for `min(max-age, ttlMs)`; a request in the last quarter of that has the balancer fetch the file again
 *   in the background (`needsRefresh`), so a file in use never expires. The balancer answers conditional GET/HEAD
 *   from an entry the way uWSGI would (304 to a matching If-None-Match — weak comparison — or, without one, to an
 *   If-Modified-Since not before its Last-Modified).
 * - Bounded: `maxBytes` in all (least recently used out first) and a quarter of it per app, so one app cannot
 *   push every other app's files out.
 * Requests with a Range header, and a client's `Cache-Control: no-cache` (a hard reload), go to the instance; the
 * answer then refreshes the entry.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { headerLines } from './headers.js';

/** One cached answer. */
export interface CachedFile {
  app: string;
  /** Release of the instance that answered. */
  release: number;
  /** Response headers to send (name, value, …), without X-Request-Id. */
  headers: string[];
  /**
   * `headers` and a last `x-request-id` pair whose value the sender overwrites just before `writeHead` (which
   * copies it into the header block at once): a hit builds no header array.
   */
  headersWithId: string[];
  /**
   * For the static lane (static-lane.ts), which writes answers itself after its own status line and per-request
   * header lines: `headers` as header lines, the blank line and the body, in one buffer (one write per hit).
   * `body` is a view into it.
   */
  wire: Buffer;
  /** `wire` without the body: the answer to a HEAD. */
  wireHead: Buffer;
  etag: string;
  lastModified: string | undefined;
  cacheControl: string;
  vary: string | undefined;
  body: Buffer;
  /** Epoch ms after which the entry is not used. */
  expiresAt: number;
  /** Used since eviction last passed it (CLOCK's reference bit: a hit sets a flag instead of reordering the map). */
  isRecent: boolean;
  /** Epoch ms from which a hit asks for the entry to be fetched again (`needsRefresh`), three quarters into its life. */
  refreshAt: number;
  /** A refresh of it is under way. */
  isRefreshing: boolean;
}

export interface StaticCacheOptions {
  /** Bytes of bodies held in all; 0 turns the cache off. */
  maxBytes: number;
  /** Largest body held, in bytes. @default 1048576 */
  maxEntryBytes?: number;
  /** Longest time an entry is used, whatever its max-age. @default 30000 */
  ttlMs?: number;
  /** @default Date.now */
  now?: () => number;
}

const PIER_TAG = /^W\/"pier-[0-9A-Fa-f]{58}"$/;
const MAX_AGE = /^public, max-age=(\d{1,9})(?:,|$)/;
/** Headers of uWSGI's file answers that are kept. */
const KEPT = ['content-type', 'content-length', 'content-encoding', 'last-modified', 'etag', 'vary', 'cache-control', 'expires', 'x-content-type-options'];

/** See the module comment. */
export class StaticCache {
  /** Hits, misses and stores, for tests and `pier status`. */
  readonly counters = { hits: 0, stores: 0, evictions: 0 };
  private readonly entries = new Map<string, CachedFile>();
  private readonly appBytes = new Map<string, number>();
  private totalBytes = 0;
  private readonly maxEntryBytes: number;
  private readonly ttlMs: number;
  private readonly now: () => number;

  constructor(private readonly options: StaticCacheOptions) {
    this.maxEntryBytes = options.maxEntryBytes ?? 1024 * 1024;
    this.ttlMs = options.ttlMs ?? 30_000;
    this.now = options.now ?? Date.now;
  }

  /** Bytes held now. */
  get size(): number {
    return this.totalBytes;
  }

  /**
   * The key of a request, or undefined when it is not one the cache answers (not GET/HEAD, a Range, a body).
   * `instances` is the route's instance ids joined by commas (`instanceScope`).
   */
  keyFor(app: string, instances: string, method: string | undefined, headers: IncomingHttpHeaders, target: string): string | undefined {
    if (this.options.maxBytes <= 0 || (method !== 'GET' && method !== 'HEAD')) return undefined;
    if (headers.range !== undefined || headers['content-length'] !== undefined || headers['transfer-encoding'] !== undefined) return undefined;
    if (instances.length === 0) return undefined;
    const accept = headers['accept-encoding'];
    const variant = accept === undefined ? '' : `${accept.includes('gzip') ? 'g' : ''}${accept.includes('br') ? 'b' : ''}`;
    return `${app}\u0000${instances}\u0000${variant}\u0000${target}`;
  }

  /** The fresh entry under `key`, marked as recently used. */
  get(key: string): CachedFile | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.now()) {
      this.remove(key, entry);
      return undefined;
    }
    entry.isRecent = true;
    this.counters.hits += 1;
    return entry;
  }

  /**
   * Whether a hit on `entry` should fetch it again now (it is in the last quarter of its life and no refresh is
   * under way); marks the refresh as under way. A file in use is thus fetched again before it expires and never
   * misses — a miss costs the hop to the instance, and on the static lane the connection.
   */
  needsRefresh(entry: CachedFile): boolean {
    if (entry.isRefreshing || this.now() < entry.refreshAt) return false;
    entry.isRefreshing = true;
    return true;
  }

  /** Whether an instance's answer to a GET may be held (see the module comment); gives its lifetime in ms. */
  cacheableFor(statusCode: number, headers: IncomingHttpHeaders): number | undefined {
    if (this.options.maxBytes <= 0 || statusCode !== 200) return undefined;
    const etag = headers.etag;
    const cacheControl = headers['cache-control'];
    if (typeof etag !== 'string' || !PIER_TAG.test(etag) || typeof cacheControl !== 'string') return undefined;
    if (headers['set-cookie'] !== undefined || headers['content-range'] !== undefined) return undefined;
    const length = Number(headers['content-length']);
    if (!Number.isInteger(length) || length < 0 || length > this.maxEntryBytes) return undefined;
    const maxAge = MAX_AGE.exec(cacheControl);
    if (!maxAge) return undefined;
    const lifetimeMs = Math.min(Number(maxAge[1]) * 1000, this.ttlMs);
    return lifetimeMs > 0 ? lifetimeMs : undefined;
  }

  /** Holds an answer whose whole body arrived. */
  store(key: string, app: string, release: number, headers: IncomingHttpHeaders, body: Buffer, lifetimeMs: number): void {
    if (body.length !== Number(headers['content-length']) || body.length > this.maxEntryBytes) return;
    const kept: string[] = [];
    for (const name of KEPT) {
      const value = headers[name];
      if (typeof value === 'string') kept.push(name, value);
    }
    const old = this.entries.get(key);
    if (old) this.remove(key, old);
    // The body lives inside `wire` (the lane's copy of the answer), so an entry holds its bytes once.
    const { wire, wireHead } = renderWire(kept, body);
    const entry: CachedFile = {
      app, release, headers: kept, headersWithId: [...kept, 'x-request-id', ''], wire, wireHead, etag: headers.etag as string, lastModified: headers['last-modified'],
      cacheControl: headers['cache-control'] as string, vary: headers.vary as string | undefined, body: wire.subarray(wireHead.length), expiresAt: this.now() + lifetimeMs, isRecent: false,
      refreshAt: this.now() + Math.floor((lifetimeMs * 3) / 4), isRefreshing: false,
    };
    this.entries.set(key, entry);
    this.totalBytes += body.length;
    this.appBytes.set(app, (this.appBytes.get(app) ?? 0) + body.length);
    this.counters.stores += 1;
    this.evict(app);
  }

  /**
   * Evicts the app's entries beyond its quarter, then anyone's beyond the total, in CLOCK order: the map is in
   * insertion order; an entry used since it was last passed goes to the back with its flag cleared instead of
   * out, so the least recently used go first without a hit ever reordering the map (measured: the reorder was
   * the cache's largest cost per hit).
   */
  private evict(app: string): void {
    const appLimit = Math.floor(this.options.maxBytes / 4);
    this.sweep(() => (this.appBytes.get(app) ?? 0) > appLimit, (entry) => entry.app === app);
    this.sweep(() => this.totalBytes > this.options.maxBytes, () => true);
  }

  private sweep(isOver: () => boolean, isCandidate: (entry: CachedFile) => boolean): void {
    // A Map iterator also visits what is re-inserted during the loop: an entry moved to the back comes round
    // again with its flag cleared, and goes then if still needed. Each entry moves at most once, so this ends.
    for (const [key, entry] of this.entries) {
      if (!isOver()) return;
      if (!isCandidate(entry)) continue;
      if (entry.isRecent) {
        entry.isRecent = false;
        this.entries.delete(key);
        this.entries.set(key, entry);
      } else this.remove(key, entry, true);
    }
  }

  private remove(key: string, entry: CachedFile, isEviction = false): void {
    this.entries.delete(key);
    this.totalBytes -= entry.body.length;
    const left = (this.appBytes.get(entry.app) ?? 0) - entry.body.length;
    if (left > 0) this.appBytes.set(entry.app, left);
    else this.appBytes.delete(entry.app);
    if (isEviction) this.counters.evictions += 1;
  }
}

/** The header lines of `headers` (name, value, …), the blank line and `body`; and the same without the body. */
function renderWire(headers: readonly string[], body: Buffer): { wire: Buffer; wireHead: Buffer } {
  const head = Buffer.from(`${headerLines(headers)}\r\n`, 'latin1');
  const wire = Buffer.concat([head, body]);
  return { wire, wireHead: wire.subarray(0, head.length) };
}

/** Whether the client asks for an answer from the origin (`Cache-Control: no-cache`/`max-age=0`, `Pragma: no-cache`: a hard reload). */
export function wantsOrigin(headers: IncomingHttpHeaders): boolean {
  const cacheControl = headers['cache-control'];
  if (cacheControl !== undefined && /(?:^|,)\s*(?:no-cache|no-store|max-age=0)\s*(?:,|$)/i.test(cacheControl)) return true;
  return headers.pragma !== undefined && /no-cache/i.test(headers.pragma);
}

/** The headers of a 304 to `entry` (name, value, …): its validators, as uWSGI sends them. */
export function notModifiedHeaders(entry: CachedFile): string[] {
  const headers = ['etag', entry.etag, 'cache-control', entry.cacheControl];
  if (entry.vary !== undefined) headers.push('vary', entry.vary);
  if (entry.lastModified !== undefined) headers.push('last-modified', entry.lastModified);
  return headers;
}

/** Whether a conditional request is answered 304 by `entry` (RFC 9110 §13.1.2, §13.1.3; weak comparison). */
export function isNotModified(entry: CachedFile, headers: IncomingHttpHeaders): boolean {
  const noneMatch = headers['if-none-match'];
  if (noneMatch !== undefined) {
    const ours = entry.etag.replace(/^W\//, '');
    return noneMatch.split(',').some((tag) => {
      const t = tag.trim();
      return t === '*' || t.replace(/^W\//, '') === ours;
    });
  }
  const since = headers['if-modified-since'];
  if (since === undefined || entry.lastModified === undefined) return false;
  const sinceMs = Date.parse(since);
  return Number.isFinite(sinceMs) && Date.parse(entry.lastModified) <= sinceMs;
}
