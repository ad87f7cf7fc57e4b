/**
 * Follows the cluster state from every nexus replica: subscribes to all their event PUBs, drops duplicates by
 * version, and on a gap (or a tick / reconnect showing it is behind) replays the missed events over the control
 * protocol, falling back to a fresh snapshot when the events it needs are no longer kept. Balancers and runners
 * build their in-memory tables on this, so they survive any nexus dying.
 */
import type * as zmq from 'zeromq';
import type { Logger } from 'pino';
import { PierError } from '../core/errors.js';
import { decode, PubMessage, type Snapshot, type StateEvent } from '../protocol/index.js';
import type { ControlClient } from './control-client.js';
import { closeQuietly, type SocketFactory } from './sockets.js';

export interface EventFollowerOptions {
  /** Event PUB endpoints of every nexus replica. */
  eventEndpoints: readonly string[];
  control: ControlClient;
  sockets: SocketFactory;
  log: Logger;
  /** Receives the whole state: at start, and whenever replay is impossible. */
  onSnapshot: (snapshot: Snapshot) => void | Promise<void>;
  /** Receives each event exactly once, in version order. */
  onEvent: (event: StateEvent) => void | Promise<void>;
  /** Events fetched per replay call. @default 1000 */
  replayBatch?: number;
}

export interface EventFollowerStats {
  received: number;
  applied: number;
  duplicates: number;
  gaps: number;
  replayed: number;
  snapshots: number;
  invalid: number;
}

type Work = { kind: 'event'; event: StateEvent } | { kind: 'behind'; version: number } | { kind: 'resync' };

export class EventFollower {
  readonly stats: EventFollowerStats = { received: 0, applied: 0, duplicates: 0, gaps: 0, replayed: 0, snapshots: 0, invalid: 0 };
  /** Version of the last event applied; -1 before the first snapshot. */
  version = -1;
  private socket: zmq.Subscriber | undefined;
  private loop: Promise<void> | undefined;
  private readonly queue: Work[] = [];
  private draining: Promise<void> | undefined;
  private readonly log: Logger;

  constructor(private readonly options: EventFollowerOptions) {
    this.log = options.log.child({ component: 'transport.event-follower' });
  }

  /** Connects to every replica and loads the first snapshot. */
  async start(): Promise<void> {
    const socket = this.options.sockets.subscriber('client');
    socket.subscribe();
    for (const endpoint of this.options.eventEndpoints) socket.connect(endpoint);
    socket.events.on('handshake', () => this.push({ kind: 'behind', version: Number.MAX_SAFE_INTEGER }));
    this.socket = socket;
    this.loop = this.receive(socket);
    await this.resync();
  }

  private async receive(socket: zmq.Subscriber): Promise<void> {
    try {
      for await (const frames of socket) {
        this.stats.received += 1;
        const payload = frames[frames.length - 1];
        let message: PubMessage;
        try {
          message = decode(payload ?? Buffer.alloc(0), PubMessage, this.options.sockets.maxMessageBytes) as PubMessage;
        } catch (err) {
          this.stats.invalid += 1;
          this.log.warn({ err: (err as Error).message }, 'invalid event message dropped');
          continue;
        }
        if (message.type === 'event') this.push({ kind: 'event', event: message.event });
        else this.push({ kind: 'behind', version: message.version });
      }
    } catch (err) {
      if (!socket.closed) this.log.error({ err }, 'event loop failed');
    }
  }

  /** Reloads the state from a fresh snapshot, after the work already queued (an integrity check found drift). */
  requestResync(): void {
    this.push({ kind: 'resync' });
  }

  private push(work: Work): void {
    this.queue.push(work);
    this.draining ??= this.drain().finally(() => (this.draining = undefined));
  }

  /** Processes queued work one item at a time, so events are applied strictly in order. */
  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const work = this.queue.shift()!;
      try {
        await this.process(work);
      } catch (err) {
        this.log.warn({ err }, 'could not catch up with the nexus; will retry on the next tick');
      }
    }
  }

  private async process(work: Work): Promise<void> {
    if (this.version < 0) {
      if (work.kind === 'resync') await this.resync();
      return; // the snapshot being loaded covers it; anything newer arrives as a gap or tick
    }
    if (work.kind === 'resync') return this.resync();
    if (work.kind === 'behind') {
      if (work.version > this.version) await this.catchUp();
      return;
    }
    const { event } = work;
    if (event.version <= this.version) {
      this.stats.duplicates += 1;
    } else if (event.version === this.version + 1) {
      await this.apply(event);
    } else {
      this.stats.gaps += 1;
      this.log.info({ have: this.version, got: event.version }, 'event gap; replaying');
      await this.catchUp();
    }
  }

  private async apply(event: StateEvent): Promise<void> {
    await this.options.onEvent(event);
    this.version = event.version;
    this.stats.applied += 1;
  }

  /** Replays every event after our version; takes a snapshot when they are no longer kept. */
  private async catchUp(): Promise<void> {
    const limit = this.options.replayBatch ?? 1000;
    for (;;) {
      let events: StateEvent[];
      try {
        ({ events } = await this.options.control.call('events.since', { after: this.version, limit }));
      } catch (err) {
        if (err instanceof PierError && err.code === 'PIER_EVENTS_TRIMMED') return this.resync();
        throw err;
      }
      for (const event of events) {
        if (event.version !== this.version + 1) return this.resync();
        await this.apply(event);
        this.stats.replayed += 1;
      }
      if (events.length < limit) return;
    }
  }

  private async resync(): Promise<void> {
    const snapshot = await this.options.control.call('snapshot', {});
    await this.options.onSnapshot(snapshot);
    this.version = snapshot.version;
    this.stats.snapshots += 1;
    this.log.info({ version: snapshot.version }, 'state loaded from snapshot');
  }

  async stop(): Promise<void> {
    closeQuietly(this.socket);
    await this.loop;
    await this.draining;
  }
}
