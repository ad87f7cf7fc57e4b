/**
 * Finds how to run an app folder: its Procfile (Heroku's and piku's convention), else a `wsgi.py` exposing
 * `application`. Pure file reads, so the CLI runs it before uploading, the API checks uploads with the same rules
 * and the runner reads it after unpacking.
 *
 * Procfile syntax: one `type: command` a line; blank lines and `#` comments are skipped. Types are lower-case
 * letters, digits, `_` and `-`, starting with a letter, at most 30 characters.
 * - `web: module[:callable]` (or `wsgi:`, piku's name) — the WSGI app served under uWSGI (callable defaults to
 *   `application`). A `web:` command line (gunicorn and friends) cannot run: Pier serves WSGI apps under uWSGI.
 *   It is ignored when a `wsgi:` line is present, an error otherwise (naming the `wsgi:` line to write when it can).
 * - `build: CMD` — run on each runner while the release is prepared (e.g. `collectstatic`), as the app's user.
 * - `release: CMD` — run once per release, on one runner, before any instance of it goes live (e.g. `migrate`).
 * - `static: /static/=staticfiles/ …` — URL prefixes served from folders of the release without Python
 *   (static-map.ts has the rules; the vassal serves them, static-routes.ts). Needs a web process.
 * - `cron:`, `preflight:` — piku/Heroku hooks Pier does not run (yet): an error, rather than running
 *   them as if they were long-lived processes.
 * - `run` is reserved (one-off processes are `run.N`).
 * - any other type (`worker:`, `clock:`, `worker-mail:`) — a background process type: `processes[type] = command`,
 *   run with `/bin/sh -c 'exec CMD'` as the app's user.
 *
 * A Procfile needs a web app or at least one background type; without a Procfile, `wsgi.py` is the web app.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ValidationError } from '../core/errors.js';
import { parseStaticMap, type StaticMount } from './static-map.js';

/** A WSGI entry point, as uWSGI's `module = module:callable` takes it. */
export interface WsgiEntry {
  /** Dotted Python module path, e.g. `wsgi` or `myproject.wsgi`. */
  module: string;
  /** Name of the WSGI callable in that module. @default 'application' */
  callable: string;
}

/** How to run an app. */
export interface AppSpec {
  /** The web process (type `web`); null when the Procfile has only background types. */
  wsgi: WsgiEntry | null;
  /** Background process types in Procfile order (`worker: python worker.py` → `{ worker: 'python worker.py' }`). */
  processes: Record<string, string>;
  /** `build:` command, run on each runner while the release is prepared. */
  build: string | null;
  /** `release:` command, run once per release before it goes live. */
  release: string | null;
  /** URL prefixes served from release folders (the Procfile's `static:` line), longest first; absent without one. */
  static?: StaticMount[];
  /** True when the folder has a requirements.txt to install into the release's virtualenv. */
  hasRequirements: boolean;
  /** Where the entry point came from. */
  source: 'procfile' | 'wsgi.py';
}

/** Largest Procfile or wsgi.py read (anything bigger is certainly not what we are looking for). */
const MAX_READ_BYTES = 1024 * 1024;
const UNSUPPORTED_TYPES = new Set(['cron', 'preflight']);
/** Types that are phases or reserved names, never background process types. */
const RESERVED_TYPES = new Set(['web', 'wsgi', 'build', 'release', 'run', 'static']);
/** What a Procfile type may be called. */
export const PROCESS_TYPE = /^[a-z][a-z0-9_-]{0,29}$/;
const DOTTED = '[A-Za-z_][A-Za-z0-9_]*(?:\\.[A-Za-z_][A-Za-z0-9_]*)*';
const WSGI_TARGET = new RegExp(`^(${DOTTED})(?::(${DOTTED}))?$`);

