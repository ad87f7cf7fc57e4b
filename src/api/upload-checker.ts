/**
 * Runs the upload check (archive-check.ts) in a small pool of worker threads, so inflating and walking an
 * archive of up to 100 MiB (512 MiB of files once inflated) never blocks the nexus's event loop, which also serves the ZeroMQ
 * control protocol and heartbeats. Bounded: at most `workers` checks run at once, `maxQueued` wait, and a check
 * over its time budget is stopped (its worker terminated and replaced) with a clear error.
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { PierError, TimeoutError, ValidationError, isErrorCode } from '../core/errors.js';
import { inlineModule } from '../core/inline-module.js';
import type { UploadProcesses, UploadSummary } from './archive-check.js';

/** What the pool sends a worker: the archive's bytes are transferred, not copied. */
export interface CheckRequest {
  id: number;
  bytes: Uint8Array;
  maxArchiveBytes: number;
}

/** A worker not ready this long after its start is given up on (it normally takes ~100 ms; errors come at once). */
const WORKER_START_TIMEOUT_MS = 30_000;

/** The first message of a worker: its modules are loaded. */
export const WORKER_READY = 'ready';

/** A worker's answer; `bytes` is the request's buffer, transferred back. */
export type CheckReply =
  | { id: number; bytes: Uint8Array; summary: UploadSummary; processes: UploadProcesses; error?: undefined }
  | { id: number; bytes: Uint8Array; summary?: undefined; error: { code: string; message: string; details?: Record<string, unknown> | undefined } };

export interface UploadCheckerOptions {
  /** Largest compressed upload (the API's release limit). */
  maxArchiveBytes: number;
  log: Logger;
  /** Checks running at once, one worker thread each. @default 2 */
  workers?: number;
  /** Checks waiting for a free worker; one more is refused (503). @default 8 */
  maxQueued?: number;
  /** Longest a check may run in its worker; then it fails (504) and the worker is replaced. @default 30000 */
  timeBudgetMs?: number;
  /** Heap of each worker; a check that would need more fails instead of growing the nexus. @default 512 */
  workerHeapMb?: number;
}

/** A checked upload: its summary, and its bytes (the same memory, handed back by the worker). */
export interface CheckedUpload {
  summary: UploadSummary;
  /** What the release runs (from its Procfile). */
  processes: UploadProcesses;
  bytes: Buffer;
}

interface Job {
  id: number;
  bytes: Uint8Array;
  resolve: (result: CheckedUpload) => void;
  reject: (err: Error) => void;
  /** Runs from the moment a ready worker takes the job (a thread's start is not the upload's fault). */
  timer?: NodeJS.Timeout;
  slot?: Slot;
}

interface Slot {
  worker: Worker;
  /** Settles when the worker has started (or failed to). */
  online: Promise<void>;
  /** True once the worker has loaded its modules and can take a check. */
  isReady: boolean;
  job?: Job;
}

export class UploadChecker {
  private readonly workers: number;
  private readonly maxQueued: number;
  private readonly timeBudgetMs: number;
  private readonly heapMb: number;
  private readonly log: Logger;
  private readonly slots = new Set<Slot>();
  private readonly queue: Job[] = [];
  private nextId = 1;
  private isClosed = false;

  constructor(private readonly options: UploadCheckerOptions) {
    this.workers = options.workers ?? 2;
    this.maxQueued = options.maxQueued ?? 8;
    this.timeBudgetMs = options.timeBudgetMs ?? 30_000;
    this.heapMb = options.workerHeapMb ?? 512;
    this.log = options.log.child({ component: 'api.upload-checker' });
  }

  /**
   * Starts a worker now rather than with the first upload (it takes ~100 ms, more from TypeScript). Resolves
   * once one is up, or has failed to start (logged; the next upload retries); never rejects.
   */
  warm(): Promise<void> {
    if (this.isClosed) return Promise.resolve();
    this.startWorkers();
    return Promise.race([...this.slots].map((s) => s.online));
  }

