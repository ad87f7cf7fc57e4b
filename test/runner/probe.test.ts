import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { TimeoutError } from '../../src/core/errors.js';
import { waitForHttp, warmUp } from '../../src/runner/probe.js';
import { freePort } from '../helpers/ports.js';

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

function serve(port: number, status = 200): Promise<{ server: Server; connections: Socket[]; paths: string[] }> {
  const connections: Socket[] = [];
  const paths: string[] = [];
  const server = createServer((req, res) => {
    paths.push(req.url ?? '');
    res.writeHead(status, { 'content-length': 2 }).end('ok');
  });
  server.on('connection', (socket) => connections.push(socket));
  servers.push(server);
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve({ server, connections, paths })));
}

describe('waitForHttp', () => {
  it('keeps trying while the port refuses connections, and resolves on the first response', async () => {
    const port = await freePort();
    const later = new Promise((resolve) => setTimeout(resolve, 300)).then(() => serve(port));
    const result = await waitForHttp('127.0.0.1', port, { timeoutMs: 3000, path: '/health' });
    expect(result.status).toBe(200);
    expect((await later).paths).toEqual(['/health']);
  });

  it('counts any status as up', async () => {
    const { server } = await serve(0, 500);
    const { port } = server.address() as AddressInfo;
    expect((await waitForHttp('127.0.0.1', port)).status).toBe(500);
  });

  it('times out naming the address and the last failure', async () => {
    const port = await freePort();
    const err = await waitForHttp('127.0.0.1', port, { timeoutMs: 300 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect((err as Error).message).toBe(`127.0.0.1:${port} did not answer HTTP within 300 ms (last: ECONNREFUSED)`);
  });

  it('sends nothing while beforeAttempt says no, and stops with the error it throws', async () => {
    const { server, paths } = await serve(0);
    const { port } = server.address() as AddressInfo;
    let checks = 0;
    const result = await waitForHttp('127.0.0.1', port, { timeoutMs: 3000, intervalMs: 20, beforeAttempt: async () => ++checks >= 3 });
    expect(result.status).toBe(200);
    expect(checks).toBe(3);
    expect(paths).toEqual(['/']); // only after the third check
    const refused = waitForHttp('127.0.0.1', port, { timeoutMs: 3000, beforeAttempt: async () => { throw new Error('not yours'); } });
    await expect(refused).rejects.toThrow('not yours');
    expect(paths).toEqual(['/']);
    const never = await waitForHttp('127.0.0.1', port, { timeoutMs: 200, intervalMs: 20, beforeAttempt: async () => false }).catch((e: Error) => e);
    expect((never as Error).message).toBe(`127.0.0.1:${port} did not answer HTTP within 200 ms (last: no listener proven yet)`);
  });

  it('stops when aborted', async () => {
    const port = await freePort();
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    await expect(waitForHttp('127.0.0.1', port, { timeoutMs: 5000, signal: controller.signal })).rejects.toThrow(/abort/i);
  });
});

describe('warmUp', () => {
  it('sends the requests one after another over one keep-alive connection', async () => {
    const { server, connections, paths } = await serve(0);
    const { port } = server.address() as AddressInfo;
    const results = await warmUp('127.0.0.1', port, 3, { path: '/warm' });
    expect(results.map((r) => r.status)).toEqual([200, 200, 200]);
    expect(paths).toEqual(['/warm', '/warm', '/warm']);
    expect(connections).toHaveLength(1);
  });
});
