/**
 * The request loop behind a ROUTER socket, shared by the nexus's control protocol and the collectors' queries:
 * decodes each request, dispatches it to the handler for its type, and replies. A frame that is oversize,
 * malformed, of an unknown type or invalid gets an `error` reply naming what is wrong (with `re: null` when no id
 * could be read); nothing a peer sends can stop the loop.
 */
import type * as zmq from 'zeromq';
import type { Logger } from 'pino';
import { PierError, ProtocolError, toPierError, type ErrorCode } from '../core/errors.js';
import { RequestDecodeError, encodeError, encodeReply } from '../protocol/index.js';
import { SerialSender } from './sockets.js';

/** What every request in the envelope protocol carries. */
export interface RoutedRequest {
  type: string;
  id: string;
}

/** Counters an operator (or a test) can read. */
export interface RouterServerStats {
  received: number;
  replied: number;
  /** Requests that could not be decoded or validated (each got an error reply when possible). */
  invalid: number;
  /** Messages with no usable routing envelope, dropped without reply. */
  dropped: number;
  /** Requests whose handler failed (each got an error reply). */
  failed: number;
}

export interface RouterServerOptions<R extends RoutedRequest, C = undefined> {
  /** Decodes and validates one payload. @throws RequestDecodeError */
  decode: (frame: Uint8Array, maxBytes: number) => R;
  handlers: { [type: string]: ((request: R, caller: C | undefined) => Promise<unknown>) | undefined };
  /**
   * Decides who sent a decoded request from the proof frame that came before its payload (undefined when none
   * came; src/transport/peer-proof.ts) and whether they may; throws a PierError to refuse. Without it every
   * request is served and handlers get no caller.
   */
  authorize?: (request: R, proof: Buffer | undefined, payload: Buffer) => C;
  maxMessageBytes: number;
  log: Logger;
  /** The reply to requests that arrive after drain() began. */
  closing: { code: ErrorCode; message: string };
}

/** Length of a proof frame (see peer-proof.ts), told apart from REQ's empty delimiter by its size. */
const PROOF_FRAME_BYTES = 72;

export class RouterServer<R extends RoutedRequest, C = undefined> {
  readonly stats: RouterServerStats = { received: 0, replied: 0, invalid: 0, dropped: 0, failed: 0 };
  private readonly sender: SerialSender;
  private readonly inFlight = new Set<Promise<void>>();
  private loop: Promise<void> | undefined;
  private isAccepting = true;

  constructor(
    private readonly router: zmq.Router,
    private readonly options: RouterServerOptions<R, C>,
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
      if (!this.router.closed) this.options.log.error({ err }, 'request loop failed');
    }
  }

  private dispatch(frames: Buffer[]): void {
    // DEALER clients send [identity, payload] or, signing, [identity, proof, payload]; REQ clients add an empty
    // delimiter: [identity, '', payload].
    const identity = frames[0];
    const hasDelimiter = frames.length === 3 && frames[1]!.length === 0;
    const proof = frames.length === 3 && frames[1]!.length === PROOF_FRAME_BYTES ? frames[1] : undefined;
    if (!identity || frames.length < 2) {
      this.stats.dropped += 1;
      return;
    }
    const envelope = hasDelimiter ? [identity, frames[1]!] : [identity];
    if (frames.length > (hasDelimiter || proof ? 3 : 2)) {
      this.stats.invalid += 1;
      void this.reply(envelope, encodeError(null, new ProtocolError(`expected one payload frame after the routing envelope, got ${frames.length - envelope.length}`)));
      return;
    }
    const payload = frames[frames.length - 1]!;
    let request: R;
    try {
      request = this.options.decode(payload, this.options.maxMessageBytes);
    } catch (err) {
      this.stats.invalid += 1;
      const re = err instanceof RequestDecodeError ? err.re : null;
      this.options.log.warn({ peer: identity.toString('hex'), err: (err as Error).message }, 'invalid request');
      void this.reply(envelope, encodeError(re, err));
      return;
    }
    if (!this.isAccepting) {
      void this.reply(envelope, encodeError(request.id, new PierError(this.options.closing.code, this.options.closing.message)));
      return;
    }
    const task = this.handle(envelope, request, proof, payload).finally(() => this.inFlight.delete(task));
    this.inFlight.add(task);
  }

  private async handle(envelope: Buffer[], request: R, proof: Buffer | undefined, payload: Buffer): Promise<void> {
    const handler = this.options.handlers[request.type];
    const started = Date.now();
    const { log } = this.options;
    try {
      const caller = this.options.authorize?.(request, proof, payload);
      if (!handler) throw toPierError(new Error(`no handler for '${request.type}'`));
      const result = await handler(request, caller);
      await this.reply(envelope, encodeReply(request.id, result));
      log.debug({ type: request.type, id: request.id, durationMs: Date.now() - started }, 'request handled');
    } catch (err) {
      this.stats.failed += 1;
      const e = toPierError(err);
      if (e.code === 'PIER_INTERNAL') log.error({ err, type: request.type, id: request.id }, 'request failed');
      else log.info({ code: e.code, msg: e.message, type: request.type, id: request.id }, 'request refused');
      await this.reply(envelope, encodeError(request.id, e));
    }
  }

  private reply(envelope: Buffer[], payload: Buffer): Promise<void> {
    this.stats.replied += 1;
    return this.sender.send([...envelope, payload]);
  }

  /** Stops taking new requests and waits up to `graceMs` for in-flight ones to be answered. */
  async drain(graceMs: number): Promise<void> {
    this.isAccepting = false;
    const all = Promise.allSettled([...this.inFlight]);
    await Promise.race([all, new Promise((resolve) => setTimeout(resolve, graceMs).unref())]);
    await this.sender.drain();
  }

  /** Resolves when the receive loop has ended (after the router is closed). */
  closed(): Promise<void> {
    return this.loop ?? Promise.resolve();
  }
}
