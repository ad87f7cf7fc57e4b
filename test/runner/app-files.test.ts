/**
 * Removing app-owned trees as the app's user, and ending every process of an app user, played against a real app
 * user and a real attacker process running as it (the runner is root here, as in production).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, lstatSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import { killAllOf, processesOf, removeAsUser } from '../../src/runner/app-files.js';
import { AppUsers, type AppUser } from '../../src/runner/app-users.js';
import { searchableTempDir } from '../helpers/data-dir.js';
import { waitFor } from '../helpers/wait.js';

const users = new AppUsers();
const app = `ds-race-${randomId(3)}`;
let base: string;
let user: AppUser;
const started: ChildProcess[] = [];

/** Runs `python3 -c source args` as the app's user (the attacker). */
function asApp(source: string, args: string[]): ChildProcess {
  const child = spawn('/usr/bin/python3', ['-c', source, ...args], { uid: user.uid, gid: user.gid, cwd: '/', stdio: ['ignore', 'pipe', 'ignore'] });
  started.push(child);
  return child;
}

beforeAll(async () => {
  base = searchableTempDir('pier-ds-files-');
  user = await users.ensure(app);
});

afterAll(async () => {
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  if (user) {
    await killAllOf(user);
    await users.remove(app);
  }
  if (base) rmSync(base, { recursive: true, force: true });
});

/** Swaps HOME/d between a folder (with files) and a symlink to the sentinel, as fast as it can, forever. */
const SWAPPER = `
import os, sys
home, sentinel = sys.argv[1], sys.argv[2]
d, x = os.path.join(home, "d"), os.path.join(home, "x")
swaps = 0
while True:
    try:
        os.makedirs(os.path.join(d, "deep"), exist_ok=True)
        for i in range(3):
            open(os.path.join(d, "deep", "f%d" % i), "w").close()
        os.rename(d, x)
        os.symlink(sentinel, d)
        swaps += 1
        if swaps % 50 == 0:
            print(swaps, flush=True)
        os.unlink(d)
        os.rename(x, d)
    except OSError:
        pass
`;

