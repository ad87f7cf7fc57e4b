/**
 * Supervises one Redis add-on server: Debian's `/usr/bin/redis-server` run as the app's user, in cgroups of its own
 * (memory-limited), with `requirepass`, `maxmemory` + `allkeys-lru` and no persistence (its data is a cache), bound
 * to the runner's address on the port the leader picked. Proven up (its listener is its own, then AUTH + PING)
 * before it is reported; restarted with back-off (empty) when it exits; stopped with SIGTERM, a grace, then SIGKILL.
 *
 * How it starts, as workers.ts does: spawned directly as the app's uid/gid through `/usr/bin/setpriv --no-new-privs
 * --pdeathsig KILL` (the server dies with the runner: a restarted runner starts it again from its assignments, and
 * a dead runner's server never serves beside its replacement), its shell waiting on stdin until root has moved it
 * into its cgroups. Its config — password included — then follows on the same stdin (`redis-server -` reads the
 * config from stdin), never on the command line, which every user can read in /proc/<pid>/cmdline. Its working
 * folder is made fresh by root in a root-owned parent, then handed to the app's user; root never opens it again.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { PierError } from '../core/errors.js';
import { killGroup } from '../core/process.js';
import { sleep } from '../core/wait.js';
import { checkListener, listenSockets } from './listener.js';

export const REDIS_SERVER = '/usr/bin/redis-server';

export interface RedisServerSpec {
  /** The add-on's name (for logs). */
  name: string;
  port: number;
  /** Address it binds (the runner's bindHost). */
  bindHost: string;
  /** `requirepass`; [A-Za-z0-9] only (the protocol's pattern), so it needs no quoting in the config. */
  password: string;
  maxmemoryMb: number;
  /** Its working folder: fresh, made by root, owned by `user`. */
  workDir: string;
  /** The app's user; without it the server runs as the runner's user. */
  user?: { uid: number; gid: number };
  /** cgroup folders (one per controller) the server joins before it runs. @default none */
  cgroups?: string[];
}

export interface RedisServerOptions {
  /** Time from spawn to answering AUTH + PING before a start fails. @default 10000 */
  startTimeoutMs?: number;
  /** SIGTERM to SIGKILL on stop. @default 3000 */
  stopGraceMs?: number;
  /** Called when the server answers (first start, and again after each restart: it is empty then). */
  onUp: (restarted: boolean, why?: string) => void;
  /** Called when a start failed (it is not retried here: the leader places it again). */
  onFailed: (reason: string) => void;
  log: Logger;
}

const FIRST_RESTART_MS = 500;
const MAX_RESTART_MS = 30_000;
const RESET_AFTER_MS = 30_000;
/** Lines of the server's own output kept to explain a failed start. */
const TAIL_LINES = 20;

/** The config fed on stdin (see the module comment). */
export function redisConfig(spec: Pick<RedisServerSpec, 'port' | 'bindHost' | 'password' | 'maxmemoryMb' | 'workDir'>): string {
  if (!/^[A-Za-z0-9]{16,128}$/.test(spec.password)) throw new PierError('PIER_VALIDATION', 'a redis password must be 16-128 letters and digits');
  if (!/^\/[A-Za-z0-9._/+-]+$/.test(spec.workDir)) throw new PierError('PIER_VALIDATION', `redis working folder '${spec.workDir}' must be an absolute path of letters, digits and ._/+-`);
  return [
    `port ${spec.port}`,
    `bind ${spec.bindHost}`,
    'protected-mode yes',
    `requirepass ${spec.password}`,
    `maxmemory ${spec.maxmemoryMb}mb`,
    'maxmemory-policy allkeys-lru',
    'save ""',
    'appendonly no',
    `dir "${spec.workDir}"`,
    'daemonize no',
    'logfile ""',
    // Nothing that loads code or changes paths at run time (7.0's defaults; stated so an upgrade cannot turn them on).
    'enable-debug-command no',
    'enable-module-command no',
    'enable-protected-configs no',
    '',
  ].join('\n');
}

export class RedisServer {
  private child: ChildProcess | undefined;
  private isStopping = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private restartDelayMs = FIRST_RESTART_MS;
  private upAt = 0;
  private exited: Promise<void> = Promise.resolve();
  private tail: string[] = [];
  private readonly log: Logger;
  /** Times the server was started (1 + restarts). */
  starts = 0;

