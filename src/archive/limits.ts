/** Size and count limits applied to every release archive, and the wording shared by their error messages. */
import { ValidationError } from '../core/errors.js';

/** Limits checked while an archive is read; every one is enforced before the bytes it guards are inflated. */
export interface ArchiveLimits {
  /** Largest compressed archive accepted. @default 104857600 (100 MiB, the API's upload limit) */
  maxArchiveBytes: number;
  /** Largest total of file contents once unpacked (hard-link copies included). @default 536870912 (512 MiB) */
  maxBytes: number;
  /** Largest single file once unpacked. @default 268435456 (256 MiB) */
  maxFileBytes: number;
  /** Most entries (files, folders, links). @default 50000 */
  maxEntries: number;
}

/** Limits used when a caller passes none. */
export const DEFAULT_ARCHIVE_LIMITS: Readonly<ArchiveLimits> = Object.freeze({
  maxArchiveBytes: 100 * 1024 * 1024,
  maxBytes: 512 * 1024 * 1024,
  maxFileBytes: 256 * 1024 * 1024,
  maxEntries: 50_000,
});

/** Fills in defaults and checks every limit is a positive safe integer. */
export function resolveLimits(limits: Partial<ArchiveLimits> = {}): ArchiveLimits {
  const resolved = { ...DEFAULT_ARCHIVE_LIMITS, ...limits };
  for (const [key, value] of Object.entries(resolved)) {
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new ValidationError(`archive limit ${key} must be a positive integer`, { details: { path: key } });
    }
  }
  return resolved;
}

/** `1536` → `1.5 KiB`: sizes in messages a user reads. */
export function formatBytes(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) return `${bytes} bytes`;
  return `${Number.isInteger(value) ? value : value.toFixed(1)} ${units[unit]}`;
}

/** An entry name made safe for a one-line message: control characters escaped, long names shortened. */
export function quoteName(name: string): string {
  const escaped = name.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  const shown = escaped.length > 200 ? `${escaped.slice(0, 200)}…` : escaped;
  return `'${shown}'`;
}

/** The ValidationError for a bad entry: the message names it, `details.entry` carries it. */
export function entryError(name: string, problem: string): ValidationError {
  return new ValidationError(`archive entry ${quoteName(name)} ${problem}`, { details: { entry: name } });
}
