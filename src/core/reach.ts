/**
 * Folders Pier hands to another user (the embedded PostgreSQL's `postgres`, the apps' `p-<app>` users): checked up
 * front, so a private folder on the way (/root, a `mktemp -d` folder: mode 0700) fails with one line naming it and
 * the fix, never with a raw EACCES from a child process. Pier sets modes only on folders it creates itself: it
 * never opens up a folder of the user's.
 */
import { existsSync, mkdirSync, realpathSync, statSync, chmodSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { PierError } from './errors.js';

/**
 * The first folder above `target` (following symbolic links; only the folders that exist) that other users cannot
 * search (no `o+x`), or undefined when another user can walk down to `target`. `target` itself is not checked:
 * it is the other user's own folder, or one Pier is about to create or set the mode of.
 */
export function unsearchableAbove(target: string): string | undefined {
  const wanted = resolve(target);
  let existing = wanted;
  while (!existsSync(existing) && existing !== dirname(existing)) existing = dirname(existing);
  let dir = existing === wanted ? dirname(realpathSync(existing)) : realpathSync(existing);
  for (;;) {
    if ((statSync(dir).mode & 0o001) === 0) return dir;
    if (dir === dirname(dir)) return undefined;
    dir = dirname(dir);
  }
}

export interface ReachCheck {
  /** Who needs the folder, as the start of the message: `apps run as their own users, who`. */
  who: string;
  /** What else the user can do, appended after `run 'chmod o+x …'`: `' or choose another --data folder'`. */
  orElse: string;
}

/**
 * Throws unless other users can walk down to `target`.
 * @throws PierError PIER_CONFIG: `<who> cannot reach '<target>': '<folder>' is not searchable by others; run 'chmod o+x <folder>'<orElse>`
 */
export function assertReachableByOthers(target: string, check: ReachCheck): void {
  const blocked = unsearchableAbove(target);
  if (blocked === undefined) return;
  throw new PierError(
    'PIER_CONFIG',
    `${check.who} cannot reach '${resolve(target)}': '${blocked}' is not searchable by others; run 'chmod o+x ${blocked}'${check.orElse}`,
  );
}

/**
 * `mkdir -p` that sets the modes of the folders it creates, whatever the umask: `mode` for `target`, 0755 for the
 * parents it had to create. Folders that already exist keep their mode. @returns the folders it created, top first
 */
export function makeFolders(target: string, mode: number): string[] {
  const wanted = resolve(target);
  const first = mkdirSync(wanted, { recursive: true, mode });
  if (first === undefined) return [];
  const created: string[] = [];
  for (let dir = wanted; ; dir = dirname(dir)) {
    created.unshift(dir);
    if (dir === first || dir === dirname(dir)) break;
  }
  for (const dir of created) chmodSync(dir, dir === wanted ? mode : 0o755);
  return created;
}

/** The check for the embedded PostgreSQL's cluster folder, which root hands to the `postgres` user. */
export const POSTGRES_REACH: ReachCheck = { who: "the embedded PostgreSQL runs as 'postgres', which", orElse: ' or choose another data folder' };

/** The check for a runner's folder, which holds the release folders of apps running as their own users. */
export const APP_USERS_REACH: ReachCheck = { who: 'apps run as their own users, who', orElse: ', move the data folder, or set runner.appUsers = false' };

/** True when this process runs as root, so the folders it hands to other users must be checked. */
export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}
