/** Small timing helpers: sleep, deadlines, polling. */
import { TimeoutError } from './errors.js';

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

export interface WaitForOptions {
  /** Give up after this long. @default 5000 */
  timeoutMs?: number;
  /** Poll interval. @default 50 */
  intervalMs?: number;
  /** Names what is awaited, for the timeout message. */
  name?: string;
}

/** Polls `check` until it returns a value other than undefined/false, or times out. */
export async function waitFor<T>(check: () => T | Promise<T>, options: WaitForOptions = {}): Promise<Exclude<T, false | undefined>> {
  const { timeoutMs = 5000, intervalMs = 50, name = 'condition' } = options;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value as Exclude<T, false | undefined>;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      throw new TimeoutError(`${name} timed out after ${timeoutMs} ms`, { cause: lastError });
    }
    await sleep(intervalMs);
  }
}
