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

/** What one probe of an instance's check found. */
export interface CheckOutcome {
  ok: boolean;
  /** Status answered; null when nothing answered in time. */
  status: number | null;
  latencyMs: number;
  /** One line saying why it failed (null when ok), e.g. "check GET /health answered 500 (expected 200): oops". */
  error: string | null;
}

/** Longest part of a failing answer's body quoted in the error. */
const QUOTED_BODY_BYTES = 200;

/**
 * Sends the check's GET to `host:port` once and judges the answer: the expected status (or any below 500 when the
 * check names none) within its time-out. Never throws.
 */
export function probeCheck(host: string, port: number, check: { path: string; status: number | null; timeoutMs: number }, hostHeader?: string): Promise<CheckOutcome> {
  const started = performance.now();
  const expected = check.status === null ? 'below 500' : String(check.status);
  const what = `check GET ${check.path}`;
  return new Promise((resolve) => {
    let isDone = false;
    const finish = (outcome: CheckOutcome): void => {
      if (isDone) return;
      isDone = true;
      clearTimeout(timer);
      req.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(() => finish({ ok: false, status: null, latencyMs: performance.now() - started, error: `${what} got no answer within ${check.timeoutMs} ms` }), check.timeoutMs);
    const req = request({ host, port, path: check.path, method: 'GET', agent: false, headers: { host: hostHeader ?? `${host}:${port}`, 'user-agent': 'pier-check' } }, (res) => {
      const status = res.statusCode ?? 0;
      const passes = check.status === null ? status < 500 : status === check.status;
      const chunks: Buffer[] = [];
      let size = 0;
      const done = (): void => {
        const latencyMs = performance.now() - started;
        if (passes) return finish({ ok: true, status, latencyMs, error: null });
        const body = Buffer.concat(chunks).subarray(0, QUOTED_BODY_BYTES).toString('utf8').replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
        finish({ ok: false, status, latencyMs, error: `${what} answered ${status} (expected ${expected})${body ? `: ${body}` : ''}` });
      };
      res.on('data', (chunk: Buffer) => {
        if (size < QUOTED_BODY_BYTES) chunks.push(chunk);
        size += chunk.length;
        if (size >= QUOTED_BODY_BYTES) done(); // enough to quote: no need to read a large body to its end
      });
      res.once('end', done);
      res.once('error', done);
    });
    req.once('error', (err: NodeJS.ErrnoException) => finish({ ok: false, status: null, latencyMs: performance.now() - started, error: `${what} failed: ${err.code ?? err.message}` }));
    req.end();
  });
}
