/**
 * Supervises one uWSGI emperor and owns its vassal folder: writes, touches and removes vassal files, and keeps
 * the emperor running (restarting it with back-off if it dies).
 *
 * Adoption: the emperor runs in its own session (setsid), logs to a file rather than a pipe, and is recorded in
 * `<dir>/emperor.json`. A runner that dies therefore leaves the emperor and its vassals serving; the next
 * `start()` finds the recorded pid, checks `/proc/<pid>/cmdline` is an emperor of this folder, and adopts it
 * instead of starting a second one, so nothing restarts. The runner then reconciles by vassal name
 * (`listVassals`, `readVassal` + `readVassalMeta`) against its assignments. `stop()` stops the emperor and
 * every vassal; `detach()` lets go and leaves them running, for a runner restart that should not drop traffic.
 *
 * Layout of `dir`: `vassals/` (the emperor's folder), `private/emperor.log` (the emperor's output, and what a
 * vassal prints before its own logger is set up: every app's instance names and errors, so root's only, 0600 in a
 * 0700 folder), `logs/<name>/vassal.log` (suggested per-vassal log, in a folder the vassal's user can write, since
 * uWSGI rotates it by renaming; `logs/` itself is root's, 0711, so apps can reach their own folder but neither list
 * nor swap the others), `emperor.json`, and the stats socket `emperor.sock`.
 *
 * Vassals inherit the emperor's stdin (/dev/null) and stdout/stderr; uWSGI points a vassal's fds 1 and 2 at its log
 * pipe once its logger runs, but keeps the original stderr open (fd 3 in every worker, write-only). Since the file
 * behind it is root's 0600, an app re-opening it through /proc/self/fd/3 gets EACCES (checked by test/e2e).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, fchmodSync, openSync } from 'node:fs';
import { chmod, chown, mkdir, open, readFile, readdir, rename, rm, rmdir, stat, unlink, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { IllegalStateError, NotFoundError, PierError, ValidationError } from '../core/errors.js';
import { randomId } from '../core/ids.js';
import { isProcessAlive, killGroup } from '../core/process.js';
import { Lifecycle, type Service } from '../core/service.js';
import { sleep } from '../core/wait.js';
import { readEmperorStats, type EmperorStatus } from './emperor-stats.js';
import { readLastLines } from './log-tail.js';
import { removeOwnedEntry } from './app-files.js';
import { assertRootPath } from './checked-open.js';

export interface EmperorOptions {
  /** The emperor's folder (created if missing); see the module comment for its layout. */
  dir: string;
  log: Logger;
  /** uWSGI binary. @default 'uwsgi' */
  uwsgiBinary?: string;
  /** How often the emperor scans its folder; whole seconds, at least 1 (uWSGI's own default is 3). @default 1000 */
  scanIntervalMs?: number;
  /** Time the emperor gets to answer on its stats socket at start. @default 10000 */
  startTimeoutMs?: number;
  /** Time the emperor gets to stop its vassals after SIGTERM before everything is SIGKILLed. @default 10000 */
  stopGraceMs?: number;
  /** How often the emperor's pid is checked; a dead emperor is restarted after 1 s, doubling to 30 s. @default 1000 */
  watchIntervalMs?: number;
  /** The emperor's environment, which every vassal inherits. Kept minimal so runner secrets never reach apps. @default PATH and LANG */
  env?: Record<string, string>;
}

/** Vassal names: they become file names and process titles. */
const VASSAL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const DEFAULT_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' };
const MAX_RESTART_DELAY_MS = 30_000;

export interface WriteVassalOptions {
  /**
   * Numeric owner for the vassal's log folder: the uid/gid the vassal drops to. uWSGI opens (and rotates) its log
   * after dropping privileges, so without this a vassal with `uid` set logs nothing. @default the emperor's user
   */
  logOwner?: { uid: number; gid: number };
}

export class Emperor implements Service {
  /** Folder the emperor watches. */
  readonly vassalDir: string;
  /** Folder of the (suggested) vassals' log folders. */
  readonly logDir: string;
  /** The emperor's own output (root's only). */
  readonly emperorLogPath: string;
  private readonly dir: string;
  private readonly log: Logger;
  private readonly lifecycle: Lifecycle;
  private readonly statsPath: string;
  private pidValue: number | undefined;
  private adopted = false;
  private watchdog: NodeJS.Timeout | undefined;
  private restartDelayMs = 1000;
  private nextRestartAt = 0;
  private restarting: Promise<void> | undefined;

