/**
 * The nexus end of one-off sessions: a ROUTER every runner keeps a DEALER to (ZAP domain 'pier.sessions': runner
 * keys only). Runners say hello every heartbeat interval, signed with their key (peer-proof.ts), so the hub knows
 * which connection is which runner and whether it is alive; a session's messages are accepted only from the
 * runner it was sent to. A runner that stops saying hello ends its sessions with one clear line.
 */
import type * as zmq from 'zeromq';
import type pg from 'pg';
import type { Logger } from 'pino';
import { endOneOffsGone, markOneOffExited, markOneOffRunning } from '../db/index.js';
import { decodeToNexus, encode, type OneOffSpec, type ToNexusMessage, type ToRunnerMessage } from '../protocol/index.js';
import { closeQuietly, isClosedError, SerialSender, type KeyIdentity, type ProofVerifier } from '../transport/index.js';

/** What the relay of one session hears from its runner. */
export interface SessionSink {
  onStarted(): void;
  onOutput(stream: 1 | 2, data: Uint8Array): void;
  /** Input bytes the process took (the client may send as many more). */
  onInputCredit(bytes: number): void;
  onExit(exit: { code: number | null; signal: string | null; error?: string; isLost?: boolean }): void;
}

interface RunnerLink {
  nodeId: string;
  routingId: Buffer;
  lastHelloAt: number;
  lastReconcileAt: number;
}

interface Open {
  runnerId: string;
  sink: SessionSink | undefined;
}

export interface SessionsHubOptions {
  router: zmq.Router;
  nexusId: string;
  pool: pg.Pool;
  /** Checks hellos' proof frames (with CURVE); without it every hello is believed. */
  verifier?: ProofVerifier<KeyIdentity> | undefined;
  /** A runner silent this long is gone. */
  deadAfterMs: number;
  maxMessageBytes: number;
  log: Logger;
}

/** How often a runner's list of running sessions is compared with the database. */
const RECONCILE_MS = 5000;

