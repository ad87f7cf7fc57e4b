/**
 * Checks an uploaded release before anything is stored: a safe tar.gz (no traversal, links out, devices or
 * oversize content — the shared rules in src/archive) holding a WSGI app at its root. The API runs this in a
 * worker thread (see upload-checker.ts), never on the nexus's event loop.
 */
import { PierError, ValidationError } from '../core/errors.js';
import { inspectArchive } from '../archive/index.js';

export interface UploadSummary {
  files: number;
  totalBytes: number;
}

export async function checkUpload(bytes: Uint8Array, maxArchiveBytes: number): Promise<UploadSummary> {
  const summary = await inspectArchive(bytes, { maxArchiveBytes }).catch((err: unknown) => {
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
  return { files, totalBytes: summary.totalBytes };
}
