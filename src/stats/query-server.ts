/**
 * The collector's query ROUTER: `logs.tail` and `stats.query`, in the control protocol's envelope (DEALER or REQ
 * clients; `error` replies built by the shared codec). A request that cannot be decoded gets an error reply
 * naming what is wrong; one without a routing envelope is dropped; both are counted.
 */
import type * as zmq from 'zeromq';
import type { Logger } from 'pino';
import { ProtocolError, toPierError } from '../core/errors.js';
import {
  RequestDecodeError, decodeStatsQuery, encodeError, encodeReply,
  type StatsQueryRequest, type StatsQueryResult, type StatsQueryType,
} from '../protocol/index.js';
import { SerialSender } from '../transport/index.js';

/** Answers one query type. */
export type QueryHandlers = { [T in StatsQueryType]: (request: StatsQueryRequest<T>) => Promise<StatsQueryResult<T>> };

export class QueryServer {
  readonly stats = { received: 0, replied: 0, invalid: 0, dropped: 0, failed: 0 };
  private readonly sender: SerialSender;
  private readonly inFlight = new Set<Promise<void>>();
  private loop: Promise<void> | undefined;

  constructor(
    private readonly router: zmq.Router,
    private readonly handlers: QueryHandlers,
    private readonly maxMessageBytes: number,
    private readonly log: Logger,
  ) {
    this.sender = new SerialSender(router);
  }

  start(): void {
    this.loop = this.receive();
  }

  private async receive(): Promise<void> {
    try {
      for await (const frames of this.router) {
        this.stats.received += 1;
        this.dispatch(frames);
      }
    } catch (err) {
      if (!this.router.closed) this.log.error({ err }, 'query loop failed');
    }
  }

  private dispatch(frames: Buffer[]): void {
    // DEALER: [identity, payload]; REQ: [identity, '', payload].
    const identity = frames[0];
    const hasDelimiter = frames.length === 3 && frames[1]!.length === 0;
    if (!identity || frames.length < 2) {
      this.stats.dropped += 1;
      return;
    }
    const envelope = hasDelimiter ? [identity, frames[1]!] : [identity];
    if (frames.length > envelope.length + 1) {
      this.stats.invalid += 1;
      void this.reply(envelope, encodeError(null, new ProtocolError(`expected one payload frame after the routing envelope, got ${frames.length - envelope.length}`)));
      return;
    }
    let request: StatsQueryRequest;
    try {
      request = decodeStatsQuery(frames[frames.length - 1]!, this.maxMessageBytes);
    } catch (err) {
      this.stats.invalid += 1;
      this.log.warn({ peer: identity.toString('hex'), err: (err as Error).message }, 'invalid query');
      void this.reply(envelope, encodeError(err instanceof RequestDecodeError ? err.re : null, err));
      return;
    }
    const task = this.handle(envelope, request).finally(() => this.inFlight.delete(task));
    this.inFlight.add(task);
  }

  private async handle(envelope: Buffer[], request: StatsQueryRequest): Promise<void> {
    const started = Date.now();
    try {
      const handler = this.handlers[request.type] as (r: StatsQueryRequest) => Promise<unknown>;
      const result = await handler(request);
      await this.reply(envelope, encodeReply(request.id, result));
      this.log.debug({ type: request.type, id: request.id, durationMs: Date.now() - started }, 'query answered');
    } catch (err) {
      this.stats.failed += 1;
      const e = toPierError(err);
      if (e.code === 'PIER_INTERNAL') this.log.error({ err, type: request.type }, 'query failed');
      await this.reply(envelope, encodeError(request.id, e));
    }
  }

  private reply(envelope: Buffer[], payload: Buffer): Promise<void> {
    this.stats.replied += 1;
    return this.sender.send([...envelope, payload]);
  }

  /** Waits up to `graceMs` for queries being answered. */
  async drain(graceMs: number): Promise<void> {
    const all = Promise.allSettled([...this.inFlight]);
    await Promise.race([all, new Promise((resolve) => setTimeout(resolve, graceMs).unref())]);
    await this.sender.drain();
  }

  /** Resolves when the receive loop has ended (after the router is closed). */
  closed(): Promise<void> {
    return this.loop ?? Promise.resolve();
  }
}
