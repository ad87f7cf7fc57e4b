/**
 * Checks an uploaded release before anything is stored: a safe tar.gz (no traversal, links out, devices or
 * oversize content — the shared rules in src/archive) holding a WSGI app at its root.
 */
import { PierError, ValidationError } from '../core/errors.js';
import { inspectArchive } from '../archive/index.js';

export interface UploadSummary {
  files: number;
  totalBytes: number;
}

export async function checkUpload(bytes: Buffer, maxArchiveBytes: number): Promise<UploadSummary> {
  const summary = await inspectArchive(bytes, { maxArchiveBytes }).catch((err: unknown) => {
    // Too big is its own answer (413), whatever layer noticed it.
    if (err instanceof PierError && err.details?.limit !== undefined) throw new PierError('PIER_TOO_LARGE', err.message, { details: err.details });
    throw err;
  });
  const names = new Set(summary.entries.map((e) => e.path));
  if (!names.has('wsgi.py') && !names.has('Procfile')) {
    throw new ValidationError("release has no wsgi.py and no Procfile at its root; add one (see examples/hello)");
  }
  return { files: summary.entries.filter((e) => e.type === 'file').length, totalBytes: summary.totalBytes };
}
