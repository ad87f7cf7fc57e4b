/**
 * What the collector does with each frame it pulls: intake messages (LogMessage, AccessMessage) become lines in
 * the app's log (and live tail), access records also feed the request aggregates.
 * Nothing a peer sends can stop a loop: bad frames are counted and dropped, with a rate-limited warning.
 */
import type * as zmq from 'zeromq';
import type { Logger } from 'pino';
import { decodeIntake, type AccessMessage, type LogMessage, type StatsIntakeMessage } from '../protocol/index.js';
import type { RequestAggregator } from './aggregator.js';
import type { ReleaseWindows } from './release-window.js';
import { formatAccessLine, formatLogLine, splitLogText } from './format.js';
import type { LogStore } from './log-store.js';

export interface CollectorOptions {
  store: LogStore;
  aggregator: RequestAggregator;
  /** Recent numbers per release, for the deploy verdict. */
  releases?: ReleaseWindows;
  /** Write a `router[...]` line per public request into the app's log. */
  routerLogs: boolean;
  maxMessageBytes: number;
  log: Logger;
  /** True for lines and records of a destroyed app (stamped before it was destroyed): they are dropped. @default none */
  isPurged?: (app: string, atMs: number) => boolean;
}

/** Counters an operator (or a test) can read. */
export interface CollectorStats {
  /** Intake frames received, and those dropped as invalid (not MessagePack, unknown type, bad field, extra frames). */
  received: number;
  invalid: number;
  logs: number;
  access: number;
  /** Access records for no app (the Host matched nothing): counted, not stored. */
  unrouted: number;
}

export class Collector {
  readonly stats: CollectorStats = { received: 0, invalid: 0, logs: 0, access: 0, unrouted: 0 };
  private readonly log: Logger;
  private lastWarnAt = 0;

  constructor(private readonly options: CollectorOptions) {
    this.log = options.log.child({ component: 'stats.collector' });
  }

  /** Reads the intake PULL until it is closed. */
  async consumeIntake(socket: zmq.Pull): Promise<void> {
    try {
      for await (const frames of socket) this.intake(frames);
    } catch (err) {
      if (!socket.closed) this.log.error({ err }, 'intake loop failed');
    }
  }

  /** Handles one intake message (frames as received). */
  intake(frames: Buffer[]): void {
    this.stats.received += 1;
    let message: StatsIntakeMessage;
    try {
      if (frames.length !== 1) throw new Error(`expected one frame, got ${frames.length}`);
      message = decodeIntake(frames[0]!, this.options.maxMessageBytes);
    } catch (err) {
      this.stats.invalid += 1;
      this.warn('invalid intake message dropped', (err as Error).message);
      return;
    }
    if (message.type === 'log') this.onLog(message);
    else this.onAccess(message);
  }

  private onLog(message: LogMessage): void {
    this.stats.logs += 1;
    if (this.options.isPurged?.(message.app, message.at)) return;
    const lines = splitLogText(message.line).map((text) => formatLogLine(message.at, message.source, message.origin, text));
    if (lines.length > 0) this.options.store.append(message.app, lines);
  }

  private onAccess(message: AccessMessage): void {
    this.stats.access += 1;
    const { app } = message;
    if (app === null) {
      this.stats.unrouted += 1;
      return;
    }
    if (this.options.isPurged?.(app, message.at)) return;
    this.options.aggregator.record({ ...message, app });
    this.options.releases?.record({ ...message, app });
    if (this.options.routerLogs) this.options.store.append(app, [formatAccessLine(message)]);
  }

  private warn(what: string, reason: string): void {
    const now = Date.now();
    if (now - this.lastWarnAt < 10_000) return;
    this.lastWarnAt = now;
    this.log.warn({ reason, invalid: this.stats.invalid }, what);
  }
}