  /**
   * Reads the worker's code (its module and everything it imports) into memory now, at the nexus's start, while
   * it may still run as root: a worker started after the nexus dropped root (the first upload, a replacement)
   * loads nothing from a checkout its user may not be able to read. Idempotent.
   */
  prepare(): void {
    workerSource();
  }

  /**
   * Checks an upload off the event loop. `bytes` is moved to the worker and back (zero-copy when it owns its
   * whole buffer, as fastify's body does; copied otherwise): use the returned `bytes`, not the argument, after.
   * @throws the check's PierError (400/413), TimeoutError past the time budget, PIER_NEXUS_UNAVAILABLE when full.
   */
  check(bytes: Buffer): Promise<CheckedUpload> {
    if (this.isClosed) return Promise.reject(new PierError('PIER_NEXUS_UNAVAILABLE', 'nexus is stopping; retry against another nexus'));
    const pending = this.queue.length + [...this.slots].filter((s) => s.job !== undefined).length;
    if (pending >= this.workers + this.maxQueued) {
      return Promise.reject(new PierError('PIER_NEXUS_UNAVAILABLE', `nexus is checking ${pending} uploads already; retry in a few seconds`));
    }
    return new Promise<CheckedUpload>((resolve, reject) => {
      const id = this.nextId++;
      const owned = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer;
      const job: Job = { id, bytes: owned ? bytes : new Uint8Array(bytes), resolve, reject };
      this.queue.push(job);
      this.startWorkers();
      this.dispatch();
    });
  }

  /** Fails queued and running checks, and terminates every worker. */
  async close(): Promise<void> {
    this.isClosed = true;
    const stopping = new PierError('PIER_NEXUS_UNAVAILABLE', 'nexus is stopping; retry against another nexus');
    for (const job of this.queue.splice(0)) this.settle(job, stopping);
    const slots = [...this.slots];
    this.slots.clear();
    for (const slot of slots) if (slot.job) this.settle(slot.job, stopping);
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }

  /** Hands queued checks to idle, ready workers; the rest wait for one to be free (or started). */
  private dispatch(): void {
    while (this.queue.length > 0) {
      const slot = [...this.slots].find((s) => s.isReady && s.job === undefined);
      if (!slot) {
        // Checks overlap: start one more worker (up to `workers`). Meanwhile the queue goes to whichever worker
        // is free first, so a burst of quick checks never waits for a thread's start.
        const isStarting = [...this.slots].some((s) => !s.isReady);
        if (!isStarting && this.slots.size < this.workers) this.spawn();
        return;
      }
      const job = this.queue.shift()!;
      job.slot = slot;
      slot.job = job;
      slot.worker.ref();
      job.timer = setTimeout(() => this.expire(job), this.timeBudgetMs);
      const request: CheckRequest = { id: job.id, bytes: job.bytes, maxArchiveBytes: this.options.maxArchiveBytes };
      try {
        slot.worker.postMessage(request, [job.bytes.buffer as ArrayBuffer]);
      } catch {
        // A buffer Node marked untransferable: send a copy instead (the original stays the caller's).
        job.bytes = new Uint8Array(job.bytes);
        slot.worker.postMessage({ ...request, bytes: job.bytes }, [job.bytes.buffer as ArrayBuffer]);
      }
    }
  }

  /** The first worker starts with the first upload (or `warm`) and stays; more start only as checks overlap. */
  private startWorkers(): void {
    if (this.slots.size === 0) this.spawn();
  }