  constructor(readonly spec: RedisServerSpec, private readonly options: RedisServerOptions) {
    this.log = options.log.child({ component: 'runner.redis', addon: spec.name, port: spec.port });
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts the server and resolves once it answers; rejects (and reports failed) when it cannot. */
  async start(): Promise<void> {
    try {
      await this.startOnce();
      this.options.onUp(false);
    } catch (err) {
      if (this.isStopping) return;
      this.options.onFailed((err as Error).message);
      throw err;
    }
  }

  private async startOnce(): Promise<void> {
    const { spec } = this;
    // Someone listens on the port already: the server would fail to bind, and an AUTH sent there would hand the
    // password to whoever it is.
    if ((await listenSockets(spec.port)).length > 0) throw new PierError('PIER_ILLEGAL_STATE', `port ${spec.port} is taken on this runner`);
    const script = 'read -r pier_go || exit 125\nunset pier_go\nexec /usr/bin/redis-server -';
    const child = spawn('/usr/bin/setpriv', ['--no-new-privs', '--pdeathsig', 'KILL', '--', '/bin/sh', '-c', script], {
      cwd: '/', env: { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8', HOME: spec.workDir }, detached: true, stdio: ['pipe', 'pipe', 'pipe'],
      ...(spec.user ? { uid: spec.user.uid, gid: spec.user.gid } : {}),
    });
    this.child = child;
    this.starts++;
    this.tail = [];
    const keep = (chunk: Buffer): void => {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) this.tail.push(line.slice(0, 500));
      if (this.tail.length > TAIL_LINES) this.tail.splice(0, this.tail.length - TAIL_LINES);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    let hasExited = false;
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => {
      hasExited = true;
      this.onExit(child, code, signal);
      resolve();
    }));
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (err) => reject(new PierError('PIER_ILLEGAL_STATE', `cannot start redis-server: ${err.message}`, { cause: err })));
    });
    try {
      for (const dir of spec.cgroups ?? []) await writeFile(join(dir, 'cgroup.procs'), String(child.pid));
      child.stdin!.end(`go\n${redisConfig(spec)}`);
    } catch (err) {
      killGroup(child.pid, 'SIGKILL');
      throw new PierError('PIER_ILLEGAL_STATE', `cannot confine redis-server: ${(err as Error).message}`, { cause: err });
    }
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 10_000);
    for (;;) {
      if (hasExited || this.isStopping) throw new PierError('PIER_ILLEGAL_STATE', `redis-server exited at start: ${this.lastWords()}`);
      const verdict = await checkListener(spec.port, { vassalPid: child.pid, ...(spec.user ? { uid: spec.user.uid } : {}) });
      if (verdict.state === 'foreign') {
        killGroup(child.pid, 'SIGKILL');
        throw new PierError('PIER_ILLEGAL_STATE', verdict.reason);
      }
      if (verdict.state === 'ours' && (await authPing(spec.bindHost === '0.0.0.0' ? '127.0.0.1' : spec.bindHost, spec.port, spec.password, 1000))) break;
      if (Date.now() > deadline) {
        killGroup(child.pid, 'SIGKILL');
        throw new PierError('PIER_TIMEOUT', `redis-server did not answer AUTH + PING within ${this.options.startTimeoutMs ?? 10_000} ms: ${this.lastWords()}`);
      }
      await sleep(25);
    }
    this.upAt = Date.now();
    this.log.info({ pid: child.pid, starts: this.starts }, 'redis server up');
  }

  private lastWords(): string {
    return this.tail.at(-1)?.replace(/^\d+:[A-Z] [^#*]*[#*-] /, '') ?? 'no output';
  }

  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.child !== child) return;
    killGroup(child.pid, 'SIGKILL');
    if (this.isStopping || this.upAt === 0) return; // a failed start is the start's to report
    const ranMs = Date.now() - this.upAt;
    this.upAt = 0;
    if (ranMs >= RESET_AFTER_MS) this.restartDelayMs = FIRST_RESTART_MS;
    const delay = this.restartDelayMs;
    this.restartDelayMs = Math.min(this.restartDelayMs * 2, MAX_RESTART_MS);
    const why = `redis-server exited (${signal ?? `code ${code}`}); restarted empty`;
    this.log.warn({ code, signal, ranMs, restartInMs: delay }, 'redis server exited; restarting');
    this.restartTimer = setTimeout(() => {
      if (this.isStopping) return;
      this.startOnce().then(() => this.options.onUp(true, why), (err: Error) => {
        if (!this.isStopping) this.options.onFailed(err.message);
      });
    }, delay);
  }

  /** SIGTERM to its process group, up to the grace, then SIGKILL; resolves once it is gone. */
  async stop(): Promise<void> {
    if (this.isStopping) return this.exited;
    this.isStopping = true;
    clearTimeout(this.restartTimer);
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    killGroup(child.pid, 'SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const graceMs = this.options.stopGraceMs ?? 3000;
    const isGone = await Promise.race([this.exited.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), graceMs)))]);
    clearTimeout(timer);
    if (!isGone) {
      killGroup(child.pid, 'SIGKILL');
      await this.exited;
    }
    this.log.info({ pid: child.pid }, 'redis server stopped');
  }
}

/** Whether a Redis server on host:port answers `AUTH password` with +OK and `PING` with +PONG. */
export function authPing(host: string, port: number, password: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    let answer = '';
    const socket = connect({ host, port });
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write(`AUTH ${password}\r\nPING\r\n`));
    socket.on('data', (chunk) => {
      answer += chunk.toString('latin1');
      if (answer.length > 1024 || answer.startsWith('-')) done(false);
      else if (answer.includes('+PONG\r\n')) done(answer === '+OK\r\n+PONG\r\n');
    });
  });
}
