/**
 * Opens a file an app can write (its instance's log) for the runner to read, when the runner is root. The app owns
 * the folder the file is in, so it can swap the file for a symbolic link (to `admin.json`, a key, another app's
 * vassal), a hard link to a file it cannot read, a FIFO (which would hang a blocking open) or a socket. Root never
 * follows or reads those: the file is opened with O_NOFOLLOW | O_NONBLOCK, then checked on the open handle
 * (fstat): a regular file, owned by the folder's owner (the app's user, who cannot give a folder away), exactly one
 * link. The folder itself must sit in a folder the app cannot write (the emperor's `logs/`, root's), so the path
 * up to it cannot be swapped either; `assertRootPath` checks that once at start.
 */
import { constants } from 'node:fs';
import { lstat, open, type FileHandle } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { dirname } from 'node:path';
import { PierError } from '../core/errors.js';

/** What `openAppFile` found. */
export type AppFile =
  | { kind: 'ok'; handle: FileHandle; stat: Stats }
  /** Nothing there (not written yet, or being rotated). */
  | { kind: 'missing' }
  /** Something the runner must not read; `reason` says what (for a log line, never the target's content). */
  | { kind: 'refused'; reason: string };

const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/** Opens `path` for reading if it is a plain file of the app that owns its folder (see the module comment). */
export async function openAppFile(path: string): Promise<AppFile> {
  let folder: Stats;
  try {
    folder = await lstat(dirname(path));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
    throw err;
  }
  if (!folder.isDirectory()) return { kind: 'refused', reason: 'its folder is not a folder' };
  let handle: FileHandle;
  try {
    handle = await open(path, READ_FLAGS);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { kind: 'missing' };
    if (code === 'ELOOP') return { kind: 'refused', reason: 'it is a symbolic link' };
    if (code === 'ENXIO' || code === 'EOPNOTSUPP') return { kind: 'refused', reason: 'it is a socket or device' };
    throw err;
  }
  const stat = await handle.stat();
  const reason = !stat.isFile()
    ? 'it is not a regular file (a FIFO, device or folder)'
    : stat.uid !== folder.uid
      ? `it belongs to uid ${stat.uid}, not to the app's user (uid ${folder.uid})`
      : stat.nlink !== 1
        ? `it has ${stat.nlink} hard links`
        : undefined;
  if (reason === undefined) return { kind: 'ok', handle, stat };
  await handle.close();
  return { kind: 'refused', reason };
}

/**
 * Checks that no one but root (or the runner's own user) can rename or replace anything on the way to `dir`: every
 * folder from `/` down to it is owned by root or the runner's user and not writable by group or others (unless
 * sticky, like /tmp, where others cannot move our entries). @throws PierError naming the folder and the fix
 */
export async function assertRootPath(dir: string): Promise<void> {
  const me = process.getuid?.() ?? 0;
  for (let current = dir; ; current = dirname(current)) {
    const stat = await lstat(current);
    const isSticky = (stat.mode & 0o1000) !== 0;
    if (!stat.isDirectory() || (stat.uid !== 0 && stat.uid !== me) || ((stat.mode & 0o022) !== 0 && !isSticky)) {
      throw new PierError('PIER_CONFIG', `'${current}' can be changed by users other than root, so apps could swap the runner's folders; make it a folder owned by root with 'chown root ${current} && chmod go-w ${current}', or move the runner's folder`);
    }
    if (current === dirname(current)) return;
  }
}
