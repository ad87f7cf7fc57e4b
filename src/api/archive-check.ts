/**
 * Checks an uploaded release before anything is stored: a safe tar.gz (no traversal, links out, devices or
 * oversize content — the shared rules in src/archive) holding a WSGI app at its root. The API runs this in a
 * worker thread (see upload-checker.ts), never on the nexus's event loop.
 */
import { PierError, ValidationError } from '../core/errors.js';
import { resolveLimits } from '../archive/limits.js';
import { walkArchive } from '../archive/inspect.js';
import { processTypes, specFrom } from '../runner/app-detect.js';

export interface UploadSummary {
  files: number;
  totalBytes: number;
  /** The Procfile has a `release:` line: the release has a release phase to run before it goes live. */
  hasReleasePhase: boolean;
}

/** What a checked upload runs (its Procfile, through `specFrom`: the rules the runner applies). */
export interface UploadProcesses {
  /** Background process types → command, from the Procfile (`specFrom`, the rules the runner applies). */
  processes: Record<string, string>;
  /** Whether the release has a web process (a `web:`/`wsgi:` line, or a wsgi.py). */
  hasWeb: boolean;
  /** Every process type, web first (what the formation may scale). */
  types: string[];
}

/** Largest Procfile or wsgi.py read for the check (the runner reads no more either). */
const MAX_ENTRY_READ_BYTES = 1024 * 1024;

const ENTRY_FILES = new Set(['Procfile', 'wsgi.py']);

export async function checkUpload(bytes: Uint8Array, maxArchiveBytes: number): Promise<{ summary: UploadSummary; processes: UploadProcesses }> {
  const read: Record<string, string> = {};
  // The entry-point files are read as the walk passes them, so a bad Procfile is a 400 here, never a runner error.
  const summary = await walkArchive(bytes, resolveLimits({ maxArchiveBytes }), async (entry, body) => {
    if (entry.type !== 'file' || !ENTRY_FILES.has(entry.path)) return;
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of body.chunks()) {
      if (size < MAX_ENTRY_READ_BYTES) chunks.push(chunk);
      size += chunk.length;
    }
    read[entry.path] = Buffer.concat(chunks).subarray(0, MAX_ENTRY_READ_BYTES).toString('utf8');
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
  // A wsgi.py's code is judged by loading it on the runner; here only its presence counts.
  const spec = specFrom(read['Procfile'], read['wsgi.py'] === undefined ? undefined : 'application', false);
  return {
    summary: { files, totalBytes: summary.totalBytes, hasReleasePhase: spec.release !== null },
    processes: { processes: spec.processes, hasWeb: spec.wsgi !== null, types: processTypes(spec) },
  };
}
