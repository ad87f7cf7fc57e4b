/**
 * One system user per app, so customers' code never runs as root and one app cannot read another's files: the
 * vassal drops to `p-<app>` (uWSGI `uid`/`gid`), its release folder is readable by that user's group only, its
 * log folder and its HOME/TMPDIR belong to it, and the vassal file (which holds the config vars) stays root's.
 * Only a runner running as root can do this; otherwise apps run as the runner's own user.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { PierError } from '../core/errors.js';

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
  private readonly known = new Map<string, Promise<AppUser>>();

  /** Whether apps get their own users (the runner is root and has not been told otherwise). */
  static isPossible(): boolean {
    return typeof process.getuid === 'function' && process.getuid() === 0;
  }

  /** The app's user, created on first use (`useradd --system`, no login, no home). */
  ensure(app: string): Promise<AppUser> {
    let user = this.known.get(app);
    if (!user) {
      user = this.create(appUserName(app));
      this.known.set(app, user);
      user.catch(() => this.known.delete(app)); // try again next time
    }
    return user;
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
