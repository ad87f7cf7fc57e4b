/** Real HTTP backends, a proxy over a hand-filled route table, and a plain HTTP client, for the balancer tests. */
import { createServer, request, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { RouteTable } from '../../src/balancer/route-table.js';
import { ProxyServer, type ProxySettings } from '../../src/balancer/server.js';
import type { AccessRecord } from '../../src/balancer/proxy.js';
import { silentLogger } from '../../src/core/logger.js';
import type { Instance } from '../../src/protocol/index.js';
import { onCleanup } from '../helpers/daemons.js';

export interface Backend {
  name: string;
  port: number;
  server: Server;
  /** TCP connections accepted so far. */
  connections: number;
  /** Sockets currently open. */
  open: Set<Socket>;
}

export type Handler = (req: IncomingMessage, res: ServerResponse, backend: Backend) => void;

/** Answers with JSON describing what it received. */
export const echo: Handler = (req, res, backend) => {
  const body = JSON.stringify({ backend: backend.name, method: req.method, url: req.url, headers: req.headers });
  res.writeHead(200, { 'content-type': 'application/json', 'x-backend': backend.name, connection: 'keep-alive', 'keep-alive': 'timeout=5' });
  res.end(body);
};

/** A Node HTTP server on a free loopback port, closed after the test. */
export async function startBackend(name: string, handler: Handler = echo): Promise<Backend> {
  const backend: Backend = { name, port: 0, server: undefined as unknown as Server, connections: 0, open: new Set() };
  const server = createServer((req, res) => handler(req, res, backend));
  server.on('connection', (socket: Socket) => {
    backend.connections += 1;
    backend.open.add(socket);
    socket.once('close', () => backend.open.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  backend.server = server;
  backend.port = (server.address() as AddressInfo).port;
  onCleanup(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return backend;
}

/** Ready, live instances of `app` at the given ports. */
export function instances(app: string, ports: number[], capacity?: number): Instance[] {
  return ports.map((port, i) => ({
    id: `${app}-${i + 1}`, app, release: 1, isLive: true, processType: 'web', runnerId: 'runner-1', host: '127.0.0.1', port, state: 'ready' as const,
    ...(capacity === undefined ? {} : { capacity }),
  }));
}

/** A route table holding the given apps (name → hostnames and backend ports). */
export function tableWith(apps: Record<string, { hostnames?: string[]; ports: number[]; capacity?: number }>, domain = 'localhost'): RouteTable {
  const table = new RouteTable({ domain });
  table.load({
    version: 1,
    apps: Object.entries(apps).map(([name, a]) => ({ name, owner: 'admin', webScale: a.ports.length, hostnames: a.hostnames ?? [], createdAt: 0 })),
    nodes: [],
    instances: Object.entries(apps).flatMap(([name, a]) => instances(name, a.ports, a.capacity)),
  });
  return table;
}

export const TEST_SETTINGS: ProxySettings = {
  connectTimeoutMs: 500, responseTimeoutMs: 2000, bodyTimeoutMs: 5000, upstreamKeepAliveMs: 3000, maxConnectionsPerBackend: 64,
  backendCooldownMs: 1000, clientKeepAliveMs: 5000,
};

export interface ProxyHandle {
  proxy: ProxyServer;
  port: number;
  access: AccessRecord[];
}

/** A ProxyServer on a free port over `table`, closed after the test. */
export async function startProxy(table: RouteTable, settings: Partial<ProxySettings> = {}): Promise<ProxyHandle> {
  const access: AccessRecord[] = [];
  const proxy = new ProxyServer({ table, settings: { ...TEST_SETTINGS, ...settings }, log: silentLogger(), onAccess: (r) => access.push(r) });
  const port = await proxy.listen('127.0.0.1', 0);
  onCleanup(async () => {
    await proxy.drain(0);
    await proxy.close();
  });
  return { proxy, port, access };
}

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface SendOptions {
  method?: string;
  path?: string;
  headers?: Record<string, string | string[]>;
  body?: string;
}

/** One request on a fresh connection (no agent), resolving with the whole reply. */
export function send(port: number, host: string, options: SendOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, method: options.method ?? 'GET', path: options.path ?? '/', headers: { host, ...options.headers }, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}
