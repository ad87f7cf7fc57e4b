import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { onCleanup } from '../helpers/daemons.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';
import { startProxy, tableWith } from './helpers.js';

/** A WebSocket echo server that also reports the upgrade request's headers as its first message. */
async function startEchoServer(): Promise<{ port: number; server: WebSocketServer }> {
  const http = createServer((req, res) => res.end('plain'));
  const server = new WebSocketServer({ server: http });
  server.on('connection', (socket, req: IncomingMessage) => {
    socket.send(JSON.stringify(req.headers));
    socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  onCleanup(async () => {
    for (const client of server.clients) client.terminate();
    server.close();
    http.closeAllConnections();
    await new Promise<void>((resolve) => http.close(() => resolve()));
  });
  return { port: (http.address() as AddressInfo).port, server };
}

interface Opened {
  socket: WebSocket;
  upgradeHeaders: IncomingMessage['headers'];
  first: Record<string, string>;
}

function open(port: number, host: string, headers: Record<string, string> = {}): Promise<Opened> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`ws://127.0.0.1:${port}/chat`, { headers: { host, ...headers } });
    onCleanup(async () => socket.terminate());
    let upgradeHeaders: IncomingMessage['headers'] = {};
    socket.once('upgrade', (res) => (upgradeHeaders = res.headers));
    socket.once('message', (data) => resolve({ socket, upgradeHeaders, first: JSON.parse(data.toString()) as Record<string, string> }));
    socket.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`status ${res.statusCode}`), { status: res.statusCode })));
    socket.once('error', reject);
  });
}

function nextMessage(socket: WebSocket): Promise<string> {
  return new Promise((resolve) => socket.once('message', (data) => resolve(data.toString())));
}

describe('upgrades', () => {
  it('proxies a WebSocket both ways with X-Forwarded-* and X-Request-Id', async () => {
    const echo = await startEchoServer();
    const { port, proxy, access } = await startProxy(tableWith({ chat: { hostnames: ['chat.example.com'], ports: [echo.port] } }));
    const { socket, upgradeHeaders, first } = await open(port, 'chat.example.com', { 'x-request-id': 'ws-1' });
    expect(upgradeHeaders['x-request-id']).toBe('ws-1');
    expect(first['x-request-id']).toBe('ws-1');
    expect(first['x-forwarded-for']).toBe('127.0.0.1');
    expect(first['x-forwarded-host']).toBe('chat.example.com');
    for (const text of ['hello', 'x'.repeat(100_000), 'bye']) {
      const reply = nextMessage(socket);
      socket.send(text);
      expect(await reply).toBe(text);
    }
    expect(proxy.upgrades.open).toBe(1);
    socket.close();
    await waitFor(() => proxy.upgrades.open === 0, { timeoutMs: 2000, name: 'tunnel closed' });
    await waitFor(() => access.length === 1, { timeoutMs: 2000, name: 'tunnel recorded' });
    expect(access[0]).toMatchObject({ app: 'chat', status: 101, requestId: 'ws-1', backend: `127.0.0.1:${echo.port}` });
  });

  it('retries a refused connection on another instance', async () => {
    const closed = await freePort();
    const echo = await startEchoServer();
    const { port } = await startProxy(tableWith({ chat: { ports: [closed, echo.port] } }), { backendCooldownMs: 0 });
    for (let i = 0; i < 3; i++) {
      const { socket } = await open(port, 'chat.localhost');
      const reply = nextMessage(socket);
      socket.send(`ping ${i}`);
      expect(await reply).toBe(`ping ${i}`);
      socket.close();
    }
  });

  it('refuses upgrades to unknown hosts (404) and apps without instances (503)', async () => {
    const { port } = await startProxy(tableWith({ idle: { ports: [] } }));
    await expect(open(port, 'nobody.localhost')).rejects.toMatchObject({ status: 404 });
    await expect(open(port, 'idle.localhost')).rejects.toMatchObject({ status: 503 });
  });

  it('relays an instance that declines the upgrade', async () => {
    const plain = createServer((req, res) => {
      res.writeHead(426, { 'content-type': 'text/plain' });
      res.end('no websockets here');
    });
    await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
    onCleanup(async () => {
      plain.closeAllConnections();
      await new Promise<void>((resolve) => plain.close(() => resolve()));
    });
    const { port } = await startProxy(tableWith({ app: { ports: [(plain.address() as AddressInfo).port] } }));
    await expect(open(port, 'app.localhost')).rejects.toMatchObject({ status: 426 });
  });

  it('closes the tunnel to the instance when the client disappears', async () => {
    const echo = await startEchoServer();
    const { port, proxy } = await startProxy(tableWith({ chat: { ports: [echo.port] } }));
    const { socket } = await open(port, 'chat.localhost');
    expect(echo.server.clients.size).toBe(1);
    socket.terminate();
    await waitFor(() => echo.server.clients.size === 0 && proxy.upgrades.open === 0, { timeoutMs: 2000, name: 'instance side closed' });
  });
});
