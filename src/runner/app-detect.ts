/**
 * Finds how to run an app folder: a Procfile `wsgi: module:callable` line (piku's convention), else a `wsgi.py`
 * exposing `application`. Pure file reads, so the CLI runs it before uploading and the runner after unpacking.
 *
 * Procfile syntax: one `type: command` a line; blank lines and `#` comments are skipped.
 * - `wsgi: module[:callable]` — the web app (callable defaults to `application`). At most one.
 * - `web: …` — a command line (gunicorn and friends), which Pier cannot run: it serves WSGI apps under uWSGI.
 *   Ignored when a `wsgi:` line is present, an error otherwise (with the `wsgi:` line to write when it can tell).
 * - `release:`, `cron:`, `static:`, `preflight:` — piku/Heroku hooks Pier does not run: an error, rather than
 *   running them as if they were long-lived processes.
 * - any other type (`worker:`, `clock:`, `worker-mail:`) — a background process: `workers[type] = command`.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ValidationError } from '../core/errors.js';

/** A WSGI entry point, as uWSGI's `module = module:callable` takes it. */
export interface WsgiEntry {
  /** Dotted Python module path, e.g. `wsgi` or `myproject.wsgi`. */
  module: string;
  /** Name of the WSGI callable in that module. @default 'application' */
  callable: string;
}

/** How to run an app. */
export interface AppSpec {
  wsgi: WsgiEntry;
  /** Background processes by Procfile type (`worker: python worker.py` → `{ worker: 'python worker.py' }`). */
  workers: Record<string, string>;
  /** True when the folder has a requirements.txt to install into the release's virtualenv. */
  hasRequirements: boolean;
  /** Where the entry point came from. */
  source: 'procfile' | 'wsgi.py';
}

/** Largest Procfile or wsgi.py read (anything bigger is certainly not what we are looking for). */
const MAX_READ_BYTES = 1024 * 1024;
const UNSUPPORTED_TYPES = new Set(['release', 'cron', 'static', 'preflight']);
const DOTTED = '[A-Za-z_][A-Za-z0-9_]*(?:\\.[A-Za-z_][A-Za-z0-9_]*)*';
const WSGI_TARGET = new RegExp(`^(${DOTTED})(?::(${DOTTED}))?$`);

/** Inspects `dir` and returns how to run it. @throws ValidationError when no entry point is found or the Procfile is invalid. */
export async function detectApp(dir: string): Promise<AppSpec> {
  const [procfile, wsgiPy, requirements] = await Promise.all([
    readOptional(join(dir, 'Procfile')),
    readOptional(join(dir, 'wsgi.py')),
    readOptional(join(dir, 'requirements.txt')),
  ]);
  const hasRequirements = requirements !== undefined;
  const entries = procfile === undefined ? new Map<string, string>() : parseProcfile(procfile);
  const workers: Record<string, string> = {};
  for (const [type, command] of entries) if (type !== 'wsgi' && type !== 'web') workers[type] = command;
  const wsgiLine = entries.get('wsgi');
  if (wsgiLine !== undefined) return { wsgi: parseWsgiTarget(wsgiLine), workers, hasRequirements, source: 'procfile' };
  const web = entries.get('web');
  if (web !== undefined) throw webLineError(web);
  if (wsgiPy !== undefined) {
    if (!/\bapplication\b/.test(wsgiPy)) {
      throw new ValidationError(
        "wsgi.py does not define 'application'; name your WSGI callable application, or add 'wsgi: wsgi:NAME' to a Procfile",
      );
    }
    return { wsgi: { module: 'wsgi', callable: 'application' }, workers, hasRequirements, source: 'wsgi.py' };
  }
  throw new ValidationError(
    "no wsgi.py and no 'wsgi:' line in Procfile; add a wsgi.py exposing 'application', or a Procfile line such as 'wsgi: myapp.wsgi:application'",
  );
}

/** Parses Procfile text into type → command, in file order. @throws ValidationError naming the bad line. */
export function parseProcfile(text: string): Map<string, string> {
  const entries = new Map<string, string>();
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const where = `Procfile line ${index + 1}`;
    const match = /^([A-Za-z0-9_-]+)\s*:\s*(.*)$/.exec(line);
    if (!match) throw new ValidationError(`${where}: expected 'type: command'`);
    const type = match[1]!.toLowerCase();
    const command = match[2]!.trim();
    if (command === '') throw new ValidationError(`${where}: '${type}:' has no command`);
    if (UNSUPPORTED_TYPES.has(type)) throw new ValidationError(`${where}: '${type}:' is not supported by Pier`);
    if (entries.has(type)) throw new ValidationError(`${where}: '${type}:' appears twice`);
    if (type === 'wsgi') parseWsgiTarget(command, where);
    entries.set(type, command);
  });
  return entries;
}

/** `pkg.mod:app` → `{ module: 'pkg.mod', callable: 'app' }`; a bare module gets `application`. */
export function parseWsgiTarget(text: string, where = 'Procfile'): WsgiEntry {
  const match = WSGI_TARGET.exec(text.trim());
  if (!match) throw new ValidationError(`${where}: 'wsgi: ${text}' is not 'module:callable' (for example 'wsgi: myapp.wsgi:application')`);
  return { module: match[1]!, callable: match[2] ?? 'application' };
}

function webLineError(command: string): ValidationError {
  // gunicorn's own syntax is `gunicorn module:callable`, so its target is the wsgi: line to suggest.
  const target = command.split(/\s+/).find((word, i) => i > 0 && WSGI_TARGET.test(word) && !word.startsWith('-'));
  const hint = /^gunicorn\b/.test(command) && target ? ` (here: 'wsgi: ${target}')` : '';
  return new ValidationError(
    `Procfile has a 'web:' line, which Pier does not run: it serves WSGI apps under uWSGI; add 'wsgi: module:callable' instead${hint}`,
  );
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    const data = await readFile(path);
    return data.subarray(0, MAX_READ_BYTES).toString('utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    if (code === 'EISDIR') throw new ValidationError(`${path.split('/').pop()} is a folder, not a file`);
    throw err;
  }
}
