/**
 * Least privilege for the daemons that parse untrusted input (nexus, balancer, stats): started as root, they bind,
 * open and load all they need, then drop for good to an unprivileged system user (`security.user`), so a parsing
 * bug never hands out root. Only the runner keeps root (it creates app users and cgroups).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, lchownSync, lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PierError } from './errors.js';

/** The system user `pier up` runs its nexus, balancer and stats daemons as (created when missing). */
export const DEFAULT_DAEMON_USER = 'pier';

/** A Unix user by name. */
export interface UnixUser {
  name: string;
  uid: number;
  gid: number;
}

/** The user called `name` (through NSS, like `id`), or undefined when there is none. */
export function lookupUser(name: string): UnixUser | undefined {
  let line: string;
  try {
    line = execFileSync('getent', ['passwd', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined; // getent exits 2 for an unknown name
  }
  const [, , uid, gid] = line.split(':');
  return { name, uid: Number(uid), gid: Number(gid) };
}

/** Creates the unprivileged system user `name` (no home, no login shell) unless it exists. */
export function ensureSystemUser(name: string): UnixUser {
  const existing = lookupUser(name);
  if (existing) return existing;
  try {
    execFileSync('useradd', ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', name], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    // Another pier up may have created it at the same moment: use theirs.
    const raced = lookupUser(name);
    if (raced) return raced;
    throw new PierError('PIER_CONFIG', `cannot create the daemon user '${name}' with useradd; create it yourself or set security.user`, { cause: err });
  }
  const created = lookupUser(name);
  if (!created) throw new PierError('PIER_CONFIG', `user '${name}' was created but cannot be looked up; check /etc/nsswitch.conf`);
  return created;
}

/**
 * The user a daemon should drop to, when it runs as root and `security.user` names one (`root` keeps root, on
 * purpose); another user with uid or gid 0 is refused: it would drop nothing.
 * @throws PierError PIER_CONFIG when the user does not exist or is root in disguise
 */
export function resolveDaemonUser(name: string): UnixUser | undefined {
  if (name === '' || name === 'root' || process.getuid?.() !== 0) return undefined;
  const user = lookupUser(name);
  if (!user) throw new PierError('PIER_CONFIG', `security.user '${name}' does not exist; create it (useradd --system --user-group --no-create-home --shell /usr/sbin/nologin ${name}) or change security.user`);
  if (user.uid === 0 || user.gid === 0) throw new PierError('PIER_CONFIG', `security.user '${name}' is root (uid or gid 0); name an unprivileged user, or leave security.user empty`);
  return user;
}

/**
 * Hands `dir` (a folder this daemon alone writes: the stats log chunks) to `user`, mode `dirMode`, so the daemon
 * can still write there after it dropped root and no one else can list it. Root never walks a tree the user
 * already controls (a process it left behind could swap a folder for a link mid-walk): a folder the user owns
 * only gets its mode set. A folder root made before (an older Pier) is walked children first, top last, while the
 * user still cannot write in it; links are never followed (lchown) and files with more than one link are skipped.
 */
export function chownTree(dir: string, user: UnixUser, dirMode = 0o700): void {
  const st = lstatSync(dir);
  if (!st.isDirectory()) throw new PierError('PIER_CONFIG', `'${dir}' is not a folder (a symbolic link?); point the config at the folder itself`);
  if (st.uid !== user.uid) {
    if ((st.mode & 0o002) !== 0) {
      throw new PierError('PIER_CONFIG', `'${dir}' is writable by everyone; run 'chown -R ${user.name}: ${dir} && chmod 700 ${dir}' or choose another folder`);
    }
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      const child = lstatSync(path);
      if (child.isDirectory()) chownTree(path, user, dirMode);
      else if (child.isFile() && child.nlink === 1) lchownSync(path, user.uid, user.gid);
    }
    lchownSync(dir, user.uid, user.gid);
  }
  if ((st.mode & 0o7777) !== dirMode) chmodSync(dir, dirMode); // a folder, not a link: checked above
}

/**
 * Drops this process to `user` for good: supplementary groups cleared, then gid, then uid (the order matters: a
 * process that gave up uid 0 can no longer change its groups). Checks that it worked and that root cannot be
 * taken back.
 * @throws PierError PIER_ILLEGAL_STATE when any step fails or root could be regained
 */
export function dropPrivileges(user: UnixUser): void {
  try {
    process.setgroups!([]);
    process.setgid!(user.gid);
    process.setuid!(user.uid);
  } catch (err) {
    throw new PierError('PIER_ILLEGAL_STATE', `cannot drop root to user '${user.name}': ${(err as Error).message}`, { cause: err });
  }
  const ids = [process.getuid!(), process.geteuid!(), process.getgid!(), process.getegid!()];
  if (ids.some((id) => id === 0) || process.getgroups!().includes(0)) {
    throw new PierError('PIER_ILLEGAL_STATE', `still root after dropping to '${user.name}' (ids ${ids.join(',')})`);
  }
  let isRegained = false;
  try {
    process.setuid!(0);
    isRegained = true;
  } catch {
    // expected: an unprivileged process cannot become root again
  }
  if (isRegained) throw new PierError('PIER_ILLEGAL_STATE', `root could be regained after dropping to '${user.name}'`);
}
