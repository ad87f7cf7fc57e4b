/**
 * Republishes stored lines on the live tail PUB: one message per written batch of an app, on topic `log.<app>`.
 * Sends go through one loop (zeromq.js allows one pending send per socket); a PUB never blocks, and batches
 * beyond the queue limit are dropped and counted, so a slow subscriber cannot slow the intake.
 */
import type * as zmq from 'zeromq';
import { encode, tailTopic, type LogLines } from '../protocol/index.js';

/** Batches waiting for the socket; beyond this new ones are dropped. */
const MAX_QUEUED = 10_000;

export class TailPublisher {
  readonly stats = { published: 0, dropped: 0 };
  private queue: Array<{ app: string; lines: string[] }> = [];
  private sending: Promise<void> | undefined;

  constructor(private readonly socket: zmq.Publisher) {}

  /** Queues lines just written for `app`; never throws, never waits. */
  readonly publish = (app: string, lines: string[]): void => {
    if (this.socket.closed) return;
    if (this.queue.length >= MAX_QUEUED) {
      this.stats.dropped += lines.length;
      return;
    }
    this.queue.push({ app, lines });
    this.sending ??= this.drain();
  };

  private async drain(): Promise<void> {
    while (this.queue.length > 0 && !this.socket.closed) {
      const batch = this.queue;
      this.queue = [];
      for (const { app, lines } of batch) {
        const message: LogLines = { v: 1, type: 'log.lines', app, lines };
        try {
          await this.socket.send([tailTopic(app), encode(message)]);
          this.stats.published += lines.length;
        } catch {
          // Closed under us at stop: the lines are stored; only live viewers miss them.
          this.stats.dropped += lines.length;
        }
      }
    }
    this.sending = undefined;
  }

  /** Resolves once queued batches were handed to the socket. */
  async drained(): Promise<void> {
    await this.sending;
  }
}
