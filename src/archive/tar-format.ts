/**
 * The tar header format (POSIX ustar, pax extended headers, GNU long names), parsed and written as pure functions.
 * Only what Pier needs: name, mode, size, type, link target. Owners, times and device numbers are ignored.
 */

/** Tar works in 512-byte blocks: every header is one, every body is padded to a multiple. */
export const BLOCK = 512;

/** Type flags Pier reads; anything else is rejected by the entry policy. */
export const TYPE = {
  file: '0',
  oldFile: '\0',
  hardlink: '1',
  symlink: '2',
  charDevice: '3',
  blockDevice: '4',
  directory: '5',
  fifo: '6',
  contiguous: '7',
  paxHeader: 'x',
  paxGlobal: 'g',
  gnuLongName: 'L',
  gnuLongLink: 'K',
} as const;

/** One header block, decoded. */
export interface TarHeader {
  name: string;
  mode: number;
  size: number;
  typeflag: string;
  linkname: string;
}

/** Thrown for a block that is not a valid header; the reader turns it into a user-facing message. */
export class TarFormatError extends Error {}

/** Bytes of padding after a body of `size` bytes. */
export function paddingFor(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/** True for an all-zero block, which marks the end of the archive. */
export function isZeroBlock(block: Uint8Array): boolean {
  for (const byte of block) if (byte !== 0) return false;
  return true;
}

/** Decodes a header block, checking its checksum. */
export function parseHeader(block: Buffer): TarHeader {
  const stored = readNumber(block, 148, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  // Some old tars summed signed bytes; accept either, as GNU tar does.
  if (stored !== unsigned && stored !== signed) throw new TarFormatError('bad header checksum');
  const isPosix = block.toString('latin1', 257, 263) === 'ustar\0';
  const name = readString(block, 0, 100);
  const prefix = isPosix ? readString(block, 345, 155) : '';
  return {
    name: prefix ? `${prefix}/${name}` : name,
    mode: readNumber(block, 100, 8),
    size: readNumber(block, 124, 12),
    typeflag: String.fromCharCode(block[156]!),
    linkname: readString(block, 157, 100),
  };
}

/** Decodes a pax extended header body (`"<len> <key>=<value>\n"` records). */
export function parsePax(data: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  let at = 0;
  while (at < data.length) {
    if (data[at] === 0) break; // NUL padding after the last record
    const space = data.indexOf(0x20, at);
    const len = space > at ? Number(data.toString('latin1', at, space)) : NaN;
    if (!Number.isInteger(len) || len <= space - at || at + len > data.length || data[at + len - 1] !== 0x0a) {
      throw new TarFormatError('malformed pax header');
    }
    const record = data.toString('utf8', space + 1, at + len - 1);
    const eq = record.indexOf('=');
    if (eq <= 0) throw new TarFormatError('malformed pax header');
    records.set(record.slice(0, eq), record.slice(eq + 1));
    at += len;
  }
  return records;
}

/** A NUL-terminated field, as UTF-8. */
function readString(block: Buffer, start: number, length: number): string {
  const field = block.subarray(start, start + length);
  const end = field.indexOf(0);
  return field.toString('utf8', 0, end === -1 ? length : end);
}

/** An octal field, or GNU base-256 when the high bit of the first byte is set (sizes of 8 GiB and more). */
function readNumber(block: Buffer, start: number, length: number): number {
  const first = block[start]!;
  if (first & 0x80) {
    if (first === 0xff) throw new TarFormatError('negative number in header');
    let value = first & 0x7f;
    for (let i = 1; i < length; i++) value = value * 256 + block[start + i]!;
    return value; // beyond 2^53 this loses precision, but any such size is far over every limit anyway
  }
  const text = block.toString('latin1', start, start + length).replace(/^ +/, '').replace(/[ \0].*$/s, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarFormatError('invalid number in header');
  return parseInt(text, 8);
}

/** What a header written by `encodeHeader` describes. */
export interface HeaderFields {
  name: string;
  mode: number;
  size: number;
  typeflag: string;
  linkname?: string;
}

/**
 * Encodes a ustar header. Names that do not fit (or are not ASCII) must go in a pax header first; this writes
 * a truncated ASCII placeholder then. Owner, group and time are zero, so the same folder packs to the same bytes.
 */
export function encodeHeader(fields: HeaderFields): Buffer {
  const block = Buffer.alloc(BLOCK);
  writeString(block, 0, 100, fields.name);
  writeOctal(block, 100, 8, fields.mode);
  writeOctal(block, 108, 8, 0);
  writeOctal(block, 116, 8, 0);
  writeOctal(block, 124, 12, fields.size);
  writeOctal(block, 136, 12, 0);
  block.write(fields.typeflag, 156, 'latin1');
  writeString(block, 157, 100, fields.linkname ?? '');
  block.write('ustar\u000000', 257, 'latin1');
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return block;
}

/** Encodes pax records as one header body (without the block padding). */
export function encodePax(records: Record<string, string>): Buffer {
  const parts: Buffer[] = [];
  for (const [key, value] of Object.entries(records)) {
    const body = ` ${key}=${value}\n`;
    const bodyLength = Buffer.byteLength(body);
    let length = bodyLength + 1;
    while (String(length).length + bodyLength !== length) length = String(length).length + bodyLength;
    parts.push(Buffer.from(`${length}${body}`, 'utf8'));
  }
  return Buffer.concat(parts);
}

/** True when a name can be stored in the 100-byte ustar field as is. */
export function fitsUstar(name: string): boolean {
  return name.length <= 100 && /^[\x20-\x7e]*$/.test(name);
}

function writeString(block: Buffer, start: number, length: number, value: string): void {
  const ascii = value.replace(/[^\x20-\x7e]/g, '_');
  block.write(ascii.slice(0, length), start, 'latin1');
}

function writeOctal(block: Buffer, start: number, length: number, value: number): void {
  const digits = value.toString(8);
  if (digits.length > length - 1) throw new RangeError(`value ${value} does not fit a ${length}-byte tar field`);
  block.write(`${digits.padStart(length - 1, '0')}\0`, start, 'latin1');
}
