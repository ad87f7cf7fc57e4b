/**
 * Builds a release's virtualenv: Debian's Python with `--system-site-packages` (apps may use Debian's Python
 * packages), plus `pip install -r requirements.txt` when the app has one. A marker file records what the venv was
 * built from, so an unchanged release reuses it.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { TimeoutError, ValidationError } from '../core/errors.js';

export interface BuildVirtualenvOptions {
  /** The unpacked app (its requirements.txt, if any, is installed). */
  appDir: string;
  /** Where the virtualenv goes; rebuilt from scratch unless its marker matches. */
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
  /** Environment of venv and pip. @default PATH, LANG and PIP_NO_CACHE_DIR=1 */
  env?: Record<string, string>;
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
const DEFAULT_ENV = { PATH: '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8', PIP_NO_CACHE_DIR: '1' };

/**
 * Creates (or reuses) the virtualenv at `venvDir` for the app in `appDir`.
 * @throws ValidationError with the tail of pip's output when the install fails, TimeoutError past `timeoutMs`.
 */
export async function buildVirtualenv(options: BuildVirtualenvOptions): Promise<VirtualenvResult> {
  const started = Date.now();
  const { appDir, venvDir, pipArgs = [], python = '/usr/bin/python3' } = options;
  const log = options.log.child({ component: 'runner.venv' });
  const requirementsPath = join(appDir, 'requirements.txt');
  const requirements = await readFile(requirementsPath, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  const hash = createHash('sha256').update(JSON.stringify({ python, requirements: requirements ?? null, pipArgs })).digest('hex');
  if (await isBuilt(venvDir, hash)) {
    log.debug({ venvDir }, 'virtualenv reused');
    return { isReused: true, durationMs: Date.now() - started };
  }
  await rm(venvDir, { recursive: true, force: true });
  const deadline = started + (options.timeoutMs ?? 300_000);
  const run = (what: string, command: string, args: string[]): Promise<void> =>
    runStep(what, command, args, { cwd: appDir, env: options.env ?? DEFAULT_ENV, deadline, onOutput: options.onOutput });
  try {
    // Without requirements there is nothing for pip to do, and skipping ensurepip saves ~2.5 s.
    const venvArgs = ['-m', 'venv', '--system-site-packages', ...(requirements === undefined ? ['--without-pip'] : []), venvDir];
    await run('python3 -m venv', python, venvArgs);
    if (requirements !== undefined) {
      const pip = join(venvDir, 'bin', 'pip');
      const args = ['install', '--disable-pip-version-check', '--no-input', '--progress-bar', 'off', '-r', requirementsPath, ...pipArgs];
      await run('pip install -r requirements.txt', pip, args);
    }
    await writeFile(join(venvDir, VENV_MARKER), JSON.stringify({ hash, builtAt: new Date().toISOString() }));
  } catch (err) {
    await rm(venvDir, { recursive: true, force: true });
    throw err;
  }
  const durationMs = Date.now() - started;
  log.info({ venvDir, durationMs, hasRequirements: requirements !== undefined }, 'virtualenv built');
  return { isReused: false, durationMs };
}

async function isBuilt(venvDir: string, hash: string): Promise<boolean> {
  try {
    const marker = JSON.parse(await readFile(join(venvDir, VENV_MARKER), 'utf8')) as { hash?: string };
    await access(join(venvDir, 'bin', 'python'));
    return marker.hash === hash;
  } catch {
    return false;
  }
}

interface StepOptions {
  cwd: string;
  env: Record<string, string>;
  deadline: number;
  onOutput: ((line: string) => void) | undefined;
}

/** Runs one build command, streaming its output by line and keeping the tail for the error message. */
function runStep(what: string, command: string, args: string[], options: StepOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
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
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killTree(child.pid);
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

/** pip runs build backends as children: kill its whole process group (it was started detached, as a leader). */
function killTree(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
