/**
 * The static lane (src/balancer/static-lane.ts): its head reader, and a real ProxyServer with the static cache
 * on, spoken to over raw TCP so the bytes on the wire are what is checked — hits answered by the lane, every
 * other request (and everything after it on that connection) by Node's HTTP server, in order.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { readHead } from '../../src/balancer/static-lane.js';
import { onCleanup } from '../helpers/daemons.js';
import { waitFor } from '../helpers/wait.js';
import { send, startBackend, startProxy, tableWith, type Backend } from './helpers.js';

const LM = 'Tue, 01 Dec 2026 13:08:39 GMT';
const TAG = `W/"pier-${Buffer.from(LM, 'latin1').toString('hex').toUpperCase()}"`;
const CSS = '.a { color: red; }\n';
const HOST = 'app.localhost';

const head = (text: string): ReturnType<typeof readHead> => readHead(Buffer.from(text, 'latin1'), 0);

describe('readHead', () => {
  it('reads GET and HEAD heads: target, the headers the answer depends on, and where the head ends', () => {
    const text = 'GET /static/a.css?v=1 HTTP/1.1\r\nHost: App.Localhost\r\nAccept-Encoding:  gzip, br \r\nUser-Agent: x\r\n\r\n';
    const request = head(`${text}HEAD /b HTTP/1.1\r\nhost: b\r\n\r\n`);
    expect(request).toMatchObject({ method: 'GET', target: '/static/a.css?v=1', end: text.length });
    const { headers } = request as Exclude<typeof request, 'other'>;
    expect(headers.host).toBe('App.Localhost');
    expect(headers['accept-encoding']).toBe('gzip, br');
    expect(headers['user-agent']).toBeUndefined(); // not kept: the answer does not depend on it
    expect(readHead(Buffer.from(`${text}HEAD /b HTTP/1.1\r\nhost: b\r\n\r\n`, 'latin1'), text.length)).toMatchObject({ method: 'HEAD', target: '/b' });
  });

  it('leaves to Node every head it is not sure of', () => {
    const refused = [
      'POST /a HTTP/1.1\r\nHost: a\r\n\r\n',
      'GET /a HTTP/1.0\r\nHost: a\r\n\r\n',
      'GET http://a/x HTTP/1.1\r\nHost: a\r\n\r\n',
      'GET /a HTTP/1.1\r\n\r\n', // no Host
      'GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n',
      'GET /a HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\naccept-encoding: br\r\n\r\n',
      'GET /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n',
      'GET /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n',
      'GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n',
      'GET /a HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n',
      'GET /a HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1\r\n\r\n',
      'GET /a HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n', // obs-fold
      'GET /a HTTP/1.1\r\nHost : a\r\n\r\n', // space before the colon
      'GET /a HTTP/1.1\nHost: a\r\n\r\n', // bare LF
      'GET /a HTTP/1.1\r\nHost: a\rX: b\r\n\r\n', // bare CR
      'GET /a HTTP/1.1\r\nHost: a\r\nX: caf\u00e9\r\n\r\n', // a byte above 126
      'GET /a HTTP/1.1\r\nHost: a\r\nX: \u0001\r\n\r\n', // a control byte
      'GET /a  HTTP/1.1\r\nHost: a\r\n\r\n',
      'GET /a HTTP/1.1\r\nHost: a\r\n', // the head has not ended yet
      `GET /a HTTP/1.1\r\nHost: a\r\nX: ${'y'.repeat(17 * 1024)}\r\n\r\n`, // longer than Node's header limit
      `GET /a HTTP/1.1\r\nHost: a\r\n${'X: y\r\n'.repeat(101)}\r\n`, // more headers than the lane reads
    ];
    for (const text of refused) expect(head(text), JSON.stringify(text)).toBe('other');
  });
});

/** A backend answering /static/* as uWSGI's file server does (a Pier ETag, a max-age), anything else in JSON. */
async function startStaticBackend(maxAgeS = 3600): Promise<{ backend: Backend; staticHits: () => number; serve: (css: string) => void }> {
  const state = { staticHits: 0, css: CSS };
  const backend = await startBackend('static', (req: IncomingMessage, res: ServerResponse) => {
    if (req.url?.startsWith('/static/')) {
      state.staticHits += 1;
      res.writeHead(200, { 'content-type': 'text/css', 'content-length': String(state.css.length), 'last-modified': LM, etag: TAG, 'cache-control': `public, max-age=${maxAgeS}`, vary: 'Accept-Encoding' });
      res.end(req.method === 'HEAD' ? undefined : state.css);
      return;
    }
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const text = JSON.stringify({ method: req.method, url: req.url, body });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), 'x-backend': 'static' });
      res.end(text);
    });
  });
  return { backend, staticHits: () => state.staticHits, serve: (css) => (state.css = css) };
}