  constructor(private readonly options: EmperorOptions) {
    this.dir = resolve(options.dir);
    this.vassalDir = join(this.dir, 'vassals');
    this.logDir = join(this.dir, 'logs');
    this.emperorLogPath = join(this.dir, 'private', 'emperor.log');
    this.log = options.log.child({ component: 'runner.emperor' });
    this.lifecycle = new Lifecycle('emperor', this.log);
    const socket = join(this.dir, 'emperor.sock');
    // Unix socket paths are limited to 107 bytes; fall back to a name derived from the folder.
    const digest = createHash('sha256').update(this.dir).digest('hex').slice(0, 16);
    this.statsPath = socket.length <= 100 ? socket : join(tmpdir(), `pier-emperor-${digest}.sock`);
  }

  /** The emperor's pid while running. */
  get pid(): number | undefined {
    return this.pidValue;
  }

  /** True when start() found an emperor already running for this folder and took it over. */
  get isAdopted(): boolean {
    return this.adopted;
  }

  /** Starts (or adopts) the emperor; resolves once it answers on its stats socket. */
  async start(): Promise<void> {
    await this.lifecycle.start(async () => {
      await this.prepareFolders();
      const running = await this.findRunning();
      this.lifecycle.defer('emperor', () => this.terminate());
      if (running !== undefined) {
        this.pidValue = running;
        this.adopted = true;
        this.log.info({ pid: running }, 'adopted running emperor');
      } else {
        await this.spawnEmperor();
      }
      await this.waitUntilAnswering();
      this.watchdog = setInterval(() => this.watch(), this.options.watchIntervalMs ?? 1000);
      this.watchdog.unref();
    });
  }

  /**
   * Creates the folders with the modes the module comment gives, and checks nothing on the way to `logs/` can be
   * swapped by an app (the log shipper, as root, relies on it). An emperor log left in `logs/` by an earlier
   * version is made root's only.
   */
  private async prepareFolders(): Promise<void> {
    const privateDir = join(this.dir, 'private');
    for (const [folder, mode] of [[this.dir, 0o711], [this.vassalDir, 0o700], [this.logDir, 0o711], [privateDir, 0o700]] as const) {
      await mkdir(folder, { recursive: true, mode });
      await chmod(folder, mode);
    }
    await assertRootPath(this.logDir);
    await chmod(join(this.logDir, 'emperor.log'), 0o600).catch(() => undefined);
  }

  /** Stops the emperor and all its vassals (SIGTERM, then SIGKILL to the whole session after the grace). */
  stop(): Promise<void> {
    return this.lifecycle.stop();
  }

  /** Lets go of the emperor without stopping it: its vassals keep serving, and the next start() adopts it. */
  async detach(): Promise<void> {
    if (!this.lifecycle.isRunning) throw new IllegalStateError(`emperor cannot detach: it is ${this.lifecycle.state}`);
    clearInterval(this.watchdog);
    this.log.info({ pid: this.pidValue }, 'detached from emperor');
    this.pidValue = undefined;
    await this.lifecycle.stop();
  }

