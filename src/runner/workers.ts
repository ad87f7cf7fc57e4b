/**
 * Supervises one background process (a Procfile `worker:`, `clock:` …) of an app instance: runs its command with
 * `/bin/sh -c 'exec CMD'` in the release's app folder, as the app's user, inside the instance's cgroups, with the
 * release's virtualenv and config vars, its output appended to the instance's log file (which the LogShipper
 * ships); restarts it with back-off when it exits; stops it with SIGTERM, a grace, then SIGKILL.
 *
 * Why the runner's own supervisor and not a uWSGI vassal with `attach-daemon2` (measured on Debian uWSGI 2.0.21):
 * a vassal stopping its attached daemon sends the stop signal, repeats it every second and SIGKILLs after a fixed
 * ~3 s, with no option to change it, so `runner.stopGraceMs` could not hold; and a vassal outlives a runner killed
 * with -9 (the emperor is adopted, by design, so web traffic keeps flowing), so the worker would keep running while
 * the nexus starts its replacement on another runner: twice. Here the process carries a parent-death signal
 * (SIGKILL, `setpriv --pdeathsig`): when the runner dies, its workers die with it, and only the replacement runs.
 *
 * How it starts, so root never executes or opens anything through a path the app controls: the runner spawns it
 * directly as the app's uid/gid (libuv drops supplementary groups; cwd `/`), with the app's environment, through
 * `/usr/bin/setpriv --no-new-privs --pdeathsig KILL` (as the app's user: it needs no privilege), and its shell first
 * waits on its stdin. Meanwhile root moves its pid into the instance's cgroups, then lets it go (one line on stdin):
 * every process of the app is inside them from its first instruction. The shell then lowers its own open-files limit
 * (root setting another uid's limits with prlimit needs CAP_SYS_RESOURCE, which containers often lack), opens its
 * log for append, `cd`s into the app folder and `exec`s the command.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { PierError } from '../core/errors.js';
import { killGroup } from '../core/process.js';

export interface WorkerSpec {
  /** Instance id (for logs). */
  id: string;
  /** Its process name, e.g. `worker.1`. */
  name: string;
  /** The Procfile command, run as `/bin/sh -c 'exec CMD'`. */
  command: string;
  /** The release's app folder (absolute); the command runs there. */
  appDir: string;
  /** The release's virtualenv: its `bin` leads PATH and VIRTUAL_ENV names it. @default none */
  venvDir?: string;
  /**
   * HOME/TMPDIR and config vars (config vars win, as for web instances). PORT is not set (a worker serves nothing);
   * DYNO is the process name, as on Heroku.
   */
  env: Record<string, string>;
  /** The app's user; without it the process runs as the runner's user. */
  user?: { uid: number; gid: number };
  /** cgroup folders (one per controller) the process joins before it runs anything. @default none */
  cgroups?: string[];
  /** Open files per process (RLIMIT_NOFILE). @default the runner's */
  maxFd?: number;
  /** The instance's log file (in a folder the app's user owns); output is appended to it. */
  logPath: string;
}

export interface WorkerOptions {
  /** SIGTERM to SIGKILL on stop. @default 10000 */
  stopGraceMs: number;
  /** A process that has run this long without exiting is `ready` (and its back-off is reset after 30 s). @default 1000 */
  settleMs: number;
  /** Called when the process settles (`ready`) or exits and waits to be restarted (`starting`). */
  onState?: (state: 'starting' | 'ready') => void;
  log: Logger;
}

const BASE_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', PYTHONUNBUFFERED: '1' };
/** First restart delay after a crash, doubling up to the max; reset once the process has run RESET_AFTER_MS. */
const FIRST_RESTART_MS = 500;
const MAX_RESTART_MS = 30_000;
const RESET_AFTER_MS = 30_000;

/**
 * The app-user shell: waits for root's go (cgroups joined, limits set), then drops what it may not keep and runs
 * the command. `$1` is the log file, `$2` the app folder, `$3` the open-files limit (soft and hard: the app cannot
 * raise it again); `set --` clears them before the app's command runs.
 */
function script(command: string): string {
  return [
    'read -r pier_go || exit 125',
    'exec </dev/null >>"$1" 2>&1 || exit 126',
    'if [ -n "$3" ]; then ulimit -n "$3" || exit 126; fi',
    'cd -- "$2" || exit 126',
    'set --',
    'unset pier_go',
    `exec ${command}`,
  ].join('\n');
}

export class WorkerProcess {
  private child: ChildProcess | undefined;
  private isStopping = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private settleTimer: NodeJS.Timeout | undefined;
  private restartDelayMs = FIRST_RESTART_MS;
  private startedAt = 0;
  private exited: Promise<void> = Promise.resolve();
  private readyWaiters: Array<() => void> = [];
  private isReadyNow = false;
  private readonly log: Logger;
  /** Times the process was started (1 + restarts). */
  starts = 0;

