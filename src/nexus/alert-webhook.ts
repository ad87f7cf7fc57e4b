/**
 * Sends alerts to webhooks as JSON POSTs, in the background: a bounded queue (the oldest deliveries are dropped
 * and counted beyond it), a few deliveries at a time, each retried with doubling back-off. Deliveries to one URL go
 * in order, one at a time (a clearing never overtakes its raising while that one is retried). Nothing waits on it.
 * An app owner's URL is guarded (src/core/webhook-target.ts): its host and every address its name resolves to must
 * be public, and the connection goes to the address that was checked. No redirect is followed (a 3xx gives up at
 * once), and at most RESPONSE_CAP_BYTES of an answer is read. The operator's platform URL is not guarded.
 */
import type { LookupFunction } from 'node:net';
import type { Logger } from 'pino';
import { Agent, request } from 'undici';
import { guardedLookup, literalRefusal, type TargetCheck } from '../core/webhook-target.js';

/** The most of a webhook's answer read before its connection is dropped. */
export const RESPONSE_CAP_BYTES = 4096;

export interface WebhookDelivery {
  url: string;
  /** The JSON body: { type: 'alert.raised' | 'alert.cleared', alert: {...} }. */
  body: Record<string, unknown>;
  /** The operator's platform URL (nexus.alertWebhookUrl): may point anywhere, so it is not guarded. @default false */
  isOperator?: boolean;
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
  /** nexus.alertWebhookAllowPrivate: owners' URLs are not guarded either (trusted owners on a private network). @default false */
  allowPrivate?: boolean;
  /** How owners' URLs are judged (tests inject which addresses count as allowed). @default the rules of webhook-target.ts */
  check?: TargetCheck;
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
  readonly stats = { sent: 0, failed: 0, dropped: 0, retried: 0, refused: 0 };
  private readonly log: Logger;
  /** Owners' deliveries: every connection's address is resolved and checked by guardedLookup. */
  private readonly guarded: Agent;
  private readonly plain: Agent;

  constructor(private readonly options: AlertWebhookOptions) {
    this.log = options.log.child({ component: 'nexus.webhook' });
    this.guarded = new Agent({ connect: { lookup: guardedLookup(options.check) as unknown as LookupFunction } });
    this.plain = new Agent();
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
    const isGuarded = !p.isOperator && !this.options.allowPrivate;
    try {
      // Connect skips lookup for an IP literal: that one is judged here; a name is judged by guardedLookup.
      const literal = isGuarded ? literalRefusal(new URL(p.url), this.options.check) : undefined;
      if (literal) throw new PermanentError(literal, 'refused');
      const res = await request(p.url, {
        method: 'POST', body: JSON.stringify(p.body), headers: { 'content-type': 'application/json', 'user-agent': 'pier-alerts' },
        headersTimeout: timeoutMs, bodyTimeout: timeoutMs, maxRedirections: 0, dispatcher: isGuarded ? this.guarded : this.plain,
      } as Parameters<typeof request>[1]);
      // The answer is not wanted: at most a few KiB are read, then the connection is dropped.
      await res.body.dump({ limit: RESPONSE_CAP_BYTES }).catch(() => undefined);
      if (res.statusCode >= 200 && res.statusCode < 300) {
        this.stats.sent += 1;
        return;
      }
      if (res.statusCode >= 300 && res.statusCode < 400) {
        throw new PermanentError(`webhook answered a redirect (${res.statusCode}); redirects are not followed — give the final URL`, 'failed');
      }
      throw new Error(`answered ${res.statusCode}`);
    } catch (err) {
      const refused = err instanceof PermanentError ? err.counter : (err as { code?: string }).code === 'PIER_WEBHOOK_REFUSED' ? 'refused' : undefined;
      if (refused) {
        this.stats[refused] += 1;
        this.log.warn({ url: redact(p.url), err: (err as Error).message }, refused === 'refused' ? 'alert webhook refused' : 'alert webhook gave up');
        return;
      }
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
    // Best effort: in-flight deliveries are abandoned with their connections.
    void this.guarded.destroy().catch(() => undefined);
    void this.plain.destroy().catch(() => undefined);
  }
}

/** A delivery that no retry can mend (a refused address, a redirect). */
class PermanentError extends Error {
  constructor(message: string, readonly counter: 'refused' | 'failed') {
    super(message);
  }
}

/** A webhook URL without its query (which may carry a secret), for logs. */
function redact(url: string): string {
  return url.replace(/\?.*$/, '?…');
}