/** A raw TCP client that collects every byte the proxy sends. */
async function rawClient(port: number): Promise<{ socket: Socket; received: () => string; closed: Promise<void> }> {
  const socket = connect(port, '127.0.0.1');
  onCleanup(async () => void socket.destroy());
  let data = '';
  socket.on('data', (c: Buffer) => (data += c.toString('latin1')));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  return { socket, received: () => data, closed };
}

/** The responses in `text`, each as status, lower-cased headers and body (by Content-Length). */
function responses(text: string): Array<{ status: number; headers: Record<string, string>; body: string }> {
  const out: Array<{ status: number; headers: Record<string, string>; body: string }> = [];
  let rest = text;
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) break;
    const [statusLine, ...lines] = rest.slice(0, end).split('\r\n');
    const headers: Record<string, string> = {};
    for (const line of lines) headers[line.slice(0, line.indexOf(':')).toLowerCase()] = line.slice(line.indexOf(':') + 1).trim();
    const length = Number(headers['content-length'] ?? 0);
    const status = Number(statusLine!.split(' ')[1]);
    const hasBody = status !== 304 && headers['x-head'] === undefined;
    out.push({ status, headers, body: hasBody ? rest.slice(end + 4, end + 4 + length) : '' });
    rest = rest.slice(end + 4 + (hasBody ? length : 0));
  }
  return out;
}

async function cachedProxy(settings: Record<string, number> = {}, maxAgeS = 3600) {
  const { backend, staticHits, serve } = await startStaticBackend(maxAgeS);
  const handle = await startProxy(tableWith({ app: { ports: [backend.port] } }), { staticCacheBytes: 1024 * 1024, ...settings });
  // The first request fills the cache through Node's server; the lane answers only what the cache holds.
  expect((await send(handle.port, HOST, { path: '/static/a.css' })).body).toBe(CSS);
  expect(staticHits()).toBe(1);
  return { staticHits, serve, ...handle, lane: handle.proxy.lane! };
}

/** Every byte the proxy sends back to `input` on a fresh connection: until it closes, or sends nothing for 250 ms. */
function exchange(port: number, input: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    let idle: NodeJS.Timeout | undefined;
    const quiet = (): void => {
      clearTimeout(idle);
      idle = setTimeout(() => socket.destroy(), 250);
    };
    socket.on('data', (c: Buffer) => {
      data += c.toString('latin1');
      quiet();
    });
    socket.on('error', () => undefined); // a reset after an answer to a malformed request
    socket.on('close', () => {
      clearTimeout(idle);
      resolve(data);
    });
    socket.once('connect', () => {
      socket.write(input);
      quiet();
    }).once('error', reject);
  });
}