  /**
   * Writes (or replaces) a vassal: to a temp name, then renamed, so the emperor never reads half a file. Also
   * creates the folder of `vassalLogPath(name)`.
   */
  async writeVassal(name: string, ini: string, options: WriteVassalOptions = {}): Promise<void> {
    const path = this.vassalPath(name);
    await this.prepareLogFolder(name, options);
    const previous = await mtimeSeconds(path);
    const tmp = join(this.vassalDir, `.${name}.${randomId()}.tmp`);
    // Root's only: the vassal file holds the app's config vars (its secrets), and app users must not read it.
    const handle = await open(tmp, 'w', 0o600);
    try {
      await handle.writeFile(ini);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await rename(tmp, path);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    // The emperor compares mtimes in whole seconds: a rewrite within the same second would go unnoticed.
    if (previous !== undefined) await bumpMtime(path, previous);
    this.log.info({ vassal: name }, 'vassal written');
  }

  /**
   * Creates the folder of `vassalLogPath(name)`, owned by `logOwner` when given (a vassal's, or a background
   * process's, user writes its own log).
   */
  async prepareLogFolder(name: string, options: WriteVassalOptions = {}): Promise<void> {
    this.checkName(name);
    const logFolder = join(this.logDir, name);
    await mkdir(logFolder, { recursive: true, mode: 0o755 });
    if (options.logOwner) {
      // The app's user writes it; other apps cannot read it (root, which ships it, can).
      await chown(logFolder, options.logOwner.uid, options.logOwner.gid);
      await chmod(logFolder, 0o750);
    }
  }

  /**
   * Removes a vassal; the emperor stops it within a scan interval. Its log folder stays for a post-mortem unless
   * `removeLog` is set. False when there was no such vassal.
   */
  async removeVassal(name: string, options: { removeLog?: boolean } = {}): Promise<boolean> {
    const path = this.vassalPath(name);
    if (options.removeLog) await this.removeLogFolder(name);
    try {
      await unlink(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    this.log.info({ vassal: name }, 'vassal removed');
    return true;
  }

  /**
   * Removes a vassal's log folder. It belongs to the vassal's user, whose other processes may be changing it: the
   * walk runs as that user (see app-files.ts). False when something stayed behind.
   */
  async removeLogFolder(name: string): Promise<boolean> {
    this.checkName(name);
    return removeOwnedEntry(join(this.logDir, name));
  }

  /** Names of the vassal log folders present (those of removed vassals stay until removeLogFolder). */
  async listLogFolders(): Promise<string[]> {
    const entries = await readdir(this.logDir, { withFileTypes: true });
    return entries.filter((e) => e.isDirectory() && VASSAL_NAME.test(e.name)).map((e) => e.name).sort();
  }

  /** Gracefully reloads a vassal (the emperor sees a newer mtime). @throws NotFoundError when it does not exist. */
  async touchVassal(name: string): Promise<void> {
    const path = this.vassalPath(name);
    const current = await mtimeSeconds(path);
    if (current === undefined) throw new NotFoundError(`no vassal named '${name}'`);
    await bumpMtime(path, current);
    this.log.info({ vassal: name }, 'vassal touched');
  }

  /** Names of the vassal files present, sorted. */
  async listVassals(): Promise<string[]> {
    const files = await readdir(this.vassalDir);
    return files.filter((f) => f.endsWith('.ini') && !f.startsWith('.')).map((f) => f.slice(0, -4)).sort();
  }

  /** A vassal file's text, or undefined when there is none. */
  async readVassal(name: string): Promise<string | undefined> {
    try {
      return await readFile(this.vassalPath(name), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** Where a vassal named `name` should log (pass it as the vassal's `logFile`); its folder is made by writeVassal. */
  vassalLogPath(name: string): string {
    this.checkName(name);
    return join(this.logDir, name, 'vassal.log');
  }

  /**
   * The last lines of a vassal's log, reaching into the rotated `<log>.1` when the current file is short
   * (uWSGI's file logger starts a new file at every reload, so the lines before it are there).
   */
  async readVassalLog(name: string, maxLines = 50): Promise<string[]> {
    const path = this.vassalLogPath(name);
    const current = await readLastLines(path, maxLines);
    if (current.length >= maxLines) return current;
    return [...(await readLastLines(`${path}.1`, maxLines - current.length)), ...current];
  }

  /** The emperor's view of its vassals, from its stats socket. */
  status(): Promise<EmperorStatus> {
    return readEmperorStats(this.statsPath);
  }

  private vassalPath(name: string): string {
    this.checkName(name);
    return join(this.vassalDir, `${name}.ini`);
  }

  private checkName(name: string): void {
    if (!VASSAL_NAME.test(name)) {
      throw new ValidationError(`vassal name '${name}' must be 1-128 letters, digits, '.', '_' or '-', not starting with '.', '_' or '-'`);
    }
  }

  /** The pid recorded in emperor.json when that process is still an emperor of this folder. */
  private async findRunning(): Promise<number | undefined> {
    let pid: number;
    try {
      pid = (JSON.parse(await readFile(join(this.dir, 'emperor.json'), 'utf8')) as { pid: number }).pid;
    } catch {
      return undefined;
    }
    if (!isProcessAlive(pid)) return undefined;
    try {
      const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
      const at = argv.indexOf('--emperor');
      return at !== -1 && argv[at + 1] === this.vassalDir ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  private async spawnEmperor(): Promise<void> {
    const args = [
      '--emperor', this.vassalDir,
      '--emperor-freq', String(Math.max(1, Math.round((this.options.scanIntervalMs ?? 1000) / 1000))),
      '--emperor-stats', this.statsPath,
      '--die-on-term',
    ];
    await rm(this.statsPath, { force: true });
    const logFd = openSync(this.emperorLogPath, 'a', 0o600);
    try {
      fchmodSync(logFd, 0o600); // a file from before this version may be 0644
      // A file, not a pipe, so the emperor can outlive this process (see adoption in the module comment).
      const child = spawn(this.options.uwsgiBinary ?? 'uwsgi', args, {
        cwd: this.dir,
        detached: true,
        stdio: ['ignore', logFd, logFd],
        env: this.options.env ?? DEFAULT_ENV,
      });
      await new Promise<void>((resolveSpawn, rejectSpawn) => {
        child.once('spawn', resolveSpawn);
        child.once('error', (err) => rejectSpawn(new PierError('PIER_ILLEGAL_STATE', `cannot run uWSGI: ${err.message}`, { cause: err })));
      });
      child.unref();
      this.pidValue = child.pid!;
    } finally {
      closeSync(logFd);
    }
    this.adopted = false;
    await writeJson(join(this.dir, 'emperor.json'), { pid: this.pidValue, vassalDir: this.vassalDir, startedAt: new Date().toISOString() });
    this.log.info({ pid: this.pidValue }, 'emperor started');
  }

  private async waitUntilAnswering(): Promise<void> {
    const timeoutMs = this.options.startTimeoutMs ?? 10_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const pid = this.pidValue!;
      if (!isProcessAlive(pid)) {
        const tail = (await readLastLines(this.emperorLogPath, 5)).join(' | ');
        throw new PierError('PIER_ILLEGAL_STATE', `uWSGI emperor exited at start: ${tail}`);
      }
      try {
        if ((await this.status()).pid === pid) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new PierError('PIER_TIMEOUT', `uWSGI emperor did not answer within ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  /** Restarts the emperor (with back-off) if it died; the new one starts every vassal still in the folder. */
  private watch(): void {
    const pid = this.pidValue;
    if (pid === undefined || this.restarting || !this.lifecycle.isRunning || isProcessAlive(pid)) return;
    if (Date.now() < this.nextRestartAt) return;
    this.restarting = this.restart(pid).finally(() => {
      this.restarting = undefined;
    });
  }

  private async restart(deadPid: number): Promise<void> {
    this.log.error({ pid: deadPid }, 'emperor died; restarting it');
    killGroup(deadPid, 'SIGKILL'); // vassals left over from the dead emperor would hold their ports
    this.nextRestartAt = Date.now() + this.restartDelayMs;
    this.restartDelayMs = Math.min(this.restartDelayMs * 2, MAX_RESTART_DELAY_MS);
    try {
      await this.spawnEmperor();
      await this.waitUntilAnswering();
      this.restartDelayMs = 1000;
    } catch (err) {
      this.log.error({ err }, 'emperor restart failed');
    }
  }

  private async terminate(): Promise<void> {
    clearInterval(this.watchdog);
    await this.restarting;
    const pid = this.pidValue;
    this.pidValue = undefined;
    if (pid === undefined) return;
    const graceMs = this.options.stopGraceMs ?? 10_000;
    if (isProcessAlive(pid)) {
      process.kill(pid, 'SIGTERM');
      if (!(await waitUntilDead(pid, graceMs))) {
        this.log.warn({ pid, graceMs }, 'emperor did not stop in time; killing it and its vassals');
      }
    }
    // The emperor leads its own process group (detached), shared by its vassals: kill any straggler.
    killGroup(pid, 'SIGKILL');
    await waitUntilDead(pid, 2000);
    await rm(join(this.dir, 'emperor.json'), { force: true });
    await rm(this.statsPath, { force: true });
    this.log.info({ pid }, 'emperor stopped');
  }
}

async function waitUntilDead(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isProcessAlive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

async function mtimeSeconds(path: string): Promise<number | undefined> {
  try {
    return Math.floor((await stat(path)).mtimeMs / 1000);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Sets mtime to a whole second after `previousSeconds` (or now, if later), so the emperor sees a change. */
async function bumpMtime(path: string, previousSeconds: number): Promise<void> {
  const seconds = Math.max(Math.floor(Date.now() / 1000), previousSeconds + 1);
  await utimes(path, seconds, seconds);
}

async function writeJson(path: string, value: unknown): Promise<void> {
  const tmp = `${path}.${randomId()}.tmp`;
  await open(tmp, 'w', 0o600).then(async (handle) => { // root's only: nothing in it is for apps
    try {
      await handle.writeFile(JSON.stringify(value));
    } finally {
      await handle.close();
    }
  });
  await rename(tmp, path);
}
