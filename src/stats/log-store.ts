/**
 * Per-app log files: lines are appended, in arrival order, to numbered chunks under `<dir>/<app>/`
 * (000001.log, 000002.log, …); a chunk is closed at `chunkBytes` and only the newest `retainChunks` are kept.
 * Nothing but lines waiting for their write is held in memory; `tail` reads chunks from their end.
 */
import { mkdir, open, readdir, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ValidationError } from '../core/errors.js';
import { APP_NAME_PATTERN } from '../protocol/index.js';

export interface LogStoreOptions {
  /** Folder holding one sub-folder per app. */
  dir: string;
  /** Size at which a chunk is closed and the next begun. */
  chunkBytes: number;
  /** Chunks kept per app. */
  retainChunks: number;
  log: Logger;
  /** Bytes of one app's lines waiting for their write; beyond it new lines are dropped. @default 8388608 */
  maxPendingBytes?: number;
  /** Called after lines are written, in order (the live tail publishes them). */
  onWritten?: (app: string, lines: string[]) => void;
}

export interface LogStoreStats {
  written: number;
  /** Lines lost: the app's queue was full or the write failed. */
  dropped: number;
  writeErrors: number;
}

export interface TailResult {
  lines: string[];
  /** True when `maxBytes` stopped the read before `n` lines. */
  truncated: boolean;
}

interface AppLog {
  app: string;
  dir: string;
  /** Chunk numbers on disk, oldest first; undefined until the folder was read. */
  chunks: number[] | undefined;
  size: number;
  handle: FileHandle | undefined;
  pending: string[];
  pendingBytes: number;
  writing: Promise<void> | undefined;
  /** Lines accepted so far, and lines written or lost so far: a tail waits for the second to reach the first. */
  accepted: number;
  settled: number;
  waiters: Array<{ target: number; resolve: () => void }>;
  lastUsedMs: number;
}

const APP = new RegExp(APP_NAME_PATTERN);
const CHUNK_FILE = /^(\d{6,})\.log$/;
const READ_BLOCK_BYTES = 64 * 1024;
/** Apps silent this long have their file closed and their entry forgotten. */
const IDLE_MS = 60_000;

export function chunkName(index: number): string {
  return `${String(index).padStart(6, '0')}.log`;
}

export class LogStore {
  readonly stats: LogStoreStats = { written: 0, dropped: 0, writeErrors: 0 };
  private readonly apps = new Map<string, AppLog>();
  private readonly log: Logger;
  private readonly maxPendingBytes: number;
  private sweeper: NodeJS.Timeout | undefined;
  private lastWarnAt = 0;

  constructor(private readonly options: LogStoreOptions) {
    this.log = options.log.child({ component: 'stats.log-store' });
    this.maxPendingBytes = options.maxPendingBytes ?? 8 * 1024 * 1024;
  }

  async start(): Promise<void> {
    await mkdir(this.options.dir, { recursive: true, mode: 0o700 }); // every app's logs: not for app users
    this.sweeper = setInterval(() => void this.closeIdle(), IDLE_MS / 2);
    this.sweeper.unref();
  }

  /** Queues lines (each without newline) for `app`; written in order, soon. Never throws for I/O. */
  append(app: string, lines: string[]): void {
    if (!APP.test(app)) throw new ValidationError(`app name '${app.slice(0, 40)}' is not valid`);
    let entry = this.apps.get(app);
    if (!entry) {
      entry = {
        app, dir: join(this.options.dir, app), chunks: undefined, size: 0, handle: undefined, pending: [], pendingBytes: 0, writing: undefined,
        accepted: 0, settled: 0, waiters: [], lastUsedMs: 0,
      };
      this.apps.set(app, entry);
    }
    for (const line of lines) {
      if (entry.pendingBytes > this.maxPendingBytes) {
        this.drop(1, 'log queue full');
        continue;
      }
      // One record per line on disk, whatever a caller passed (a newline inside would forge a second record).
      entry.pending.push(line.includes('\n') ? line.replace(/\r?\n/g, ' ') : line);
      entry.pendingBytes += line.length + 1;
      entry.accepted += 1;
    }
    entry.lastUsedMs = Date.now();
    entry.writing ??= this.drain(entry);
  }

  /** Resolves once every line appended so far is written (or dropped). */
  async flush(): Promise<void> {
    await Promise.all([...this.apps.values()].map((entry) => entry.writing));
  }

