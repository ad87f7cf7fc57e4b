/**
 * Ships each vassal's log file (uWSGI's messages, the app's stdout/stderr and uWSGI's request log, all written by
 * uWSGI's file logger) to the stats collectors as LogMessages. Files are polled from the offset last read, so a
 * vassal never waits for Pier: while no collector is reachable the file keeps growing and lines beyond the
 * push queue are dropped and counted — unlike uWSGI's own logzmq logger, which blocks the app once ~1000 lines
 * are queued. A rotation (uWSGI renames the file to `.1` and reopens) is followed: the old file is read to its
 * end first. Partial lines wait up to a second for their newline.
 *
 * The runner is root and the app owns the folder of its log: the file is opened with `openAppFile` (no link
 * followed, no FIFO waited on, only a plain file of the app's own), and the path is checked with lstat. A file that
 * was replaced by anything else is not read: the runner warns once and the app's log gets one line saying so.
 */
import { lstat, type FileHandle } from 'node:fs/promises';
import { openAppFile } from './checked-open.js';
import { replacedLogLine } from './log-tail.js';
import type { Logger } from 'pino';
import { MAX_LOG_LINE_CHARS, type LogMessage } from '../protocol/index.js';
import type { IntakePusher } from '../transport/index.js';

export interface LogShipperOptions {
  pusher: Pick<IntakePusher, 'push'>;
  /** How often files are checked for new bytes. @default 200 */
  pollMs?: number;
  log: Logger;
}

interface Watched {
  instance: string;
  app: string;
  /** What the collector tags its lines with (`app[<origin>]`). */
  origin: string;
  path: string;
  handle: FileHandle | undefined;
  ino: number;
  offset: number;
  /** Bytes after the last newline, and since when they wait. */
  partial: Buffer;
  partialSinceMs: number;
  /** Reading from the start (a new instance) or from the end at the time it was added (an adopted one). */
  fromStart: boolean;
  /** Why the file at `path` was last refused (reported once), until a good file is opened again. */
  refused: string | undefined;
}

