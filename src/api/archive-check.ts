/**
 * Checks an uploaded release before anything is stored: a safe tar.gz (no traversal, links out, devices or
 * oversize content — the shared rules in src/archive) holding a WSGI app at its root. The API runs this in a
 * worker thread (see upload-checker.ts), never on the nexus's event loop.
 */
import { PierError, ValidationError } from '../core/errors.js';
import { inspectArchive } from '../archive/index.js';
import { parseProcfile } from '../runner/app-detect.js';

export interface UploadSummary {
  files: number;
  totalBytes: number;
  /** The Procfile has a `release:` line: the release has a release phase to run before it goes live. */
  hasReleasePhase: boolean;
}

/** Largest Procfile read (as app-detect reads it). */
const MAX_PROCFILE_BYTES = 1024 * 1024;

export async function checkUpload(bytes: Uint8Array, maxArchiveBytes: number): Promise<UploadSummary> {
  let procfile: string | undefined;
  const summary = await inspectArchive(bytes, { maxArchiveBytes }, async (entry, body) => {
    if (entry.path !== 'Procfile' || entry.type !== 'file') return;
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of body.chunks()) {
      if (size < MAX_PROCFILE_BYTES) chunks.push(chunk);
      size += chunk.length;
    }
    procfile = Buffer.concat(chunks).subarray(0, MAX_PROCFILE_BYTES).toString('utf8');
  }).catch((err: unknown) => {
    // Too big is its own answer (413), whatever layer noticed it.
    if (err instanceof PierError && err.details?.limit !== undefined) throw new PierError('PIER_TOO_LARGE', err.message, { details: err.details });
    throw err;
  });
  let files = 0;
  let hasEntryPoint = false;
  for (const entry of summary.entries) {
    if (entry.type === 'file') files++;
    if (entry.path === 'wsgi.py' || entry.path === 'Procfile') hasEntryPoint = true;
  }
  if (!hasEntryPoint) throw new ValidationError("release has no wsgi.py and no Procfile at its root; add one (see examples/hello)");
  // A Procfile the runner could not run fails here, before anything is stored (the CLI checks the same before packing).
  const hasReleasePhase = procfile !== undefined && parseProcfile(procfile).has('release');
  return { files, totalBytes: summary.totalBytes, hasReleasePhase };
}
