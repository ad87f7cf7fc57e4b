/**
 * The upload checker runs the archive check in real worker threads: the event loop stays free while a worst-case
 * archive is inflated, a check over its time budget is stopped, and the pool refuses work beyond its bounds.
 */
import { createHash } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { inspectArchive } from '../../src/archive/index.js';
import { PierError, TimeoutError, ValidationError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/logger.js';
import { UploadChecker, type UploadCheckerOptions } from '../../src/api/upload-checker.js';
import { fileHeader, rawTar, tarGz, zeroBomb } from '../archive/fixtures.js';

const APP = { name: 'wsgi.py', data: 'application = None\n' };
const MiB = 1024 * 1024;

/** One pool for the tests that need no special bounds (a worker started from TypeScript takes ~300 ms). */
const shared = new UploadChecker({ maxArchiveBytes: 100 * MiB, log: silentLogger() });
afterAll(() => shared.close());

function checker(options: Partial<UploadCheckerOptions> = {}): UploadChecker {
  const c = new UploadChecker({ maxArchiveBytes: 100 * MiB, log: silentLogger(), ...options });
  onTestFinished(() => c.close());
  return c;
}

/** A valid release whose check inflates `mebibytes` MiB (one file of zeros): seconds of CPU, no real content. */
function slowArchive(mebibytes: number): Buffer {
  const head = gzipSync(Buffer.concat([fileHeader('wsgi.py', 0), fileHeader('zeros.bin', mebibytes * MiB)]));
  return Buffer.concat([head, zeroBomb(mebibytes), gzipSync(Buffer.alloc(1024))]);
}

/** A check at its worst: 10,000 entries with 800-byte pax names (JS work per header), then 128 MiB to inflate. */
function worstCase(): Buffer {
  const long = `${'x'.repeat(200)}/${'y'.repeat(200)}/${'z'.repeat(200)}/${'w'.repeat(200)}`;
  const entries = [APP, ...Array.from({ length: 10_000 }, (_, i) => ({ name: `d${i % 100}/${long}/f${i}`, data: '' }))];
  const head = gzipSync(Buffer.concat([rawTar(entries, { end: false }), fileHeader('zeros.bin', 128 * MiB)]));
  return Buffer.concat([head, zeroBomb(128), gzipSync(Buffer.alloc(1024))]);
}

const sha = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

describe('UploadChecker', () => {
  it('checks an upload in a worker and hands back the same bytes', async () => {
    const bytes = tarGz([APP, { name: 'app/views.py', data: 'x = 1\n' }]);
    const before = sha(bytes);
    const { summary, bytes: back } = await shared.check(bytes);
    expect(summary).toEqual({ files: 2, totalBytes: 25, hasReleasePhase: false });
    expect(sha(back)).toBe(before);
  });

  it('reads the Procfile: a release: line means a release phase; a line with no command is refused before anything is stored', async () => {
    const procfile = (data: string) => tarGz([APP, { name: 'Procfile', data }]);
    expect((await shared.check(procfile('web: wsgi:application\nrelease: python manage.py migrate\n'))).summary.hasReleasePhase).toBe(true);
    expect((await shared.check(procfile('web: wsgi:application\nbuild: make\n'))).summary.hasReleasePhase).toBe(false);
    await expect(shared.check(procfile('web: wsgi:application\nrelease:\n'))).rejects.toMatchObject({
      code: 'PIER_VALIDATION', message: "Procfile line 2: 'release:' has no command",
    });
  });

  it('copies a buffer it does not own whole, leaving the caller\'s intact', async () => {
    const archive = tarGz([APP]);
    const slab = Buffer.concat([Buffer.from('prefix'), archive]);
    const view = slab.subarray(6);
    const { bytes } = await shared.check(view);
    expect(sha(bytes)).toBe(sha(archive));
    expect(sha(view)).toBe(sha(archive));
  });

  it('answers a rejected archive with the same one-line error as the inline check', async () => {
    const deep = tarGz([APP, { name: `${'a/'.repeat(20_000)}x.py`, data: 'x' }]);
    const err = await shared.check(deep).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).message).toMatch(/^archive entry 'a\/a\/.*…' is 40004 bytes long, over the 1024-byte limit for a path; /);
    const missing = await shared.check(tarGz([{ name: 'app.py', data: 'x' }])).catch((e: unknown) => e);
    expect((missing as Error).message).toBe("release has no wsgi.py and no Procfile at its root; add one (see examples/hello)");
    const tooBig = await checker({ maxArchiveBytes: 100 }).check(tarGz([APP, { name: 'b', data: 'b'.repeat(500) }])).catch((e: unknown) => e);
    expect((tooBig as PierError).code).toBe('PIER_TOO_LARGE');
  });

  it('keeps the event loop free while a worst-case archive is checked', async () => {
    const bytes = worstCase();
    await shared.warm(); // measure the check, not the thread's start
    // Event-loop utilization: the main thread's own busy time, whatever else loads the machine.
    let elu = performance.eventLoopUtilization();
    let started = performance.now();
    await inspectArchive(bytes);
    const inlineMs = performance.now() - started;
    const inline = performance.eventLoopUtilization(elu);
    const delay = monitorEventLoopDelay({ resolution: 5 });
    delay.enable();
    elu = performance.eventLoopUtilization();
    started = performance.now();
    const { summary } = await shared.check(bytes);
    const workerMs = performance.now() - started;
    const offLoop = performance.eventLoopUtilization(elu);
    delay.disable();
    console.log(
      `10,000 pax entries + 128 MiB to inflate: inline ${inlineMs.toFixed(0)} ms, the loop busy ${inline.active.toFixed(0)} ms of it; `
      + `in the worker ${workerMs.toFixed(0)} ms, the loop busy ${offLoop.active.toFixed(1)} ms, longest delay ${(delay.max / 1e6).toFixed(1)} ms`,
    );
    expect(summary).toEqual({ files: 10_002, totalBytes: 128 * MiB + APP.data.length, hasReleasePhase: false });
    expect(offLoop.active).toBeLessThan(100);
  });

  it('stops a check over its time budget, replaces the worker and keeps serving', async () => {
    const pool = checker({ timeBudgetMs: 100 });
    await pool.warm(); // the budget counts from the upload, and starting a worker from TypeScript takes ~300 ms
    const started = performance.now();
    const err = await pool.check(slowArchive(256)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect((err as Error).message).toBe(
      'checking the archive took more than 0.1 s and was stopped; upload fewer or smaller files, or retry when the nexus is less busy',
    );
    expect(performance.now() - started).toBeLessThan(2000);
    expect((await pool.check(tarGz([APP]))).summary.files).toBe(1);
  });

  it('refuses a check when every worker is busy and the queue is full', async () => {
    const pool = checker({ workers: 1, maxQueued: 1, timeBudgetMs: 20_000 });
    const slow = slowArchive(64);
    const running = pool.check(Buffer.from(slow));
    const queued = pool.check(Buffer.from(slow));
    const refused = await pool.check(Buffer.from(slow)).catch((e: unknown) => e);
    expect((refused as PierError).code).toBe('PIER_NEXUS_UNAVAILABLE');
    expect((refused as Error).message).toBe('nexus is checking 2 uploads already; retry in a few seconds');
    expect((await running).summary.totalBytes).toBe(64 * MiB);
    expect((await queued).summary.totalBytes).toBe(64 * MiB);
  });

  it('fails pending checks when closed', async () => {
    const pool = checker({ workers: 1 });
    const running = pool.check(slowArchive(256)).catch((e: unknown) => e);
    const queued = pool.check(slowArchive(16)).catch((e: unknown) => e);
    await pool.close();
    for (const err of [await running, await queued]) expect((err as PierError).code).toBe('PIER_NEXUS_UNAVAILABLE');
    expect(((await pool.check(tarGz([APP])).catch((e: unknown) => e)) as Error).message).toBe('nexus is stopping; retry against another nexus');
  });
});