/** uWSGI's default request log line: `[pid: 12|app: 0|req: 1/1] 127.0.0.1 () {…} [date] GET / => …`. */
const REQUEST_LINE = /^\[pid: \d+\|app: /;
const READ_CHUNK = 256 * 1024;
/** Bytes read from one file per poll, so a chatty app cannot starve the others. */
const MAX_READ_PER_POLL = 1024 * 1024;
const PARTIAL_WAIT_MS = 1000;

export class LogShipper {
  private readonly files = new Map<string, Watched>();
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;
  private readonly log: Logger;

  constructor(private readonly options: LogShipperOptions) {
    this.log = options.log.child({ component: 'runner.log-shipper' });
  }

  start(): void {
    this.timer = setInterval(() => void this.poll(), this.options.pollMs ?? 200);
  }

  /**
   * Follows `path` for `instance` of `app`: from its start (a new instance) or from its current end (an adopted one).
   * Lines are tagged with `origin` (a worker's process name, `worker.1`). @default origin: the instance id
   */
  watch(instance: string, app: string, path: string, fromStart: boolean, origin = instance): void {
    if (this.files.has(instance)) return;
    this.files.set(instance, { instance, app, origin, path, handle: undefined, ino: -1, offset: 0, partial: Buffer.alloc(0), partialSinceMs: 0, fromStart, refused: undefined });
  }

  /** Ships what is left of the instance's file (unless `discard`: its app is gone), then forgets it. */
  async unwatch(instance: string, options: { discard?: boolean } = {}): Promise<void> {
    const file = this.files.get(instance);
    if (!file) return;
    if (options.discard) this.files.delete(instance);
    await this.polling;
    if (!options.discard) {
      await this.read(file).catch(() => undefined);
      this.flushPartial(file, true);
    }
    this.files.delete(instance);
    await file.handle?.close().catch(() => undefined);
  }

  /** Number of files followed. */
  get size(): number {
    return this.files.size;
  }

  /** Reads new bytes of every file once (the timer calls it; tests may too). */
  poll(): Promise<void> {
    this.polling ??= (async () => {
      for (const file of [...this.files.values()]) {
        try {
          await this.read(file);
          this.flushPartial(file, false);
        } catch (err) {
          this.log.warn({ instance: file.instance, reason: (err as Error).message }, 'cannot read vassal log');
        }
      }
    })().finally(() => {
      this.polling = undefined;
    });
    return this.polling;
  }

  private async read(file: Watched): Promise<void> {
    let current: { ino: number; size: number };
    try {
      current = await lstat(file.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // not written yet, or being rotated
      throw err;
    }
    if (file.handle && current.ino !== file.ino) {
      // Rotated: finish the old file (our handle still points at it), then start the new one from 0.
      await this.readFrom(file, Number.MAX_SAFE_INTEGER);
      await file.handle.close().catch(() => undefined);
      file.handle = undefined;
      file.fromStart = true;
    }
    if (!file.handle) {
      const opened = await openAppFile(file.path);
      if (opened.kind === 'missing') return;
      if (opened.kind === 'refused') return this.refuse(file, opened.reason);
      file.refused = undefined;
      file.handle = opened.handle;
      file.ino = opened.stat.ino;
      file.offset = file.fromStart ? 0 : opened.stat.size;
    }
    await this.readFrom(file, MAX_READ_PER_POLL);
  }

  /** Reports a replaced log file once (to the operator and in the app's own log), and reads nothing of it. */
  private refuse(file: Watched, reason: string): void {
    if (file.refused === reason) return;
    file.refused = reason;
    this.log.warn({ instance: file.instance, app: file.app, reason }, 'vassal log was replaced; not reading it');
    this.flushPartial(file, true);
    this.ship(file, replacedLogLine(reason), 'pier');
  }

  private async readFrom(file: Watched, limit: number): Promise<void> {
    const handle = file.handle!;
    const size = (await handle.stat()).size;
    if (size < file.offset) file.offset = 0; // truncated in place
    let budget = limit;
    while (file.offset < size && budget > 0) {
      const length = Math.min(READ_CHUNK, size - file.offset, budget);
      const buffer = Buffer.alloc(length);
      const { bytesRead } = await handle.read(buffer, 0, length, file.offset);
      if (bytesRead === 0) break;
      file.offset += bytesRead;
      budget -= bytesRead;
      this.split(file, buffer.subarray(0, bytesRead));
    }
  }

  private split(file: Watched, bytes: Buffer): void {
    const data = file.partial.length > 0 ? Buffer.concat([file.partial, bytes]) : bytes;
    let start = 0;
    for (let i = data.indexOf(0x0a); i !== -1; i = data.indexOf(0x0a, start)) {
      this.ship(file, data.toString('utf8', start, i));
      start = i + 1;
    }
    const rest = data.subarray(start);
    if (rest.length > 0 && file.partial.length === 0) file.partialSinceMs = Date.now();
    file.partial = Buffer.from(rest);
    // A line longer than a log line can be is shipped in pieces rather than held without bound.
    if (file.partial.length > MAX_LOG_LINE_CHARS * 4) this.flushPartial(file, true);
  }

  private flushPartial(file: Watched, isForced: boolean): void {
    if (file.partial.length === 0) return;
    if (!isForced && Date.now() - file.partialSinceMs < PARTIAL_WAIT_MS) return;
    this.ship(file, file.partial.toString('utf8'));
    file.partial = Buffer.alloc(0);
  }

  private ship(file: Watched, raw: string, source?: LogMessage['source']): void {
    const text = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (text === '') return;
    const line = text.length > MAX_LOG_LINE_CHARS ? text.slice(0, MAX_LOG_LINE_CHARS) : text;
    const message: LogMessage = {
      v: 1, type: 'log', app: file.app, source: source ?? (REQUEST_LINE.test(line) ? 'uwsgi' : 'app'), origin: file.origin, line, at: Date.now(),
    };
    this.options.pusher.push(message);
  }

  /** Ships what every file holds now, then stops following them. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    for (const instance of [...this.files.keys()]) await this.unwatch(instance);
  }
}
