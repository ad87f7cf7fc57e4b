/**
 * The Procfile's `static:` line (pure): URL prefixes served from folders of the release without Python, e.g.
 * `static: /static/=staticfiles/ /media/=public/media/`. The CLI, the upload check and the runner all parse it
 * here (through `parseProcfile`), so a bad line is refused at upload, before anything is stored.
 *
 * The rules are strict on purpose: what passes is written into the vassal as uWSGI routing regexes and paths
 * (static-routes.ts), and a prefix or folder that could mean two things (`//`, `..`, `%2e`) is refused rather than
 * normalized.
 */
import { ValidationError } from '../core/errors.js';

/** One `PREFIX=FOLDER` pair of a `static:` line. */
export interface StaticMount {
  /** URL prefix, starting and ending with `/`, e.g. `/static/`. */
  prefix: string;
  /** Folder relative to the release root, without a trailing `/`, e.g. `staticfiles` or `public/media`. */
  folder: string;
}

/** Most pairs one `static:` line may hold. */
export const MAX_STATIC_MOUNTS = 16;
/** Longest prefix or folder accepted, in characters. */
const MAX_PART_CHARS = 200;
/** One path segment: letters, digits and `._~-` (RFC 3986 unreserved), never `.` or `..` alone. */
const SEGMENT = /^[A-Za-z0-9._~-]+$/;

/**
 * Parses the command of a `static:` line into its mounts, longest prefix first (so `/static/admin/` wins over
 * `/static/`). @throws ValidationError naming `where` and what is wrong.
 */
export function parseStaticMap(text: string, where = 'Procfile'): StaticMount[] {
  const pairs = text.trim().split(/\s+/).filter((p) => p !== '');
  if (pairs.length === 0) throw new ValidationError(`${where}: 'static:' has no 'PREFIX=FOLDER' pair (for example 'static: /static/=staticfiles/')`);
  if (pairs.length > MAX_STATIC_MOUNTS) throw new ValidationError(`${where}: 'static:' has ${pairs.length} pairs; at most ${MAX_STATIC_MOUNTS} are allowed`);
  const mounts: StaticMount[] = [];
  const seen = new Set<string>();
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq < 0) throw new ValidationError(`${where}: static pair '${pair}' is not 'PREFIX=FOLDER' (for example '/static/=staticfiles/')`);
    const prefix = checkPrefix(pair.slice(0, eq), where);
    const folder = checkFolder(pair.slice(eq + 1), where);
    if (seen.has(prefix)) throw new ValidationError(`${where}: static prefix '${prefix}' appears twice; map each prefix to one folder`);
    seen.add(prefix);
    mounts.push({ prefix, folder });
  }
  return mounts.sort((a, b) => b.prefix.length - a.prefix.length);
}

function checkPrefix(prefix: string, where: string): string {
  const bad = (why: string): never => {
    throw new ValidationError(`${where}: static prefix '${prefix}' ${why} (for example '/static/=staticfiles/')`);
  };
  if (prefix === '') bad('is empty');
  if (prefix.length > MAX_PART_CHARS) bad(`is longer than ${MAX_PART_CHARS} characters`);
  if (!prefix.startsWith('/') || !prefix.endsWith('/')) bad("must start and end with '/'");
  if (prefix === '/') bad('would take every URL of the app; use a prefix such as /static/');
  if (prefix.includes('%')) bad("holds an encoded character ('%'); write it plainly");
  if (prefix.includes('//')) bad("holds an empty segment ('//')");
  checkSegments(prefix.slice(1, -1).split('/'), bad);
  return prefix;
}

function checkFolder(folder: string, where: string): string {
  const bad = (why: string): never => {
    throw new ValidationError(`${where}: static folder '${folder}' ${why}; name a folder inside the release, such as 'staticfiles/'`);
  };
  if (folder === '') bad('is empty');
  if (folder.length > MAX_PART_CHARS) bad(`is longer than ${MAX_PART_CHARS} characters`);
  if (folder.startsWith('/')) bad('is absolute');
  if (folder.includes('%')) bad("holds an encoded character ('%')");
  const trimmed = folder.endsWith('/') ? folder.slice(0, -1) : folder;
  if (trimmed.includes('//') || trimmed === '') bad("holds an empty segment ('//')");
  checkSegments(trimmed.split('/'), bad);
  return trimmed;
}

function checkSegments(segments: string[], bad: (why: string) => never): void {
  for (const segment of segments) {
    if (segment === '.' || segment === '..') bad(`holds a '${segment}' segment`);
    if (!SEGMENT.test(segment)) bad("may hold only letters, digits, '.', '_', '~', '-' and '/'");
  }
}
