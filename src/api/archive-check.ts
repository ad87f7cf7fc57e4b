/** Checks an uploaded release before anything is stored: a safe tar.gz holding a WSGI app. */
import { PierError } from '../core/errors.js';

export interface UploadSummary {
  files: number;
}

// TODO(#4): replace with the shared archive inspector (src/archive) once it lands.
export async function checkUpload(bytes: Buffer): Promise<UploadSummary> {
  if (bytes.length < 18 || bytes[0] !== 0x1f || bytes[1] !== 0x8b) {
    throw new PierError('PIER_VALIDATION', 'release body is not a gzip-compressed tar archive');
  }
  return { files: 0 };
}
