/** Publishes this node's heartbeat to every nexus replica at a fixed interval. */
import { loadavg } from 'node:os';
import type * as zmq from 'zeromq';
import { encode, type HeartbeatMessage, type NodeKind } from '../protocol/index.js';
import { closeQuietly, SerialSender, type SocketFactory } from './sockets.js';

export interface HeartbeatOptions {
  nodeId: string;
  kind: NodeKind;
  /** Heartbeat SUB endpoints of every nexus replica. */
  endpoints: readonly string[];
  intervalMs: number;
  sockets: SocketFactory;
  /** Extra fields sampled at each beat (instance count, integrity repairs, a balancer's route digest). */
  sample?: () => Pick<HeartbeatMessage, 'instances' | 'repairs' | 'routeDigest' | 'routeVersion'>;
}

export class HeartbeatPublisher {
  private socket: zmq.Publisher | undefined;
  private sender: SerialSender | undefined;
  private timer: NodeJS.Timeout | undefined;
  private seq = 0;

  constructor(private readonly options: HeartbeatOptions) {}

  start(): void {
    const socket = this.options.sockets.publisher('client');
    for (const endpoint of this.options.endpoints) socket.connect(endpoint);
    this.socket = socket;
    this.sender = new SerialSender(socket);
    this.beat();
    this.timer = setInterval(() => this.beat(), this.options.intervalMs);
  }

  private beat(): void {
    const message: HeartbeatMessage = {
      v: 1, type: 'heartbeat', nodeId: this.options.nodeId, kind: this.options.kind,
      seq: this.seq++, intervalMs: this.options.intervalMs, sentAt: Date.now(),
      load: loadavg()[0] ?? 0, ...(this.options.sample?.() ?? {}),
    };
    const payload = encode(message);
    // With CURVE, the proof of our key goes first, so the nexus knows the beat is really from this node.
    const proof = this.options.sockets.proof(payload);
    void this.sender?.send(proof ? [proof, payload] : [payload]);
  }

  stop(): void {
    clearInterval(this.timer);
    closeQuietly(this.socket);
  }
}
