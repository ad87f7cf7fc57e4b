/**
 * Static files (Procfile `static:`), all real: a nexus, a runner as root with app users, uWSGI vassals, the
 * balancer. The app's Python answers 200 to every path, so a 404 under a mapped prefix is the platform's own
 * answer; its build (as the app's user) plants symlinks to /etc and to ../wsgi.py in the static folder. Every
 * HTTP check runs twice: through the platform's balancer (its static cache on, the default) and through a second
 * balancer with the cache off, so both the cache's answers and uWSGI's own are held to the same rules.
 */
import { lstatSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { request, type IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Balancer } from '../../src/balancer/balancer.js';
import { randomId } from '../../src/core/ids.js';
import { silentLogger } from '../../src/core/logger.js';
import type { Release } from '../../src/protocol/index.js';
import { testConfig } from '../helpers/config.js';
import { waitFor } from '../helpers/wait.js';
import { runCli } from '../helpers/cli.js';
import { platformForFile } from '../helpers/platform.js';

const APP = `st-${randomId().slice(0, 6)}`;
const BAD = `st-bad-${randomId().slice(0, 6)}`;
const p = platformForFile({ apps: [APP, BAD], prefix: 'st' });

const CSS = 'body { color: #123456; }\n'.repeat(40);
const FILES: Record<string, string> = {
  'wsgi.py': [
    'def application(environ, start_response):',
    '    start_response("200 OK", [("Content-Type", "text/plain")])',
    '    return [("app answered " + environ["PATH_INFO"]).encode("utf-8", "surrogateescape")]',
    '',
  ].join('\n'),
  Procfile: [
    'web: wsgi:application',
    'static: /static/=staticfiles/ /media/=public/media/',
    // The build runs as the app's user: the attacker's chance to plant links the archive check never saw.
    'build: ln -s /etc staticfiles/etc && ln -s ../wsgi.py staticfiles/w.py && ln -s /etc/passwd staticfiles/passwd.css && gzip -k -9 staticfiles/css/base.4f3c2a1b9e8d.css',
    '',
  ].join('\n'),
  'secret.txt': 'top secret\n',
  'staticfiles/css/base.4f3c2a1b9e8d.css': CSS,
  'staticfiles/js/app.js': 'console.log("hi");\n',
  'staticfiles/img/logo.svg': '<svg xmlns="http://www.w3.org/2000/svg"/>\n',
  'staticfiles/img/dot.png': '\x89PNG\r\n\x1a\n',
  'public/media/note.txt': 'media note\n',
  'public/media/blob.pierunknown': 'opaque\n',
};

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

let uncached: Balancer;
let release: Release;

beforeAll(async () => {
  release = await p.deploy(APP, p.writeApp(APP, FILES));
  const cluster = {
    heartbeatIntervalMs: 100, heartbeatMisses: 15, stats: [],
    nexus: [{ control: p.nexus.control, events: p.nexus.events, heartbeats: p.nexus.heartbeats, api: p.nexus.api, sessions: p.nexus.sessions }],
  };
  uncached = new Balancer({ config: testConfig({ cluster, balancer: { id: `balancer-${randomId()}`, host: '127.0.0.1', port: 0, staticCacheBytes: 0 } }), log: silentLogger() });
  await uncached.start();
  await waitFor(async () => (await getVia(uncached.port!, '/static/js/app.js')).status === 200 || undefined, { name: 'second balancer routes the app', timeoutMs: 10_000 });
}, 60_000);
afterAll(async () => {
  await uncached?.stop();
});

/** One request through a balancer, the path sent exactly as given (no normalization). */
function getVia(port: number, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers: { host: `${APP}.localhost`, ...headers }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('the release as its build left it', () => {
  it('holds the links the build planted, so the 404s below are refusals, not misses', () => {
    const releasesDir = join(p.dir, 'runner', 'releases', APP);
    const [sha] = readdirSync(releasesDir);
    const staticDir = join(releasesDir, sha!, 'app', 'staticfiles');
    expect(readlinkSync(join(staticDir, 'etc'))).toBe('/etc');
    expect(readlinkSync(join(staticDir, 'w.py'))).toBe('../wsgi.py');
    expect(readlinkSync(join(staticDir, 'passwd.css'))).toBe('/etc/passwd');
    expect(lstatSync(join(staticDir, 'css', 'base.4f3c2a1b9e8d.css.gz')).isFile()).toBe(true);
  });
});

describe.each([
  ['cache on', () => p.balancer.port!],
  ['cache off', () => uncached.port!],
])('static files through the balancer (%s)', (_mode, port) => {
  const get = (path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Reply> => getVia(port(), path, headers, method);

  it('serves the files of a deployed static: line with the right Content-Type, without Python', async () => {
    expect(release.status).toBe('live');
    const cases: Array<[string, string, string]> = [
      ['/static/css/base.4f3c2a1b9e8d.css', 'text/css', CSS],
      ['/static/js/app.js', 'text/javascript', 'console.log("hi");\n'],
      ['/static/img/logo.svg', 'image/svg+xml', '<svg xmlns="http://www.w3.org/2000/svg"/>\n'],
      ['/static/img/dot.png', 'image/png', '\x89PNG\r\n\x1a\n'],
      ['/media/note.txt', 'text/plain', 'media note\n'],
    ];
    for (const [path, type, body] of cases) {
      const reply = await get(path);
      expect(reply.status, path).toBe(200);
      expect(reply.headers['content-type'], path).toBe(type);
      expect(reply.body.toString('utf8'), path).toBe(Buffer.from(body, 'utf8').toString('utf8'));
      expect(reply.headers['content-length'], path).toBe(String(Buffer.byteLength(body)));
      expect(reply.headers['last-modified'], path).toMatch(/^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
      expect(reply.headers.etag, path).toMatch(/^W\/"pier-[0-9A-F]{58}"$/);
      expect(reply.headers.vary, path).toBe('Accept-Encoding');
      expect(reply.headers['x-content-type-options'], path).toBe('nosniff');
    }
    const unknown = await get('/media/blob.pierunknown');
    expect(unknown.status).toBe(200);
    expect(unknown.headers['content-type']).toBe('application/octet-stream');
    expect(unknown.body.toString()).toBe('opaque\n');
    // Outside the mapped prefixes the app answers.
    expect((await get('/other/page')).body.toString()).toBe('app answered /other/page');
    expect((await get('/static')).body.toString()).toBe('app answered /static');
  });

  it('gives hashed names a year and immutable, other names the shorter max-age', async () => {
    expect((await get('/static/css/base.4f3c2a1b9e8d.css')).headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect((await get('/static/js/app.js')).headers['cache-control']).toBe('public, max-age=3600');
    expect((await get('/media/note.txt')).headers['cache-control']).toBe('public, max-age=3600');
  });

  it('answers 304 to If-Modified-Since and to If-None-Match, and 200 when the validator is stale', async () => {
    const first = await get('/static/js/app.js');
    const lastModified = first.headers['last-modified']!;
    const etag = first.headers.etag!;
    const byDate = await get('/static/js/app.js', { 'if-modified-since': lastModified });
    expect(byDate.status).toBe(304);
    expect(byDate.body.length).toBe(0);
    expect(byDate.headers['cache-control']).toBe('public, max-age=3600');
    expect(byDate.headers['content-type']).toBeUndefined(); // a 304 must not rewrite the stored type
    const byTag = await get('/static/js/app.js', { 'if-none-match': etag });
    expect(byTag.status).toBe(304);
    expect(byTag.headers.etag).toBe(etag);
    expect(byTag.headers['content-type']).toBeUndefined();
    expect(byTag.body.length).toBe(0);
    // A tag standing for an older Last-Modified (the file changed since) gets the file.
    const older = new Date(Date.parse(lastModified) - 3600_000).toUTCString();
    const staleTag = `W/"pier-${Buffer.from(older, 'latin1').toString('hex').toUpperCase()}"`;
    const stale = await get('/static/js/app.js', { 'if-none-match': staleTag });
    expect(stale.status).toBe(200);
    expect(stale.body.toString()).toBe('console.log("hi");\n');
    expect((await get('/static/js/app.js', { 'if-modified-since': older })).status).toBe(200);
    // If-None-Match wins over a date that alone would give a 304.
    expect((await get('/static/js/app.js', { 'if-none-match': staleTag, 'if-modified-since': lastModified })).status).toBe(200);
  });

  it('sends the precompressed .gz to a client accepting gzip, and the plain file otherwise', async () => {
    const gz = await get('/static/css/base.4f3c2a1b9e8d.css', { 'accept-encoding': 'gzip, deflate, br' });
    expect(gz.status).toBe(200);
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gz.headers['content-type']).toBe('text/css');
    expect(gz.headers.vary).toBe('Accept-Encoding');
    expect(gz.body.length).toBeLessThan(Buffer.byteLength(CSS));
    expect(gunzipSync(gz.body).toString()).toBe(CSS);
    const plain = await get('/static/css/base.4f3c2a1b9e8d.css', { 'accept-encoding': 'identity' });
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(plain.body.toString()).toBe(CSS);
    // No .gz beside it: the file itself.
    const js = await get('/static/js/app.js', { 'accept-encoding': 'gzip' });
    expect(js.headers['content-encoding']).toBeUndefined();
    expect(js.body.toString()).toBe('console.log("hi");\n');
  });

  it('answers HEAD with the headers and no body', async () => {
    const head = await get('/static/css/base.4f3c2a1b9e8d.css', {}, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.headers['content-type']).toBe('text/css');
    expect(head.headers['content-length']).toBe(String(Buffer.byteLength(CSS)));
    expect(head.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(head.body.length).toBe(0);
  });

  it.each([
    '/static/../wsgi.py',
    '/static/../secret.txt',
    '/static/%2e%2e/wsgi.py',
    '/static/%2E%2E/secret.txt',
    '/static/%2e%2e%2fwsgi.py',
    '/static/..%2fwsgi.py',
    '/static/..%2Fsecret.txt',
    '/static/..\\wsgi.py',
    '/static/%5c..%5cwsgi.py',
    '/static/js/app.js%00.png',
    '/static/%00',
    '/static/./js/app.js',
    '/static/etc/passwd',
    '/static/etc/hostname',
    '/static/passwd.css',
    '/static/w.py',
    '/static/',
    '/static/css/',
    '/static/missing.css',
    '/media/../secret.txt',
    '/other/../static/passwd.css',
  ])('answers 404 itself, never the file nor the app, for %s', async (path) => {
    const reply = await get(path);
    expect(reply.status).toBe(404);
    const body = reply.body.toString('latin1');
    expect(body).not.toContain('app answered');
    expect(body).not.toContain('application');
    expect(body).not.toContain('top secret');
    expect(body).not.toContain('root:');
  });

  it('answers 404 to a method other than GET and HEAD under a prefix', async () => {
    const reply = await get('/static/js/app.js', {}, 'POST');
    expect(reply.status).toBe(404);
    expect(reply.body.toString()).not.toContain('app answered');
  });
});

describe('static: at deploy and across releases', () => {
  it('refuses a malformed static: line at deploy with a one-line error, creating no release', async () => {
    expect((await p.api('POST', '/v1/apps', { name: BAD })).status).toBe(201);
    const dir = p.writeApp(BAD, { 'wsgi.py': FILES['wsgi.py']!, Procfile: 'web: wsgi:application\nstatic: /static/=../\n' });
    const cli = await runCli(['deploy', dir, '-a', BAD], { PIER_API_URL: p.nexus.api, PIER_TOKEN: p.tokens.owner, XDG_CONFIG_HOME: `${p.dir}/xdg`, PIER_DATA: `${p.dir}/no-data` });
    expect(cli.code).not.toBe(0);
    const message = cli.stderr.trim();
    expect(message.split('\n')).toHaveLength(1);
    expect(message).toContain("Procfile line 2: static folder '../' holds a '..' segment");
    expect(message).not.toMatch(/\bat .*\.js:\d+/);
    // The API refuses it too (the CLI checks first; the upload check is what counts).
    const { packDirectory } = await import('../../src/archive/index.js');
    const up = await p.api<{ error: { code: string; message: string } }>('POST', `/v1/apps/${BAD}/releases`, await packDirectory(dir));
    expect(up.status).toBe(400);
    expect(up.json.error.message).toBe("Procfile line 2: static folder '../' holds a '..' segment; name a folder inside the release, such as 'staticfiles/'");
    const releases = await p.api<{ releases: unknown[] }>('GET', `/v1/apps/${BAD}/releases`);
    expect(releases.json.releases).toEqual([]);
  });

  it("serves a hot file from the balancer's memory, until a new release replaces it", async () => {
    const path = '/static/js/app.js';
    expect((await getVia(p.balancer.port!, path)).body.toString()).toBe('console.log("hi");\n');
    // The file changes on the runner behind the cache (the test as the operator, writing as root).
    const releasesDir = join(p.dir, 'runner', 'releases', APP);
    for (const sha of readdirSync(releasesDir)) writeFileSync(join(releasesDir, sha, 'app', 'staticfiles', 'js', 'app.js'), 'changed();\n');
    expect((await getVia(uncached.port!, path)).body.toString()).toBe('changed();\n');
    expect((await getVia(p.balancer.port!, path)).body.toString()).toBe('console.log("hi");\n');
    // A hard reload asks the instance, and refreshes the entry.
    expect((await getVia(p.balancer.port!, path, { 'cache-control': 'no-cache' })).body.toString()).toBe('changed();\n');
    expect((await getVia(p.balancer.port!, path)).body.toString()).toBe('changed();\n');
    const next = await p.deploy(APP, p.writeApp(APP, { ...FILES, 'staticfiles/js/app.js': 'v2();\n' }));
    expect(next.status).toBe('live');
    await waitFor(async () => (await getVia(p.balancer.port!, path)).body.toString() === 'v2();\n' || undefined, { name: 'the new release served through the cache', timeoutMs: 10_000 });
  });

  it('takes the max-age of un-hashed names from the config var PIER_STATIC_MAX_AGE, refusing a malformed one', async () => {
    const count = async (): Promise<number> => (await p.api<{ releases: unknown[] }>('GET', `/v1/apps/${APP}/releases`)).json.releases.length;
    const before = await count();
    const bad = await p.api<{ error: { code: string; message: string } }>('PATCH', `/v1/apps/${APP}/config`, { PIER_STATIC_MAX_AGE: 'an hour' });
    expect(bad.status).toBe(400);
    expect(bad.json.error.message).toBe("config var PIER_STATIC_MAX_AGE must be a whole number of seconds 0..31536000, not 'an hour'");
    expect(await count()).toBe(before); // the bad value rolled nothing
    expect((await p.api('PATCH', `/v1/apps/${APP}/config`, { PIER_STATIC_MAX_AGE: '120' })).status).toBe(200);
    expect(await count()).toBe(before + 1);
    await waitFor(async () => (await getVia(uncached.port!, '/static/js/app.js')).headers['cache-control'] === 'public, max-age=120' || undefined, {
      name: 'the release with PIER_STATIC_MAX_AGE live', timeoutMs: 20_000, intervalMs: 100,
    });
    expect((await getVia(uncached.port!, '/static/css/base.4f3c2a1b9e8d.css')).headers['cache-control']).toBe('public, max-age=31536000, immutable');
  });
});
