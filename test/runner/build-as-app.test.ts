/**
 * Attack 1 of issue #10, played against the real parts: an upload whose build would run its code as root. The
 * builds run as a real app user (`p-rb…`, created and removed here) with the real Python, pip and a real uWSGI
 * emperor (root) starting the result. Each planted script records the uid it ran as, in a folder the test reads.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import { silentLogger } from '../../src/core/logger.js';
import { AppUsers, appUserName, type AppUser } from '../../src/runner/app-users.js';
import { Emperor } from '../../src/runner/emperor.js';
import { waitForHttp } from '../../src/runner/probe.js';
import { renderVassal } from '../../src/runner/vassal.js';
import { VENV_MARKER, buildVirtualenv } from '../../src/runner/venv.js';
import { searchableTempDir } from '../helpers/data-dir.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';

const isRoot = process.getuid?.() === 0;
const root = searchableTempDir('pier-rb-build-');
const record = join(root, 'record');
const app = `rb${randomId()}`;
let user: AppUser;

beforeAll(async () => {
  mkdirSync(record, { mode: 0o1777 });
  chmodSync(record, 0o1777); // the app's user writes its findings here
  if (isRoot) user = await new AppUsers().ensure(app);
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
  if (isRoot) execFileSync('userdel', [appUserName(app)]);
});

/** A release folder laid out as the runner's: `<root>/releases/<name>/` root's and the app group's (0750). */
function release(name: string, files: Record<string, string>): { appDir: string; venvDir: string; releaseDir: string } {
  const releaseDir = join(root, 'releases', name);
  mkdirSync(releaseDir, { recursive: true });
  chownSync(releaseDir, 0, user.gid);
  chmodSync(releaseDir, 0o750);
  const appDir = join(releaseDir, 'app');
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(appDir, path, '..'), { recursive: true });
    writeFileSync(join(appDir, path), text);
  }
  return { appDir, venvDir: join(releaseDir, 'venv'), releaseDir };
}

/** Python that appends this process's uid to `record/<name>`. */
const recordUid = (name: string): string => `import os; open(${JSON.stringify(join(record, name))}, "a").write("%d\\n" % os.getuid())`;

function uidsIn(name: string): number[] {
  const file = join(record, name);
  return existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').map(Number) : [];
}

/** Every entry of `dir` (not following links), with its owner. */
function owners(dir: string): Map<string, number> {
  const found = new Map<string, number>();
  for (const entry of readdirSync(dir, { recursive: true }) as string[]) found.set(entry, lstatSync(join(dir, entry)).uid);
  return found;
}

