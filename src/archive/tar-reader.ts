/**
 * Streams a gzip-compressed tar: inflates on demand (never the whole archive up front), folds pax and GNU
 * long-name headers into the entry they describe, and hands each entry with a reader for its body to a callback.
 */
import { createGunzip } from 'node:zlib';
import { ValidationError } from '../core/errors.js';
import { PATH_FIX, checkPathBytes, formatBytes, pathTooLongError, quoteName } from './limits.js';
import { BLOCK, TYPE, TarFormatError, isZeroBlock, paddingFor, parseHeader, parsePax } from './tar-format.js';

/** Largest pax header body accepted (paths, times, and the extended attributes some tars add). */
const MAX_PAX_BYTES = 64 * 1024;
/** Largest GNU long name or long link target (Linux PATH_MAX). */
const MAX_LONG_NAME_BYTES = 4096;
/**
 * After the end-of-archive blocks, up to this much more is read so zlib checks the gzip trailer (CRC and length);
 * tar writers pad to 10 KiB records. Anything beyond is ignored without being inflated, as tar itself does.
 */
const MAX_TRAILER_BYTES = 1024 * 1024;
/** Most pax global headers accepted in one archive (they carry nothing Pier uses). */
const MAX_GLOBAL_HEADERS = 16;
/** Most bytes of pax and GNU long-name headers in one archive: ~1.3 KiB for each of 50,000 entries. */
const MAX_META_BYTES = 64 * 1024 * 1024;
/** Blocks one entry may add beyond its contents: its header and padding, and one pax, long-name and long-link header with theirs. */
const ENTRY_OVERHEAD_BLOCKS = 8;

/**
 * Inflated bytes an archive of at most `maxEntries` entries can hold beyond its file contents: every header and
 * padding, all meta-header bodies (capped in total), the end blocks and the trailer. Beyond that it is not a tar
 * this reader would accept, so inflation stops there.
 */
export function overheadBytes(maxEntries: number): number {
  return (maxEntries + MAX_GLOBAL_HEADERS + 2) * ENTRY_OVERHEAD_BLOCKS * BLOCK + MAX_META_BYTES + MAX_TRAILER_BYTES;
}

/** An entry as the archive describes it, before any policy is applied. */
export interface RawEntry {
  /** Name as stored (pax `path`, else GNU long name, else ustar prefix + name). */
  name: string;
  typeflag: string;
  mode: number;
  /** Body size in bytes (pax `size` overrides the header's). */
  size: number;
  /** Link target (pax `linkpath`, else GNU long link, else the header's). */
  linkname: string;
}

/** Streams one entry's body; whatever the callback leaves unread is skipped before the next header. */
export interface EntryBody {
  chunks(): AsyncGenerator<Buffer>;
}

/** Called once per entry, in archive order; a throw aborts the read (and stops inflating). */
export type EntryHandler = (entry: RawEntry, body: EntryBody) => Promise<void>;

/** Bounds the reader itself enforces, before the entry policy sees anything. */
export interface ReadLimits {
  /** Inflated bytes after which reading stops with a ValidationError, so a gzip bomb costs at most that much work. */
  maxInflatedBytes: number;
  /** Longest name in a pax `path` record or GNU long-name header, in bytes; longer ones are refused unparsed. */
  maxPathBytes: number;
}

/** Reads `bytes` as a tar.gz, calling `onEntry` for every entry, within `limits`. */
export async function readTarGz(bytes: Uint8Array, limits: ReadLimits, onEntry: EntryHandler): Promise<void> {
  if (bytes.length < 2 || bytes[0] !== 0x1f || bytes[1] !== 0x8b) {
    throw new ValidationError('archive is not gzip-compressed (a .tar.gz is expected)');
  }
  const gunzip = createGunzip({ chunkSize: 64 * 1024 });
  gunzip.end(bytes);
  const source = new ByteSource(gunzip[Symbol.asyncIterator]() as AsyncIterator<Buffer>, limits.maxInflatedBytes);
  try {
    await readEntries(source, limits.maxPathBytes, onEntry);
  } catch (err) {
    throw translateError(err);
  } finally {
    gunzip.destroy();
  }
}