  /** The last `n` lines of `app`, oldest first, reading chunks backwards; at most `maxBytes` of text. */
  async tail(app: string, n: number, maxBytes = Number.MAX_SAFE_INTEGER): Promise<TailResult> {
    if (!APP.test(app)) throw new ValidationError(`app name '${app.slice(0, 40)}' is not valid`);
    const entry = this.apps.get(app);
    // Wait for the lines accepted before this call, not for a queue that busy traffic may never empty.
    if (entry && entry.settled < entry.accepted) {
      const target = entry.accepted;
      await new Promise<void>((resolve) => entry.waiters.push({ target, resolve }));
    }
    const chunks = entry?.chunks ?? (await listChunks(join(this.options.dir, app)));
    const out: string[] = [];
    let bytes = 0;
    let truncated = false;
    const visit = (line: string): boolean => {
      bytes += Buffer.byteLength(line) + 8;
      if (bytes > maxBytes) {
        truncated = true;
        return false;
      }
      out.push(line);
      return out.length < n;
    };
    for (const index of [...chunks].reverse()) {
      if (out.length >= n || truncated) break;
      if (await readLinesBackwards(join(this.options.dir, app, chunkName(index)), visit)) break;
    }
    return { lines: out.reverse(), truncated };
  }

  /**
   * Deletes every line of `app` (it was destroyed), queued or written: its folder goes. `olderThanMs` instead
   * deletes only the chunks last written before that time (the app of that name was created after them).
   */
  async purge(app: string, olderThanMs?: number): Promise<void> {
    if (!APP.test(app)) throw new ValidationError(`app name '${app.slice(0, 40)}' is not valid`);
    const dir = join(this.options.dir, app);
    if (olderThanMs !== undefined) {
      const entry = this.apps.get(app);
      for (const index of await listChunks(dir)) {
        const path = join(dir, chunkName(index));
        const mtimeMs = await stat(path).then((s) => s.mtimeMs, () => Infinity);
        if (mtimeMs >= olderThanMs || (entry?.chunks && index === entry.chunks.at(-1))) continue;
        await rm(path, { force: true });
        if (entry?.chunks) entry.chunks = entry.chunks.filter((c) => c !== index);
      }
      return;
    }
    const entry = this.apps.get(app);
    if (entry) {
      entry.pending = [];
      entry.pendingBytes = 0;
      await entry.writing;
      await this.closeFile(entry);
      for (const waiter of entry.waiters) waiter.resolve();
      if (this.apps.get(app) === entry) this.apps.delete(app);
    }
    await rm(dir, { recursive: true, force: true });
  }

  /** When `app`'s newest chunk was last written (ms since the epoch); 0 when it has none. */
  async lastWrittenMs(app: string): Promise<number> {
    const chunks = await listChunks(join(this.options.dir, app));
    if (chunks.length === 0) return 0;
    return stat(join(this.options.dir, app, chunkName(chunks.at(-1)!))).then((s) => s.mtimeMs, () => 0);
  }

  /** Names of the apps that have a log folder. */
  async listApps(): Promise<string[]> {
    const entries = await readdir(this.options.dir, { withFileTypes: true }).catch(() => []);
    return entries.filter((e) => e.isDirectory() && APP.test(e.name)).map((e) => e.name);
  }

  /** Writes what is queued and closes every file. */
  async close(): Promise<void> {
    clearInterval(this.sweeper);
    await this.flush();
    await Promise.all([...this.apps.values()].map((entry) => this.closeFile(entry)));
    this.apps.clear();
  }

