/**
 * Sends alerts to webhooks as JSON POSTs, in the background: a bounded queue (the oldest deliveries are dropped
 * and counted beyond it), a few deliveries at a time, each retried with doubling back-off. Deliveries to one URL go
 * in order, one at a time (a clearing never overtakes its raising while that one is retried). Nothing waits on it.
 */
import type { Logger } from 'pino';
import { request } from 'undici';

export interface WebhookDelivery {
  url: string;
  /** The JSON body: { type: 'alert.raised' | 'alert.cleared', alert: {...} }. */
  body: Record<string, unknown>;
}

export interface AlertWebhookOptions {
  /** Deliveries kept waiting at most. @default 1000 */
  maxQueue?: number;
  /** Tries per delivery. @default 6 */
  attempts?: number;
  /** First back-off, doubled each retry up to `maxBackoffMs`. @default 1000 */
  backoffMs?: number;
  /** @default 30000 */
  maxBackoffMs?: number;
  /** One POST's time-out. @default 5000 */
  timeoutMs?: number;
  /** Deliveries in flight at once. @default 4 */
  concurrency?: number;
  log: Logger;
}

type Pending = WebhookDelivery & { attempt: number; notBefore: number };

export class AlertWebhook {
  private queue: Pending[] = [];
  private active = 0;
  private readonly busyUrls = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private isClosed = false;
  /** Counters, for tests and logs. */
  readonly stats = { sent: 0, failed: 0, dropped: 0, retried: 0 };
  private readonly log: Logger;

  constructor(private readonly options: AlertWebhookOptions) {
    this.log = options.log.child({ component: 'nexus.webhook' });
  }

  /** Queues a delivery; returns at once. */
  send(delivery: WebhookDelivery): void {
    if (this.isClosed) return;
    this.queue.push({ ...delivery, attempt: 0, notBefore: 0 });
    const max = this.options.maxQueue ?? 1000;
    if (this.queue.length > max) {
      this.stats.dropped += this.queue.length - max;
      this.queue = this.queue.slice(-max);
      this.log.warn({ dropped: this.stats.dropped }, 'alert webhook queue full; oldest deliveries dropped');
    }
    this.pump();
  }

  private pump(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.isClosed) return;
    const now = Date.now();
    const blocked = new Set<string>();
    for (let i = 0; i < this.queue.length && this.active < (this.options.concurrency ?? 4);) {
      const p = this.queue[i]!;
      // Only the oldest delivery to a URL may go, once it is due and nothing else is in flight to that URL.
      if (blocked.has(p.url) || this.busyUrls.has(p.url) || p.notBefore > now) {
        blocked.add(p.url);
        i++;
        continue;
      }
      this.queue.splice(i, 1);
      this.active += 1;
      this.busyUrls.add(p.url);
      void this.deliver(p).finally(() => {
        this.active -= 1;
        this.busyUrls.delete(p.url);
        this.pump();
      });
    }
    const soonest = Math.min(...this.queue.map((p) => p.notBefore));
    if (Number.isFinite(soonest)) this.timer = setTimeout(() => this.pump(), Math.max(10, soonest - now));
    this.timer?.unref();
  }

  private async deliver(p: Pending): Promise<void> {
    const timeoutMs = this.options.timeoutMs ?? 5000;
    try {
      const res = await request(p.url, {
        method: 'POST', body: JSON.stringify(p.body), headers: { 'content-type': 'application/json', 'user-agent': 'pier-alerts' },
        headersTimeout: timeoutMs, bodyTimeout: timeoutMs, maxRedirections: 0,
      } as Parameters<typeof request>[1]);
      await res.body.dump();
      if (res.statusCode >= 200 && res.statusCode < 300) {
        this.stats.sent += 1;
        return;
      }
      throw new Error(`answered ${res.statusCode}`);
    } catch (err) {
      p.attempt += 1;
      if (p.attempt >= (this.options.attempts ?? 6) || this.isClosed) {
        this.stats.failed += 1;
        this.log.warn({ url: redact(p.url), err: (err as Error).message, attempts: p.attempt }, 'alert webhook gave up');
        return;
      }
      this.stats.retried += 1;
      const backoff = Math.min(this.options.maxBackoffMs ?? 30_000, (this.options.backoffMs ?? 1000) * 2 ** (p.attempt - 1));
      p.notBefore = Date.now() + backoff;
      this.queue.unshift(p); // still the oldest to its URL
    }
  }

  stop(): void {
    this.isClosed = true;
    clearTimeout(this.timer);
    this.queue = [];
  }
}

/** A webhook URL without its query (which may carry a secret), for logs. */
function redact(url: string): string {
  return url.replace(/\?.*$/, '?…');
}
