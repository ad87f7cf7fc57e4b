/**
 * The runner's side of a singleton process type's lease (see db/singletons.ts): renews it through the control
 * protocol every quarter of the lease, and declares it lost — so the caller stops the process — once half the lease
 * has passed since the last renewal that succeeded was *sent*, or at once when the nexus answers PIER_FENCED.
 *
 * Time is measured on this runner's own monotonic clock from the moment each renewal was sent: the nexus extended
 * the lease after that moment, so the runner's idea of the expiry is never later than the nexus's, whatever the
 * clocks say. The caller has the other half of the lease to get the process gone (SIGTERM, then SIGKILL by
 * `mustBeGoneInMs`); the scheduler places a successor only after the lease ran out.
 */
import type { Logger } from 'pino';
import { PierError, toPierError } from '../core/errors.js';
import type { ControlClient } from '../transport/index.js';

export interface SingletonLeaseOptions {
  control: Pick<ControlClient, 'call'>;
  nodeId: string;
  instanceId: string;
  /** Called once when the lease is lost (not renewed in time, or refused). */
  onLost: (reason: string) => void;
  log: Logger;
}

const now = (): number => performance.now();

export class SingletonLease {
  private leaseMs = 0;
  private lastOkSentAt = 0;
  private renewTimer: NodeJS.Timeout | undefined;
  private watchTimer: NodeJS.Timeout | undefined;
  private isRenewing = false;
  private lostReason: string | undefined;
  private isStopped = false;
  private readonly log: Logger;

  constructor(private readonly options: SingletonLeaseOptions) {
    this.log = options.log.child({ component: 'runner.singleton', instance: options.instanceId });
  }

  /** Why it was lost, once it was. */
  get lost(): string | undefined {
    return this.lostReason;
  }

  /** Time left before the process must be gone (three quarters of the lease after the last good renewal was sent). */
  get mustBeGoneInMs(): number {
    return Math.max(0, this.lastOkSentAt + (this.leaseMs * 3) / 4 - now());
  }

  /** First renewal (the scheduler took the lease when it placed the instance), then keeps renewing. @throws PierError when refused */
  async hold(): Promise<void> {
    const sentAt = now();
    const reply = await this.options.control.call('singleton.renew', { nodeId: this.options.nodeId, instanceId: this.options.instanceId });
    this.leaseMs = reply.leaseMs;
    this.lastOkSentAt = sentAt;
    this.renewTimer = setInterval(() => void this.renew(), Math.max(50, reply.leaseMs / 4));
    this.watchTimer = setInterval(() => this.check(), Math.max(20, Math.min(100, reply.leaseMs / 20)));
    this.log.info({ leaseMs: reply.leaseMs, token: reply.token }, 'singleton lease held');
  }

  private async renew(): Promise<void> {
    if (this.isRenewing || this.isStopped || this.lostReason) return;
    this.isRenewing = true;
    const sentAt = now();
    try {
      await this.options.control.call('singleton.renew', { nodeId: this.options.nodeId, instanceId: this.options.instanceId });
      if (!this.lostReason) this.lastOkSentAt = sentAt;
    } catch (err) {
      const error = toPierError(err);
      if (error.code === 'PIER_FENCED') this.lose(error.message);
      else this.log.warn({ err: error.message }, 'cannot renew the singleton lease; retrying');
    } finally {
      this.isRenewing = false;
    }
  }

  private check(): void {
    if (this.isStopped || this.lostReason) return;
    const sinceMs = now() - this.lastOkSentAt;
    if (sinceMs > this.leaseMs / 2) this.lose(`not renewed for ${Math.round(sinceMs)} ms of a ${this.leaseMs} ms lease`);
  }

  private lose(reason: string): void {
    if (this.lostReason) return;
    this.lostReason = reason;
    this.stop();
    this.log.warn({ reason }, 'singleton lease lost; stopping the process');
    this.options.onLost(reason);
  }

  /** Stops renewing (the instance is being stopped; its lease is let go when the nexus hears it stopped). */
  stop(): void {
    this.isStopped = true;
    clearInterval(this.renewTimer);
    clearInterval(this.watchTimer);
  }
}

/** The error a singleton instance fails with when its lease is lost. */
export function lostLeaseError(reason: string): PierError {
  return new PierError('PIER_FENCED', `lost its singleton lease (${reason}); stopped before the lease ran out`);
}
