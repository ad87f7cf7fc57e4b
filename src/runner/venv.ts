/**
 * Builds a release's virtualenv: Debian's Python with `--system-site-packages` (apps may use Debian's Python
 * packages), plus `pip install -r requirements.txt` when the app has one. A marker file records what the venv was
 * built from, so an unchanged release reuses it.
 *
 * Everything that touches app code runs as the app's user when one is given (the runner is root): `python3 -I -m
 * venv` (isolated: no cwd, PYTHON* or user site on sys.path, so an app's own `venv/` package is never imported) in a
 * neutral cwd, and pip, which builds local requirements (`.` with a setup.py) and so runs the app's code. pip works
 * in a copy of the app the app's user makes in a build-only folder (pip builds local projects in place, and the
 * release itself is read-only to the app), so relative requirements resolve as they would in the app's folder; an
 * editable (`-e`) requirement would point into that copy, which is removed. The environment is minimal (PATH,
 * LANG, HOME and TMPDIR in the build folder, no runner secrets), and the output shown to the owner comes from
 * processes of the app's user, so it holds only what that user can read (`-r /etc/shadow` fails with EACCES).
 *
 * The venv is built in place (its scripts and pyvenv.cfg name their folder), in a folder the app's user owns; then
 * root renames it aside and copies it with `freezeTree` into a fresh tree of root's, readable by the app's group
 * only through the release folder, and removes the app's copy as the app's user. uWSGI drops to the app's user
 * before it initializes Python (checked with strace and test/runner/build-as-app.test.ts), so the venv's `.pth` and
 * `sitecustomize` files never run as root either way.
 *
 * pip is Debian's (`python3-pip`, importable in a `--system-site-packages` venv) when the system Python has it:
 * that skips ensurepip (3.3 s and 1,700 files per venv); otherwise the venv gets its own pip.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chown, lstat, mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { constants } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { TimeoutError, ValidationError } from '../core/errors.js';
import { randomId } from '../core/ids.js';
import { removeOwnedEntry } from './app-files.js';
import { killGroup } from '../core/process.js';
import { freezeTree, runAs, type BuildUser } from './app-tree.js';
import { openAppFile } from './checked-open.js';

export interface BuildVirtualenvOptions {
  /** The unpacked app (its requirements.txt, if any, is installed); root's, readable by `user`. */
  appDir: string;
  /** Where the virtualenv goes; rebuilt from scratch unless its marker matches. Its folder must be root's. */
  venvDir: string;
  /** Extra `pip install` arguments, e.g. `['--no-index', '--find-links', '/srv/wheels']`. @default [] */
  pipArgs?: readonly string[];
  log: Logger;
  /** Time the whole build gets before it is killed. @default 300000 */
  timeoutMs?: number;
  /** Interpreter the venv is made from: Debian's, which uwsgi-plugin-python3 embeds. @default '/usr/bin/python3' */
  python?: string;
  /** Receives each line pip prints, e.g. to show the build in the app's log. */
  onOutput?: (line: string) => void;
  /** Extra environment of venv and pip (e.g. PIP_INDEX_URL). @default none: PATH, LANG, HOME, TMPDIR, PIP_NO_CACHE_DIR=1 */
  env?: Record<string, string>;
  /** The app's user, who runs the build (the runner is root). @default none: the runner's own user */
  user?: BuildUser;
}

export interface VirtualenvResult {
  /** True when an existing venv built from the same inputs was kept. */
  isReused: boolean;
  durationMs: number;
}

/** Marker written last: a venv without it (or with another hash) is incomplete or stale. */
export const VENV_MARKER = '.pier-venv.json';
/** Lines of pip output kept for the error message. */
const TAIL_LINES = 15;
export const BASE_ENV = { PATH: '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8', PIP_NO_CACHE_DIR: '1' };
const systemPip = new Map<string, Promise<boolean>>();

/**
 * Creates (or reuses) the virtualenv at `venvDir` for the app in `appDir`.
 * @throws ValidationError with the tail of pip's output when the install fails, TimeoutError past `timeoutMs`.
 */
