/**
 * Debian's Chromium for page tests: started headless by the test itself (the flags of ../shared/STACK.md, a fresh
 * --user-data-dir in the test's temp folder), driven by playwright-core over CDP, and killed by its process group
 * (the browser and its zygote, renderer and utility children) when the file ends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { killGroup } from '../../src/core/process.js';
import { waitFor } from './wait.js';

export const CHROMIUM = '/usr/bin/chromium';

const FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--remote-debugging-address=127.0.0.1', '--remote-debugging-port=0',
];

export interface ChromiumHandle {
  browser: Browser;
  /** The browser process (it leads its own process group). */
  pid: number;
  userDataDir: string;
  /** Closes the CDP connection, kills the process group and waits until no process of this profile is left. */
  stop(): Promise<void>;
}

/** Pids whose command line names `needle` (read from /proc: no process is matched by a broad name). */
export function pidsWith(needle: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(needle)) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

export async function startChromium(dir: string): Promise<ChromiumHandle> {
  const userDataDir = join(dir, 'chromium-profile');
  mkdirSync(userDataDir, { recursive: true });
  const child: ChildProcess = spawn(CHROMIUM, [...FLAGS, `--user-data-dir=${userDataDir}`, 'about:blank'], {
    // TMPDIR too: Chromium puts its singleton socket folder there, and a killed browser leaves it behind.
    detached: true, stdio: 'ignore', env: { PATH: process.env.PATH, HOME: dir, TMPDIR: dir },
  });
  const pid = child.pid!;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const kill = async (): Promise<void> => {
    killGroup(pid);
    if (child.exitCode === null && child.signalCode === null) await exited;
    await waitFor(() => pidsWith(userDataDir).length === 0, { name: 'no chromium process of the profile left', timeoutMs: 10_000, intervalMs: 50 });
  };
  try {
    const portFile = join(userDataDir, 'DevToolsActivePort');
    const [port, path] = await waitFor(() => {
      if (!existsSync(portFile)) return undefined;
      const lines = readFileSync(portFile, 'utf8').split('\n');
      return lines.length >= 2 && lines[1] ? [lines[0]!, lines[1]] : undefined;
    }, { name: 'chromium DevTools port', timeoutMs: 20_000, intervalMs: 50 });
    const browser = await chromium.connectOverCDP(`ws://127.0.0.1:${port}${path}`);
    return {
      browser, pid, userDataDir,
      async stop() {
        await browser.close().catch(() => undefined); // the process is killed next anyway
        await kill();
      },
    };
  } catch (err) {
    await kill();
    throw err;
  }
}
