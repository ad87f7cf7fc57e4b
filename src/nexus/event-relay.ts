/**
 * Publishes every committed event on the nexus PUB socket, in version order: LISTENs on the events channel
 * (re-LISTENing after a lost connection), polls as a fallback, and publishes a tick with the current version
 * so subscribers notice when they missed the newest event.
 */
import pg from 'pg';
import type * as zmq from 'zeromq';
import type { Logger } from 'pino';
import { EVENTS_CHANNEL, currentVersion, eventsSince } from '../db/index.js';
import { encode, TOPIC_EVENT_PREFIX, TOPIC_TICK, type EventMessage, type TickMessage } from '../protocol/index.js';
import { Coalesced } from '../core/coalesce.js';
import { SerialSender } from '../transport/index.js';

export interface EventRelayOptions {
  pool: pg.Pool;
  url: string;
  publisher: zmq.Publisher;
  nexusId: string;
  tickIntervalMs: number;
  pollMs: number;
  isLeader: () => boolean;
  log: Logger;
  /** Called after new events were published (wakes the scheduler). */
  onPublished?: () => void;
}

export class EventRelay {
  /** Version of the last event published. */
  published = 0;
  private readonly sender: SerialSender;
  private listener: pg.Client | undefined;
  private timers: NodeJS.Timeout[] = [];
  private readonly pumper = new Coalesced(
    () => this.publishNew(),
    (err) => this.log.warn({ err: err.message }, 'cannot read new events; will retry'),
  );
  private isStopped = false;
  private reconnectDelayMs = 100;
  private readonly log: Logger;

  constructor(private readonly options: EventRelayOptions) {
    this.sender = new SerialSender(options.publisher);
    this.log = options.log.child({ component: 'nexus.event-relay' });
  }

  async start(): Promise<void> {
    this.published = await currentVersion(this.options.pool);
    await this.listen();
    this.timers.push(setInterval(() => this.pump(), this.options.pollMs));
    this.timers.push(setInterval(() => this.tick(), this.options.tickIntervalMs));
  }

  private async listen(): Promise<void> {
    const client = new pg.Client({ connectionString: this.options.url, application_name: 'pier-nexus-listen' });
    client.on('notification', () => this.pump());
    client.on('error', () => this.relisten(client));
    client.on('end', () => this.relisten(client));
    await client.connect();
    await client.query(`LISTEN ${EVENTS_CHANNEL}`);
    this.listener = client;
    this.reconnectDelayMs = 100;
    this.pump(); // anything committed while we were not listening
  }

  private relisten(client: pg.Client): void {
    if (this.listener !== client || this.isStopped) return;
    this.listener = undefined;
    client.end().catch(() => undefined);
    const retry = (): void => {
      if (this.isStopped) return;
      this.listen().catch((err: Error) => {
        this.log.warn({ err: err.message, retryMs: this.reconnectDelayMs }, 'cannot LISTEN for events; retrying');
        this.reconnectDelayMs = Math.min(this.reconnectDelayMs * 2, 2000);
        this.timers.push(setTimeout(retry, this.reconnectDelayMs));
      });
    };
    this.timers.push(setTimeout(retry, this.reconnectDelayMs));
  }

  /** Publishes new events; concurrent calls coalesce into one more pass. */
  pump(): void {
    if (!this.isStopped) this.pumper.kick();
  }

  private async publishNew(): Promise<void> {
    for (;;) {
      const events = await eventsSince(this.options.pool, this.published, 500);
      for (const event of events) {
        const message: EventMessage = { v: 1, type: 'event', event };
        await this.sender.send([`${TOPIC_EVENT_PREFIX}${event.type}`, encode(message)]);
        this.published = event.version;
      }
      if (events.length > 0) this.options.onPublished?.();
      if (events.length < 500) return;
    }
  }

  private tick(): void {
    const message: TickMessage = {
      v: 1, type: 'tick', nexusId: this.options.nexusId, version: this.published, isLeader: this.options.isLeader(), at: Date.now(),
    };
    void this.sender.send([TOPIC_TICK, encode(message)]);
  }

  async stop(): Promise<void> {
    this.isStopped = true;
    for (const timer of this.timers) clearTimeout(timer);
    await this.pumper.idle();
    await this.sender.drain();
    const listener = this.listener;
    this.listener = undefined;
    await listener?.end().catch(() => undefined);
  }
}
