/**
 * AlertWebhook: JSON POSTs retried with back-off against a real local HTTP server, a bounded queue, never blocking.
 * The retry tests run with allowPrivate (nexus.alertWebhookAllowPrivate), as their receiver is on loopback; the
 * guard tests play the owner aiming the webhook at the platform.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/logger.js';
import { addressRule, type TargetCheck } from '../../src/core/webhook-target.js';
import { AlertWebhook, RESPONSE_CAP_BYTES } from '../../src/nexus/alert-webhook.js';
import { waitFor } from '../helpers/wait.js';

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  }
});

/** A server answering `statuses` in turn (then 200), or never answering when `hang`; records what it got. */
async function hook(statuses: number[], hang = false): Promise<{ url: string; got: Array<{ at: number; body: unknown; type: string | undefined }> }> {
  const got: Array<{ at: number; body: unknown; type: string | undefined }> = [];
  const server = createServer((req: IncomingMessage, res) => {
    let text = '';
    req.on('data', (c: Buffer) => (text += c.toString()));
    req.on('end', () => {
      got.push({ at: Date.now(), body: JSON.parse(text), type: req.headers['content-type'] });
      if (hang) return;
      res.statusCode = statuses.shift() ?? 200;
      res.end();
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook?secret=s`, got };
}

describe('AlertWebhook', () => {
  it('retries a failing webhook with doubling back-off until it takes the alert', async () => {
    const { url, got } = await hook([500, 503]);
    const webhook = new AlertWebhook({ backoffMs: 100, allowPrivate: true, log: silentLogger() });
    const body = { type: 'alert.raised', alert: { id: 1, app: 'hc-a', instance: 'hc-a-v1-x', reason: 'check failed', since: 1, clearedAt: null } };
    webhook.send({ url, body });
    await waitFor(() => webhook.stats.sent === 1 || undefined, { name: 'delivered', timeoutMs: 5000 });
    expect(got).toHaveLength(3);
    for (const g of got) expect(g).toMatchObject({ body, type: 'application/json' });
    expect(got[1]!.at - got[0]!.at).toBeGreaterThanOrEqual(95);
    expect(got[2]!.at - got[1]!.at).toBeGreaterThanOrEqual(195);
    expect(webhook.stats).toEqual({ sent: 1, failed: 0, dropped: 0, retried: 2, refused: 0 });
    webhook.stop();
  });

  it('gives up after its attempts, never blocks the sender, and drops the oldest beyond its queue', async () => {
    const failing = await hook([500, 500, 500]);
    const once = new AlertWebhook({ backoffMs: 20, attempts: 3, allowPrivate: true, log: silentLogger() });
    once.send({ url: failing.url, body: { n: 0 } });
    await waitFor(() => once.stats.failed === 1 || undefined, { name: 'gave up', timeoutMs: 5000 });
    expect(failing.got).toHaveLength(3);
    once.stop();

    const hanging = await hook([], true);
    const webhook = new AlertWebhook({ concurrency: 1, maxQueue: 3, timeoutMs: 60_000, allowPrivate: true, log: silentLogger() });
    const started = performance.now();
    for (let n = 0; n < 10; n++) webhook.send({ url: hanging.url, body: { n } });
    expect(performance.now() - started).toBeLessThan(50);
    await waitFor(() => hanging.got.length === 1 || undefined, { name: 'first in flight', timeoutMs: 5000 });
    expect(webhook.stats.dropped).toBe(6); // one in flight, three waiting, six dropped
    webhook.stop();
  });

  it('keeps deliveries to one URL in order while the first is retried', async () => {
    const { url, got } = await hook([500]);
    const webhook = new AlertWebhook({ backoffMs: 100, allowPrivate: true, log: silentLogger() });
    webhook.send({ url, body: { type: 'alert.raised' } });
    webhook.send({ url, body: { type: 'alert.cleared' } });
    await waitFor(() => webhook.stats.sent === 2 || undefined, { name: 'both delivered', timeoutMs: 5000 });
    expect(got.map((g) => (g.body as { type: string }).type)).toEqual(['alert.raised', 'alert.raised', 'alert.cleared']);
    webhook.stop();
  });
});

/** A server on `host` (port 0: any) recording the paths it was asked for; `answer` writes the response. */
async function listen(host: string, port: number, answer: (req: IncomingMessage, res: ServerResponse) => void = (_q, res) => res.end()): Promise<{ port: number; hits: string[] }> {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    hits.push(req.url ?? '');
    req.resume();
    req.on('end', () => answer(req, res));
  });
  servers.push(server);
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, host, resolve));
  return { port: (server.address() as AddressInfo).port, hits };
}

/** Judges 127.0.0.2 public (it stands for a public receiver: the test has none) and every other address by the real rules. */
const only2: TargetCheck['rule'] = (address) => (address === '127.0.0.2' ? undefined : addressRule(address) ?? 'test-only');

describe('AlertWebhook guard (an owner aims the webhook at the platform)', () => {
  it('refuses loopback in every spelling and a name resolving there, without connecting; the operator URL and the escape hatch still reach it', async () => {
    const target = await listen('127.0.0.1', 0);
    const webhook = new AlertWebhook({ attempts: 3, backoffMs: 20, log: silentLogger() });
    const urls = [
      `http://127.0.0.1:${target.port}/a`, `http://localhost:${target.port}/b`, `http://2130706433:${target.port}/c`,
      `http://[::ffff:127.0.0.1]:${target.port}/d`, `http://0x7f.1:${target.port}/e`,
      `http://${hostname()}:${target.port}/f`, // resolved at delivery by the system resolver (/etc/hosts: 127.0.0.1)
    ];
    for (const url of urls) webhook.send({ url, body: { type: 'alert.raised' } });
    await waitFor(() => webhook.stats.refused === urls.length || undefined, { name: 'all refused', timeoutMs: 5000 });
    expect(target.hits).toEqual([]);
    expect(webhook.stats).toMatchObject({ sent: 0, failed: 0, retried: 0 }); // a refusal is not retried

    webhook.send({ url: `http://127.0.0.1:${target.port}/operator`, body: {}, isOperator: true });
    await waitFor(() => webhook.stats.sent === 1 || undefined, { name: 'operator delivery', timeoutMs: 5000 });
    const hatch = new AlertWebhook({ allowPrivate: true, log: silentLogger() });
    hatch.send({ url: `http://${hostname()}:${target.port}/hatch`, body: {} });
    await waitFor(() => hatch.stats.sent === 1 || undefined, { name: 'escape-hatch delivery', timeoutMs: 5000 });
    expect(target.hits).toEqual(['/operator', '/hatch']);
    webhook.stop();
    hatch.stop();
  });

  it('connects to the address it checked: a name rebinding to loopback after the check never reaches loopback', async () => {
    // The "public" receiver closes each connection, so every delivery resolves its name afresh.
    const allowed = await listen('127.0.0.2', 0, (_q, res) => res.setHeader('connection', 'close').end());
    const loopback = await listen('127.0.0.1', allowed.port);
    let lookups = 0;
    // A rebinding DNS answer: public for the first look-up, loopback for every later one.
    const resolve = async () => [{ address: lookups++ === 0 ? '127.0.0.2' : '127.0.0.1', family: 4 as const }];
    const webhook = new AlertWebhook({ attempts: 1, check: { rule: only2, resolve }, log: silentLogger() });
    webhook.send({ url: `http://rebind.example:${allowed.port}/one`, body: {} });
    await waitFor(() => webhook.stats.sent === 1 || undefined, { name: 'first delivered', timeoutMs: 5000 });
    webhook.send({ url: `http://rebind.example:${allowed.port}/two`, body: {} });
    await waitFor(() => webhook.stats.refused === 1 || undefined, { name: 'second refused', timeoutMs: 5000 });
    expect(allowed.hits).toEqual(['/one']);
    expect(loopback.hits).toEqual([]);
    expect(lookups).toBe(2); // one look-up per connection: the one that was checked
    webhook.stop();
  });

  it('follows no redirect, even from an allowed receiver to loopback, and does not retry it', async () => {
    const loopback = await listen('127.0.0.1', 0);
    const allowed = await listen('127.0.0.2', 0, (_q, res) => {
      res.writeHead(307, { location: `http://127.0.0.1:${loopback.port}/stolen` }).end();
    });
    const webhook = new AlertWebhook({ backoffMs: 20, check: { rule: only2 }, log: silentLogger() });
    webhook.send({ url: `http://127.0.0.2:${allowed.port}/hook`, body: {} });
    await waitFor(() => webhook.stats.failed === 1 || undefined, { name: 'gave up', timeoutMs: 5000 });
    expect(allowed.hits).toEqual(['/hook']);
    expect(loopback.hits).toEqual([]);
    expect(webhook.stats).toMatchObject({ sent: 0, retried: 0, refused: 0 });
    webhook.stop();
  });

  it('reads at most a few KiB of an answer: an endless body does not hold the delivery', async () => {
    let written = 0;
    let closed = false;
    const allowed = await listen('127.0.0.2', 0, (_q, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      const chunk = Buffer.alloc(64 * 1024, 120);
      const pump = (): void => {
        while (!closed && res.write(chunk)) written += chunk.length;
      };
      res.on('drain', pump).on('close', () => (closed = true));
      pump();
    });
    const webhook = new AlertWebhook({ timeoutMs: 60_000, check: { rule: only2 }, log: silentLogger() });
    webhook.send({ url: `http://127.0.0.2:${allowed.port}/hook`, body: {} });
    await waitFor(() => webhook.stats.sent === 1 || undefined, { name: 'delivered', timeoutMs: 5000 });
    await waitFor(() => closed || undefined, { name: 'answer cut off', timeoutMs: 5000 });
    expect(RESPONSE_CAP_BYTES).toBeLessThanOrEqual(64 * 1024);
    // Whatever the kernel's socket buffers took; the endless answer was cut off, not read to its end.
    expect(written).toBeLessThan(64 * 1024 * 1024);
    webhook.stop();
  });
});