/** Inspects `dir` and returns how to run it. @throws ValidationError when no entry point is found or the Procfile is invalid. */
export async function detectApp(dir: string): Promise<AppSpec> {
  const [procfile, wsgiPy, requirements] = await Promise.all([
    readOptional(join(dir, 'Procfile')),
    readOptional(join(dir, 'wsgi.py')),
    readOptional(join(dir, 'requirements.txt')),
  ]);
  return specFrom(procfile, wsgiPy, requirements !== undefined);
}

/** `detectApp` on file contents already read (`undefined` = no such file). */
export function specFrom(procfile: string | undefined, wsgiPy: string | undefined, hasRequirements: boolean): AppSpec {
  const entries = procfile === undefined ? new Map<string, string>() : parseProcfile(procfile);
  const processes: Record<string, string> = {};
  for (const [type, command] of entries) if (!RESERVED_TYPES.has(type)) processes[type] = command;
  const phases = { build: entries.get('build') ?? null, release: entries.get('release') ?? null };
  const staticLine = entries.get('static');
  const base = { processes, ...phases, ...(staticLine === undefined ? {} : { static: parseStaticMap(staticLine) }), hasRequirements };
  const web = entries.get('web');
  const wsgiLine = entries.get('wsgi') ?? (web !== undefined && WSGI_TARGET.test(web.trim()) ? web : undefined);
  if (wsgiLine !== undefined) return { wsgi: parseWsgiTarget(wsgiLine), ...base, source: 'procfile' };
  if (web !== undefined) throw webLineError(web);
  if (staticLine !== undefined && (wsgiPy === undefined || Object.keys(processes).length > 0)) {
    throw new ValidationError("Procfile has a 'static:' line but no web app to serve it; add 'web: module:callable' or a wsgi.py");
  }
  if (procfile !== undefined && Object.keys(processes).length > 0) return { wsgi: null, ...base, source: 'procfile' };
  if (wsgiPy !== undefined) {
    if (!/\bapplication\b/.test(wsgiPy)) {
      throw new ValidationError(
        "wsgi.py does not define 'application'; name your WSGI callable application, or add 'web: wsgi:NAME' to a Procfile",
      );
    }
    return { wsgi: { module: 'wsgi', callable: 'application' }, ...base, source: procfile === undefined ? 'wsgi.py' : 'procfile' };
  }
  throw new ValidationError(
    "no wsgi.py and no 'web:' line in Procfile; add a wsgi.py exposing 'application', or a Procfile line such as 'web: myapp.wsgi:application'",
  );
}

/** Every process type the app has, `web` first when it has a web app. */
export function processTypes(spec: AppSpec): string[] {
  return [...(spec.wsgi ? ['web'] : []), ...Object.keys(spec.processes)];
}

/** The formation a first deploy starts with: one `web`, or one of the first type when there is no web app. */
export function defaultFormation(spec: AppSpec): Record<string, number> {
  const types = processTypes(spec);
  return Object.fromEntries(types.map((type, i) => [type, i === 0 ? 1 : 0]));
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
    if (!PROCESS_TYPE.test(type)) throw new ValidationError(`${where}: process type '${type}' must start with a letter and have at most 30 letters, digits, '_' or '-'`);
    if (command === '') throw new ValidationError(`${where}: '${type}:' has no command`);
    if (UNSUPPORTED_TYPES.has(type)) throw new ValidationError(`${where}: '${type}:' is not supported by Pier`);
    if (type === 'run') throw new ValidationError(`${where}: 'run' is reserved for one-off processes (pier run); name the type differently`);
    if (command.length > 4096) throw new ValidationError(`${where}: the command is longer than 4096 characters`);
    if (command.includes('\0')) throw new ValidationError(`${where}: the command holds a NUL byte`);
    if (entries.has(type)) throw new ValidationError(`${where}: '${type}:' appears twice`);
    if (type === 'wsgi') parseWsgiTarget(command, where);
    if (type === 'static') parseStaticMap(command, where);
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