/** The status codes of the answers in `text` (each answer's status line starts a line with `HTTP/1.1 `). */
function statuses(text: string): number[] {
  return [...text.matchAll(/(?:^|\r\n)HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
}

describe('the static lane against Node\'s parser', () => {
  it('answers every mangled request as Node\'s parser on the same balancer does (seeded: 300 variants of a cached request)', async () => {
    const { backend } = await startStaticBackend();
    const { port, proxy } = await startProxy(tableWith({ app: { ports: [backend.port] } }), { staticCacheBytes: 1024 * 1024 });
    // The same ProxyServer without its lane: connections given straight to its Node server (the injection the lane uses).
    const direct = createServer((socket) => proxy.server.emit('connection', socket));
    await new Promise<void>((resolve) => direct.listen(0, '127.0.0.1', resolve));
    onCleanup(async () => void direct.close());
    const directPort = (direct.address() as AddressInfo).port;
    for (const encoding of ['gzip', 'identity']) await send(port, HOST, { path: '/static/a.css', headers: { 'accept-encoding': encoding } });
    const base = `GET /static/a.css HTTP/1.1\r\nHost: ${HOST}\r\nAccept-Encoding: gzip\r\nX-Request-Id: fuzz\r\n\r\n`;
    const inserts = [' ', '\t', '\r', '\n', '\r\n', '\u0000', '\u00e9', '\u007f', ':', 'a', '/', '..', '%', '\r\n ', '\r\nContent-Length: 0',
      '\r\nTransfer-Encoding: chunked', '\r\nConnection: close', `\r\nHost: ${HOST}`, '\r\nHost: other.localhost', '\r\nAccept-Encoding: br',
      '\r\nRange: bytes=0-1', '\r\nExpect: 100-continue', '\r\nUpgrade: websocket', 'HTTP/1.0', `\r\n\r\nGET /static/a.css HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`];
    let seed = 13;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const variants: string[] = [];
    for (let i = 0; i < 300; i++) {
      let text = base;
      for (let edits = 1 + random(3); edits > 0; edits--) {
        const at = random(text.length - 4); // never past the blank line that ends the head
        text = text.slice(0, at) + inserts[random(inserts.length)]! + text.slice(at);
      }
      variants.push(text);
    }
    const answeredBefore = proxy.lane!.counters.answered;
    for (let i = 0; i < variants.length; i += 25) {
      await Promise.all(variants.slice(i, i + 25).map(async (text) => {
        const input = Buffer.from(text, 'latin1');
        const [viaLane, viaNode] = await Promise.all([exchange(port, input), exchange(directPort, input)]);
        expect(statuses(viaLane), JSON.stringify(text)).toEqual(statuses(viaNode));
      }));
    }
    // Both kinds were exercised: variants the lane answered itself, and variants it left to Node's parser.
    const answered = proxy.lane!.counters.answered - answeredBefore;
    expect(answered).toBeGreaterThan(10);
    expect(proxy.lane!.counters.handedOff).toBeGreaterThan(10);
  });
});

describe('the static lane', () => {
  it('answers a cache hit on a new connection itself, with the headers Node would send', async () => {
    const { port, lane, staticHits, access } = await cachedProxy();
    // Node's server answers from the cache too, on a connection the lane handed over (its first request is no hit).
    const handedOver = await rawClient(port);
    handedOver.socket.write(`GET /api HTTP/1.1\r\nHost: ${HOST}\r\n\r\nGET /static/a.css HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
    await waitFor(() => responses(handedOver.received()).length === 2 || undefined, { name: "Node's answers" });
    const viaNode = responses(handedOver.received())[1]!;
    expect(viaNode.body).toBe(CSS);
    const client = await rawClient(port);
    client.socket.write(`GET /static/a.css HTTP/1.1\r\nHost: ${HOST}\r\nX-Request-Id: lane-1\r\n\r\n`);
    await waitFor(() => responses(client.received()).length === 1 || undefined, { name: 'the answer' });
    const [answer] = responses(client.received());
    // Handed over: the connection that filled the cache, and the one above.
    expect(lane.counters).toMatchObject({ answered: 1, handedOff: 2 });
    expect(staticHits()).toBe(1);
    expect(answer!.status).toBe(200);
    expect(answer!.body).toBe(CSS);
    for (const name of ['content-type', 'content-length', 'etag', 'last-modified', 'cache-control', 'vary', 'connection', 'keep-alive']) {
      expect(answer!.headers[name], name).toBe(viaNode.headers[name]);
    }
    expect(answer!.headers['x-request-id']).toBe('lane-1');
    expect(Date.parse(answer!.headers.date!)).toBeGreaterThan(Date.now() - 5000);
    expect(access.at(-1)).toMatchObject({ app: 'app', status: 200, bytes: CSS.length, requestId: 'lane-1', backend: null, release: 1 });
  });

  it('answers HEAD without a body and a matching If-None-Match with a 304', async () => {
    const { port, lane } = await cachedProxy();
    const client = await rawClient(port);
    client.socket.write(`HEAD /static/a.css HTTP/1.1\r\nHost: ${HOST}\r\n\r\nGET /static/a.css HTTP/1.1\r\nHost: ${HOST}\r\nIf-None-Match: ${TAG}\r\n\r\n`);
    await waitFor(() => client.received().split('HTTP/1.1 ').length - 1 === 2 || undefined, { name: 'two answers' });
    const [headAnswer, notModified] = client.received().split(/(?=HTTP\/1\.1 )/);
    expect(headAnswer).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(headAnswer).toContain(`content-length: ${CSS.length}\r\n`);
    expect(headAnswer!.endsWith('\r\n\r\n')).toBe(true); // no body
    expect(notModified).toMatch(/^HTTP\/1\.1 304 Not Modified\r\n/);
    expect(notModified).toContain(`etag: ${TAG}\r\n`);
    expect(notModified!.endsWith('\r\n\r\n')).toBe(true);
    expect(lane.counters).toMatchObject({ answered: 2, handedOff: 1 }); // the one that filled the cache
  });

  it('hands the connection to Node at the first request it does not answer, unread bytes included, answers in order', async () => {
    const { port, lane, staticHits } = await cachedProxy();
    const client = await rawClient(port);
    client.socket.write(
      `GET /static/a.css HTTP/1.1\r\nHost: ${HOST}\r\n\r\n` +
      `POST /api HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 5\r\n\r\nhello` +
      `GET /static/a.css HTTP/1.1\r\nHost: ${HOST}\r\n\r\n` +
      `GET /static/missing.css?x HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`,
    );
    await waitFor(() => responses(client.received()).length === 4 || undefined, { name: 'four answers' });
    const [first, post, third, fourth] = responses(client.received());
    expect(first!.body).toBe(CSS);
    expect(JSON.parse(post!.body)).toEqual({ method: 'POST', url: '/api', body: 'hello' });
    expect(third!.body).toBe(CSS); // Node's server, from the cache
    expect(fourth!.status).toBe(200);
    expect(lane.counters).toMatchObject({ answered: 1, handedOff: 2 }); // with the one that filled the cache
    expect(staticHits()).toBe(2); // the fill and the uncached /static/missing.css?x
  });

  it('never answers a body that looks like a request (the smuggling case): Node parses the whole message', async () => {
    const { port, lane } = await cachedProxy();
    const client = await rawClient(port);
    const smuggled = `GET /static/a.css HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`;
    client.socket.write(`GET /api HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n\r\n${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`);
    await waitFor(() => responses(client.received()).length >= 1 || undefined, { name: 'the answer' });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const answers = responses(client.received());
    expect(answers).toHaveLength(1);
    expect(JSON.parse(answers[0]!.body)).toMatchObject({ method: 'GET', url: '/api', body: smuggled });
    expect(lane.counters).toMatchObject({ answered: 0, handedOff: 2 }); // with the one that filled the cache
  });

  it('hands over a head that arrives in pieces', async () => {
    const { port, lane } = await cachedProxy();
    const client = await rawClient(port);
    client.socket.write(`GET /static/a.css HTTP/1.1\r\nHo`);
    await new Promise((resolve) => setTimeout(resolve, 50));
    client.socket.write(`st: ${HOST}\r\n\r\n`);
    await waitFor(() => responses(client.received()).length === 1 || undefined, { name: 'the answer' });
    expect(responses(client.received())[0]!.body).toBe(CSS);
    expect(lane.counters).toMatchObject({ answered: 0, handedOff: 2 }); // with the one that filled the cache
  });

  it('fetches a file in use again before it expires, so it never misses and its connections stay on the lane', async () => {
    const { port, lane, staticHits, serve } = await cachedProxy({}, 2); // max-age=2: held 2 s, fetched again after 1.5 s
    serve('.b { color: blue; }\n');
    const client = await rawClient(port);
    const ask = async (count: number): Promise<string> => {
      client.socket.write(`GET /static/a.css HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
      await waitFor(() => responses(client.received()).length === count || undefined, { name: `answer ${count}` });
      return responses(client.received())[count - 1]!.body;
    };
    expect(await ask(1)).toBe(CSS);
    await new Promise((resolve) => setTimeout(resolve, 1600));
    expect(await ask(2)).toBe(CSS); // still the held answer; this hit asks for a refresh
    await waitFor(() => staticHits() === 2 || undefined, { name: 'the refresh' });
    await new Promise((resolve) => setTimeout(resolve, 700)); // past the first answer's 2 s
    expect(await ask(3)).toBe('.b { color: blue; }\n');
    expect(staticHits()).toBe(2); // no miss
    expect(lane.counters).toMatchObject({ answered: 3, handedOff: 1 }); // only the connection that filled the cache
  });

  it('stops reading a client that sends requests without reading the answers, and answers them all once it reads', async () => {
    const { backend, serve } = await startStaticBackend();
    const big = 'x'.repeat(64 * 1024);
    serve(big);
    const { port, proxy } = await startProxy(tableWith({ app: { ports: [backend.port] } }), { staticCacheBytes: 8 * 1024 * 1024 });
    expect((await send(port, HOST, { path: '/static/a.css' })).body).toBe(big);
    const client = await rawClient(port);
    client.socket.pause(); // reads nothing
    const count = 1000; // 1000 × 64 KiB asked for in ~50 KiB of requests
    client.socket.write(`GET /static/a.css HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`.repeat(count));
    await new Promise((resolve) => setTimeout(resolve, 300));
    const lane = proxy.lane!;
    expect(lane.queuedBytes()).toBeLessThan(2 * 1024 * 1024);
    expect(lane.counters.answered).toBeLessThan(count);
    client.socket.resume();
    await waitFor(() => client.received().split('HTTP/1.1 200 OK').length - 1 === count || undefined, { name: 'every answer', timeoutMs: 20_000 });
    expect(lane.counters.answered).toBe(count);
    expect(client.received().length).toBeGreaterThan(count * big.length);
  });

  it('closes an idle connection after the client keep-alive time, and every one on drain', async () => {
    const { port, proxy } = await cachedProxy({ clientKeepAliveMs: 300 });
    const idle = await rawClient(port);
    idle.socket.write(`GET /static/a.css HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
    const startedAt = Date.now();
    await idle.closed;
    expect(Date.now() - startedAt).toBeLessThan(2000);
    expect(responses(idle.received())).toHaveLength(1);
    const held = await rawClient(port);
    held.socket.write(`GET /static/a.css HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
    await waitFor(() => responses(held.received()).length === 1 || undefined, { name: 'the answer' });
    await proxy.drain(100);
    await held.closed;
  });

  it('passes a WebSocket upgrade to Node, which tunnels it', async () => {
    const backend = await startBackend('ws');
    const wss = new WebSocketServer({ server: backend.server });
    wss.on('connection', (socket) => socket.on('message', (data) => socket.send(`echo ${data.toString()}`)));
    onCleanup(async () => {
      for (const client of wss.clients) client.terminate();
      wss.close();
    });
    const { port, proxy } = await startProxy(tableWith({ app: { ports: [backend.port] } }), { staticCacheBytes: 1024 * 1024 });
    const socket = new WebSocket(`ws://127.0.0.1:${port}/chat`, { headers: { host: HOST } });
    onCleanup(async () => socket.terminate());
    await new Promise<void>((resolve, reject) => socket.once('open', () => resolve()).once('error', reject));
    const reply = new Promise<string>((resolve) => socket.once('message', (data) => resolve(data.toString())));
    socket.send('hi');
    expect(await reply).toBe('echo hi');
    expect(proxy.lane!.counters.handedOff).toBe(1);
  });
});