  constructor(private readonly spec: WorkerSpec, private readonly options: WorkerOptions) {
    this.log = options.log.child({ component: 'runner.worker', instance: spec.id, process: spec.name });
  }

  /** The running process's pid. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts the process (and keeps it running until `stop`). @throws PierError when it cannot be spawned at all */
  async start(): Promise<void> {
    await this.spawnOnce();
  }

  /** Resolves once the process has run `settleMs` without exiting (again, after a crash). */
  ready(signal?: AbortSignal): Promise<void> {
    if (this.isReadyNow) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(new PierError('PIER_ILLEGAL_STATE', 'the instance was stopped while starting'));
    return new Promise((resolve, reject) => {
      this.readyWaiters.push(resolve);
      signal?.addEventListener('abort', () => reject(new PierError('PIER_ILLEGAL_STATE', 'the instance was stopped while starting')), { once: true });
    });
  }

  private async spawnOnce(): Promise<void> {
    const { spec } = this;
    const env: Record<string, string> = { ...BASE_ENV };
    if (spec.venvDir) Object.assign(env, { PATH: `${join(spec.venvDir, 'bin')}:${BASE_ENV.PATH}`, VIRTUAL_ENV: spec.venvDir });
    Object.assign(env, spec.env);
    delete env.PORT;
    env.DYNO = spec.name; // Heroku's name for it (`worker.1`): apps log it or shard work by it
    // setpriv (as the app's user: no privilege needed) sets no-new-privs and the parent-death signal, then the shell waits.
    const argv = ['--no-new-privs', '--pdeathsig', 'KILL', '--', '/bin/sh', '-c', script(spec.command), 'sh', spec.logPath, spec.appDir, spec.maxFd === undefined ? '' : String(spec.maxFd)];
    const child = spawn('/usr/bin/setpriv', argv, {
      cwd: '/', env, detached: true, stdio: ['pipe', 'ignore', 'ignore'],
      ...(spec.user ? { uid: spec.user.uid, gid: spec.user.gid } : {}),
    });
    this.child = child;
    this.starts++;
    this.startedAt = Date.now();
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => {
      this.onExit(child, code, signal);
      resolve();
    }));
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (err) => reject(new PierError('PIER_ILLEGAL_STATE', `cannot start ${spec.name}: ${err.message}`, { cause: err })));
    });
    try {
      // Root's part, on a process that is still waiting on its stdin: nothing of the app has run yet.
      for (const dir of spec.cgroups ?? []) await writeFile(join(dir, 'cgroup.procs'), String(child.pid));
      child.stdin!.end('go\n');
    } catch (err) {
      killGroup(child.pid, 'SIGKILL');
      throw new PierError('PIER_ILLEGAL_STATE', `cannot confine ${spec.name}: ${(err as Error).message}`, { cause: err });
    }
    this.settleTimer = setTimeout(() => this.settled(), this.options.settleMs);
  }

  private settled(): void {
    this.isReadyNow = true;
    for (const resolve of this.readyWaiters.splice(0)) resolve();
    this.options.onState?.('ready');
    this.log.info({ pid: this.child?.pid, starts: this.starts }, 'worker up');
  }

  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    clearTimeout(this.settleTimer);
    if (this.child !== child) return;
    const ranMs = Date.now() - this.startedAt;
    killGroup(child.pid, 'SIGKILL'); // whatever it left in its group goes with it (the cgroup catches the rest)
    if (this.isStopping) return;
    if (ranMs >= RESET_AFTER_MS) this.restartDelayMs = FIRST_RESTART_MS;
    const delay = this.restartDelayMs;
    this.restartDelayMs = Math.min(this.restartDelayMs * 2, MAX_RESTART_MS);
    if (this.isReadyNow) this.options.onState?.('starting');
    this.isReadyNow = false;
    this.log.warn({ code, signal, ranMs, restartInMs: delay }, 'worker exited; restarting');
    this.restartTimer = setTimeout(() => {
      if (this.isStopping) return;
      this.spawnOnce().catch((err) => {
        this.log.error({ err }, 'cannot restart worker');
        this.restartTimer = setTimeout(() => this.onExit(child, null, null), 0); // counts as another crash
        this.child = child;
      });
    }, delay);
  }

  /**
   * SIGTERM to its process group, up to `graceMs` for it to exit, then SIGKILL. Resolves once it is gone; the
   * instance's cgroup removal then kills anything that left the group.
   */
  async stop(graceMs = this.options.stopGraceMs): Promise<void> {
    if (this.isStopping) return this.exited;
    this.isStopping = true;
    clearTimeout(this.restartTimer);
    clearTimeout(this.settleTimer);
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    this.log.info({ pid: child.pid, graceMs }, 'stopping worker');
    killGroup(child.pid, 'SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const isGone = await Promise.race([this.exited.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), graceMs)))]);
    clearTimeout(timer);
    if (!isGone) {
      this.log.warn({ pid: child.pid, graceMs }, 'worker did not stop in its grace; killing it');
      killGroup(child.pid, 'SIGKILL');
      await this.exited;
    }
  }
}
