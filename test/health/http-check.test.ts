/**
 * probeCheck against hostile answers (a real local HTTP server plays the app): the app controls what the check gets,
 * and what it says ends up in release errors, events, alerts, webhooks and logs. It must stay one short line, and
 * no answer may hold the prober.
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { probeCheck } from '../../src/core/http-check.js';

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  }
});

async function app(handler: (res: ServerResponse, path: string) => void): Promise<number> {
  const server = createServer((req, res) => handler(res, req.url ?? ''));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

const check = { path: '/health', status: 200, timeoutMs: 500 };

describe('probeCheck', () => {
  it('passes the expected status, and any status below 500 when the check names none', async () => {
    const port = await app((res, path) => {
      res.statusCode = path === '/health' ? 200 : 404;
      res.end('fine');
    });
    expect(await probeCheck('127.0.0.1', port, check)).toMatchObject({ ok: true, status: 200, error: null });
    expect(await probeCheck('127.0.0.1', port, { path: '/other', status: null, timeoutMs: 500 })).toMatchObject({ ok: true, status: 404 });
    expect(await probeCheck('127.0.0.1', port, { path: '/other', status: 200, timeoutMs: 500 })).toMatchObject({
      ok: false, status: 404, error: 'check GET /other answered 404 (expected 200): fine',
    });
  });

  it('quotes at most 200 bytes of a body that never ends, on one line without control characters', async () => {
    const port = await app((res) => {
      res.statusCode = 500;
      res.write('line one\r\nline two\u001b[31m red\u0000 ');
      const timer = setInterval(() => res.write('x'.repeat(64 * 1024)), 5);
      res.on('close', () => clearInterval(timer));
    });
    const started = Date.now();
    const outcome = await probeCheck('127.0.0.1', port, check);
    expect(Date.now() - started).toBeLessThan(400);
    expect(outcome.ok).toBe(false);
    expect(outcome.error).toMatch(/^check GET \/health answered 500 \(expected 200\): line one line two \[31m red +x+$/);
    expect(outcome.error!.length).toBeLessThanOrEqual('check GET /health answered 500 (expected 200): '.length + 200);
    expect(outcome.error).not.toMatch(/[\u0000-\u001f]/);
  });

  it('gives up at its time-out on an app that never answers or stalls mid-headers, and names a refused port', async () => {
    const silent = await app(() => undefined);
    const started = Date.now();
    expect(await probeCheck('127.0.0.1', silent, check)).toMatchObject({ ok: false, status: null, error: 'check GET /health got no answer within 500 ms' });
    expect(Date.now() - started).toBeLessThan(1500);
    const closed = await app(() => undefined);
    servers.pop()!.close();
    const refused = await probeCheck('127.0.0.1', closed, check);
    expect(refused).toMatchObject({ ok: false, status: null });
    expect(refused.error).toMatch(/^check GET \/health failed: (ECONNREFUSED|ECONNRESET)$/);
  });
});
