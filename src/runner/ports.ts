/**
 * Hands out instance ports from the runner's range: never one in use by another instance or bound by anyone, and
 * picked at random, so an app cannot predict (and bind first) the port the next instance will get. Being free
 * when picked proves nothing, though: the instance's listener is proven to be its own before it is used
 * (see listener.ts); a port found squatted is set aside for a while (`quarantine`).
 */
import { randomInt } from 'node:crypto';
import { createServer } from 'node:net';
import { PierError } from '../core/errors.js';

/** How long a squatted port is not handed out again. */
export const QUARANTINE_MS = 10 * 60_000;

export class PortPool {
  private readonly taken = new Set<number>();
  private readonly quarantined = new Map<number, number>();

  /** @param pick random choice in [min, max] (crypto.randomInt by default) */
  constructor(
    private readonly min: number,
    private readonly max: number,
    private readonly host = '127.0.0.1',
    private readonly pick: (min: number, max: number) => number = (lo, hi) => randomInt(lo, hi + 1),
  ) {}

  /** Marks a port as used (an adopted instance's). */
  claim(port: number): void {
    this.taken.add(port);
  }

  release(port: number): void {
    this.taken.delete(port);
  }

  /** Releases a port someone else holds, and keeps it out of use for QUARANTINE_MS. */
  quarantine(port: number, nowMs = Date.now()): void {
    this.taken.delete(port);
    this.quarantined.set(port, nowMs + QUARANTINE_MS);
  }

  /**
   * A free port at random: random tries first, then a walk through the whole range from a random start (so a
   * nearly full range still finds its last free port).
   */
  async allocate(): Promise<number> {
    const size = this.max - this.min + 1;
    const now = Date.now();
    for (const [port, until] of this.quarantined) if (until <= now) this.quarantined.delete(port);
    const isCandidate = (port: number): boolean => !this.taken.has(port) && !this.quarantined.has(port);
    for (let i = 0; i < Math.min(8, size); i++) {
      const port = this.pick(this.min, this.max);
      if (isCandidate(port) && (await this.claimIfFree(port))) return port;
    }
    const start = this.pick(this.min, this.max) - this.min;
    for (let i = 0; i < size; i++) {
      const port = this.min + ((start + i) % size);
      if (isCandidate(port) && (await this.claimIfFree(port))) return port;
    }
    throw new PierError('PIER_ILLEGAL_STATE', `no free port in ${this.min}-${this.max}; widen runner.portMin..portMax or stop some instances`);
  }

  private async claimIfFree(port: number): Promise<boolean> {
    if (!(await isFree(this.host, port))) return false;
    if (this.taken.has(port)) return false; // another allocation won the port while we checked
    this.taken.add(port);
    return true;
  }
}

function isFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}
