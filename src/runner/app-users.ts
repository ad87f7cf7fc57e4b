/**
 * One system user per app, so customers' code never runs as root and one app cannot read another's files: the
 * vassal drops to `p-<app>` (uWSGI `uid`/`gid`), its release folder is readable by that user's group only, its
 * log folder and its HOME/TMPDIR belong to it, and the vassal file (which holds the config vars) stays root's.
 * Only a runner running as root can do this; otherwise apps run as the runner's own user.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { PierError } from '../core/errors.js';
import { KeyedQueue } from '../core/keyed-queue.js';

const run = promisify(execFile);

export interface AppUser {
  name: string;
  uid: number;
  gid: number;
}

/** Linux user names are at most 32 characters; app names at most 30. */
export function appUserName(app: string): string {
  return `p-${app}`;
}

export class AppUsers {
  /**
   * Creating and deleting a name's user run one after the other, so a start never gets a user that a clean-up is
   * deleting at that moment.
   */
  private readonly work = new KeyedQueue();

  /** Whether apps get their own users (the runner is root and has not been told otherwise). */
  static isPossible(): boolean {
    return typeof process.getuid === 'function' && process.getuid() === 0;
  }

  /**
   * The app's user, created when it does not exist (`useradd --system`, no login, no home). Looked up every time,
   * not remembered: a clean-up here or another runner on this machine may have deleted it since (a remembered user
   * then ran the app under a uid no user holds, which the next `useradd` may hand to another app).
   */
  ensure(app: string): Promise<AppUser> {
    return this.work.run(app, () => this.create(appUserName(app)));
  }

  /** The app's user if it exists (whoever created it). */
  lookup(app: string): Promise<AppUser | undefined> {
    return lookup(appUserName(app));
  }

  /**
   * Deletes the app's user and its group (`userdel`), so a re-created app gets a fresh user. Kill its processes
   * first (userdel refuses a user with running processes). False when the user did not exist.
   */
  remove(app: string): Promise<boolean> {
    return this.work.run(app, () => this.removeUser(appUserName(app)));
  }

  private async removeUser(name: string): Promise<boolean> {
    if (!(await lookup(name))) return false;
    for (let attempt = 0; ; attempt++) {
      try {
        await run('userdel', [name]);
        break;
      } catch (err) {
        const code = (err as { code?: number }).code;
        if (code === 6 || !(await lookup(name))) break; // gone meanwhile (another runner on this machine)
        if (code !== 8 || attempt >= 20) {
          throw new PierError('PIER_ILLEGAL_STATE', `cannot delete the app user '${name}': ${((err as { stderr?: string }).stderr ?? (err as Error).message).trim()}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 50)); // 8: a process of it is still exiting
      }
    }
    await run('groupdel', [name]).catch(() => undefined); // userdel removes a user group of its own already
    return true;
  }

  private async create(name: string): Promise<AppUser> {
    const existing = await lookup(name);
    if (existing) return existing;
    try {
      await run('useradd', ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', name]);
    } catch (err) {
      // Another runner on this machine may have created it a moment ago.
      const raced = await lookup(name);
      if (raced) return raced;
      throw new PierError('PIER_ILLEGAL_STATE', `cannot create the app user '${name}': ${((err as { stderr?: string }).stderr ?? (err as Error).message).trim()}`);
    }
    const created = await lookup(name);
    if (!created) throw new PierError('PIER_ILLEGAL_STATE', `the app user '${name}' was created but cannot be found`);
    return created;
  }
}

async function lookup(name: string): Promise<AppUser | undefined> {
  try {
    const { stdout } = await run('getent', ['passwd', name]);
    const fields = stdout.trim().split(':');
    return { name, uid: Number(fields[2]), gid: Number(fields[3]) };
  } catch {
    return undefined; // getent exits 2 for an unknown name
  }
}
