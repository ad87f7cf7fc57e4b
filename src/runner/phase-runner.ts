/**
 * Runs a release's release phase (the Procfile's `release:` command, e.g. `python manage.py migrate --noinput`):
 * once per release, on the runner the scheduler placed its one `release` task on, as the app's user, in the
 * release's environment — the venv's `bin/` first on PATH, the release's config vars, a HOME/TMPDIR of its own,
 * the app's cgroups (memory, processes, CPU) and its open-files limit — with the read-only release as its working
 * folder. The process joins its cgroups before it runs anything: it is started as `sh -c 'read _; exec sh -c CMD'`
 * and root writes its pid into the cgroups before sending the line it waits for. Output lines stream to
 * `onOutput`; a non-zero exit or the time-out (its process group is killed) throws with the last lines.
 */
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TimeoutError, ValidationError } from '../core/errors.js';
import { killGroup } from '../core/process.js';
import type { BuildUser } from './app-tree.js';
import { BASE_ENV } from './venv.js';

/** Lines of output kept for the error message. */
const TAIL_LINES = 15;

export interface ReleasePhaseOptions {
  command: string;
  /** The release's (read-only) app folder: the working folder. */
  appDir: string;
  venvDir: string;
  /** The release's config vars. */
  config: Record<string, string>;
  /** HOME and TMPDIR (the app user's own folder). */
  home: string;
  user?: BuildUser;
  /** Cgroup folders the process joins before it starts (Cgroups.create). @default none */
  cgroupDirs?: readonly string[];
  /** RLIMIT_NOFILE of the process. @default inherited */
  openFiles?: number;
  timeoutMs: number;
  onOutput?: (line: string) => void;
}

/** @throws ValidationError (non-zero exit) or TimeoutError, each with the command's last lines */
export function runReleasePhase(options: ReleasePhaseOptions): Promise<void> {
  const env: Record<string, string> = {
    ...BASE_ENV, PATH: `${join(options.venvDir, 'bin')}:${BASE_ENV.PATH}`, VIRTUAL_ENV: options.venvDir, HOME: options.home, TMPDIR: options.home,
    ...options.config,
  };
  const limit = options.openFiles === undefined ? '' : `ulimit -n ${Math.floor(options.openFiles)} && `;
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', `read _ && ${limit}exec /bin/sh -c "$1"`, 'sh', options.command], {
      cwd: options.appDir, env, stdio: ['pipe', 'pipe', 'pipe'], detached: true, ...(options.user ?? {}),
    });
    const tail: string[] = [];
    const partial = { stdout: '', stderr: '' };
    const addLine = (line: string): void => {
      if (line.trim() === '') return;
      options.onOutput?.(line);
      tail.push(line);
      if (tail.length > TAIL_LINES) tail.shift();
    };
    const onData = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
      const lines = (partial[stream] + chunk.toString('utf8')).split(/\r?\n/);
      partial[stream] = lines.pop()!;
      for (const line of lines) addLine(line);
    };
    child.stdout.on('data', onData('stdout'));
    child.stderr.on('data', onData('stderr'));
    child.stdin.on('error', () => undefined); // it may exit before reading (a failed cd): the exit says why
    child.once('exit', () => killGroup(child.pid));
    let isTimedOut = false;
    const timer = setTimeout(() => {
      isTimedOut = true;
      killGroup(child.pid);
    }, options.timeoutMs);
    child.once('spawn', () => {
      void (async () => {
        for (const dir of options.cgroupDirs ?? []) await writeFile(join(dir, 'cgroup.procs'), String(child.pid));
        child.stdin.end('go\n');
      })().catch((err: Error) => {
        killGroup(child.pid);
        reject(new ValidationError(`the release phase could not join its cgroups: ${err.message}`, { cause: err }));
      });
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new ValidationError(`the release phase could not run: ${err.message}`, { cause: err }));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      addLine(partial.stdout);
      addLine(partial.stderr);
      const output = tail.join('\n');
      const seconds = Math.round(options.timeoutMs / 1000);
      if (isTimedOut) reject(new TimeoutError(`release phase (${options.command.slice(0, 60)}) did not finish in ${seconds} s:\n${output}`, { details: { output: tail } }));
      else if (code !== 0) reject(new ValidationError(`release phase (${options.command.slice(0, 60)}) failed (${signal ?? `exit code ${code}`}):\n${output}`, { details: { output: tail } }));
      else resolve();
    });
  });
}
