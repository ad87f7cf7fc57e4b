/**
 * The one place every ZeroMQ socket is created: linger, message size limits, timeouts, and (when switched on)
 * CURVE keys for servers and clients alike. Daemons receive a SocketFactory and never call `new zmq.X` themselves.
 */
import * as zmq from 'zeromq';
import { ConfigError } from '../core/errors.js';
import { ProofSigner } from './peer-proof.js';
import { DEFAULT_ZAP_DOMAIN, type ZapDomain } from './zap-domains.js';

/** CURVE settings: one keypair for the nexus replicas, one for the collectors, one per node. */
export interface CurveSettings {
  /** Z85 public key of the nexus replicas' server sockets; clients pin it. */
  serverPublicKey: string;
  /** Z85 public key of the collectors' server sockets; their clients pin it. @default serverPublicKey */
  statsPublicKey?: string;
  /** Z85 secret key this process's server sockets bind with (the nexus's or the collectors'); clients have none. */
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

/** Common options for a role: servers present their server key, clients pin it and present their own node key. */
function securityOptions(curve: CurveSettings | undefined, role: Role, domain: ZapDomain): Record<string, unknown> {
  if (!curve) return {};
  if (role === 'server') {
    if (!curve.serverSecretKey) throw new Error('CURVE server socket needs the server secret key');
    // The ZAP domain says which roles' keys this socket lets in (src/transport/zap-domains.ts).
    return { curveServer: true, curveSecretKey: curve.serverSecretKey, zapDomain: domain, zapEnforceDomain: true };
  }
  return { curveServerKey: curve.serverPublicKey, curvePublicKey: curve.publicKey, curveSecretKey: curve.secretKey };
}

export class SocketFactory {
  readonly maxMessageBytes: number;
  private readonly lingerMs: number;
  private readonly curve: CurveSettings | undefined;
  private signer: ProofSigner | undefined;

  constructor(options: SocketFactoryOptions) {
    this.maxMessageBytes = options.maxMessageBytes;
    this.lingerMs = options.lingerMs ?? 0;
    this.curve = options.curve;
  }

  get isCurve(): boolean {
    return this.curve !== undefined;
  }

  /**
   * The same factory with client sockets pinning the collectors' key instead of the nexus's.
   * @throws ConfigError with CURVE on and no stats.pub loaded
   */
  forStats(): SocketFactory {
    if (!this.curve) return this;
    if (!this.curve.statsPublicKey) {
      throw new ConfigError("the collectors' public key is not loaded: put stats.pub (from the keys folder pier up made) in this daemon's keys folder");
    }
    return new SocketFactory({ maxMessageBytes: this.maxMessageBytes, lingerMs: this.lingerMs, curve: { ...this.curve, serverPublicKey: this.curve.statsPublicKey } });
  }

  /** The proof frame to send before `payload` to the server this factory pins (src/transport/peer-proof.ts); undefined with CURVE off. */
  proof(payload: Uint8Array): Buffer | undefined {
    if (!this.curve) return undefined;
    this.signer ??= new ProofSigner(this.curve, this.curve.serverPublicKey);
    return this.signer.sign(payload);
  }

  private base(role: Role, domain: ZapDomain = DEFAULT_ZAP_DOMAIN): Record<string, unknown> {
    // libzmq's limit is checked on the wire frame; leave headroom for the envelope.
    return { linger: this.lingerMs, maxMessageSize: this.maxMessageBytes + 1024, ...securityOptions(this.curve, role, domain) };
  }

  /** Control server: answers every client; never blocks on a slow peer (ROUTER drops instead). */
  router(domain?: ZapDomain): zmq.Router {
    return new zmq.Router({ ...this.base('server', domain), sendHighWaterMark: 10_000, receiveHighWaterMark: 10_000 });
  }

  /** Control client to one nexus; `sendTimeoutMs` bounds a send to an endpoint that is not there. */
  dealer(sendTimeoutMs: number): zmq.Dealer {
    return new zmq.Dealer({ ...this.base('client'), sendTimeout: sendTimeoutMs, immediate: false, reconnectInterval: 100, reconnectMaxInterval: 1000 });
  }

  /** Event or heartbeat publisher; `role` says whether it binds (server, with the ZAP domain of its clients) or connects (client). */
  publisher(role: Role, domain?: ZapDomain): zmq.Publisher {
    return new zmq.Publisher({ ...this.base(role, domain), sendHighWaterMark: 10_000, noDrop: false });
  }

  subscriber(role: Role, domain?: ZapDomain): zmq.Subscriber {
    return new zmq.Subscriber({ ...this.base(role, domain), receiveHighWaterMark: 100_000, reconnectInterval: 100, reconnectMaxInterval: 1000 });
  }

  push(): zmq.Push {
    return new zmq.Push({ ...this.base('client'), sendHighWaterMark: 10_000, sendTimeout: 0 });
  }

  pull(domain?: ZapDomain): zmq.Pull {
    return new zmq.Pull({ ...this.base('server', domain), receiveHighWaterMark: 100_000 });
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
