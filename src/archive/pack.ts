/** Packs an app folder into the tar.gz `pier deploy` uploads, leaving out `.git` and what `.pierignore` lists. */
import { lstat, readFile, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { compileIgnore, parseIgnoreFile, type IgnoreMatcher } from './ignore.js';
import { BLOCK, TYPE, encodeHeader, encodePax, fitsUstar, paddingFor, type HeaderFields } from './tar-format.js';

/** Name of the ignore file read from the root of the packed folder. */
export const IGNORE_FILE = '.pierignore';

/** Always left out, at any depth. */
const ALWAYS_SKIPPED = new Set(['.git']);

export interface PackOptions {
  /** Extra patterns, same syntax as `.pierignore` (see `compileIgnore`). @default [] */
  ignore?: readonly string[];
}

/**
 * Packs `dir` into a gzip-compressed tar: files (0755 when executable, else 0644), folders and symlinks, in sorted
 * order with zeroed owners and times, so packing the same folder twice gives the same bytes (artifacts are stored
 * by sha256). `.git` and entries matched by `.pierignore` or `options.ignore` are left out; sockets, FIFOs and
 * devices are skipped. Symlinks are stored as they are: one pointing out of the folder is rejected at upload.
 */
export async function packDirectory(dir: string, options: PackOptions = {}): Promise<Buffer> {
  const matcher = compileIgnore([...(await readIgnoreFile(dir)), ...(options.ignore ?? [])]);
  const chunks: Buffer[] = [];
  await pipeline(
    Readable.from(tarBlocks(dir, matcher)),
    createGzip({ level: 9 }),
    async (source: AsyncIterable<Buffer>) => {
      for await (const chunk of source) chunks.push(chunk);
    },
  );
  return Buffer.concat(chunks);
}

async function readIgnoreFile(dir: string): Promise<string[]> {
  try {
    return parseIgnoreFile(await readFile(join(dir, IGNORE_FILE), 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

async function* tarBlocks(root: string, matcher: IgnoreMatcher): AsyncGenerator<Buffer> {
  for await (const item of walk(root, '', matcher)) {
    if (item.kind === 'directory') {
      yield* header({ name: `${item.path}/`, mode: 0o755, size: 0, typeflag: TYPE.directory });
    } else if (item.kind === 'symlink') {
      const target = await readlink(join(root, item.path));
      yield* header({ name: item.path, mode: 0o777, size: 0, typeflag: TYPE.symlink, linkname: target });
    } else {
      const data = await readFile(join(root, item.path));
      yield* header({ name: item.path, mode: item.isExecutable ? 0o755 : 0o644, size: data.length, typeflag: TYPE.file });
      yield data;
      yield Buffer.alloc(paddingFor(data.length));
    }
  }
  yield Buffer.alloc(2 * BLOCK); // end of archive
}

/** A header block, preceded by a pax header when the name or link target does not fit ustar. */
function* header(fields: HeaderFields): Generator<Buffer> {
  const pax: Record<string, string> = {};
  if (!fitsUstar(fields.name)) pax.path = fields.name;
  if (fields.linkname !== undefined && !fitsUstar(fields.linkname)) pax.linkpath = fields.linkname;
  if (Object.keys(pax).length > 0) {
    const body = encodePax(pax);
    yield encodeHeader({ name: 'PaxHeader', mode: 0o644, size: body.length, typeflag: TYPE.paxHeader });
    yield body;
    yield Buffer.alloc(paddingFor(body.length));
  }
  yield encodeHeader(fields);
}

interface WalkItem {
  path: string;
  kind: 'file' | 'directory' | 'symlink';
  isExecutable: boolean;
}

async function* walk(root: string, relative: string, matcher: IgnoreMatcher): AsyncGenerator<WalkItem> {
  const names = (await readdir(join(root, relative))).sort();
  for (const name of names) {
    if (ALWAYS_SKIPPED.has(name)) continue;
    const path = relative === '' ? name : `${relative}/${name}`;
    const stat = await lstat(join(root, path));
    if (stat.isDirectory()) {
      if (matcher.isIgnored(path, true)) continue;
      yield { path, kind: 'directory', isExecutable: true };
      yield* walk(root, path, matcher);
    } else if (stat.isFile() || stat.isSymbolicLink()) {
      if (matcher.isIgnored(path, false)) continue;
      yield { path, kind: stat.isFile() ? 'file' : 'symlink', isExecutable: (stat.mode & 0o111) !== 0 };
    }
  }
}
