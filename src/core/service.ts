/** The lifecycle every daemon follows: start once, stop idempotently, tear down in reverse order. */
import type { Logger } from 'pino';
import { IllegalStateError } from './errors.js';

export type ServiceState = 'idle' | 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';

export interface Service {
  start(): Promise<void>;
  stop(): Promise<void>;
}

type Cleanup = { name: string; run: () => unknown };

/**
 * Tracks a service's state and the cleanups it registered while starting, so stop() (or a failed start)
 * can release everything in reverse order, running every step even when an earlier one throws.
 */
export class Lifecycle {
  state: ServiceState = 'idle';
  private readonly cleanups: Cleanup[] = [];
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly what: string,
    private readonly log: Logger,
  ) {}

  /** Registers a cleanup to run at stop, in reverse registration order. */
  defer(name: string, run: () => unknown): void {
    this.cleanups.push({ name, run });
  }

  /** Runs `body` as the start sequence; on failure releases what it acquired and rethrows. */
  async start(body: () => Promise<void>): Promise<void> {
    if (this.state !== 'idle') throw new IllegalStateError(`${this.what} cannot start: it is ${this.state}`);
    this.state = 'starting';
    try {
      await body();
      this.state = 'running';
    } catch (err) {
      await this.runCleanups();
      this.state = 'failed';
      throw err;
    }
  }

  /** Idempotent stop: the first call runs the cleanups, later calls get the same promise. */
  stop(before?: () => Promise<void>): Promise<void> {
    if (this.stopping) return this.stopping;
    if (this.state === 'idle') {
      this.state = 'stopped';
      this.stopping = Promise.resolve();
      return this.stopping;
    }
    this.state = 'stopping';
    this.stopping = (async () => {
      if (before) {
        try {
          await before();
        } catch (err) {
          this.log.warn({ err }, 'drain failed');
        }
      }
      await this.runCleanups();
      this.state = 'stopped';
    })();
    return this.stopping;
  }

  get isRunning(): boolean {
    return this.state === 'running';
  }

  private async runCleanups(): Promise<void> {
    while (this.cleanups.length > 0) {
      const step = this.cleanups.pop()!;
      try {
        await step.run();
      } catch (err) {
        this.log.warn({ err, step: step.name }, 'cleanup step failed');
      }
    }
  }
}

/** Stops services in the given order, logging (not throwing) each failure. */
export async function stopAll(services: Service[], log: Logger): Promise<void> {
  for (const service of services) {
    try {
      await service.stop();
    } catch (err) {
      log.warn({ err }, 'service stop failed');
    }
  }
}
