/** AlertWebhook: JSON POSTs retried with back-off against a real local HTTP server, a bounded queue, never blocking. */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/logger.js';
import { AlertWebhook } from '../../src/nexus/alert-webhook.js';
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
    const webhook = new AlertWebhook({ backoffMs: 100, log: silentLogger() });
    const body = { type: 'alert.raised', alert: { id: 1, app: 'hc-a', instance: 'hc-a-v1-x', reason: 'check failed', since: 1, clearedAt: null } };
    webhook.send({ url, body });
    await waitFor(() => webhook.stats.sent === 1 || undefined, { name: 'delivered', timeoutMs: 5000 });
    expect(got).toHaveLength(3);
    for (const g of got) expect(g).toMatchObject({ body, type: 'application/json' });
    expect(got[1]!.at - got[0]!.at).toBeGreaterThanOrEqual(95);
    expect(got[2]!.at - got[1]!.at).toBeGreaterThanOrEqual(195);
    expect(webhook.stats).toEqual({ sent: 1, failed: 0, dropped: 0, retried: 2 });
    webhook.stop();
  });

  it('gives up after its attempts, never blocks the sender, and drops the oldest beyond its queue', async () => {
    const failing = await hook([500, 500, 500]);
    const once = new AlertWebhook({ backoffMs: 20, attempts: 3, log: silentLogger() });
    once.send({ url: failing.url, body: { n: 0 } });
    await waitFor(() => once.stats.failed === 1 || undefined, { name: 'gave up', timeoutMs: 5000 });
    expect(failing.got).toHaveLength(3);
    once.stop();

    const hanging = await hook([], true);
    const webhook = new AlertWebhook({ concurrency: 1, maxQueue: 3, timeoutMs: 60_000, log: silentLogger() });
    const started = performance.now();
    for (let n = 0; n < 10; n++) webhook.send({ url: hanging.url, body: { n } });
    expect(performance.now() - started).toBeLessThan(50);
    await waitFor(() => hanging.got.length === 1 || undefined, { name: 'first in flight', timeoutMs: 5000 });
    expect(webhook.stats.dropped).toBe(6); // one in flight, three waiting, six dropped
    webhook.stop();
  });

  it('keeps deliveries to one URL in order while the first is retried', async () => {
    const { url, got } = await hook([500]);
    const webhook = new AlertWebhook({ backoffMs: 100, log: silentLogger() });
    webhook.send({ url, body: { type: 'alert.raised' } });
    webhook.send({ url, body: { type: 'alert.cleared' } });
    await waitFor(() => webhook.stats.sent === 2 || undefined, { name: 'both delivered', timeoutMs: 5000 });
    expect(got.map((g) => (g.body as { type: string }).type)).toEqual(['alert.raised', 'alert.raised', 'alert.cleared']);
    webhook.stop();
  });
});
