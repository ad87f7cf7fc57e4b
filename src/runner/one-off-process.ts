/**
 * One one-off's process on this runner: the run helper (run-helper.ts) spawned as the app's user in its own
 * process group, put into the one-off's cgroups before it is told to start the command, and the lines it says
 * on its control socket turned into events.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { killGroup } from '../core/process.js';
import { HELPER_PYTHON, helperArgs } from './run-helper.js';

export interface OneOffProcessOptions {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  user?: { uid: number; gid: number } | undefined;
  pty: { rows: number; cols: number } | null;
  /** No stdin (detached): the command reads /dev/null. */
  hasStdin: boolean;
  /** cgroup folders the helper joins before the command starts (v1: memory, pids, cpu). */
  cgroupDirs?: string[] | undefined;
  openFiles?: number | undefined;
  graceMs: number;
}

export interface OneOffExit {
  code: number | null;
  signal: string | null;
  /** The command could not be executed (e.g. not found). */
  error?: string;
}

const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };
const SIGNAL_NAMES = Object.fromEntries(Object.entries(SIGNAL_NUMBERS).map(([k, v]) => [v, k]));

export class OneOffProcess {
  readonly stdout: Readable;
  readonly stderr: Readable;
  readonly stdin: Writable | null;
  /** Resolves once the command has ended (or could not start). */
  readonly exited: Promise<OneOffExit>;
  private readonly child: ChildProcess;
  private readonly control: Writable & Readable;
  private commandPid: number | undefined;
  private execError: string | undefined;

  private constructor(child: ChildProcess, exited: Promise<OneOffExit>, hasStdin: boolean) {
    this.child = child;
    this.stdout = child.stdout!;
    this.stderr = child.stderr!;
    this.stdin = hasStdin ? child.stdin! : null;
    this.control = child.stdio[3] as Writable & Readable;
    this.exited = exited;
  }

  /** Spawns the helper, joins it to its cgroups, then sends it the command. @throws when the helper cannot be spawned */
  static async start(options: OneOffProcessOptions): Promise<OneOffProcess> {
    // The helper's own environment is minimal; the command's comes over the control socket.
    const child = spawn(HELPER_PYTHON, helperArgs(), {
      cwd: options.cwd, env: { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8' }, detached: true,
      stdio: [options.hasStdin ? 'pipe' : 'ignore', 'pipe', 'pipe', 'pipe'], ...(options.user ?? {}),
    });
    let onExit!: (exit: OneOffExit) => void;
    const exited = new Promise<OneOffExit>((resolve) => (onExit = resolve));
    const proc = new OneOffProcess(child, exited, options.hasStdin);
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    let said: OneOffExit | undefined;
    let buffer = '';
    proc.control.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('utf8');
      for (let at = buffer.indexOf('\n'); at >= 0; at = buffer.indexOf('\n')) {
        const line = buffer.slice(0, at);
        buffer = buffer.slice(at + 1);
        if (line.startsWith('p ')) proc.commandPid = Number(line.slice(2));
        else if (line.startsWith('e ')) proc.execError = line.slice(2);
        else if (line.startsWith('x ')) {
          const [code, sig] = line.slice(2).split(' ').map(Number);
          said = { code: code ?? null, signal: sig ? (SIGNAL_NAMES[sig!] ?? `signal ${sig}`) : null, ...(proc.execError ? { error: proc.execError } : {}) };
        }
      }
    });
    proc.control.on('error', () => undefined); // the helper is gone; its exit says the rest
    child.stdin?.on('error', () => undefined); // EPIPE: the command closed its stdin
    child.once('exit', (code, signal) => {
      // A helper killed before it could say how the command ended: report its own end.
      onExit(said ?? { code: code ?? (signal ? 128 + (SIGNAL_NUMBERS[signal] ?? 0) : null), signal: signal ?? null });
    });
    try {
      for (const dir of options.cgroupDirs ?? []) await writeFile(join(dir, 'cgroup.procs'), String(child.pid));
    } catch (err) {
      killGroup(child.pid);
      throw err;
    }
    proc.control.write(`${JSON.stringify({ argv: options.argv, env: options.env, pty: options.pty, nofile: options.openFiles ?? null, graceMs: options.graceMs })}\n`);
    return proc;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  resize(rows: number, cols: number): void {
    this.say(`w ${rows} ${cols}`);
  }

  signal(name: string): void {
    const number = SIGNAL_NUMBERS[name];
    if (number !== undefined) this.say(`k ${number}`);
  }

  /** SIGHUP now (the PTY closed), SIGKILL after the grace (the helper does both). */
  hangup(): void {
    this.say('h');
  }

  /** Kills the helper's group and the command's session at once (the end, or the helper does not answer). */
  kill(): void {
    killGroup(this.commandPid);
    killGroup(this.child.pid);
  }

  private say(line: string): void {
    if (!this.control.destroyed && this.control.writable) this.control.write(`${line}\n`);
  }
}