describe('removeAsUser', () => {
  it('never deletes a root-owned folder an app swaps into its HOME while the HOME is removed, 200 times over', async () => {
    const homes = join(base, 'homes');
    mkdirSync(homes, { mode: 0o711 });
    const sentinel = join(base, 'sentinel');
    mkdirSync(join(sentinel, 'deep'), { recursive: true, mode: 0o755 });
    for (const f of ['keep', 'f0', 'f1', 'f2']) writeFileSync(join(sentinel, f), 'root');
    for (const f of ['f0', 'f1', 'f2']) writeFileSync(join(sentinel, 'deep', f), 'root');
    const home = join(homes, 'ds-race-v1-abc');
    const makeHome = (): void => {
      mkdirSync(home, { mode: 0o700 });
      chownSync(home, user.uid, user.gid);
    };
    makeHome();
    const attacker = asApp(SWAPPER, [home, sentinel]);
    let swaps = 0;
    attacker.stdout!.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n')) if (/^\d+$/.test(line)) swaps = Math.max(swaps, Number(line));
    });
    await waitFor(() => swaps >= 50, { name: 'attacker swapping', timeoutMs: 5000 });

    const started = Date.now();
    let removed = 0;
    const iterations = 200;
    for (let i = 0; i < iterations; i++) {
      if (!existsSync(home)) makeHome();
      if (await removeAsUser(user, home)) removed += 1;
      // The sentinel (root's folder and files, reachable from the HOME through the attacker's symlink) is intact.
      expect(readdirSync(sentinel).sort()).toEqual(['deep', 'f0', 'f1', 'f2', 'keep']);
      expect(readdirSync(join(sentinel, 'deep')).sort()).toEqual(['f0', 'f1', 'f2']);
      expect(lstatSync(sentinel).isDirectory()).toBe(true);
    }
    const elapsedMs = Date.now() - started;
    const swapsDuring = swaps;
    attacker.kill('SIGKILL');
    await waitFor(async () => (await processesOf(user.uid)).length === 0, { name: 'attacker gone' });
    // With the app's processes gone, the HOME goes entirely.
    if (!existsSync(home)) makeHome();
    expect(await removeAsUser(user, home)).toBe(true);
    expect(existsSync(home)).toBe(false);
    console.log(`HOME swap race: ${iterations} removals in ${elapsedMs} ms, ${removed} removed the HOME whole while the attacker ran, attacker swapped ${swapsDuring} times; sentinel intact every time`);
    expect(swapsDuring).toBeGreaterThan(200); // the race was really run
    expect(elapsedMs).toBeLessThan(15_000);
  }, 30_000);

  it('removes a HOME the app filled with unwritable folders and a link out, as the app, and leaves root-owned targets alone', async () => {
    const homes = join(base, 'homes2');
    mkdirSync(homes, { mode: 0o711 });
    const target = join(base, 'target');
    mkdirSync(target);
    writeFileSync(join(target, 'secret'), 'root');
    const home = join(homes, 'ds-race-v2-abc');
    mkdirSync(home, { mode: 0o700 });
    chownSync(home, user.uid, user.gid);
    const fill = asApp(`
import os, sys
home, target = sys.argv[1], sys.argv[2]
os.makedirs(os.path.join(home, "a", "b"))
open(os.path.join(home, "a", "b", "f"), "w").close()
os.chmod(os.path.join(home, "a", "b"), 0o500)
os.chmod(os.path.join(home, "a"), 0o000)
os.symlink(target, os.path.join(home, "out"))
os.symlink(os.path.join(target, "secret"), os.path.join(home, "secret"))
`, [home, target]);
    await new Promise((resolve) => fill.once('close', resolve));
    expect(fill.exitCode).toBe(0);
    expect(await removeAsUser(user, home)).toBe(true);
    expect(existsSync(home)).toBe(false);
    expect(readdirSync(target)).toEqual(['secret']);
  });
});

describe('killAllOf', () => {
  it('kills every process of the app user, a double-forked daemon in its own session included', async () => {
    const forker = asApp(`
import subprocess, sys
subprocess.Popen(["sleep", "1000"], start_new_session=True)
subprocess.Popen(["/bin/sh", "-c", "while :; do sleep 1; done"], start_new_session=True)
print("forked", flush=True)
`, []);
    await new Promise((resolve) => forker.once('exit', resolve)); // its daemons keep its stdout open
    await waitFor(async () => (await processesOf(user.uid)).length >= 2, { name: 'daemons running' });
    expect(await killAllOf(user)).toBe(true);
    expect(await processesOf(user.uid)).toEqual([]);
  });

  it('kills a process that keeps forking to change its pid (which a /proc scan alone does not even see)', async () => {
    // Every generation holds the pipe: it reaches its end only when the last of them is dead.
    const hopper = asApp(`
import os, sys, time
deadline = time.time() + 20
n = 0
while time.time() < deadline:
    n += 1
    if n % 50 == 0:
        os.write(1, b".")
    if os.fork():
        os._exit(0)
`, []);
    let bytes = 0;
    const ended = new Promise<number>((resolve) => hopper.stdout!.once('end', () => resolve(Date.now())));
    hopper.stdout!.on('data', (chunk: Buffer) => (bytes += chunk.length));
    await waitFor(() => bytes >= 5, { name: 'hopper running' });
    const before = bytes;
    await waitFor(() => bytes > before + 5, { name: 'hopper still running' });
    const started = Date.now();
    expect(await killAllOf(user)).toBe(true);
    const endedAt = await Promise.race([ended, new Promise<number>((resolve) => setTimeout(() => resolve(-1), 2000))]);
    expect(endedAt).toBeGreaterThan(0);
    expect(await processesOf(user.uid)).toEqual([]);
    console.log(`pid hopper killed in ${endedAt - started} ms`);
  });
});
