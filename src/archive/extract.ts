/**
 * Unpacks a release archive into a folder, all or nothing: entries go to a temp folder beside the destination,
 * which is renamed into place only after every rule has passed. A rejected archive leaves nothing behind.
 */
import { constants } from 'node:fs';
import { chmod, copyFile, lstat, mkdir, open, rename, rm, symlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { ConflictError } from '../core/errors.js';
import { randomId } from '../core/ids.js';
import type { ArchiveEntry } from './entry-policy.js';
import type { ArchiveSummary } from './inspect.js';
import { walkArchive } from './inspect.js';
import { resolveLimits, type ArchiveLimits } from './limits.js';
import type { EntryBody } from './tar-reader.js';

/** Mode of unpacked files: owner-writable, world-readable, never setuid/setgid/sticky. */
const FILE_MODE = 0o644;
const EXECUTABLE_MODE = 0o755;
const DIR_MODE = 0o755;

export interface ExtractOptions {
  /** Replace `destDir` when it already exists (swapped in by rename, the old tree removed after). @default false */
  replace?: boolean;
}

/**
 * Validates and unpacks `bytes` (a tar.gz) into `destDir`, which must not exist unless `replace` is set.
 * Files get 0644, or 0755 when the archive marks them executable; folders 0755; hard links become copies;
 * symlinks are created last, so nothing is ever written through one.
 * @throws ValidationError for a rejected archive (nothing is written), ConflictError when `destDir` exists.
 */
export async function extractArchive(
  bytes: Uint8Array,
  destDir: string,
  limits: Partial<ArchiveLimits> = {},
  options: ExtractOptions = {},
): Promise<ArchiveSummary> {
  const resolved = resolveLimits(limits);
  const dest = resolve(destDir);
  if (!options.replace && (await exists(dest))) throw new ConflictError(`cannot unpack into ${dest}: it already exists`);
  await mkdir(dirname(dest), { recursive: true });
  const tmp = join(dirname(dest), `.${basename(dest)}.tmp-${randomId()}`);
  await mkdir(tmp, { mode: DIR_MODE });
  try {
    const dirs: string[] = [];
    const symlinks: ArchiveEntry[] = [];
    const tree = await walkArchive(bytes, resolved, async (entry, body, newDirs) => {
      // The tree names each folder once, parents first, so one plain mkdir per folder: no recursive walks.
      for (const dir of newDirs) {
        await mkdir(join(tmp, dir), { mode: DIR_MODE });
        dirs.push(dir);
      }
      if (entry.type === 'symlink') {
        symlinks.push(entry);
        return;
      }
      if (entry.type === 'directory') return;
      const target = join(tmp, entry.path);
      const mode = entry.isExecutable ? EXECUTABLE_MODE : FILE_MODE;
      if (entry.type === 'file') await writeFile(target, body, mode);
      else {
        await copyFile(join(tmp, entry.linkTarget!), target);
        await chmod(target, mode);
      }
    });
    for (const link of symlinks) await symlink(link.linkTarget!, join(tmp, link.path));
    // mkdir's mode is filtered by the umask; set the final modes explicitly.
    await chmod(tmp, DIR_MODE);
    for (const dir of dirs) await chmod(join(tmp, dir), DIR_MODE);
    await moveIntoPlace(tmp, dest);
    return { entries: tree.entries, totalBytes: tree.totalBytes };
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}

async function writeFile(path: string, body: EntryBody, mode: number): Promise<void> {
  // O_NOFOLLOW: belt and braces, since no symlink exists in the temp tree until every file is written.
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW;
  const handle = await open(path, flags, mode);
  try {
    for await (const chunk of body.chunks()) await handle.write(chunk);
    await handle.chmod(mode);
  } finally {
    await handle.close();
  }
}

async function moveIntoPlace(tmp: string, dest: string): Promise<void> {
  if (!(await exists(dest))) {
    await rename(tmp, dest);
    return;
  }
  const old = join(dirname(dest), `.${basename(dest)}.old-${randomId()}`);
  await rename(dest, old);
  await rename(tmp, dest);
  await rm(old, { recursive: true, force: true });
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
