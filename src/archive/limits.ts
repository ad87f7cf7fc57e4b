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
  /**
   * Most entries (files, folders, links), counting the folders an entry's path implies without listing them:
   * each is a node the runner creates. @default 50000
   */
  maxEntries: number;
  /**
   * Longest entry name or link target, in UTF-8 bytes as stored (a pax `path`/`linkpath` or GNU long name over it
   * is refused before it is parsed); at most 4096, Linux's PATH_MAX. @default 1024
   */
  maxPathBytes: number;
  /** Most components (folders and the name itself) in an entry's normalized path. @default 64 */
  maxPathDepth: number;
}

/** Largest `maxPathBytes` accepted: Linux's PATH_MAX, the most any tool on the runner can open. */
export const PATH_MAX_BYTES = 4096;
/** Longest single path component: Linux's NAME_MAX (the runner could not create a longer one). */
export const NAME_MAX_BYTES = 255;

/** Limits used when a caller passes none. */
export const DEFAULT_ARCHIVE_LIMITS: Readonly<ArchiveLimits> = Object.freeze({
  maxArchiveBytes: 100 * 1024 * 1024,
  maxBytes: 512 * 1024 * 1024,
  maxFileBytes: 256 * 1024 * 1024,
  maxEntries: 50_000,
  // Real apps are far inside these: this machine's Debian dist-packages (pip, oauthlib and ~150 more) tops out at
  // 101 bytes and 8 levels, a flat node_modules at 99 bytes and 11 levels; Django's deepest file
  // (contrib/admin/static/admin/js/vendor/select2/i18n/*.js) is 10 levels, and a virtualenv prefix
  // (venv/lib/python3.11/site-packages/) adds 34 bytes and 4 levels. 1024 is also macOS's PATH_MAX.
  maxPathBytes: 1024,
  maxPathDepth: 64,
});

/** Fills in defaults and checks every limit is a positive safe integer. */
export function resolveLimits(limits: Partial<ArchiveLimits> = {}): ArchiveLimits {
  const resolved = { ...DEFAULT_ARCHIVE_LIMITS, ...limits };
  for (const [key, value] of Object.entries(resolved)) {
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new ValidationError(`archive limit ${key} must be a positive integer`, { details: { path: key } });
    }
  }
  if (resolved.maxPathBytes > PATH_MAX_BYTES) {
    throw new ValidationError(`archive limit maxPathBytes must be at most ${PATH_MAX_BYTES} (Linux's PATH_MAX)`, { details: { path: 'maxPathBytes' } });
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

/** Characters of a name shown in a message; the rest is cut (constant work, however long the name). */
const SHOWN_NAME_CHARS = 200;
/** Characters of a name carried in `details.entry`, so an error body stays small. */
const DETAILS_NAME_CHARS = 1024;

/** An entry name made safe for a one-line message: control characters escaped, long names shortened. */
export function quoteName(name: string): string {
  // Cut before escaping, so a 40 KB name costs no more than a short one.
  const head = name.length > SHOWN_NAME_CHARS ? name.slice(0, SHOWN_NAME_CHARS) : name;
  const escaped = head.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  const shown = escaped.length > SHOWN_NAME_CHARS || head.length < name.length ? `${escaped.slice(0, SHOWN_NAME_CHARS)}…` : escaped;
  return `'${shown}'`;
}

/** The ValidationError for a bad entry: the message names it, `details.entry` carries it (cut when very long). */
export function entryError(name: string, problem: string): ValidationError {
  const entry = name.length > DETAILS_NAME_CHARS ? `${name.slice(0, DETAILS_NAME_CHARS)}…` : name;
  return new ValidationError(`archive entry ${quoteName(name)} ${problem}`, { details: { entry } });
}

/** What a user can do about an over-long or too deep path. */
export const PATH_FIX = 'shorten it, or leave it out with .pierignore';

/** The error for an entry name (`what` 'name') or link target (`what` 'link') over `maxPathBytes` UTF-8 bytes. */
export function pathTooLongError(name: string, bytes: number, maxPathBytes: number, what: 'name' | 'link'): ValidationError {
  const problem = what === 'name' ? `is ${bytes} bytes long` : `has a link target of ${bytes} bytes`;
  return entryError(name, `${problem}, over the ${maxPathBytes}-byte limit for a path; ${PATH_FIX}`);
}

/** Throws `pathTooLongError` when `value` (the entry's name, or its link target) is over `maxPathBytes` in UTF-8. */
export function checkPathBytes(name: string, value: string, maxPathBytes: number, what: 'name' | 'link'): void {
  // A UTF-16 unit is at most 3 UTF-8 bytes: only values near the limit need counting.
  if (value.length * 3 <= maxPathBytes) return;
  const bytes = Buffer.byteLength(value);
  if (bytes > maxPathBytes) throw pathTooLongError(name, bytes, maxPathBytes, what);
}
