/**
 * The one place every ZeroMQ socket is created: linger, message size limits, timeouts, and (when switched on)
 * CURVE keys for servers and clients alike. Daemons receive a SocketFactory and never call `new zmq.X` themselves.
 */
import * as zmq from 'zeromq';

/** CURVE settings: one keypair shared by the nexus replicas (the cluster's server key), one per node. */
export interface CurveSettings {
  /** Z85 public key every server socket presents; clients pin it. */
  serverPublicKey: string;
  /** Z85 secret key of the server keypair; only server-side processes hold it. */
  serverSecretKey?: string;
  /** This node's own Z85 keypair, presented when connecting. */
  publicKey: string;
  secretKey: string;
}

export interface SocketFactoryOptions {
  /** Largest message a socket accepts; larger ones are dropped by libzmq (and rejected by the codec). */
  maxMessageBytes: number;
  /** Time unsent messages are kept after close. @default 0 */
  lingerMs?: number;
  /** CURVE on every socket when set. */
  curve?: CurveSettings | undefined;
}

type Role = 'server' | 'client';

/** Common options for a role: servers present the cluster key, clients pin it and present their own. */
function securityOptions(curve: CurveSettings | undefined, role: Role): Record<string, unknown> {
  if (!curve) return {};
  if (role === 'server') {
    if (!curve.serverSecretKey) throw new Error('CURVE server socket needs the server secret key');
    return { curveServer: true, curveSecretKey: curve.serverSecretKey, zapDomain: 'pier', zapEnforceDomain: true };
  }
  return { curveServerKey: curve.serverPublicKey, curvePublicKey: curve.publicKey, curveSecretKey: curve.secretKey };
}

export class SocketFactory {
  readonly maxMessageBytes: number;
  private readonly lingerMs: number;
  private readonly curve: CurveSettings | undefined;

  constructor(options: SocketFactoryOptions) {
    this.maxMessageBytes = options.maxMessageBytes;
    this.lingerMs = options.lingerMs ?? 0;
    this.curve = options.curve;
  }

  get isCurve(): boolean {
    return this.curve !== undefined;
  }

  private base(role: Role): Record<string, unknown> {
    // libzmq's limit is checked on the wire frame; leave headroom for the envelope.
    return { linger: this.lingerMs, maxMessageSize: this.maxMessageBytes + 1024, ...securityOptions(this.curve, role) };
  }

  /** Control server: answers every client; never blocks on a slow peer (ROUTER drops instead). */
  router(): zmq.Router {
    return new zmq.Router({ ...this.base('server'), sendHighWaterMark: 10_000, receiveHighWaterMark: 10_000 });
  }

  /** Control client to one nexus; `sendTimeoutMs` bounds a send to an endpoint that is not there. */
  dealer(sendTimeoutMs: number): zmq.Dealer {
    return new zmq.Dealer({ ...this.base('client'), sendTimeout: sendTimeoutMs, immediate: false, reconnectInterval: 100, reconnectMaxInterval: 1000 });
  }

  /** Event or heartbeat publisher; `role` says whether it binds (server) or connects (client). */
  publisher(role: Role): zmq.Publisher {
    return new zmq.Publisher({ ...this.base(role), sendHighWaterMark: 10_000, noDrop: false });
  }

  subscriber(role: Role): zmq.Subscriber {
    return new zmq.Subscriber({ ...this.base(role), receiveHighWaterMark: 100_000, reconnectInterval: 100, reconnectMaxInterval: 1000 });
  }

  push(): zmq.Push {
    return new zmq.Push({ ...this.base('client'), sendHighWaterMark: 10_000, sendTimeout: 0 });
  }

  pull(): zmq.Pull {
    return new zmq.Pull({ ...this.base('server'), receiveHighWaterMark: 100_000 });
  }
}

/** Generates a Z85 CURVE keypair. */
export function curveKeyPair(): { publicKey: string; secretKey: string } {
  return zmq.curveKeyPair();
}

/** Closes a socket, ignoring the error of an already-closed one (best-effort cleanup). */
export function closeQuietly(socket: zmq.Socket | undefined): void {
  if (!socket || socket.closed) return;
  try {
    socket.close();
  } catch {
    // Closing is best effort: the socket may already be closed by a concurrent stop.
  }
}

/**
 * Serializes sends on one socket: zeromq.js allows one pending send at a time (EBUSY otherwise),
 * and replies from concurrent handlers must not interleave.
 */
export class SerialSender {
  private tail: Promise<void> = Promise.resolve();
  /** Sends that failed (closed socket, timeout); counted, never thrown into the caller's loop. */
  failures = 0;

  constructor(private readonly socket: { send(frames: zmq.MessageLike[] | zmq.MessageLike): Promise<void>; closed: boolean }) {}

  send(frames: zmq.MessageLike[]): Promise<void> {
    const next = this.tail.then(async () => {
      if (this.socket.closed) return;
      try {
        await this.socket.send(frames);
      } catch {
        this.failures += 1;
      }
    });
    this.tail = next;
    return next;
  }

  /** Resolves once every queued send has been attempted. */
  drain(): Promise<void> {
    return this.tail;
  }
}

/** True for the error zeromq.js raises when a blocking call is cut short by close(). */
export function isClosedError(err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code;
  return code === 'EBADF' || code === 'ENOTSOCK' || code === 'ETERM' || code === 'EAGAIN';
}
