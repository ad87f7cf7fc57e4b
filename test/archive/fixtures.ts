/** Builds archives for the archive tests: exact hand-made headers (hostile ones too), and tars made by real tools. */
import { execFileSync } from 'node:child_process';
import { gzipSync } from 'node:zlib';
import { BLOCK, TYPE, encodeHeader, encodePax, fitsUstar, paddingFor } from '../../src/archive/tar-format.js';

export interface FakeEntry {
  name: string;
  /** Type flag; default a regular file. */
  type?: string;
  data?: string | Buffer;
  mode?: number;
  linkname?: string;
  /** Size written in the header; default the data's length. */
  size?: number;
  /** Extra pax records (a name or link that does not fit ustar goes in one automatically). */
  pax?: Record<string, string>;
  /** Store a name or link that does not fit ustar as a GNU long-name / long-link header instead of pax. */
  gnu?: boolean;
}

/** A GNU `././@LongLink` header and body carrying `value` (type 'L' for a name, 'K' for a link target). */
function gnuLong(type: string, value: string): Buffer[] {
  const body = Buffer.from(`${value}\0`);
  return [encodeHeader({ name: '././@LongLink', mode: 0o644, size: body.length, typeflag: type }), body, Buffer.alloc(paddingFor(body.length))];
}

/** An uncompressed tar of exactly these headers and bodies, ended by two zero blocks. */
export function rawTar(entries: FakeEntry[], { end = true } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    if (e.gnu) {
      if (!fitsUstar(e.name)) parts.push(...gnuLong(TYPE.gnuLongName, e.name));
      if (!fitsUstar(e.linkname ?? '')) parts.push(...gnuLong(TYPE.gnuLongLink, e.linkname!));
    }
    const pax = e.gnu ? { ...e.pax } : { ...(fitsUstar(e.name) ? {} : { path: e.name }), ...(fitsUstar(e.linkname ?? '') ? {} : { linkpath: e.linkname! }), ...e.pax };
    if (Object.keys(pax).length > 0) {
      const body = encodePax(pax);
      parts.push(encodeHeader({ name: 'PaxHeader', mode: 0o644, size: body.length, typeflag: TYPE.paxHeader }), body, Buffer.alloc(paddingFor(body.length)));
    }
    const data = typeof e.data === 'string' ? Buffer.from(e.data) : (e.data ?? Buffer.alloc(0));
    const size = e.size ?? data.length;
    parts.push(encodeHeader({ name: e.name, mode: e.mode ?? 0o644, size, typeflag: e.type ?? TYPE.file, linkname: e.linkname ?? '' }));
    parts.push(data, Buffer.alloc(paddingFor(data.length)));
  }
  if (end) parts.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(parts);
}

/** A tar.gz of these entries. */
export function tarGz(entries: FakeEntry[]): Buffer {
  return gzipSync(rawTar(entries));
}

/**
 * A gzip bomb: `prefix` followed by `mebibytes` MiB of zeros, as one gzip stream per MiB (gzip allows concatenated
 * members), so building it costs one small deflate instead of inflating a gigabyte here.
 */
export function zeroBomb(mebibytes: number, prefix: Buffer = Buffer.alloc(0)): Buffer {
  const member = gzipSync(Buffer.alloc(1024 * 1024), { level: 9 });
  return Buffer.concat([gzipSync(prefix), ...Array.from({ length: mebibytes }, () => member)]);
}

/** The header of a single regular file, claiming `size` bytes (its body is left to the caller). */
export function fileHeader(name: string, size: number): Buffer {
  return encodeHeader({ name, mode: 0o644, size, typeflag: TYPE.file });
}

/** Runs Python's tarfile to build an archive in `format` ('ustar' | 'gnu' | 'pax') from `members` (name → content). */
export function pythonTarGz(format: 'USTAR' | 'GNU' | 'PAX', members: Record<string, string>): Buffer {
  const script = [
    'import io, sys, tarfile, json',
    'members = json.loads(sys.argv[1])',
    'buf = io.BytesIO()',
    `with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.${format}_FORMAT) as tar:`,
    '    for name, text in members.items():',
    '        data = text.encode()',
    '        info = tarfile.TarInfo(name); info.size = len(data); info.mode = 0o644',
    '        tar.addfile(info, io.BytesIO(data))',
    'sys.stdout.buffer.write(buf.getvalue())',
  ].join('\n');
  return execFileSync('/usr/bin/python3', ['-c', script, JSON.stringify(members)]);
}
