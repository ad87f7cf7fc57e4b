import { request } from 'node:http';
import { describe, expect, it } from 'vitest';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';
import { send, startBackend, startProxy, tableWith } from './helpers.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('proxy', () => {
  it('routes by Host to the app\'s instances, round-robin', async () => {
    const [a1, a2, b1] = await Promise.all([startBackend('a1'), startBackend('a2'), startBackend('b1')]);
    const { port } = await startProxy(tableWith({ alpha: { hostnames: ['alpha.example.com'], ports: [a1.port, a2.port] }, beta: { ports: [b1.port] } }));
    const seen = [];
    for (let i = 0; i < 4; i++) seen.push((await send(port, 'alpha.example.com')).headers['x-backend']);
    expect(seen.sort()).toEqual(['a1', 'a1', 'a2', 'a2']);
    const beta = await send(port, 'BETA.localhost:8080', { path: '/x?y=1' });
    expect(beta.status).toBe(200);
    expect(JSON.parse(beta.body)).toMatchObject({ backend: 'b1', url: '/x?y=1', method: 'GET' });
  });

  it('answers 404 naming the host when no app has it, in HTML or plain text by Accept', async () => {
    const { port, access } = await startProxy(tableWith({}));
    const text = await send(port, 'nobody.example.com:8080');
    expect(text.status).toBe(404);
    expect(text.headers['content-type']).toMatch(/^text\/plain/);
    expect(text.body).toContain('nobody.example.com');
    expect(text.headers['x-request-id']).toMatch(UUID);
    const html = await send(port, 'nobody.example.com', { headers: { accept: 'text/html,application/xhtml+xml' } });
    expect(html.status).toBe(404);
    expect(html.headers['content-type']).toMatch(/^text\/html/);
    expect(html.body).toMatch(/<h1>404 .*<\/h1>/);
    expect(html.body).toContain('nobody.example.com');
    const escaped = await send(port, 'x<b>.example.com', { headers: { accept: 'text/html' } }).catch(() => undefined);
    if (escaped) expect(escaped.body).not.toContain('<b>');
    expect(access[0]).toMatchObject({ app: null, host: 'nobody.example.com', status: 404, backend: null });
  });

  it('answers 503 when the app has no ready instance', async () => {
    const { port } = await startProxy(tableWith({ empty: { ports: [] } }));
    const reply = await send(port, 'empty.localhost', { headers: { accept: 'text/html' } });
    expect(reply.status).toBe(503);
    expect(reply.body).toContain('empty.localhost');
  });

  it('answers 504 when the instance does not send headers within the response timeout', async () => {
    const slow = await startBackend('slow', (req, res) => setTimeout(() => res.end('late'), 4000).unref());
    const { port, access } = await startProxy(tableWith({ slow: { ports: [slow.port] } }), { responseTimeoutMs: 200 });
    const started = Date.now();
    const reply = await send(port, 'slow.localhost');
    expect(reply.status).toBe(504);
    // undici checks header and body time-outs on a coarse clock (ticks of ~0.5 s), so allow for it.
    expect(Date.now() - started).toBeLessThan(2000);
    expect(reply.body).toContain('slow.localhost');
    expect(access[0]).toMatchObject({ app: 'slow', status: 504 });
  });

  it('retries a refused connection on another instance, for GET and for a POST whose body was not read yet', async () => {
    const closed = await freePort();
    const good = await startBackend('good', (req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => res.end(`${req.method} ${body}`));
    });
    const { port, proxy } = await startProxy(tableWith({ app: { ports: [closed, good.port] } }), { backendCooldownMs: 0 });
    for (let i = 0; i < 4; i++) {
      const reply = await send(port, 'app.localhost');
      expect(reply.status).toBe(200);
    }
    const post = await send(port, 'app.localhost', { method: 'POST', body: 'hello body', headers: { 'content-type': 'text/plain' } });
    const post2 = await send(port, 'app.localhost', { method: 'POST', body: 'hello body', headers: { 'content-type': 'text/plain' } });
    expect([post.body, post2.body]).toEqual(['POST hello body', 'POST hello body']);
    expect(proxy.proxy.counters.retries).toBeGreaterThanOrEqual(2);
  });

  it('cools a refusing instance down so the next requests skip it', async () => {
    const closed = await freePort();
    const good = await startBackend('good');
    const { port, proxy } = await startProxy(tableWith({ app: { ports: [closed, good.port] } }), { backendCooldownMs: 5000 });
    for (let i = 0; i < 6; i++) expect((await send(port, 'app.localhost')).status).toBe(200);
    expect(proxy.proxy.counters.retries).toBe(1);
  });

  it('answers 502 when no instance can be reached, after one retry', async () => {
    const [closed1, closed2] = await Promise.all([freePort(), freePort()]);
    const { port, proxy, access } = await startProxy(tableWith({ down: { ports: [closed1, closed2] } }));
    const reply = await send(port, 'down.localhost');
    expect(reply.status).toBe(502);
    expect(reply.body).toContain('down.localhost');
    expect(proxy.proxy.counters.retries).toBe(1);
    expect(access[0]).toMatchObject({ app: 'down', status: 502 });
  });

  it('sets X-Forwarded-*, keeps a valid X-Request-Id, replaces an invalid one, and strips hop-by-hop headers', async () => {
    const backend = await startBackend('b', (req, res) => {
      res.writeHead(200, { connection: 'keep-alive, x-internal', 'x-internal': 'secret', 'x-request-id': 'from-the-app', 'x-app': 'kept' });
      res.end(JSON.stringify({ headers: req.headers }));
    });
    const { port } = await startProxy(tableWith({ app: { hostnames: ['www.app.com'], ports: [backend.port] } }));
    const reply = await send(port, 'www.app.com:8080', {
      headers: {
        'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.com', 'x-request-id': 'abc.DEF_123-x',
        connection: 'keep-alive, x-secret', 'x-secret': 'hop', 'keep-alive': 'timeout=5', te: 'trailers', 'proxy-authorization': 'Basic eA==',
        'x-kept': 'yes',
      },
    });
    const seen = JSON.parse(reply.body).headers as Record<string, string>;
    expect(seen['x-forwarded-for']).toBe('203.0.113.7, 127.0.0.1');
    expect(seen['x-forwarded-proto']).toBe('http');
    expect(seen['x-forwarded-host']).toBe('www.app.com:8080');
    expect(seen['x-request-id']).toBe('abc.DEF_123-x');
    expect(seen.host).toBe('www.app.com:8080');
    expect(seen['x-kept']).toBe('yes');
    for (const gone of ['x-secret', 'te', 'proxy-authorization']) expect(seen[gone]).toBeUndefined();
    expect(reply.headers['x-request-id']).toBe('abc.DEF_123-x');
    expect(reply.headers['x-internal']).toBeUndefined();
    expect(reply.headers['x-app']).toBe('kept');

    for (const bad of ['', 'has space', 'x'.repeat(201), 'semi;colon']) {
      const replaced = await send(port, 'www.app.com', { headers: { 'x-request-id': bad } });
      const id = (JSON.parse(replaced.body).headers as Record<string, string>)['x-request-id'];
      expect(id).toMatch(UUID);
      expect(replaced.headers['x-request-id']).toBe(id);
    }
    const plain = JSON.parse((await send(port, 'www.app.com')).body).headers as Record<string, string>;
    expect(plain['x-forwarded-for']).toBe('127.0.0.1');
  });

  it("passes on X-Forwarded-Proto only from a trusted proxy (balancer.trustedProxies)", async () => {
    const backend = await startBackend('b', (req, res) => res.end(String(req.headers['x-forwarded-proto'])));
    const table = tableWith({ app: { ports: [backend.port] } });
    const trusting = await startProxy(table, { trustedProxies: ['127.0.0.0/8'] });
    expect((await send(trusting.port, 'app.localhost', { headers: { 'x-forwarded-proto': 'https' } })).body).toBe('https');
    expect((await send(trusting.port, 'app.localhost')).body).toBe('http');
    const other = await startProxy(table, { trustedProxies: ['10.0.0.0/8'] });
    expect((await send(other.port, 'app.localhost', { headers: { 'x-forwarded-proto': 'https' } })).body).toBe('http');
  });

  it('reuses keep-alive connections to the instance', async () => {
    const backend = await startBackend('b');
    const { port } = await startProxy(tableWith({ app: { ports: [backend.port] } }));
    for (let i = 0; i < 50; i++) expect((await send(port, 'app.localhost')).status).toBe(200);
    expect(backend.connections).toBe(1);
    for (let round = 0; round < 3; round++) {
      const replies = await Promise.all(Array.from({ length: 10 }, () => send(port, 'app.localhost')));
      expect(replies.every((r) => r.status === 200)).toBe(true);
    }
    expect(backend.connections).toBeLessThanOrEqual(10);
  });

  it('keeps fewer connections to an instance than the requests it serves at once, and queues the rest', async () => {
    const backend = await startBackend('b', (req, res) => setTimeout(() => res.end('ok'), 20));
    const { port } = await startProxy(tableWith({ app: { ports: [backend.port], capacity: 3 } }));
    const replies = await Promise.all(Array.from({ length: 12 }, () => send(port, 'app.localhost')));
    expect(replies.map((r) => r.status)).toEqual(Array.from({ length: 12 }, () => 200));
    expect(backend.connections).toBe(2); // one of its three threads stays free for a new connection (a health probe)
    // One thread: one connection at a time, closed after each response, so the thread is free again in between.
    const single = await startBackend('c');
    const one = await startProxy(tableWith({ app: { ports: [single.port], capacity: 1 } }));
    const answers = await Promise.all(Array.from({ length: 4 }, () => send(one.port, 'app.localhost')));
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect(single.connections).toBe(4);
    await waitFor(() => single.open.size === 0 || undefined, { name: 'no connection kept to a one-thread instance', timeoutMs: 2000 });
  });

  it('streams request and response bodies through', async () => {
    const backend = await startBackend('b', (req, res) => {
      let bytes = 0;
      req.on('data', (c: Buffer) => (bytes += c.length));
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('y'.repeat(3 * 1024 * 1024) + String(bytes));
      });
    });
    const { port, access } = await startProxy(tableWith({ app: { ports: [backend.port] } }));
    const reply = await send(port, 'app.localhost', { method: 'PUT', body: 'x'.repeat(2 * 1024 * 1024) });
    expect(reply.status).toBe(200);
    expect(reply.body.length).toBe(3 * 1024 * 1024 + 7);
    expect(reply.body.endsWith(String(2 * 1024 * 1024))).toBe(true);
    expect(access[0]).toMatchObject({ method: 'PUT', status: 200, bytes: 3 * 1024 * 1024 + 7, backend: `127.0.0.1:${backend.port}` });
  });

  // undici closes the aborted request's connection and may open a fresh idle one in its place; that one is
  // pooled like any other and closes after upstreamKeepAliveMs, so nothing outlives the keep-alive period.
  it('closes the instance connection when the client goes away mid-response, and counts it', async () => {
    const backend = await startBackend('b', (req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first chunk'); // and never ends on its own
    });
    const { port, proxy, access } = await startProxy(tableWith({ app: { ports: [backend.port] } }), { upstreamKeepAliveMs: 300 });
    await new Promise<void>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/', headers: { host: 'app.localhost' }, agent: false }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', (err) => (err.message === 'socket hang up' ? undefined : reject(err)));
      req.end();
    });
    const [first] = [...backend.open];
    await waitFor(() => first!.destroyed && proxy.proxy.inflight === 0, { timeoutMs: 2000, name: 'upstream socket of the aborted request closed' });
    expect(access[0]).toMatchObject({ status: 499, app: 'app' });
    expect(proxy.proxy.counters.clientAborts).toBe(1);
    await waitFor(() => backend.open.size === 0, { timeoutMs: 2000, name: 'no upstream socket left after keep-alive' });
  });

  it('closes the instance connection when the client goes away before the response starts', async () => {
    const backend = await startBackend('b', () => undefined); // never answers
    const { port, proxy } = await startProxy(tableWith({ app: { ports: [backend.port] } }), { upstreamKeepAliveMs: 300 });
    const req = request({ host: '127.0.0.1', port, path: '/', headers: { host: 'app.localhost' }, agent: false });
    req.on('error', () => undefined);
    req.end();
    await waitFor(() => backend.open.size === 1, { timeoutMs: 2000, name: 'request reached the instance' });
    const [first] = [...backend.open];
    req.destroy();
    await waitFor(() => first!.destroyed && proxy.proxy.inflight === 0, { timeoutMs: 2000, name: 'upstream socket of the aborted request closed' });
    await waitFor(() => backend.open.size === 0, { timeoutMs: 2000, name: 'no upstream socket left after keep-alive' });
  });

  it('reports one access record per request with the request id', async () => {
    const backend = await startBackend('b');
    const { port, access } = await startProxy(tableWith({ app: { ports: [backend.port] } }));
    await send(port, 'app.localhost', { path: '/some/path?q=1', headers: { 'x-request-id': 'req-1' } });
    expect(access).toHaveLength(1);
    expect(access[0]).toMatchObject({
      app: 'app', host: 'app.localhost', method: 'GET', path: '/some/path?q=1', status: 200, backend: `127.0.0.1:${backend.port}`, requestId: 'req-1',
    });
    expect(access[0]!.bytes).toBeGreaterThan(0);
    expect(access[0]!.durationMs).toBeGreaterThan(0);
  });
});