async function readEntries(source: ByteSource, maxPathBytes: number, onEntry: EntryHandler): Promise<void> {
  let pax: Map<string, string> | undefined;
  let longName: string | undefined;
  let longLink: string | undefined;
  let globals = 0;
  let metaBytes = 0;
  let lastName: string | undefined;
  for (;;) {
    const block = await source.read(BLOCK);
    if (block === null) {
      if (pax || longName !== undefined || longLink !== undefined) throw truncated();
      return; // ended without the two zero blocks: accepted, as GNU tar and Python's tarfile do
    }
    if (isZeroBlock(block)) {
      await source.drain(MAX_TRAILER_BYTES);
      return;
    }
    let header;
    try {
      header = parseHeader(block);
    } catch (err) {
      if (!(err instanceof TarFormatError)) throw err;
      throw new ValidationError(
        lastName === undefined ? 'archive is not a tar file' : `archive is corrupt after entry ${quoteName(lastName)} (${err.message})`,
      );
    }
    const { typeflag } = header;
    const isMeta = typeflag === TYPE.paxHeader || typeflag === TYPE.paxGlobal || typeflag === TYPE.gnuLongName || typeflag === TYPE.gnuLongLink;
    if (isMeta && (metaBytes += header.size) > MAX_META_BYTES) {
      throw new ValidationError(`archive has more than ${formatBytes(MAX_META_BYTES)} of pax and long-name headers, far more than names need`);
    }
    if (typeflag === TYPE.paxHeader || typeflag === TYPE.paxGlobal) {
      const data = await readMeta(source, header.size, MAX_PAX_BYTES, 'pax header');
      if (typeflag === TYPE.paxGlobal) {
        if (++globals > MAX_GLOBAL_HEADERS) throw new ValidationError('archive has too many pax global headers');
        continue;
      }
      if (pax) throw new ValidationError('archive is corrupt (two pax headers for one entry)');
      pax = parsePaxOrThrow(data);
      // Refused here, before the entry's header is even read: nothing splits or walks an over-long name.
      const path = pax.get('path');
      if (path !== undefined) checkPathBytes(path, path, maxPathBytes, 'name');
      continue;
    }
    if (typeflag === TYPE.gnuLongName || typeflag === TYPE.gnuLongLink) {
      if (header.size > MAX_LONG_NAME_BYTES + 1) {
        const what = typeflag === TYPE.gnuLongName ? 'GNU long name' : 'GNU long link target';
        throw new ValidationError(`archive has a ${what} of ${formatBytes(header.size)}, over the ${maxPathBytes}-byte limit for a path; ${PATH_FIX}`);
      }
      const data = await readMeta(source, header.size, MAX_LONG_NAME_BYTES + 1, 'GNU long name');
      const end = data.indexOf(0);
      const length = end === -1 ? data.length : end;
      const value = data.toString('utf8', 0, length);
      if (typeflag === TYPE.gnuLongName) {
        if (length > maxPathBytes) throw pathTooLongError(value, length, maxPathBytes, 'name');
        if (longName !== undefined) throw new ValidationError('archive is corrupt (two long names for one entry)');
        longName = value;
      } else {
        if (longLink !== undefined) throw new ValidationError('archive is corrupt (two long links for one entry)');
        longLink = value;
      }
      continue;
    }
    const entry: RawEntry = {
      name: pax?.get('path') ?? longName ?? header.name,
      typeflag,
      mode: header.mode,
      size: paxSize(pax, header.size),
      linkname: pax?.get('linkpath') ?? longLink ?? header.linkname,
    };
    pax = undefined;
    longName = undefined;
    longLink = undefined;
    lastName = entry.name;
    const body = new Body(source, entry.size);
    await onEntry(entry, body);
    await body.skipRest();
    await source.skip(paddingFor(entry.size));
  }
}

async function readMeta(source: ByteSource, size: number, max: number, what: string): Promise<Buffer> {
  if (size > max) throw new ValidationError(`archive has a ${what} of ${formatBytes(size)}, over the ${formatBytes(max)} limit`);
  const data = (await source.read(size)) ?? Buffer.alloc(0);
  if (data.length < size) throw truncated();
  await source.skip(paddingFor(size));
  return data;
}

