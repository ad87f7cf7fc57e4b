/** HTTP probes of a new instance: wait until it answers at all, then warm it up with a few requests. */
import { Agent, request } from 'node:http';
import { TimeoutError } from '../core/errors.js';
import { sleep } from '../core/wait.js';

export interface ProbeOptions {
  /** Give up after this long. @default 30000 */
  timeoutMs?: number;
  /** Path requested. @default '/' */
  path?: string;
  /** Host header sent (apps that check it, like Django's ALLOWED_HOSTS, answer 400 to others, which still counts as up). @default 'host:port' */
  hostHeader?: string;
  /** Pause between attempts. @default 100 */
  intervalMs?: number;
  /** Longest wait for one attempt's response. @default 5000 */
  attemptTimeoutMs?: number;
  /** Stops waiting early (the instance was removed meanwhile). */
  signal?: AbortSignal;
  /**
   * Runs before every attempt: false skips it (nothing to talk to yet), a throw ends the wait with that error.
   * The runner proves here that the listener is the instance's own before a request is sent. @default none
   */
  beforeAttempt?: () => Promise<boolean>;
}

/** One answered request. */
export interface ProbeResult {
  status: number;
  durationMs: number;
}

/**
 * Resolves once `host:port` answers an HTTP request with any status (a 500 from a running app is "up"; the
 * app's health is judged elsewhere). Refused, reset and timed-out attempts are retried.
 * @throws TimeoutError naming the address and the last failure.
 */
export async function waitForHttp(host: string, port: number, options: ProbeOptions = {}): Promise<ProbeResult> {
  const { timeoutMs = 30_000, intervalMs = 100, signal } = options;
  const deadline = Date.now() + timeoutMs;
  let lastError = 'no attempt made';
  for (;;) {
    signal?.throwIfAborted();
    const attemptMs = Math.max(1, Math.min(options.attemptTimeoutMs ?? 5000, deadline - Date.now()));
    if (!options.beforeAttempt || (await options.beforeAttempt())) {
      try {
        return await httpGet(host, port, { ...options, attemptTimeoutMs: attemptMs }, undefined);
      } catch (err) {
        lastError = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      }
    } else {
      lastError = 'no listener proven yet';
    }
    if (Date.now() + intervalMs > deadline) {
      throw new TimeoutError(`${host}:${port} did not answer HTTP within ${timeoutMs} ms (last: ${lastError})`, {
        details: { host, port },
      });
    }
    await sleep(intervalMs, signal);
  }
}

/**
 * Sends `count` GET requests one after another over one keep-alive connection (as the balancer will), so
 * lazy imports and caches are warm before real traffic. A failed request throws.
 */
export async function warmUp(host: string, port: number, count: number, options: ProbeOptions = {}): Promise<ProbeResult[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const results: ProbeResult[] = [];
    for (let i = 0; i < count; i++) results.push(await httpGet(host, port, options, agent));
    return results;
  } finally {
    agent.destroy();
  }
}

function httpGet(host: string, port: number, options: ProbeOptions, agent: Agent | undefined): Promise<ProbeResult> {
  const started = performance.now();
  const timeoutMs = options.attemptTimeoutMs ?? 5000;
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host,
        port,
        path: options.path ?? '/',
        method: 'GET',
        agent: agent ?? false,
        headers: { host: options.hostHeader ?? `${host}:${port}`, 'user-agent': 'pier-probe' },
        signal: options.signal,
      },
      (res) => {
        res.resume(); // the body is not needed, but must be read for the connection to be reused
        res.once('end', () => resolve({ status: res.statusCode ?? 0, durationMs: performance.now() - started }));
        res.once('error', reject);
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new TimeoutError(`no response within ${timeoutMs} ms`)));
    req.once('error', reject);
    req.end();
  });
}


export { probeCheck, type CheckOutcome } from '../core/http-check.js';
