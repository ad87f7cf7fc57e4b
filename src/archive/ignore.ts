/**
 * `.pierignore`: the gitignore-like list of paths `pier deploy` leaves out. Supported subset, one pattern a line:
 *
 * - blank lines and lines starting with `#` are skipped; surrounding whitespace is trimmed;
 * - `name` matches a file or folder of that name at any depth (`__pycache__`, `.env`);
 * - a trailing `/` matches folders only (`build/`);
 * - a pattern with a `/` elsewhere is anchored at the app folder (`docs/drafts`, `/local.py`);
 * - `*` matches within one path segment, `?` one character, `**` any number of segments (`tmp/**`, `a/**` + `/b`);
 * - an ignored folder is skipped with everything in it.
 *
 * Not supported, and rejected so nothing is silently uploaded: `!` negation and `[...]` character classes.
 */
import { ValidationError } from '../core/errors.js';

/** Decides whether a relative path (with `/` separators) is left out. */
export interface IgnoreMatcher {
  isIgnored(path: string, isDirectory: boolean): boolean;
}

interface Rule {
  regex: RegExp;
  isDirectoryOnly: boolean;
}

/** Builds a matcher from `.pierignore` lines (and any extra patterns, which follow the same syntax). */
export function compileIgnore(lines: readonly string[], source = '.pierignore'): IgnoreMatcher {
  const rules: Rule[] = [];
  lines.forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const where = `${source} line ${index + 1}`;
    if (line.startsWith('!')) throw new ValidationError(`${where}: negation ('!') is not supported`);
    if (/[[\]]/.test(line)) throw new ValidationError(`${where}: character classes ('[...]') are not supported`);
    const isDirectoryOnly = line.endsWith('/');
    const pattern = line.replace(/\/+$/, '');
    if (pattern === '') throw new ValidationError(`${where}: '/' alone would ignore everything`);
    const isAnchored = pattern.includes('/');
    const body = globToRegex(pattern.replace(/^\/+/, ''));
    rules.push({ regex: new RegExp(isAnchored ? `^${body}$` : `(?:^|/)${body}$`), isDirectoryOnly });
  });
  return {
    isIgnored(path: string, isDirectory: boolean): boolean {
      return rules.some((rule) => (isDirectory || !rule.isDirectoryOnly) && rule.regex.test(path));
    },
  };
}

/** Splits `.pierignore` text into lines (LF or CRLF). */
export function parseIgnoreFile(text: string): string[] {
  return text.split(/\r?\n/);
}

function globToRegex(glob: string): string {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      const isSegment = (i === 0 || glob[i - 1] === '/') && (i + 2 === glob.length || glob[i + 2] === '/');
      if (isSegment && glob[i + 2] === '/') {
        out += '(?:.*/)?'; // `**/` : zero or more whole segments
        i += 2;
      } else {
        out += '.*';
        i += 1;
      }
    } else if (c === '*') out += '[^/]*';
    else if (c === '?') out += '[^/]';
    else out += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return out;
}
