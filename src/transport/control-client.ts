/**
 * The control client ("lazy pirate"): knows every nexus endpoint, sends each call to one, and when no reply
 * comes in time drops that socket (its reply may never come) and tries the next; after every endpoint has
 * failed it throws one clear error. A call keeps its request id across endpoints, so a mutation that did
 * reach a nexus before the reply was lost is answered from its first result, not applied twice.
 */
import type * as zmq from 'zeromq';
import type { Logger } from 'pino';
import { IllegalStateError, PierError, TimeoutError } from '../core/errors.js';
import { newRequestId } from '../core/ids.js';
import { silentLogger } from '../core/logger.js';
import {
  decodeReply, encode, resultOf,
  type CommandBody, type CommandResult, type CommandType, type ControlReply,
} from '../protocol/index.js';
import { closeQuietly, type SocketFactory } from './sockets.js';

export interface ControlClientOptions {
  /** Nexus control endpoints, tried in order starting from the last one that answered. */
  endpoints: readonly string[];
  /** Time one endpoint gets to answer before the next is tried. */
  timeoutMs: number;
  sockets: SocketFactory;
  log?: Logger;
}

export interface CallOptions {
  /** Per-endpoint time-out for this call. @default the client's timeoutMs */
  timeoutMs?: number;
  /** Request id; a retried mutation must reuse its id. @default a new UUID */
  id?: string;
}

type Pending = { resolve: (reply: ControlReply) => void; reject: (err: Error) => void };

/** One DEALER connected to one endpoint, with the calls waiting on it. */
class Connection {
  readonly pending = new Map<string, Pending>();
  private readonly loop: Promise<void>;

  constructor(
    readonly endpoint: string,
    readonly socket: zmq.Dealer,
    private readonly maxBytes: number,
    private readonly log: Logger,
  ) {
    socket.connect(endpoint);
    this.loop = this.receive();
  }

  private async receive(): Promise<void> {
    try {
      for await (const frames of this.socket) {
        const frame = frames[frames.length - 1];
        if (!frame) continue;
        let reply: ControlReply;
        try {
          reply = decodeReply(frame, this.maxBytes);
        } catch (err) {
          this.log.warn({ err, peer: this.endpoint }, 'invalid reply dropped');
          continue;
        }
        const re = reply.re;
        const waiter = re === null ? undefined : this.pending.get(re);
        if (waiter) {
          this.pending.delete(re!);
          waiter.resolve(reply);
        }
      }
    } catch {
      // The socket was closed under the loop: drop() already failed every waiter.
    }
  }

  /** Closes the socket and fails every call waiting on it, so each moves on to the next endpoint. */
  drop(reason: Error): Promise<void> {
    closeQuietly(this.socket);
    for (const waiter of this.pending.values()) waiter.reject(reason);
    this.pending.clear();
    return this.loop;
  }
}

/** Marks a call whose socket was dropped by another call's time-out: try the next endpoint. */
class DroppedError extends Error {}

export class ControlClient {
  private readonly endpoints: readonly string[];
  private readonly connections = new Map<string, Connection>();
  private readonly log: Logger;
  private preferred = 0;
  private isClosed = false;

  constructor(private readonly options: ControlClientOptions) {
    if (options.endpoints.length === 0) throw new IllegalStateError('control client needs at least one nexus endpoint');
    this.endpoints = [...options.endpoints];
    this.log = (options.log ?? silentLogger()).child({ component: 'transport.control-client' });
  }

  /** Sends one command; resolves with its result, throws the nexus's error, or PIER_NEXUS_UNAVAILABLE. */
  async call<T extends CommandType>(type: T, body: CommandBody<T>, options: CallOptions = {}): Promise<CommandResult<T>> {
    if (this.isClosed) throw new IllegalStateError('control client is closed');
    const id = options.id ?? newRequestId();
    const timeoutMs = options.timeoutMs ?? this.options.timeoutMs;
    const payload = encode({ ...body, v: 1, type, id });
    // With CURVE, the proof of our key goes first: the nexus checks our role with it (peer-proof.ts).
    const proof = this.options.sockets.proof(payload);
    const frame = proof ? [proof, payload] : payload;
    const failures: string[] = [];
    for (let i = 0; i < this.endpoints.length; i++) {
      // Closed during the call: stop here rather than try (and perhaps apply) it on another endpoint.
      if (this.isClosed) throw new IllegalStateError('control client is closed');
      const index = (this.preferred + i) % this.endpoints.length;
      const endpoint = this.endpoints[index]!;
      let reply: ControlReply;
      try {
        reply = await this.attempt(endpoint, id, frame, timeoutMs);
      } catch (err) {
        failures.push(`${endpoint}: ${err instanceof TimeoutError ? `no reply in ${timeoutMs} ms` : (err as Error).message}`);
        this.log.warn({ peer: endpoint, type, id, err: (err as Error).message }, 'nexus did not answer; trying the next');
        continue;
      }
      const isRetryable = reply.type === 'error' && (reply.code === 'PIER_DB_UNAVAILABLE' || reply.code === 'PIER_NEXUS_UNAVAILABLE');
      if (reply.type === 'error' && isRetryable && i < this.endpoints.length - 1) {
        failures.push(`${endpoint}: ${reply.message}`);
        continue;
      }
      this.preferred = index;
      return resultOf(type, reply);
    }
    throw new PierError(
      'PIER_NEXUS_UNAVAILABLE',
      `no nexus answered '${type}' (tried ${this.endpoints.length}: ${failures.join('; ')}); check that a nexus is running with 'pier status'`,
      { details: { endpoints: [...this.endpoints] } },
    );
  }

  private async attempt(endpoint: string, id: string, frame: Buffer | Buffer[], timeoutMs: number): Promise<ControlReply> {
    const connection = this.connection(endpoint, timeoutMs);
    const reply = new Promise<ControlReply>((resolve, reject) => connection.pending.set(id, { resolve, reject }));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TimeoutError(`no reply from ${endpoint} in ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([connection.socket.send(frame), deadline]);
      return await Promise.race([reply, deadline]);
    } catch (err) {
      connection.pending.delete(id);
      if (!(err instanceof DroppedError)) {
        // Lazy pirate: a socket that lost a reply cannot be trusted; drop it and start fresh next time.
        this.forget(connection, new DroppedError(`connection to ${endpoint} was reset`));
      }
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  private connection(endpoint: string, timeoutMs: number): Connection {
    if (this.isClosed) throw new IllegalStateError('control client is closed');
    let connection = this.connections.get(endpoint);
    if (!connection || connection.socket.closed) {
      const socket = this.options.sockets.dealer(timeoutMs);
      connection = new Connection(endpoint, socket, this.options.sockets.maxMessageBytes, this.log);
      this.connections.set(endpoint, connection);
    }
    return connection;
  }

  private forget(connection: Connection, reason: Error): void {
    if (this.connections.get(connection.endpoint) === connection) this.connections.delete(connection.endpoint);
    void connection.drop(reason);
  }

  /** Closes every socket; calls still waiting fail. */
  async close(): Promise<void> {
    if (this.isClosed) return;
    this.isClosed = true;
    const drops = [...this.connections.values()].map((c) => c.drop(new IllegalStateError('control client is closed')));
    this.connections.clear();
    await Promise.all(drops);
  }
}
