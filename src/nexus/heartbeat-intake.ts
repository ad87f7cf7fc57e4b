/**
 * Receives node heartbeats on the nexus SUB socket. Last-seen times stay in memory and are written to the
 * nodes table in one batched statement per flush (every max(interval, 250 ms)), so 1,000 nodes at 2 Hz cost two
 * UPDATEs a second, not 2,000. Times of nodes silent for an hour are forgotten, so made-up ids cannot pile up.
 */
import type * as zmq from 'zeromq';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { NodeLiveness } from '../core/liveness.js';
import { recordHeartbeats } from '../db/index.js';
import { decode, HeartbeatMessage } from '../protocol/index.js';
import { isAdmitted, type KeyIdentity, type ProofVerifier } from '../transport/index.js';

/** A node silent this long is dropped from memory (the stored time remains). */
const FORGET_AFTER_MS = 3_600_000;

export class HeartbeatIntake {
  private lastPruneAt = 0;
  readonly stats = { received: 0, invalid: 0 };
  private pending = new Map<string, number>();
  private loop: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly socket: zmq.Subscriber,
    /** Where each beat goes: the one liveness rule reads it. */
    readonly liveness: NodeLiveness,
    private readonly pool: pg.Pool,
    private readonly flushMs: number,
    private readonly maxBytes: number,
    private readonly log: Logger,
    /** With CURVE: each beat must come with the proof of a node key named for the node it is about. */
    private readonly verifier?: ProofVerifier<KeyIdentity>,
  ) {}

  /** Node id → time (ms) of the newest heartbeat received. */
  get lastSeen(): ReadonlyMap<string, number> {
    return this.liveness.lastSeen;
  }

  /** Called with each valid beat (after liveness recorded it), e.g. for the balancers' route digests. */
  onBeat: ((beat: HeartbeatMessage) => void) | undefined;

  start(): void {
    this.socket.subscribe();
    this.loop = this.receive();
    this.timer = setInterval(() => void this.flush(), this.flushMs);
  }

  private async receive(): Promise<void> {
    try {
      for await (const frames of this.socket) {
        this.stats.received += 1;
        try {
          const payload = frames[frames.length - 1] ?? Buffer.alloc(0);
          const beat = decode(payload, HeartbeatMessage, this.maxBytes);
          if (this.verifier) {
            const sender = frames.length === 2 ? this.verifier.verify(frames[0], payload) : undefined;
            if (!sender || !isAdmitted('pier.heartbeats', sender.role) || sender.name !== beat.nodeId) {
              throw new Error(`heartbeat for '${beat.nodeId}' not signed by that node's key`);
            }
          }
          const now = Date.now();
          this.liveness.record(beat.nodeId, { load: beat.load, instances: beat.instances, repairs: beat.repairs }, now);
          this.pending.set(beat.nodeId, now);
          this.onBeat?.(beat);
        } catch (err) {
          this.stats.invalid += 1;
          this.log.debug({ err: (err as Error).message }, 'invalid heartbeat dropped');
        }
      }
    } catch (err) {
      if (!this.socket.closed) this.log.error({ err }, 'heartbeat loop failed');
    }
  }

  async flush(): Promise<void> {
    const now = Date.now();
    if (now - this.lastPruneAt > FORGET_AFTER_MS / 60) {
      this.lastPruneAt = now;
      this.liveness.forget(FORGET_AFTER_MS, now);
    }
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    try {
      await recordHeartbeats(this.pool, batch);
    } catch (err) {
      // Keep the times for the next flush; a newer beat for the same node replaces its entry.
      for (const [id, at] of batch) if (!this.pending.has(id)) this.pending.set(id, at);
      this.log.warn({ err: (err as Error).message }, 'cannot record heartbeats; will retry');
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.loop;
    await this.flush();
  }
}