function parsePaxOrThrow(data: Buffer): Map<string, string> {
  try {
    return parsePax(data);
  } catch (err) {
    if (err instanceof TarFormatError) throw new ValidationError(`archive is corrupt (${err.message})`);
    throw err;
  }
}

function paxSize(pax: Map<string, string> | undefined, headerSize: number): number {
  const text = pax?.get('size');
  if (text === undefined) return headerSize;
  if (!/^\d{1,20}$/.test(text)) throw new ValidationError('archive is corrupt (bad size in pax header)');
  return Number(text);
}

function truncated(): ValidationError {
  return new ValidationError('archive is truncated');
}

/** Turns zlib failures into messages a user can act on; everything else passes through. */
function translateError(err: unknown): unknown {
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'string' || !code.startsWith('Z_')) return err;
  const reason = (err as Error).message;
  if (code === 'Z_BUF_ERROR') return new ValidationError('archive is truncated (unexpected end of gzip data)', { cause: err });
  return new ValidationError(`archive is corrupt (gzip: ${reason})`, { cause: err });
}

class Body implements EntryBody {
  constructor(
    private readonly source: ByteSource,
    private remaining: number,
  ) {}

  async *chunks(): AsyncGenerator<Buffer> {
    while (this.remaining > 0) {
      const chunk = await this.source.readSome(this.remaining);
      this.remaining -= chunk.length;
      yield chunk;
    }
  }

  async skipRest(): Promise<void> {
    await this.source.skip(this.remaining);
    this.remaining = 0;
  }
}

/** Pulls inflated chunks on demand and counts them against the inflation limit. */
class ByteSource {
  private readonly pending: Buffer[] = [];
  private pendingBytes = 0;
  private inflated = 0;
  private ended = false;

  constructor(
    private readonly chunks: AsyncIterator<Buffer>,
    private readonly maxInflatedBytes: number,
  ) {}

  /** Exactly `n` bytes; null when the stream ended cleanly before any of them; throws when it ends part-way. */
  async read(n: number): Promise<Buffer | null> {
    while (this.pendingBytes < n && (await this.pull()));
    if (this.pendingBytes === 0 && n > 0) return null;
    if (this.pendingBytes < n) throw truncated();
    return this.take(n);
  }

  /** Between 1 and `max` bytes, as soon as any are available. */
  async readSome(max: number): Promise<Buffer> {
    if (this.pendingBytes === 0 && !(await this.pull())) throw truncated();
    return this.take(Math.min(max, this.pendingBytes));
  }

  /** Reads and drops up to `max` more bytes, stopping early at the end of the stream. */
  async drain(max: number): Promise<void> {
    let left = max - this.pendingBytes;
    this.pending.length = 0;
    this.pendingBytes = 0;
    while (left > 0 && (await this.pull())) {
      left -= this.pendingBytes;
      this.pending.length = 0;
      this.pendingBytes = 0;
    }
  }

  async skip(n: number): Promise<void> {
    let left = n;
    while (left > 0) left -= (await this.readSome(left)).length;
  }

  private async pull(): Promise<boolean> {
    if (this.ended) return false;
    const next = await this.chunks.next();
    if (next.done) {
      this.ended = true;
      return false;
    }
    this.inflated += next.value.length;
    if (this.inflated > this.maxInflatedBytes) {
      throw new ValidationError(`archive unpacks to more than ${formatBytes(this.maxInflatedBytes)}`);
    }
    this.pending.push(next.value);
    this.pendingBytes += next.value.length;
    return true;
  }

  private take(n: number): Buffer {
    const first = this.pending[0]!;
    if (first.length > n) {
      this.pending[0] = first.subarray(n);
      this.pendingBytes -= n;
      return first.subarray(0, n);
    }
    if (first.length === n) {
      this.pending.shift();
      this.pendingBytes -= n;
      return first;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.pending[0]!;
      const used = Math.min(chunk.length, n - filled);
      chunk.copy(out, filled, 0, used);
      filled += used;
      if (used === chunk.length) this.pending.shift();
      else this.pending[0] = chunk.subarray(used);
    }
    this.pendingBytes -= n;
    return out;
  }
}