export async function buildVirtualenv(options: BuildVirtualenvOptions): Promise<VirtualenvResult> {
  const started = Date.now();
  const { appDir, venvDir, pipArgs = [], python = '/usr/bin/python3', user } = options;
  const log = options.log.child({ component: 'runner.venv' });
  // The app folder is root's (unpacked by root), so reading its requirements as root is safe.
  const requirements = await readFile(join(appDir, 'requirements.txt'), 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  const hash = createHash('sha256').update(JSON.stringify({ python, requirements: requirements ?? null, pipArgs })).digest('hex');
  if (await isBuilt(venvDir, hash)) {
    log.debug({ venvDir }, 'virtualenv reused');
    return { isReused: true, durationMs: Date.now() - started };
  }
  const parent = dirname(venvDir);
  const work = join(parent, `.build-${randomId()}`);
  const built = join(parent, `.venv-built-${randomId()}`);
  await mkdir(parent, { recursive: true });
  await removeOwnedEntry(venvDir);
  try {
    // The build folder (HOME, TMPDIR, the app's working copy) and the venv are the app user's while it builds.
    for (const folder of [work, join(work, 'tmp'), venvDir]) {
      await mkdir(folder, { mode: folder === venvDir ? 0o755 : 0o700 });
      if (user) await chown(folder, user.uid, user.gid);
    }
    const env = { ...BASE_ENV, ...options.env, HOME: work, TMPDIR: join(work, 'tmp') };
    const deadline = started + (options.timeoutMs ?? 300_000);
    const run = (what: string, command: string, args: string[]): Promise<void> =>
      runStep(what, command, args, { cwd: work, env, deadline, user, onOutput: options.onOutput });
    const withPip = requirements !== undefined && !(await hasSystemPip(python));
    await run('python3 -m venv', python, ['-I', '-m', 'venv', '--system-site-packages', ...(withPip ? [] : ['--without-pip']), venvDir]);
    if (requirements !== undefined) {
      await run('copying the app for pip', '/bin/cp', ['-R', '--', `${appDir}/.`, join(work, 'src')]);
      // `cd` as the app's user (root never enters the app's copy), then pip with the app's requirements.
      const pip = [join(venvDir, 'bin', 'python'), '-I', '-m', 'pip', 'install', '--disable-pip-version-check', '--no-input', '--progress-bar', 'off', '-r', 'requirements.txt', ...pipArgs];
      await run('pip install -r requirements.txt', '/bin/sh', ['-c', 'cd src && exec "$@"', 'sh', ...pip]);
    }
    if (user) {
      await rename(venvDir, built);
      await freezeTree(built, venvDir, user);
    }
    await rm(join(venvDir, VENV_MARKER), { force: true }); // one the build made (a link, say) is not ours to trust
    await writeMarker(venvDir, hash);
  } catch (err) {
    await removeOwnedEntry(venvDir).catch(() => undefined);
    throw err;
  } finally {
    for (const leftover of [work, built]) {
      if (!(await removeOwnedEntry(leftover).catch(() => false))) log.warn({ folder: leftover }, 'cannot remove a build folder: a process of the app may still be writing it');
    }
  }
  const durationMs = Date.now() - started;
  log.info({ venvDir, durationMs, hasRequirements: requirements !== undefined }, 'virtualenv built');
  return { isReused: false, durationMs };
}

/** Whether `python` (with -I) can import pip, so venvs can use the system's instead of getting their own. */
function hasSystemPip(python: string): Promise<boolean> {
  let known = systemPip.get(python);
  if (!known) {
    known = runAs(undefined, python, ['-I', '-c', 'import pip'], { cwd: '/', env: BASE_ENV }).then((r) => r.code === 0, () => false);
    systemPip.set(python, known);
  }
  return known;
}

async function writeMarker(venvDir: string, hash: string): Promise<void> {
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  const handle = await open(join(venvDir, VENV_MARKER), flags, 0o644);
  try {
    await handle.writeFile(JSON.stringify({ hash, builtAt: new Date().toISOString() }));
  } finally {
    await handle.close();
  }
}

/** A venv of the runner's own user (root's frozen copy; never one an app's build still owns) built from `hash`. */
async function isBuilt(venvDir: string, hash: string): Promise<boolean> {
  try {
    const folder = await lstat(venvDir);
    if (!folder.isDirectory() || folder.uid !== (process.getuid?.() ?? 0)) return false;
    if (!(await lstat(join(venvDir, 'bin', 'python'))).isSymbolicLink()) return false;
    const marker = await openAppFile(join(venvDir, VENV_MARKER));
    if (marker.kind !== 'ok') return false;
    try {
      return (JSON.parse(await marker.handle.readFile('utf8')) as { hash?: string }).hash === hash;
    } finally {
      await marker.handle.close();
    }
  } catch {
    return false;
  }
}

export interface StepOptions {
  cwd: string;
  env: Record<string, string>;
  deadline: number;
  user: BuildUser | undefined;
  onOutput: ((line: string) => void) | undefined;
}

/** Runs one build command (as the app's user, if any), streaming its output by line and keeping the tail for the error message. */
export function runStep(what: string, command: string, args: string[], options: StepOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true, ...(options.user ?? {}) });
    const tail: string[] = [];
    const partial = { stdout: '', stderr: '' };
    const onData = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
      const lines = (partial[stream] + chunk.toString('utf8')).split(/\r?\n/);
      partial[stream] = lines.pop()!;
      for (const line of lines) addLine(line);
    };
    const addLine = (line: string): void => {
      if (line.trim() === '') return;
      options.onOutput?.(line);
      tail.push(line);
      if (tail.length > TAIL_LINES) tail.shift();
    };
    child.stdout.on('data', onData('stdout'));
    child.stderr.on('data', onData('stderr'));
    // Output pipes close only when every process holding them is gone: end the group once the step exits.
    child.once('exit', () => killGroup(child.pid));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
    }, Math.max(0, options.deadline - Date.now()));
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new ValidationError(`${what} could not run: ${err.message}`, { cause: err }));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      addLine(partial.stdout);
      addLine(partial.stderr);
      const output = tail.join('\n');
      if (timedOut) reject(new TimeoutError(`${what} did not finish in time:\n${output}`, { details: { output: tail } }));
      else if (code !== 0) reject(new ValidationError(`${what} failed (${signal ?? `exit code ${code}`}):\n${output}`, { details: { output: tail } }));
      else resolve();
    });
  });
}

