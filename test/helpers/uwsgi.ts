/** uWSGI for tests: one emperor per test file in a temp folder, the example apps copied out, and a process check. */
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll } from 'vitest';
import { silentLogger } from '../../src/core/logger.js';
import { Emperor, type EmperorOptions } from '../../src/runner/emperor.js';

/** The repository's examples/ folder. */
export const EXAMPLES_DIR = fileURLToPath(new URL('../../examples/', import.meta.url));

export interface EmperorHandle {
  /** The running emperor (set once the file's beforeAll has run). */
  emperor: Emperor;
  /** Temp folder holding the emperor's files; apps written with `writeApp` go under it too. */
  dir: string;
}

/**
 * Starts one emperor for the calling test file (beforeAll) and stops it and removes its folder (afterAll).
 * Call at the top level of a test file.
 */
export function emperorForFile(options: Partial<Omit<EmperorOptions, 'dir' | 'log'>> = {}): EmperorHandle {
  // Short path: the stats socket lives inside it, and Unix socket paths are limited to 107 bytes.
  const handle = { dir: mkdtempSync(join(tmpdir(), 'pier-uw-')) } as EmperorHandle;
  beforeAll(async () => {
    handle.emperor = new Emperor({ dir: join(handle.dir, 'emperor'), log: silentLogger(), stopGraceMs: 8000, ...options });
    await handle.emperor.start();
  });
  afterAll(async () => {
    await handle.emperor?.stop();
    rmSync(handle.dir, { recursive: true, force: true });
  });
  return handle;
}

/** Copies `examples/<name>` to `<parent>/<as>` and returns the new folder. */
export function writeExampleApp(parent: string, name: 'hello' | 'broken', as: string = name): string {
  const dest = join(parent, 'apps', as);
  mkdirSync(join(parent, 'apps'), { recursive: true });
  cpSync(join(EXAMPLES_DIR, name), dest, { recursive: true });
  return dest;
}

/** Writes the hello example under `parent` (a fresh copy per call name). */
export function writeHelloApp(parent: string, as = 'hello'): string {
  return writeExampleApp(parent, 'hello', as);
}

/** A new temp folder for a test that manages its own emperor; removed after the file. */
export function tempDirForFile(prefix = 'pier-uw-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Pids of live processes tied to `path`: its text in their command line (the emperor is started with its
 * folder) or their working directory under it (vassals chdir into their app, and rename themselves).
 */
export function processesUnder(path: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      if (state === 'Z' || state === 'X') continue;
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ');
      const cwd = readlinkSync(`/proc/${entry}/cwd`);
      if (cmdline.includes(path) || cwd.startsWith(path)) pids.push(Number(entry));
    } catch {
      // the process exited while we looked
    }
  }
  return pids;
}
