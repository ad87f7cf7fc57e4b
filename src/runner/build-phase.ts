/**
 * The Procfile's `build:` command (e.g. `python manage.py collectstatic --noinput`), run on each runner while it
 * prepares a release, after the virtualenv is built: as the app's user, with the app's config vars and the venv's
 * `bin/` first on PATH, in a build copy of the app that user owns (the release folder is root's and read-only to
 * the app). When it succeeds, root freezes the copy (`freezeTree`: never following a link the build made, only
 * files of the app's user, no setuid bits, modes 0644/0755) into a fresh tree of root's and swaps it in as the
 * release's app folder; the build copy and the build's HOME are removed as the app's user. A failure (or its
 * time-out) fails the release with the build's last lines.
 */
import { chown, mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomId } from '../core/ids.js';
import { removeOwnedEntry } from './app-files.js';
import { freezeTree, type BuildUser } from './app-tree.js';
import { BASE_ENV, runStep } from './venv.js';

export interface BuildPhaseOptions {
  /** The release's folder (root's): holds `app/` and `venv/`; the build copy is made beside them. */
  releaseDir: string;
  /** The command, run with `/bin/sh -c` in the build copy of the app. */
  command: string;
  /** The release's config vars (the app's environment). */
  config: Record<string, string>;
  /** The app's user (the runner is root). @default none: the runner's own user */
  user?: BuildUser;
  /** Time the build gets before its process group is killed. */
  timeoutMs: number;
  /** Receives each line the build prints. */
  onOutput?: (line: string) => void;
}

/** Runs the build phase; on success `releaseDir/app` is the frozen result. @throws ValidationError/TimeoutError with the build's last lines */
export async function runBuildPhase(options: BuildPhaseOptions): Promise<void> {
  const { releaseDir, user } = options;
  const appDir = join(releaseDir, 'app');
  const id = randomId();
  // Both are entries of the release folder (root's), so the app's user cannot swap them for links.
  const copy = join(releaseDir, `.build-app-${id}`);
  const home = join(releaseDir, `.build-home-${id}`);
  const frozen = join(releaseDir, `.app-frozen-${id}`);
  const old = join(releaseDir, `.app-old-${id}`);
  try {
    for (const folder of [home, join(home, 'tmp'), copy]) {
      await mkdir(folder, { mode: folder === copy ? 0o755 : 0o700 });
      if (user) await chown(folder, user.uid, user.gid);
    }
    const venvDir = join(releaseDir, 'venv');
    const env: Record<string, string> = {
      ...BASE_ENV, PATH: `${join(venvDir, 'bin')}:${BASE_ENV.PATH}`, VIRTUAL_ENV: venvDir, HOME: home, TMPDIR: join(home, 'tmp'),
      ...options.config,
    };
    const deadline = Date.now() + options.timeoutMs;
    const step = { cwd: home, env, deadline, user, onOutput: options.onOutput };
    // The app's user copies the release (it may read it) into a folder of its own, then works there.
    await runStep('copying the app for the build', '/bin/cp', ['-R', '--', `${appDir}/.`, copy], step);
    await runStep(`build (${options.command.slice(0, 60)})`, '/bin/sh', ['-c', 'cd "$1" && exec /bin/sh -c "$2"', 'sh', copy, options.command], step);
    if (user) await freezeTree(copy, frozen, user, 'the build');
    else await rename(copy, frozen);
    await rename(appDir, old);
    await rename(frozen, appDir);
  } finally {
    await rm(old, { recursive: true, force: true }); // root's own tree (the unpacked release)
    await rm(frozen, { recursive: true, force: true });
    await removeOwnedEntry(copy).catch(() => false);
    await removeOwnedEntry(home).catch(() => false);
  }
}
