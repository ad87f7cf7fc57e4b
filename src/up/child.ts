/** One supervised daemon process: output to its log file, restarted with backoff if it dies, stopped by pid. */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, fchmodSync, openSync, readFileSync, statSync } from 'node:fs';
import type { Logger } from 'pino';
import { RestartBackoff } from '../core/backoff.js';

export interface ChildSpec {
  name: string;
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  logFile: string;
  /** Time a child gets between SIGTERM and SIGKILL. @default 10000 */
  stopGraceMs?: number;
  /** First restart delay after it served a while (core/backoff.ts). @default 1000 */
  restartBaseMs?: number;
}

export class SupervisedChild {
  /** Restarts since `pier up` started it. */
  restarts = 0;
  private readonly backoff: RestartBackoff;
  /** Called after each (re)start, once the new pid is known. */
  onStart: (() => void) | undefined;
  private child: ChildProcess | undefined;
  private isStopping = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private startedAt = 0;

  constructor(
    readonly spec: ChildSpec,
    private readonly log: Logger,
  ) {
    this.backoff = new RestartBackoff(spec.restartBaseMs ?? 1000);
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get isRunning(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Log size when the current process started: its own lines come after. */
  private logOffset = 0;

  /** True once the current process has logged that it is ready (every daemon does, through runDaemon). */
  isReady(): boolean {
    try {
      const text = readFileSync(this.spec.logFile).subarray(this.logOffset).toString('utf8');
      return text.includes('"msg":"ready"');
    } catch {
      return false;
    }
  }

  start(): void {
    this.logOffset = existsSync(this.spec.logFile) ? statSync(this.spec.logFile).size : 0;
    // Root's alone (0600): daemon logs name every app and its errors. The daemon writes through this open file,
    // so it needs no access to the logs folder after dropping root.
    const fd = openSync(this.spec.logFile, 'a', 0o600);
    try {
      fchmodSync(fd, 0o600);
      this.child = spawn(this.spec.command, this.spec.args, { env: this.spec.env, stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd);
    }
    this.startedAt = Date.now();
    const child = this.child;
    child.once('exit', (code, signal) => this.onExit(child, code, signal));
    child.once('error', (err) => this.log.error({ err, child: this.spec.name }, 'cannot start daemon'));
    this.log.info({ child: this.spec.name, pid: child.pid }, 'daemon started');
    this.onStart?.();
  }

  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.child !== child || this.isStopping) return;
    // Back off when a daemon keeps dying right after start (bad config, port taken): 1 s, 2 s, … 30 s; one that
    // served a while comes back after the base delay again (core/backoff.ts).
    const delayMs = this.backoff.next(Date.now() - this.startedAt);
    this.restarts += 1;
    this.log.warn({ child: this.spec.name, code, signal, restartInMs: delayMs }, 'daemon exited; restarting');
    this.restartTimer = setTimeout(() => this.start(), delayMs);
  }

  /**
   * Why the current process failed, in one line: the CLI's own `error: …` line when there is one, else the
   * message of the last fatal log entry, else the last line of output.
   */
  failureReason(): string {
    const lines = this.logTail(40).split('\n').reverse();
    const cliError = lines.find((l) => l.startsWith('error: '));
    if (cliError) return cliError.slice('error: '.length).replace(/ \(PIER_[A-Z_]+\)$/, '');
    for (const line of lines) {
      try {
        const entry = JSON.parse(line) as { level?: number; msg?: string; err?: { message?: string } };
        if ((entry.level ?? 0) >= 50) return entry.err?.message ?? entry.msg ?? line;
      } catch {
        // plain output; keep looking
      }
    }
    return lines[0] ?? 'no output';
  }

  /** The end of its log file, for error messages. */
  logTail(lines = 5): string {
    try {
      const size = statSync(this.spec.logFile).size;
      const text = readFileSync(this.spec.logFile, 'utf8').slice(Math.max(0, size - 8192));
      return text.trim().split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  async stop(): Promise<void> {
    this.isStopping = true;
    clearTimeout(this.restartTimer);
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), this.spec.stopGraceMs ?? 10_000);
    await exited;
    clearTimeout(timer);
    this.log.info({ child: this.spec.name }, 'daemon stopped');
  }
}
