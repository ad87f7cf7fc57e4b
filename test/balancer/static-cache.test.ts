import type { IncomingHttpHeaders } from 'node:http';
import { describe, expect, it } from 'vitest';
import { isNotModified, StaticCache, wantsOrigin } from '../../src/balancer/static-cache.js';
import { translateStaticValidator } from '../../src/balancer/static-validators.js';

const LM = 'Tue, 01 Dec 2026 13:08:39 GMT';
const TAG = `W/"pier-${Buffer.from(LM, 'latin1').toString('hex').toUpperCase()}"`;

function answer(size: number, extra: IncomingHttpHeaders = {}): IncomingHttpHeaders {
  return {
    'content-type': 'text/css', 'content-length': String(size), 'last-modified': LM, etag: TAG, vary: 'Accept-Encoding',
    'cache-control': 'public, max-age=3600', 'x-secret': 'not kept', ...extra,
  };
}

describe('StaticCache', () => {
  it('keys by app, instances, accepted encodings and target, and only for GET/HEAD without Range or body', () => {
    const cache = new StaticCache({ maxBytes: 1000 });
    const key = (app: string, instances: string[], method: string, headers: IncomingHttpHeaders, target = '/static/a.css') => cache.keyFor(app, instances.join(','), method, headers, target);
    const plain = key('a', ['i3'], 'GET', {});
    expect(plain).toBeDefined();
    expect(key('a', ['i3'], 'HEAD', {})).toBe(plain);
    expect(key('a', ['i3'], 'GET', { 'accept-encoding': 'gzip, deflate' })).not.toBe(plain);
    expect(key('a', ['i3'], 'GET', { 'accept-encoding': 'gzip, br' })).not.toBe(key('a', ['i3'], 'GET', { 'accept-encoding': 'gzip' }));
    expect(key('b', ['i3'], 'GET', {})).not.toBe(plain);
    expect(key('a', ['i4'], 'GET', {})).not.toBe(plain);
    expect(key('a', ['i3'], 'GET', {}, '/static/a.css?v=2')).not.toBe(plain);
    expect(key('a', ['i3'], 'POST', {})).toBeUndefined();
    expect(key('a', ['i3'], 'GET', { range: 'bytes=0-1' })).toBeUndefined();
    expect(key('a', ['i3'], 'GET', { 'content-length': '3' })).toBeUndefined();
    expect(key('a', [], 'GET', {})).toBeUndefined();
    expect(new StaticCache({ maxBytes: 0 }).keyFor('a', 'i3', 'GET', {}, '/x')).toBeUndefined();
  });

  it('holds only 200 answers marked as Pier static files, within the entry size, for min(max-age, ttl)', () => {
    const cache = new StaticCache({ maxBytes: 1000, maxEntryBytes: 100, ttlMs: 30_000 });
    expect(cache.cacheableFor(200, answer(10))).toBe(30_000);
    expect(cache.cacheableFor(200, answer(10, { 'cache-control': 'public, max-age=5' }))).toBe(5000);
    expect(cache.cacheableFor(200, answer(10, { 'cache-control': 'public, max-age=0' }))).toBeUndefined();
    expect(cache.cacheableFor(200, answer(10, { 'cache-control': 'private, max-age=60' }))).toBeUndefined();
    expect(cache.cacheableFor(404, answer(10))).toBeUndefined();
    expect(cache.cacheableFor(200, answer(101))).toBeUndefined();
    expect(cache.cacheableFor(200, answer(10, { etag: '"app-own"' }))).toBeUndefined();
    expect(cache.cacheableFor(200, answer(10, { 'set-cookie': ['a=b'] }))).toBeUndefined();
    const noLength = answer(10);
    delete noLength['content-length'];
    expect(cache.cacheableFor(200, noLength)).toBeUndefined();
  });

  it('serves an entry until it expires, keeping only the file headers', () => {
    let now = 1000;
    const cache = new StaticCache({ maxBytes: 1000, ttlMs: 30_000, now: () => now });
    cache.store('k', 'a', 3, answer(4), Buffer.from('body'), 30_000);
    const hit = cache.get('k')!;
    expect(hit.body.toString()).toBe('body');
    expect(hit.headers).not.toContain('x-secret');
    expect(hit.headers).toContain('etag');
    now += 30_000;
    expect(cache.get('k')).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('asks for one refresh of an entry in the last quarter of its life', () => {
    let now = 1000;
    const cache = new StaticCache({ maxBytes: 1000, now: () => now });
    cache.store('k', 'a', 3, answer(4), Buffer.from('body'), 20_000);
    const entry = cache.get('k')!;
    now += 14_999;
    expect(cache.needsRefresh(entry)).toBe(false);
    now += 1;
    expect(cache.needsRefresh(entry)).toBe(true);
    expect(cache.needsRefresh(entry)).toBe(false); // one under way
  });

  it('refuses a body whose length is not its Content-Length', () => {
    const cache = new StaticCache({ maxBytes: 1000 });
    cache.store('k', 'a', 3, answer(10), Buffer.from('short'), 30_000);
    expect(cache.get('k')).toBeUndefined();
  });

  it('keeps one app within a quarter of the memory and evicts least recently used first', () => {
    const cache = new StaticCache({ maxBytes: 400 });
    for (let i = 0; i < 5; i++) cache.store(`hog-${i}`, 'hog', 1, answer(60), Buffer.alloc(60), 30_000);
    // The hog holds at most 100 bytes: its newest entry is there, its oldest are gone.
    expect(cache.get('hog-4')).toBeDefined();
    expect(cache.get('hog-0')).toBeUndefined();
    expect(cache.size).toBeLessThanOrEqual(100);
    for (const app of ['a', 'b', 'c']) cache.store(`${app}-1`, app, 1, answer(100), Buffer.alloc(100), 30_000);
    expect(cache.size).toBeLessThanOrEqual(400);
    cache.get('a-1'); // a is now more recent than b
    cache.store('d-1', 'd', 1, answer(100), Buffer.alloc(100), 30_000);
    expect(cache.size).toBeLessThanOrEqual(400);
    expect(cache.get('a-1')).toBeDefined();
    expect(cache.get('d-1')).toBeDefined();
    expect(cache.counters.evictions).toBeGreaterThan(0);
  });
});

describe('isNotModified', () => {
  const cache = new StaticCache({ maxBytes: 1000 });
  cache.store('k', 'a', 1, answer(1), Buffer.from('x'), 30_000);
  const entry = cache.get('k')!;

  it('compares If-None-Match weakly and lets it win over If-Modified-Since', () => {
    expect(isNotModified(entry, { 'if-none-match': TAG })).toBe(true);
    expect(isNotModified(entry, { 'if-none-match': `"x", ${TAG.slice(2)}` })).toBe(true);
    expect(isNotModified(entry, { 'if-none-match': '"other"', 'if-modified-since': LM })).toBe(false);
    expect(isNotModified(entry, { 'if-none-match': '*' })).toBe(true);
  });

  it('answers 304 to an If-Modified-Since not before Last-Modified', () => {
    expect(isNotModified(entry, { 'if-modified-since': LM })).toBe(true);
    expect(isNotModified(entry, { 'if-modified-since': 'Tue, 01 Dec 2026 13:08:38 GMT' })).toBe(false);
    expect(isNotModified(entry, { 'if-modified-since': 'garbage' })).toBe(false);
    expect(isNotModified(entry, {})).toBe(false);
  });
});

describe('wantsOrigin', () => {
  it('is true for a hard reload, false for an ordinary or conditional request', () => {
    expect(wantsOrigin({ 'cache-control': 'no-cache' })).toBe(true);
    expect(wantsOrigin({ 'cache-control': 'max-age=0' })).toBe(true);
    expect(wantsOrigin({ pragma: 'no-cache' })).toBe(true);
    expect(wantsOrigin({ 'cache-control': 'max-age=60' })).toBe(false);
    expect(wantsOrigin({ 'if-none-match': TAG })).toBe(false);
    expect(wantsOrigin({})).toBe(false);
  });
});

describe('translateStaticValidator', () => {
  it("turns a Pier tag into If-Modified-Since, replacing the client's", () => {
    const out = translateStaticValidator('GET', ['Host', 'a', 'If-None-Match', `"app", ${TAG}`, 'If-Modified-Since', 'Mon, 01 Jan 2024 00:00:00 GMT']);
    expect(out.headers).toEqual(['Host', 'a', 'If-None-Match', `"app", ${TAG}`, 'if-modified-since', LM]);
    expect(out.etag).toBe(TAG);
  });

  it('leaves other tags, other methods and malformed hex alone', () => {
    const headers = ['If-None-Match', '"app-tag"'];
    expect(translateStaticValidator('GET', headers)).toEqual({ headers });
    expect(translateStaticValidator('POST', ['If-None-Match', TAG])).toEqual({ headers: ['If-None-Match', TAG] });
    // Hex that decodes to something other than an HTTP date (here a header injection attempt) is ignored.
    const evil = `W/"pier-${Buffer.from('x\r\nSet-Cookie: a=b\r\n0123456789', 'latin1').toString('hex').slice(0, 58).padEnd(58, '0')}"`;
    expect(translateStaticValidator('GET', ['If-None-Match', evil])).toEqual({ headers: ['If-None-Match', evil] });
  });
});
