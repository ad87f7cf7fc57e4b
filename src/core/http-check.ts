/** One HTTP health check (GET a path, judge the status), shared by runners (instances) and balancers (hostnames). */
import { request } from 'node:http';

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
export function probeCheck(
  host: string, port: number, check: { path: string; status: number | null; timeoutMs: number }, hostHeader?: string, headers: Record<string, string> = {},
): Promise<CheckOutcome> {
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
    const req = request({ host, port, path: check.path, method: 'GET', agent: false, headers: { ...headers, host: hostHeader ?? `${host}:${port}`, 'user-agent': 'pier-check' } }, (res) => {
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
