import * as zmq from 'zeromq';
import { afterEach, describe, expect, it } from 'vitest';
import { NotFoundError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/logger.js';
import { waitFor } from '../../src/core/wait.js';
import { decodeReply, encode, type ControlReply, type StatsQueryRequest } from '../../src/protocol/index.js';
import { QueryServer, type QueryHandlers } from '../../src/stats/query-server.js';
import { SocketFactory, closeQuietly } from '../../src/transport/index.js';

const factory = new SocketFactory({ maxMessageBytes: 1 << 20 });
const sockets: zmq.Socket[] = [];
const servers: QueryServer[] = [];

afterEach(async () => {
  for (const socket of sockets.splice(0)) closeQuietly(socket);
  await Promise.all(servers.splice(0).map((s) => s.closed()));
});

interface Harness {
  server: QueryServer;
  endpoint: string;
  calls: StatsQueryRequest[];
}

const okHandlers = (calls: StatsQueryRequest[]): QueryHandlers => ({
  'logs.tail': async (request) => {
    calls.push(request);
    return { lines: Array.from({ length: request.lines }, (_, i) => `${request.app} line ${i + 1}`), truncated: false };
  },
  'stats.query': async (request) => {
    calls.push(request);
    return { rows: [{ minute: request.sinceMs, requests: 1, s2xx: 1, s3xx: 0, s4xx: 0, s5xx: 0, bytes: 10, p50Ms: 1.5, p95Ms: 1.5, p99Ms: 1.5 }] };
  },
  'stats.release': async (request) => {
    calls.push(request);
    return { requests: 3, s5xx: 1, histogram: [] };
  },
});

async function startServer(handlers?: (calls: StatsQueryRequest[]) => QueryHandlers): Promise<Harness> {
  const router = factory.router();
  sockets.push(router);
  await router.bind('tcp://127.0.0.1:*');
  const calls: StatsQueryRequest[] = [];
  const server = new QueryServer(router, (handlers ?? okHandlers)(calls), 1 << 20, silentLogger());
  server.start();
  servers.push(server);
  return { server, endpoint: router.lastEndpoint!, calls };
}

function dealer(endpoint: string): zmq.Dealer {
  const socket = factory.dealer(2000);
  socket.receiveTimeout = 3000;
  socket.connect(endpoint);
  sockets.push(socket);
  return socket;
}

async function ask(socket: zmq.Dealer, ...payload: Buffer[]): Promise<ControlReply> {
  await socket.send(payload);
  const frames = await socket.receive();
  expect(frames).toHaveLength(1);
  return decodeReply(frames[0]!);
}

describe('QueryServer', () => {
  it('answers a request with an invalid id with an error the client can decode (re: null)', async () => {
    const { endpoint } = await startServer();
    const reply = await ask(dealer(endpoint), encode({ v: 1, type: 'logs.tail', id: 'has space', app: 'web', lines: 1 }));
    expect(reply).toMatchObject({ type: 'error', re: null });
  });

  it('answers logs.tail with the handler result', async () => {
    const { endpoint, calls, server } = await startServer();
    const reply = await ask(dealer(endpoint), encode({ v: 1, type: 'logs.tail', id: 'q-1', app: 'web', lines: 3 }));
    expect(reply).toEqual({ v: 1, type: 'reply', re: 'q-1', result: { lines: ['web line 1', 'web line 2', 'web line 3'], truncated: false } });
    expect(calls).toEqual([{ v: 1, type: 'logs.tail', id: 'q-1', app: 'web', lines: 3 }]);
    expect(server.stats).toMatchObject({ received: 1, replied: 1, invalid: 0, failed: 0 });
  });

  it('answers stats.query and passes maxBytes through for logs.tail', async () => {
    const { endpoint, calls } = await startServer();
    const client = dealer(endpoint);
    const stats = await ask(client, encode({ v: 1, type: 'stats.query', id: 'q-2', app: 'api', sinceMs: 60_000 }));
    expect(stats).toMatchObject({ type: 'reply', re: 'q-2', result: { rows: [{ minute: 60_000, requests: 1 }] } });
    await ask(client, encode({ v: 1, type: 'logs.tail', id: 'q-3', app: 'api', lines: 1, maxBytes: 2048 }));
    expect(calls[1]).toMatchObject({ id: 'q-3', maxBytes: 2048 });
  });

  it('answers a REQ client through its empty delimiter frame', async () => {
    const { endpoint } = await startServer();
    const req = new zmq.Request({ linger: 0, receiveTimeout: 3000 });
    sockets.push(req);
    req.connect(endpoint);
    await req.send(encode({ v: 1, type: 'logs.tail', id: 'req-1', app: 'web', lines: 1 }));
    const [frame] = await req.receive();
    expect(decodeReply(frame!)).toMatchObject({ type: 'reply', re: 'req-1', result: { lines: ['web line 1'] } });
  });

  it('answers many concurrent queries, each to its own request', async () => {
    const { endpoint } = await startServer();
    const clients = [dealer(endpoint), dealer(endpoint), dealer(endpoint)];
    const replies = await Promise.all(clients.map((c, i) => ask(c, encode({ v: 1, type: 'logs.tail', id: `c-${i}`, app: `app-${i}`, lines: i + 1 }))));
    replies.forEach((reply, i) => {
      expect(reply).toMatchObject({ type: 'reply', re: `c-${i}` });
      expect((reply as { result: { lines: string[] } }).result.lines).toHaveLength(i + 1);
    });
  });

  it.each([
    ['an invalid app name', { v: 1, type: 'logs.tail', id: 'bad-1', app: 'Not Valid', lines: 1 }, 'bad-1', 'PIER_PROTOCOL', /\/app must be lowercase letters/],
    ['too many lines', { v: 1, type: 'logs.tail', id: 'bad-2', app: 'web', lines: 10_001 }, 'bad-2', 'PIER_PROTOCOL', /\/lines/],
    ['a small maxBytes', { v: 1, type: 'logs.tail', id: 'bad-3', app: 'web', lines: 1, maxBytes: 10 }, 'bad-3', 'PIER_PROTOCOL', /\/maxBytes/],
    ['an unknown field', { v: 1, type: 'logs.tail', id: 'bad-4', app: 'web', lines: 1, follow: true }, 'bad-4', 'PIER_PROTOCOL', /\/follow/],
    ['an unknown type', { v: 1, type: 'logs.delete', id: 'bad-5', app: 'web' }, 'bad-5', 'PIER_UNKNOWN_TYPE', /unknown message type 'logs.delete'/],
    ['a wrong version', { v: 2, type: 'logs.tail', id: 'bad-6', app: 'web', lines: 1 }, 'bad-6', 'PIER_PROTOCOL', /unsupported protocol version 2/],
    ['no id', { v: 1, type: 'logs.tail', app: 'web', lines: 1 }, null, 'PIER_PROTOCOL', /\/id/],
  ])('replies with an error naming the problem for %s', async (_why, request, re, code, message) => {
    const { endpoint, calls, server } = await startServer();
    const reply = await ask(dealer(endpoint), encode(request));
    expect(reply).toMatchObject({ type: 'error', re, code });
    expect((reply as { message: string }).message).toMatch(message);
    expect(calls).toEqual([]);
    expect(server.stats.invalid).toBe(1);
  });

  it('replies with an error to bytes that are not MessagePack', async () => {
    const { endpoint } = await startServer();
    const reply = await ask(dealer(endpoint), Buffer.from([0xc1]));
    expect(reply).toMatchObject({ type: 'error', re: null, code: 'PIER_PROTOCOL', message: 'malformed MessagePack frame' });
  });

  it('replies with an error to a request split over two payload frames', async () => {
    const { endpoint, calls } = await startServer();
    const client = dealer(endpoint);
    await client.send([encode({ v: 1, type: 'logs.tail', id: 'two', app: 'web', lines: 1 }), Buffer.from('extra')]);
    const [frame] = await client.receive();
    const reply = decodeReply(frame!);
    expect(reply).toMatchObject({ type: 'error', code: 'PIER_PROTOCOL' });
    expect((reply as { message: string }).message).toMatch(/expected one payload frame/);
    expect(calls).toEqual([]);
  });

  it('keeps answering after a malformed request', async () => {
    const { endpoint } = await startServer();
    const client = dealer(endpoint);
    await ask(client, Buffer.from('garbage'));
    expect(await ask(client, encode({ v: 1, type: 'logs.tail', id: 'ok', app: 'web', lines: 1 }))).toMatchObject({ type: 'reply', re: 'ok' });
  });

  it('replies internal error when a handler throws, and keeps the code of a PierError', async () => {
    const { endpoint, server } = await startServer(() => ({
      'logs.tail': async () => {
        throw new Error('disk on fire at /var/secret');
      },
      'stats.query': async (request) => {
        throw new NotFoundError(`app '${request.app}' not found`);
      },
      'stats.release': async () => ({ requests: 0, s5xx: 0, histogram: [] }),
    }));
    const client = dealer(endpoint);
    const tail = await ask(client, encode({ v: 1, type: 'logs.tail', id: 'f-1', app: 'web', lines: 1 }));
    expect(tail).toEqual({ v: 1, type: 'error', re: 'f-1', code: 'PIER_INTERNAL', message: 'internal error' });
    const stats = await ask(client, encode({ v: 1, type: 'stats.query', id: 'f-2', app: 'gone', sinceMs: 0 }));
    expect(stats).toMatchObject({ type: 'error', re: 'f-2', code: 'PIER_NOT_FOUND', message: "app 'gone' not found" });
    expect(server.stats.failed).toBe(2);
  });

  it('waits for in-flight queries on drain and ends its loop when the router closes', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const { endpoint, server } = await startServer(() => ({
      'logs.tail': async () => {
        await gate;
        return { lines: ['late'], truncated: false };
      },
      'stats.query': async () => ({ rows: [] }),
      'stats.release': async () => ({ requests: 0, s5xx: 0, histogram: [] }),
    }));
    const client = dealer(endpoint);
    await client.send(encode({ v: 1, type: 'logs.tail', id: 'slow', app: 'web', lines: 1 }));
    const received = client.receive();
    // The request must have arrived before drain looks at what is in flight.
    await waitFor(() => server.stats.received > 0, { timeoutMs: 3000, name: 'query received' });
    const drained = server.drain(3000);
    setTimeout(release, 50);
    await drained;
    expect(decodeReply((await received)[0]!)).toMatchObject({ type: 'reply', re: 'slow', result: { lines: ['late'] } });
  });
});