export class SessionsHub {
  readonly stats = { received: 0, invalid: 0, refused: 0 };
  private readonly runners = new Map<string, RunnerLink>();
  private readonly byRouting = new Map<string, RunnerLink>();
  private readonly open = new Map<string, Open>();
  private readonly sender: SerialSender;
  private readonly log: Logger;
  private loop: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: SessionsHubOptions) {
    this.sender = new SerialSender(options.router);
    this.log = options.log.child({ component: 'nexus.sessions' });
  }

  start(): void {
    this.loop = this.receive();
    this.timer = setInterval(() => this.sweep(), Math.max(100, Math.floor(this.options.deadAfterMs / 3)));
  }

  /** A live runner for a new one-off (the one running fewest sessions from here), or undefined when none is. */
  pickRunner(): string | undefined {
    const now = Date.now();
    const counts = new Map<string, number>();
    for (const s of this.open.values()) counts.set(s.runnerId, (counts.get(s.runnerId) ?? 0) + 1);
    const live = [...this.runners.values()].filter((r) => now - r.lastHelloAt <= this.options.deadAfterMs);
    live.sort((a, b) => (counts.get(a.nodeId) ?? 0) - (counts.get(b.nodeId) ?? 0) || (Math.random() - 0.5));
    return live[0]?.nodeId;
  }

  /** Sends a one-off to `runnerId`; `sink` (none for a detached one) hears its output and end. */
  launch(session: string, runnerId: string, spec: OneOffSpec, sink: SessionSink | undefined): void {
    this.open.set(session, { runnerId, sink });
    this.toRunner(runnerId, { v: 1, type: 'session.start', session, spec });
  }

  /** Sends a session message to the runner of `session` (input, resize, signal, credit, hang-up). */
  send(session: string, message: Exclude<ToRunnerMessage, { type: 'session.start' | 'session.welcome' }>): void {
    const open = this.open.get(session);
    if (open) this.toRunner(open.runnerId, message);
  }

  /** The client of `session` went away: the runner hangs up; the end is still recorded when it comes. */
  detachClient(session: string): void {
    const open = this.open.get(session);
    if (!open) return;
    open.sink = undefined;
    this.toRunner(open.runnerId, { v: 1, type: 'session.hangup', session });
  }

  /** `pier ps:stop`: asks `runnerId` to stop `session` (started by any nexus). False when that runner is not connected here. */
  stop(runnerId: string, session: string): boolean {
    const runner = this.runners.get(runnerId);
    if (!runner || Date.now() - runner.lastHelloAt > this.options.deadAfterMs) return false;
    this.toRunner(runnerId, { v: 1, type: 'session.stop', session });
    return true;
  }

  private toRunner(runnerId: string, message: ToRunnerMessage): void {
    const runner = this.runners.get(runnerId);
    if (!runner) return;
    void this.sender.send([runner.routingId, encode(message)]);
  }

  private async receive(): Promise<void> {
    try {
      for await (const frames of this.options.router) {
        this.stats.received += 1;
        this.dispatch(frames);
      }
    } catch (err) {
      if (!isClosedError(err) && !this.options.router.closed) this.log.error({ err }, 'sessions loop failed');
    }
  }

  private dispatch(frames: Buffer[]): void {
    const routingId = frames[0];
    const payload = frames[frames.length - 1];
    if (!routingId || !payload || frames.length < 2 || frames.length > 3) {
      this.stats.invalid += 1;
      return;
    }
    let message: ToNexusMessage;
    try {
      message = decodeToNexus(payload, this.options.maxMessageBytes);
    } catch (err) {
      this.stats.invalid += 1;
      this.log.warn({ peer: routingId.toString('hex'), err: (err as Error).message }, 'invalid session message');
      return;
    }
    const key = routingId.toString('hex');
    if (message.type === 'session.hello') {
      const identity = this.options.verifier?.verify(frames.length === 3 ? frames[1] : undefined, payload);
      if (this.options.verifier && (identity?.role !== 'runner' || identity.name !== message.nodeId)) {
        this.stats.refused += 1;
        this.log.warn({ peer: key, nodeId: message.nodeId }, 'session hello refused: not signed by that runner');
        return;
      }
      this.hello(key, routingId, message.nodeId, message.running);
      return;
    }
    const runner = this.byRouting.get(key);
    const open = this.open.get(message.session);
    if (!runner) return;
    if (!open || open.runnerId !== runner.nodeId) {
      // A detached one-off's end (its nexus may be another), or a session this replica no longer holds.
      if (message.type === 'session.exit' && !open) void markOneOffExited(this.options.pool, message.session, message.code).catch(() => undefined);
      return;
    }
    switch (message.type) {
      case 'session.started':
        void markOneOffRunning(this.options.pool, message.session).catch(() => undefined);
        open.sink?.onStarted();
        break;
      case 'session.out':
        open.sink?.onOutput(message.stream, message.data);
        break;
      case 'session.credit':
        open.sink?.onInputCredit(message.bytes);
        break;
      case 'session.exit':
        this.open.delete(message.session);
        void markOneOffExited(this.options.pool, message.session, message.code).catch(() => undefined);
        open.sink?.onExit({ code: message.code, signal: message.signal, ...(message.error ? { error: message.error } : {}) });
        break;
    }
  }

  private hello(key: string, routingId: Buffer, nodeId: string, running: string[]): void {
    let runner = this.runners.get(nodeId);
    if (!runner || !runner.routingId.equals(routingId)) {
      if (runner) {
        // A new connection from the same runner: it restarted, and nothing of its sessions survived.
        this.byRouting.delete(runner.routingId.toString('hex'));
        this.endSessionsOf(nodeId, `runner '${nodeId}' restarted mid-session; the one-off's end is unknown`);
      }
      runner = { nodeId, routingId, lastHelloAt: 0, lastReconcileAt: Date.now() };
      this.runners.set(nodeId, runner);
      this.byRouting.set(key, runner);
      this.log.info({ runnerId: nodeId }, 'runner joined the sessions socket');
    }
    runner.lastHelloAt = Date.now();
    void this.sender.send([routingId, encode({ v: 1, type: 'session.welcome', nexusId: this.options.nexusId })]);
    if (Date.now() - runner.lastReconcileAt >= RECONCILE_MS) {
      runner.lastReconcileAt = Date.now();
      void endOneOffsGone(this.options.pool, nodeId, running, RECONCILE_MS).catch(() => undefined);
    }
  }

  private endSessionsOf(runnerId: string, error: string): void {
    for (const [session, open] of this.open) {
      if (open.runnerId !== runnerId) continue;
      this.open.delete(session);
      void markOneOffExited(this.options.pool, session, null).catch(() => undefined);
      open.sink?.onExit({ code: null, signal: null, isLost: true, error });
    }
  }

  /** Ends the sessions of runners that stopped saying hello. */
  private sweep(): void {
    const now = Date.now();
    for (const [session, open] of this.open) {
      const runner = this.runners.get(open.runnerId);
      if (runner && now - runner.lastHelloAt <= this.options.deadAfterMs) continue;
      // A session sent to a runner that never said hello here waits one dead-time from its start.
      if (!runner) continue;
      this.open.delete(session);
      void markOneOffExited(this.options.pool, session, null).catch(() => undefined);
      open.sink?.onExit({ code: null, signal: null, isLost: true, error: `runner '${open.runnerId}' was lost mid-session; the one-off's end is unknown` });
    }
  }

  /** Ends every open session (the nexus is stopping) and closes the socket. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    for (const [session, open] of this.open) {
      this.toRunner(open.runnerId, { v: 1, type: 'session.hangup', session });
      open.sink?.onExit({ code: null, signal: null, isLost: true, error: `nexus '${this.options.nexusId}' is shutting down; the one-off was hung up` });
    }
    this.open.clear();
    await Promise.race([this.sender.drain(), new Promise((resolve) => setTimeout(resolve, 300))]);
    closeQuietly(this.options.router);
    await this.loop;
  }
}