  private async drain(entry: AppLog): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve)); // let this tick's lines join the batch
    while (entry.pending.length > 0) {
      const batch = entry.pending;
      entry.pending = [];
      entry.pendingBytes = 0;
      try {
        await this.write(entry, batch);
        this.stats.written += batch.length;
        this.options.onWritten?.(entry.app, batch);
      } catch (err) {
        this.stats.writeErrors += 1;
        this.drop(batch.length, 'log write failed', err);
        await this.closeFile(entry);
        entry.chunks = undefined; // read the folder again next time
      }
      entry.settled += batch.length;
      entry.waiters = entry.waiters.filter((w) => (w.target <= entry.settled ? (w.resolve(), false) : true));
    }
    entry.writing = undefined;
  }

  /** Writes a batch, starting new chunks where the current one would pass `chunkBytes`. */
  private async write(entry: AppLog, batch: string[]): Promise<void> {
    if (!entry.chunks) await this.openFolder(entry);
    let piece: string[] = [];
    let pieceBytes = 0;
    for (const line of batch) {
      const bytes = Buffer.byteLength(line) + 1;
      if (entry.size + pieceBytes > 0 && entry.size + pieceBytes + bytes > this.options.chunkBytes) {
        if (piece.length > 0) await this.writeOut(entry, piece, pieceBytes);
        piece = [];
        pieceBytes = 0;
        await this.rotate(entry);
      }
      piece.push(line);
      pieceBytes += bytes;
    }
    if (piece.length > 0) await this.writeOut(entry, piece, pieceBytes);
  }

  private async writeOut(entry: AppLog, lines: string[], bytes: number): Promise<void> {
    entry.handle ??= await open(join(entry.dir, chunkName(entry.chunks!.at(-1)!)), 'a');
    await entry.handle.write(`${lines.join('\n')}\n`);
    entry.size += bytes;
  }

  private async openFolder(entry: AppLog): Promise<void> {
    await mkdir(entry.dir, { recursive: true, mode: 0o700 });
    const chunks = await listChunks(entry.dir);
    if (chunks.length === 0) chunks.push(1);
    entry.chunks = chunks;
    entry.size = await stat(join(entry.dir, chunkName(chunks.at(-1)!))).then((s) => s.size, () => 0);
    await this.prune(entry);
  }

  private async rotate(entry: AppLog): Promise<void> {
    await this.closeFile(entry);
    entry.chunks!.push(entry.chunks!.at(-1)! + 1);
    entry.size = 0;
    await this.prune(entry);
  }

  private async prune(entry: AppLog): Promise<void> {
    while (entry.chunks!.length > this.options.retainChunks) {
      const oldest = entry.chunks!.shift()!;
      await rm(join(entry.dir, chunkName(oldest)), { force: true });
    }
  }

  private async closeFile(entry: AppLog): Promise<void> {
    const handle = entry.handle;
    entry.handle = undefined;
    await handle?.close().catch((err: unknown) => this.log.warn({ err, app: entry.app }, 'cannot close log chunk'));
  }

  private async closeIdle(): Promise<void> {
    const now = Date.now();
    for (const entry of [...this.apps.values()]) {
      if (entry.writing || now - entry.lastUsedMs < IDLE_MS) continue;
      this.apps.delete(entry.app);
      await this.closeFile(entry);
    }
  }

  private drop(count: number, why: string, err?: unknown): void {
    this.stats.dropped += count;
    const now = Date.now();
    if (now - this.lastWarnAt > 10_000) {
      this.lastWarnAt = now;
      this.log.warn({ err, dropped: this.stats.dropped }, why);
    }
  }
}

/** Chunk numbers in `dir`, oldest first; [] when the folder does not exist. */
async function listChunks(dir: string): Promise<number[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return names.flatMap((name) => {
    const match = CHUNK_FILE.exec(name);
    return match ? [Number(match[1])] : [];
  }).sort((a, b) => a - b);
}

/**
 * Calls `visit` with each line of `path` from the last to the first, until it returns false; returns true when
 * it stopped early. Reads blocks from the end and splits on bytes, so a UTF-8 character is never cut.
 */
async function readLinesBackwards(path: string, visit: (line: string) => boolean): Promise<boolean> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false; // pruned while we read
    throw err;
  }
  try {
    let position = (await handle.stat()).size;
    let carry = Buffer.alloc(0);
    while (position > 0) {
      const length = Math.min(READ_BLOCK_BYTES, position);
      position -= length;
      const block = Buffer.alloc(length);
      await handle.read(block, 0, length, position);
      const buffer = carry.length > 0 ? Buffer.concat([block, carry]) : block;
      let end = buffer.length;
      for (let i = buffer.length - 1; i >= 0; i--) {
        if (buffer[i] !== 0x0a) continue;
        if (i + 1 < end && !visit(buffer.toString('utf8', i + 1, end))) return true;
        end = i;
      }
      carry = buffer.subarray(0, end);
    }
    return carry.length > 0 ? !visit(carry.toString('utf8')) : false;
  } finally {
    await handle.close();
  }
}