/** True when the app's user can create a file in `dir`. */
function appCanWrite(dir: string): boolean {
  try {
    execFileSync('/usr/bin/touch', [join(dir, `probe-${randomId()}`)], { uid: user.uid, gid: user.gid, stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const WSGI = 'def application(environ, start_response):\n    start_response("200 OK", [])\n    return [b"ok"]\n';

describe.runIf(isRoot)('building a release as the app user', () => {
  it("never runs an app's venv/__main__.py (python3 -I, neutral cwd), and builds a venv of root's", async () => {
    const { appDir, venvDir } = release('venv-main', {
      'wsgi.py': WSGI,
      'venv/__init__.py': recordUid('venv-init'),
      'venv/__main__.py': `${recordUid('venv-main')}\nimport runpy; runpy.run_module("venv", run_name="__main__", alter_sys=True)\n`,
    });
    const started = Date.now();
    const result = await buildVirtualenv({ appDir, venvDir, user, log: silentLogger() });
    const withUser = Date.now() - started;
    expect(result.isReused).toBe(false);
    expect(uidsIn('venv-main')).toEqual([]);
    expect(uidsIn('venv-init')).toEqual([]);
    expect(readFileSync(join(venvDir, 'pyvenv.cfg'), 'utf8')).toContain('include-system-site-packages = true');
    // Root's, read-only to the app; no build folder left beside it.
    expect(lstatSync(venvDir).uid).toBe(0);
    expect([...owners(venvDir).values()].every((uid) => uid === 0)).toBe(true);
    expect(appCanWrite(venvDir)).toBe(false);
    expect(readdirSync(join(venvDir, '..')).sort()).toEqual(['app', 'venv']);
    expect((await buildVirtualenv({ appDir, venvDir, user, log: silentLogger() })).isReused).toBe(true);

    const plain = release('venv-plain', { 'wsgi.py': WSGI });
    const plainStarted = Date.now();
    await buildVirtualenv({ appDir: plain.appDir, venvDir: plain.venvDir, log: silentLogger() });
    console.log(`venv without requirements: ${withUser} ms as the app's user and frozen, ${Date.now() - plainStarted} ms as root`);
  }, 30_000);

  it("runs a local requirement's setup.py as the app's user only, and its .pth under uWSGI as the app's user too", async () => {
    const files = {
      'wsgi.py': WSGI,
      'requirements.txt': '.\n',
      'setup.py': `${recordUid('setup-py')}\nfrom setuptools import setup\nsetup(name="rbprobe", version="1.0", py_modules=["rbprobe"], data_files=[("lib/python3.11/site-packages", ["rbprobe.pth"])])\n`,
      'rbprobe.py': 'VALUE = 42\n',
      'rbprobe.pth': `${recordUid('pth')}\n`,
      'pip/__init__.py': recordUid('pip-init'),
      'pip/__main__.py': recordUid('pip-main'),
    };
    const { appDir, venvDir } = release('setup-py', files);
    const lines: string[] = [];
    const started = Date.now();
    await buildVirtualenv({ appDir, venvDir, user, pipArgs: ['--no-index', '--no-build-isolation'], log: silentLogger(), onOutput: (l) => lines.push(l) });
    const withUser = Date.now() - started;
    expect(lines.some((l) => l.includes('Successfully installed rbprobe-1.0'))).toBe(true);
    const setupUids = uidsIn('setup-py');
    expect(setupUids.length).toBeGreaterThan(0);
    expect(new Set(setupUids)).toEqual(new Set([user.uid]));
    expect(uidsIn('pip-init')).toEqual([]);
    expect(uidsIn('pip-main')).toEqual([]);
    expect(existsSync(join(appDir, 'build'))).toBe(false); // pip built in the app user's copy, not in the release
    const venvOwners = owners(venvDir);
    expect(venvOwners.has('lib/python3.11/site-packages/rbprobe.py')).toBe(true);
    expect([...venvOwners.values()].every((uid) => uid === 0)).toBe(true);
    expect(appCanWrite(join(venvDir, 'lib', 'python3.11', 'site-packages'))).toBe(false);
    expect(readFileSync(join(venvDir, VENV_MARKER), 'utf8')).toContain('"hash"');

    const plain = release('setup-plain', Object.fromEntries(Object.entries(files).filter(([k]) => !k.startsWith('pip/'))));
    const plainStarted = Date.now();
    await buildVirtualenv({ appDir: plain.appDir, venvDir: plain.venvDir, pipArgs: ['--no-index', '--no-build-isolation'], log: silentLogger() });
    console.log(`venv with a local setup.py requirement: ${withUser} ms as the app's user and frozen, ${Date.now() - plainStarted} ms as root`);

    // The root emperor starts the release as the app's user: Python (and so the venv's .pth) starts after the drop.
    const before = uidsIn('pth').length;
    const emperor = new Emperor({ dir: join(root, 'emperor'), log: silentLogger() });
    await emperor.start();
    try {
      const port = await freePort();
      await emperor.writeVassal('rb-pth', renderVassal({
        name: 'rb-pth', appDir, venvDir, wsgi: { module: 'wsgi', callable: 'application' }, port, processes: 1, threads: 1, env: {},
        uid: user.uid, gid: user.gid, logFile: emperor.vassalLogPath('rb-pth'),
      }), { logOwner: { uid: user.uid, gid: user.gid } });
      await waitForHttp('127.0.0.1', port, { timeoutMs: 8000 });
      await waitFor(() => uidsIn('pth').length > before, { name: '.pth ran in the vassal' });
      expect(new Set(uidsIn('pth'))).toEqual(new Set([user.uid]));
    } finally {
      await emperor.stop();
    }
  }, 60_000);

  it('fails a build that asks pip to read /etc/shadow or a root-only file, without one line of either in the error or logs', async () => {
    const secret = `rb-secret-${randomId(16)}`;
    const sentinel = join(root, 'sentinel.txt');
    writeFileSync(sentinel, `${secret}\n`, { mode: 0o600 });
    const shadowFirst = readFileSync('/etc/shadow', 'utf8').split('\n')[0]!;
    const logged: string[] = [];
    const log = pino({ level: 'trace' }, new Writable({ write: (chunk: Buffer, _enc, done) => (logged.push(chunk.toString('utf8')), done()) }));
    for (const [name, target] of [['shadow', '/etc/shadow'], ['sentinel', sentinel]] as const) {
      const { appDir, venvDir, releaseDir } = release(`read-${name}`, { 'wsgi.py': WSGI, 'requirements.txt': `-r ${target}\n` });
      const lines: string[] = [];
      const err = await buildVirtualenv({ appDir, venvDir, user, log, onOutput: (l) => lines.push(l) }).then(() => undefined, (e: unknown) => e as Error);
      expect(err).toBeInstanceOf(Error);
      expect(err!.message).toMatch(/^pip install -r requirements\.txt failed \(exit code 1\):\n/);
      expect(err!.message).toContain(`Permission denied: '${target}'`);
      const seen = [err!.message, ...lines, ...logged].join('\n');
      expect(seen).not.toContain(secret);
      expect(seen).not.toContain(shadowFirst);
      for (const field of shadowFirst.split(':').slice(1).filter((f) => f.length > 3)) expect(seen).not.toContain(field);
      expect(existsSync(venvDir)).toBe(false);
      expect(readdirSync(releaseDir)).toEqual(['app']); // the build folder is gone too
    }
  }, 30_000);
});
