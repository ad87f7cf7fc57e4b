/**
 * Attack 2 of issue #10, played against the real parts: an app (a real user, `p-rb…`) owns its instance's log
 * folder and swaps `vassal.log` for a symbolic link to a root-only file, a FIFO, or (where the kernel lets it: the
 * test makes it as root) a hard link to a root-owned file. The root log shipper pushes through a real IntakePusher
 * to a real PULL socket, and the failure tail is read through the real Emperor: not one byte of the target.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, linkSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import { silentLogger } from '../../src/core/logger.js';
import type { LogMessage } from '../../src/protocol/index.js';
import { AppUsers, appUserName, type AppUser } from '../../src/runner/app-users.js';
import { Emperor } from '../../src/runner/emperor.js';
import { readLastLines } from '../../src/runner/log-tail.js';
import { searchableTempDir } from '../helpers/data-dir.js';
import { shipperPerTest } from '../helpers/shipper.js';
import { waitFor } from '../helpers/wait.js';

const isRoot = process.getuid?.() === 0;
const root = searchableTempDir('pier-rb-logs-');
const app = `rb${randomId()}`;
const secret = `rb-secret-${randomId(16)}`;
const sentinel = join(root, 'admin.json');
let user: AppUser;
let emperor: Emperor;
const ship = shipperPerTest();
const { received } = ship;

beforeAll(async () => {
  if (isRoot) user = await new AppUsers().ensure(app);
  writeFileSync(sentinel, `{"token": "${secret}"}\n`, { mode: 0o600 });
  emperor = new Emperor({ dir: join(root, 'emperor'), log: silentLogger() }); // its folders only: no uWSGI needed
  mkdirSync(emperor.logDir, { recursive: true, mode: 0o711 });
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
  if (isRoot) execFileSync('userdel', [appUserName(app)]);
});


/** A vassal's log folder as writeVassal makes it (the app's, 0750) holding `lines` in vassal.log, written by the app. */
function instance(lines: string): { name: string; path: string } {
  const name = `rb-${randomId()}`;
  const folder = join(emperor.logDir, name);
  mkdirSync(folder, { mode: 0o750 });
  chownSync(folder, user.uid, user.gid);
  asApp(`printf '%s' "$1" > vassal.log`, folder, lines);
  return { name, path: emperor.vassalLogPath(name) };
}

/** Runs a shell command as the app's user in `cwd`, as the app's own code would. */
function asApp(script: string, cwd: string, ...args: string[]): void {
  execFileSync('/bin/sh', ['-c', script, 'sh', ...args], { cwd, uid: user.uid, gid: user.gid, stdio: 'ignore' });
}

function everything(): string {
  return received.map((m) => m.line).join('\n');
}

function linesOf(name: string): LogMessage[] {
  return received.filter((m) => m.origin === name);
}

describe.runIf(isRoot)('root reading app-written log files', () => {
  it('ships the app its own lines but not one byte of a root-only file its vassal.log was swapped for a link to', async () => {
    const { name, path } = instance('own line 1\n');
    ship.shipper.watch(name, app, path, true);
    await waitFor(() => linesOf(name).length === 1, { name: 'own line' });
    asApp(`mv vassal.log vassal.log.1 && ln -s "$1" vassal.log`, join(path, '..'), sentinel);
    await waitFor(() => linesOf(name).length === 2, { name: 'replaced line' });
    expect(linesOf(name)[1]).toMatchObject({ source: 'pier', line: 'pier: this log file was replaced (it is a symbolic link) and is ignored' });
    // Back to a plain file of the app's: followed again.
    asApp(`rm vassal.log && echo 'own line 2' > vassal.log`, join(path, '..'));
    await waitFor(() => linesOf(name).length === 3, { name: 'own line after the swap' });
    expect(linesOf(name).map((m) => m.line)).toEqual(['own line 1', 'pier: this log file was replaced (it is a symbolic link) and is ignored', 'own line 2']);
    expect(everything()).not.toContain(secret);
  });

  it('is not held up by a FIFO in place of vassal.log, and ships nothing from it', async () => {
    const { name, path } = instance('');
    asApp('rm vassal.log && mkfifo vassal.log', join(path, '..'));
    ship.shipper.watch(name, app, path, true);
    const started = Date.now();
    await ship.shipper.poll();
    expect(Date.now() - started).toBeLessThan(1000);
    await waitFor(() => linesOf(name).length === 1, { name: 'replaced line' });
    expect(linesOf(name)[0]!.line).toBe('pier: this log file was replaced (it is not a regular file (a FIFO, device or folder)) and is ignored');
    expect(await readLastLines(path)).toEqual(['pier: this log file was replaced (it is not a regular file (a FIFO, device or folder)) and is ignored']);
  });

  it('refuses a hard link to a root-owned file in place of vassal.log', async () => {
    const { name, path } = instance('');
    rmSync(path);
    linkSync(sentinel, path); // protected_hardlinks stops the app making it; root does, as a kernel without it would let the app
    ship.shipper.watch(name, app, path, true);
    await waitFor(() => linesOf(name).length === 1, { name: 'replaced line' });
    expect(linesOf(name)[0]!.line).toMatch(/^pier: this log file was replaced \(it belongs to uid 0, not to the app's user \(uid \d+\)\) and is ignored$/);
    expect(everything()).not.toContain(secret);
  });

  it('refuses a second hard link even to a file of the app', async () => {
    const { name, path } = instance('mine\n');
    asApp('ln vassal.log other', join(path, '..'));
    expect(await readLastLines(path)).toEqual(['pier: this log file was replaced (it has 2 hard links) and is ignored']);
    ship.shipper.watch(name, app, path, true);
    await waitFor(() => linesOf(name).length === 1, { name: 'replaced line' });
  });

  it('keeps the target out of the failure tail (current and rotated file) for links, hard links and FIFOs', async () => {
    const traceback = 'Traceback (most recent call last):\n  File "wsgi.py", line 1\nRuntimeError: mine\n';
    const symlinked = instance(traceback);
    asApp(`mv vassal.log vassal.log.1 && ln -s "$1" vassal.log`, join(symlinked.path, '..'), sentinel);
    expect(await emperor.readVassalLog(symlinked.name)).toEqual([
      ...traceback.trim().split('\n'),
      'pier: this log file was replaced (it is a symbolic link) and is ignored',
    ]);
    const both = instance('');
    asApp(`rm vassal.log && ln -s "$1" vassal.log && mkfifo vassal.log.1`, join(both.path, '..'), sentinel);
    const started = Date.now();
    const lines = await emperor.readVassalLog(both.name);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(lines.join('\n')).not.toContain(secret);
    expect(lines).toHaveLength(2);
    const hard = instance('');
    rmSync(hard.path);
    linkSync(sentinel, hard.path);
    linkSync(sentinel, `${hard.path}.1`);
    expect((await emperor.readVassalLog(hard.name)).join('\n')).not.toContain(secret);
    const own = join(root, 'own.log');
    writeFileSync(own, 'root line\n', { mode: 0o600 });
    expect(await readLastLines(own)).toEqual(['root line']); // root's own file in root's folder still reads
  });
});

describe.runIf(isRoot)('the emperor folders', () => {
  it('refuses to start on a log folder an app could swap', async () => {
    const shaky = join(root, 'shaky');
    mkdirSync(join(shaky, 'emperor'), { recursive: true });
    chmodSync(shaky, 0o777);
    const bad = new Emperor({ dir: join(shaky, 'emperor'), log: silentLogger() });
    await expect(bad.start()).rejects.toThrow(`'${shaky}' can be changed by users other than root, so apps could swap the runner's folders`);
  });
});
