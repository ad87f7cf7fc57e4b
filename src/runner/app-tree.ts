/**
 * Root's side of the folders an app's user writes during a build: runs a command as that user, copies what the
 * build made into a fresh tree of root's (never following a link, never reading a file the app does not own), and
 * removes app-owned trees as the app's user. Paths inside an app-owned tree are never walked by root: the copy reads
 * each folder through the handle it opened (`/proc/self/fd/N/name`, the equivalent of openat), so an app swapping a
 * folder for a link mid-copy only makes the copy fail.
 */
import { spawn } from 'node:child_process';
import { constants, type Stats } from 'node:fs';
import { lstat, mkdir, open, readdir, readlink, rm, rmdir, symlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { ValidationError } from '../core/errors.js';
import { killGroup } from '../core/process.js';

/** The numeric ids a build runs as. */
export interface BuildUser {
  uid: number;
  gid: number;
}

/** Deepest folder nesting and most entries a frozen tree may have (a venv has ~10 levels and a few thousand files). */
const MAX_DEPTH = 64;
const MAX_ENTRIES = 200_000;
const DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
const FILE_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
const COPY_CHUNK = 1024 * 1024;

/**
 * Copies the tree at `source` (written by `owner`) to `target`, a new folder, as root's: folders 0755, files 0644
 * or 0755 (if the owner could execute them), mtimes kept (Python checks them against .pyc files), symbolic links
 * recreated with the same text and never followed. Anything else — a file of another user (a hard link to it), a
 * FIFO, socket or device — fails the copy. `source` itself must be an entry of a folder the owner cannot write.
 * @throws ValidationError naming the entry (relative to `source`) that cannot be copied
 */
export async function freezeTree(source: string, target: string, owner: BuildUser, where = 'the virtualenv'): Promise<void> {
  const top = await open(source, DIR_FLAGS);
  try {
    await checkOwned(top, '.', owner, 'folder', where);
    await mkdir(target, { mode: 0o755 });
    await copyFolder(top, target, '', owner, 0, { entries: 0, where });
  } finally {
    await top.close();
  }
}

async function copyFolder(folder: FileHandle, target: string, relative: string, owner: BuildUser, depth: number, count: { entries: number; where: string }): Promise<void> {
  const base = `/proc/self/fd/${folder.fd}`;
  for (const name of await readdir(base)) {
    const rel = relative === '' ? name : `${relative}/${name}`;
    if (++count.entries > MAX_ENTRIES) throw new ValidationError(`the build left more than ${MAX_ENTRIES} files in ${count.where}`);
    const at = `${base}/${name}`;
    const entry = await lstat(at);
    const dest = join(target, name);
    if (entry.isSymbolicLink()) {
      await symlink(await readlink(at), dest);
    } else if (entry.isDirectory()) {
      if (depth + 1 > MAX_DEPTH) throw new ValidationError(`the build left folders nested deeper than ${MAX_DEPTH} levels in ${count.where} (at '${rel}')`);
      const child = await openEntry(at, DIR_FLAGS, rel, count.where);
      try {
        await checkOwned(child, rel, owner, 'folder', count.where);
        await mkdir(dest, { mode: 0o755 });
        await copyFolder(child, dest, rel, owner, depth + 1, count);
      } finally {
        await child.close();
      }
    } else if (entry.isFile()) {
      await copyFile(at, dest, rel, owner, count.where);
    } else {
      throw new ValidationError(`the build left '${rel}' in ${count.where}, which is not a file, folder or link; a release cannot hold it`);
    }
  }
}

async function copyFile(at: string, dest: string, rel: string, owner: BuildUser, where: string): Promise<void> {
  const from = await openEntry(at, FILE_FLAGS, rel, where);
  try {
    const stat = await checkOwned(from, rel, owner, 'file', where);
    const to = await open(dest, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, (stat.mode & 0o100) !== 0 ? 0o755 : 0o644);
    try {
      const buffer = Buffer.alloc(Math.min(COPY_CHUNK, Math.max(1, stat.size)));
      for (let position = 0; ; ) {
        const { bytesRead } = await from.read(buffer, 0, buffer.length, position);
        if (bytesRead === 0) break;
        await to.write(buffer, 0, bytesRead);
        position += bytesRead;
      }
      await to.utimes(stat.atime, stat.mtime);
    } finally {
      await to.close();
    }
  } finally {
    await from.close();
  }
}

/** Opens an entry found a moment ago; one swapped for a link since then fails (O_NOFOLLOW) with a clear error. */
async function openEntry(at: string, flags: number, rel: string, where: string): Promise<FileHandle> {
  try {
    return await open(at, flags);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP' || code === 'ENOTDIR' || code === 'ENOENT' || code === 'ENXIO') {
      throw new ValidationError(`'${rel}' in ${where} changed while it was being copied (${code}); was a process of the app still writing it?`);
    }
    throw err;
  }
}

async function checkOwned(handle: FileHandle, rel: string, owner: BuildUser, kind: 'file' | 'folder', where: string): Promise<Stats> {
  const stat = await handle.stat();
  const isKind = kind === 'file' ? stat.isFile() : stat.isDirectory();
  if (!isKind || stat.uid !== owner.uid) {
    throw new ValidationError(`'${rel}' in ${where} is not a ${kind} of the app's user (uid ${stat.uid}); the build may only leave its own files`);
  }
  return stat;
}

/**
 * Runs `command` as `user` (or as the runner's own user) in its own process group, with exactly `env`; resolves with
 * its exit code and output. The group is killed when the command ends, so nothing it left running outlives it.
 */
export function runAs(user: BuildUser | undefined, command: string, args: string[], options: { cwd: string; env: Record<string, string> }): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true, ...(user ?? {}) });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (output += c.toString('utf8')));
    child.once('error', reject);
    child.once('close', (code) => {
      killGroup(child.pid);
      resolve({ code, output });
    });
  });
}