  private spawn(): Slot {
    const { filename, evaluate } = workerSource();
    const worker = new Worker(filename, { eval: evaluate, resourceLimits: { maxOldGenerationSizeMb: this.heapMb } });
    worker.unref(); // an idle checker never holds the process open
    // Ready once its modules are loaded (it says so), not at 'online': loading is most of a worker's start.
    let markReady = (): void => undefined;
    const online = new Promise<void>((resolve) => {
      markReady = resolve;
      worker.once('exit', () => resolve());
    });
    const slot: Slot = { worker, online, isReady: false };
    this.slots.add(slot);
    const startTimer = setTimeout(() => {
      if (!slot.isReady) this.retire(slot, new PierError('PIER_INTERNAL', 'internal error', { cause: new Error('upload check worker did not start') }));
    }, WORKER_START_TIMEOUT_MS);
    startTimer.unref();
    worker.on('message', (reply: CheckReply | typeof WORKER_READY) => {
      if (reply === WORKER_READY) {
        clearTimeout(startTimer);
        slot.isReady = true;
        markReady();
        this.dispatch();
        return;
      }
      const job = slot.job;
      if (!job || job.id !== reply.id) return;
      slot.job = undefined;
      worker.unref();
      if (reply.error) this.settle(job, rebuildError(reply.error));
      else this.settle(job, undefined, { summary: reply.summary, processes: reply.processes, bytes: Buffer.from(reply.bytes.buffer, reply.bytes.byteOffset, reply.bytes.byteLength) });
      this.dispatch();
    });
    worker.on('error', (err) => {
      this.log.error({ err }, 'upload check worker failed');
      this.retire(slot, new PierError('PIER_INTERNAL', 'internal error', { cause: err }));
    });
    worker.on('exit', (code) => {
      if (this.slots.has(slot)) this.retire(slot, new PierError('PIER_INTERNAL', 'internal error', { cause: new Error(`upload check worker exited with code ${code}`) }));
    });
    return slot;
  }

  /** Forgets a worker (terminating it if it still runs), failing its check with `err`; queued checks go on. */
  private retire(slot: Slot, err: Error): void {
    if (!this.slots.delete(slot)) return;
    if (slot.job) this.settle(slot.job, err);
    void slot.worker.terminate();
    if (this.isClosed) return;
    if (!slot.isReady) {
      // It never started (a broken install?): no retry loop; the next upload tries again. Without any other
      // worker, what waits would wait for nothing: fail it.
      if (this.slots.size === 0) for (const job of this.queue.splice(0)) this.settle(job, err);
      return;
    }
    this.startWorkers(); // a replacement, ready for the next upload
    this.dispatch();
  }

  private expire(job: Job): void {
    const seconds = Math.round(this.timeBudgetMs / 100) / 10;
    const err = new TimeoutError(`checking the archive took more than ${seconds} s and was stopped; upload fewer or smaller files, or retry when the nexus is less busy`);
    this.log.warn({ durationMs: this.timeBudgetMs }, 'upload check over its time budget; worker replaced');
    if (job.slot) this.retire(job.slot, err);
  }

  private settle(job: Job, err: Error | undefined, result?: CheckedUpload): void {
    clearTimeout(job.timer);
    if (job.slot?.job === job) job.slot.job = undefined;
    if (err) job.reject(err);
    else job.resolve(result!);
  }
}

/** A PierError from a worker's reply; anything else is an internal error (its text only goes to the log). */
function rebuildError(error: NonNullable<CheckReply['error']>): PierError {
  const options = error.details === undefined ? {} : { details: error.details };
  if (!isErrorCode(error.code) || error.code === 'PIER_INTERNAL') {
    return new PierError('PIER_INTERNAL', 'internal error', { cause: new Error(error.message) });
  }
  if (error.code === 'PIER_VALIDATION') return new ValidationError(error.message, options);
  return new PierError(error.code, error.message, options);
}

/**
 * The worker module next to this one: `.js` in dist/, inlined into a `data:` URL once (see `prepare`); when this module runs from source (vitest, tsx), the
 * `.ts` file, loaded through tsx's loader (a dev dependency) registered first in the worker.
 */
let inlinedWorker: URL | undefined;
function workerSource(): { filename: string | URL; evaluate: boolean } {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) {
    inlinedWorker ??= inlineModule(new URL('./upload-check-worker.js', here));
    return { filename: inlinedWorker, evaluate: false };
  }
  const worker = new URL('./upload-check-worker.ts', here).href;
  const tsx = import.meta.resolve('tsx/esm/api');
  return { filename: `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(worker)}); });`, evaluate: true };
}
