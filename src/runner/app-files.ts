/**
 * Removing what apps wrote, and ending what apps run, without root ever walking a tree an app controls.
 *
 * An app's HOME, TMPDIR and vassal log folder belong to the app's user, and that user's processes (other
 * instances of the same app, a daemon that escaped its vassal) may be changing them while they are removed: a
 * folder swapped for a symlink mid-walk would send a root `rm -r` anywhere. So the walk runs as the app's user
 * (`rm -rf --one-file-system`, minimal environment, cwd `/`): whatever it is tricked into, it can only delete
 * what the app could delete anyway. Root then removes only the emptied top entry, with `rmdir`, in its own
 * root-owned parent (rmdir never follows a link). Where the runner is not root there are no app users and
 * nothing to cross: the runner removes the folder itself, as before.
 */
import { spawn } from 'node:child_process';
import { lstat, readFile, readdir, rm, rmdir, unlink } from 'node:fs/promises';
import { isRoot } from '../core/reach.js';
import { sleep } from '../core/wait.js';

/** A numeric owner: the app user's uid and gid (the user itself may already be gone). */
export interface FileOwner {
  uid: number;
  gid: number;
}

/** The environment of every helper run as an app user: nothing of the runner's. */
const HELPER_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' };
/** Rounds of `kill -9 -1` before giving up on a uid whose processes keep forking. */
const KILL_ROUNDS = 100;

/** Runs `file args` as `owner` (uid, gid, no supplementary groups), cwd `/`, minimal env; resolves with its exit code. */
export function runAs(owner: FileOwner, file: string, args: string[], timeoutMs = 60_000): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { uid: owner.uid, gid: owner.gid, cwd: '/', env: HELPER_ENV, stdio: 'ignore', timeout: timeoutMs, killSignal: 'SIGKILL' });
    child.once('error', reject);
    child.once('close', (code) => resolve(code ?? -1));
  });
}

/**
 * Removes `dir`, an entry of a root-owned folder, whose contents `owner` (an app user) may control and may be
 * changing right now: the contents go as `owner`, then root rmdirs the emptied top. True when `dir` is gone; false
 * when something stayed (an app process keeps writing into it, or it holds what the app may not delete).
 * Without root (no app users), or with no owner, the runner removes it itself.
 */
export async function removeAsUser(owner: FileOwner | undefined, dir: string): Promise<boolean> {
  if (!owner || !isRoot() || owner.uid === 0) {
    await rm(dir, { recursive: true, force: true });
    return true;
  }
  const top = await lstat(dir).catch(() => undefined);
  if (!top) return true;
  if (!top.isDirectory()) {
    await unlink(dir).catch(ignoreMissing); // a link or a file: unlink never follows
    return true;
  }
  for (let pass = 0; pass < 2; pass++) {
    // rm also tries to unlink `dir` itself, which the app may not do (root's parent): that error is expected.
    if (pass === 0) await runAs(owner, 'rm', ['-rf', '--one-file-system', '--', dir]);
    // Again, opening up first what the app made unwritable (chmod -R never follows a link it meets).
    else await runAs(owner, 'sh', ['-c', 'chmod -R u+rwx -- "$1" 2>/dev/null; exec rm -rf --one-file-system -- "$1"', 'sh', dir]);
    try {
      await rmdir(dir);
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return true;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
    }
  }
  return false;
}

/**
 * Removes `dir` for good once none of `owner`'s processes runs any more (see killAllOf): the app's files go as the
 * app's user first, then root removes what is left (root's own files, and folders the app could empty but not
 * remove) — nothing of the app can move under it now.
 */
export async function removeAfterKill(owner: FileOwner | undefined, dir: string): Promise<void> {
  if (owner && isRoot() && owner.uid !== 0) {
    if (await removeAsUser(owner, dir)) return;
  }
  await rm(dir, { recursive: true, force: true });
}

/** Removes a root-owned folder's entry owned by an app user, as that user (its owner is read with lstat). */
export async function removeOwnedEntry(dir: string): Promise<boolean> {
  const top = await lstat(dir).catch(() => undefined);
  if (!top) return true;
  return removeAsUser(top.uid === 0 ? undefined : { uid: top.uid, gid: top.gid }, dir);
}

/** Pids of live processes whose real, effective, saved or filesystem uid is `uid` (zombies are not counted). */
export async function processesOf(uid: number): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let status: string;
    try {
      status = await readFile(`/proc/${name}/status`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    if (/^State:\s*[ZX]/m.test(status)) continue;
    const uids = /^Uid:\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status);
    if (uids && uids.slice(1).some((u) => Number(u) === uid)) pids.push(Number(name));
  }
  return pids;
}

/**
 * Kills every process of `owner.uid`: as that uid, `kill -9 -1` (every process the uid may signal, which is
 * exactly its own), again until /proc shows none — a process forking meanwhile is caught by the next round.
 * True when none is left. Only as root, and never for uid 0.
 */
export async function killAllOf(owner: FileOwner): Promise<boolean> {
  if (!isRoot() || owner.uid === 0) return false;
  // Kill first, scan after: a process that keeps forking to change its pid is gone from /proc before a scan reads
  // it, but kill(-1) walks the process list while no fork can complete, so it misses no one alive at that moment.
  let empty = 0;
  for (let round = 0; round < KILL_ROUNDS; round++) {
    await runAs(owner, 'kill', ['-9', '-1']).catch(() => undefined);
    await sleep(round < 10 ? 5 : 50);
    if ((await processesOf(owner.uid)).length > 0) empty = 0;
    else if (++empty >= 2) return true;
  }
  return false;
}

/**
 * Deletes what `owner` left in the machine's shared scratch folders (/tmp, /var/tmp, /dev/shm), as that user, so
 * a later user given the same uid finds nothing of it there.
 */
export async function removeScratchOf(owner: FileOwner): Promise<void> {
  if (!isRoot() || owner.uid === 0) return;
  const roots: string[] = [];
  for (const root of ['/tmp', '/var/tmp', '/dev/shm']) if (await lstat(root).then((s) => s.isDirectory(), () => false)) roots.push(root);
  if (roots.length === 0) return;
  // find prints errors for folders of others it cannot read; only what the uid owns is deleted.
  await runAs(owner, 'find', [...roots, '-xdev', '-mindepth', '1', '-user', String(owner.uid), '-delete'], 120_000).catch(() => undefined);
}

function ignoreMissing(err: NodeJS.ErrnoException): void {
  if (err.code !== 'ENOENT') throw err;
}
