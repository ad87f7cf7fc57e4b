/** Process helpers for bench/balancer.ts: spawn and reap children, CPU seconds from /proc, waiting for a port, wrk. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';

const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK']).stdout?.toString().trim() || 100);

export interface Child {
  name: string;
  process: ChildProcess;
  /** Signal that makes it exit cleanly (uWSGI: SIGINT; nginx: SIGQUIT). */
  stopSignal: NodeJS.Signals;
  output: string;
}

const children: Child[] = [];

export function start(name: string, command: string, args: string[], stopSignal: NodeJS.Signals = 'SIGTERM'): Child {
  const child: Child = { name, process: spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] }), stopSignal, output: '' };
  const keep = (chunk: Buffer): void => {
    child.output = (child.output + chunk.toString()).slice(-4000);
  };
  child.process.stdout!.on('data', keep);
  child.process.stderr!.on('data', keep);
  children.push(child);
  return child;
}

/** Stops one child (its clean signal, then SIGKILL after 3 s) and waits for it to exit. */
export async function stop(child: Child): Promise<void> {
  const index = children.indexOf(child);
  if (index >= 0) children.splice(index, 1);
  const proc = child.process;
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.kill(child.stopSignal);
  const timer = setTimeout(() => proc.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

/** Stops every child still running (in reverse start order). */
export async function stopAll(): Promise<void> {
  for (const child of [...children].reverse()) await stop(child);
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return out;
}

/** The pid and every descendant's pid. */
export function processTree(pid: number): number[] {
  const all = [pid];
  for (let i = 0; i < all.length; i++) all.push(...childrenOf(all[i]!));
  return all;
}

/** User + system CPU seconds of the given processes (all their threads), from /proc/PID/stat. */
export function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15 of stat)
    } catch {
      // gone
    }
  }
  return ticks / CLOCK_TICKS;
}

/** Waits until something accepts TCP connections on 127.0.0.1:port. */
export async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const isOpen = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (isOpen) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on port ${port} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export interface WrkResult {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

function toMs(text: string): number {
  const match = /^([\d.]+)(us|ms|s|m)$/.exec(text.trim());
  if (!match) return Number.NaN;
  const value = Number(match[1]);
  return match[2] === 'us' ? value / 1000 : match[2] === 'ms' ? value : match[2] === 's' ? value * 1000 : value * 60_000;
}

/** Runs wrk against http://127.0.0.1:port/ (or `path`) with a Host header and any `headers` (`Name: value`). */
export function wrk(port: number, host: string, seconds: number, connections: number, threads: number, path = '/', headers: string[] = [], cpus?: string): Promise<WrkResult> {
  return new Promise((resolve, reject) => {
    // `cpus` (a taskset list such as '0') keeps the load generator off the server's CPUs.
    const [command, prefix] = cpus === undefined ? ['wrk', []] : ['taskset', ['-c', cpus, 'wrk']];
    const proc = spawn(command, [...prefix, `-t${threads}`, `-c${connections}`, `-d${seconds}s`, '--latency', '-H', `Host: ${host}`, ...headers.flatMap((h) => ['-H', h]), `http://127.0.0.1:${port}${path}`]);
    let out = '';
    proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (out += c.toString()));
    proc.once('error', reject);
    proc.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`wrk exited with ${code}: ${out}`));
      const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? Number.NaN);
      const p50 = /^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? '';
      const p99 = /^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? '';
      const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
      const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
      const errors = non2xx + (socketErrors ? socketErrors.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0);
      resolve({ rps, p50Ms: toMs(p50), p99Ms: toMs(p99), errors });
    });
  });
}

/** Installs wrk and nginx-light with apt-get when either is missing. */
export function ensureTools(): void {
  const missing = [['wrk', 'wrk'], ['nginx', 'nginx-light']].filter(([command]) => !hasCommand(command!)).map(([, pkg]) => pkg!);
  if (missing.length === 0) return;
  console.log(`installing ${missing.join(' ')} with apt-get`);
  spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
  const result = spawnSync('apt-get', ['install', '-y', '-qq', ...missing], { stdio: 'inherit' });
  if (result.status !== 0) throw new Error(`apt-get install ${missing.join(' ')} failed; install them and run again`);
}

/** True when `command` is on PATH. */
export function hasCommand(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;
}
