/**
 * A second runner as its own `pier runner` process beside a platformForFile platform (no CURVE, as the platform's
 * nexus; no stats collector; heartbeats every 100 ms), for drills that kill, freeze or restart a runner. Its config
 * is `DIR/ID.toml`, its log `DIR/ID.log`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { onTestFinished } from 'vitest';
import { CLI } from './cli.js';
import type { Platform } from './platform.js';

export interface SecondRunnerOptions {
  id: string;
  dir: string;
  nexus: { control: string; events: string; heartbeats: string; api: string };
  /** Its instance ports: portMin … portMin + 49. */
  portMin: number;
  /** @default 15 */
  heartbeatMisses?: number;
  /** More `[runner]` keys, e.g. `{ addonPortMin: 31505, stopGraceMs: 2000 }`. */
  runner?: Record<string, number | string>;
}

export function startSecondRunner(o: SecondRunnerOptions): ChildProcess {
  const file = join(o.dir, `${o.id}.toml`);
  const extra = Object.entries(o.runner ?? {}).map(([k, v]) => `${k} = ${typeof v === 'string' ? JSON.stringify(v) : v}`);
  writeFileSync(file, [
    `dataDir = "${o.dir}"`,
    '[log]', 'level = "info"',
    '[security]', 'curve = false',
    '[cluster]', 'heartbeatIntervalMs = 100', `heartbeatMisses = ${o.heartbeatMisses ?? 15}`, 'controlTimeoutMs = 500', 'stats = []',
    '[[cluster.nexus]]',
    `control = "${o.nexus.control}"`, `events = "${o.nexus.events}"`, `heartbeats = "${o.nexus.heartbeats}"`, `api = "${o.nexus.api}"`,
    '[runner]', `id = "${o.id}"`, `dir = "${join(o.dir, o.id)}"`, `portMin = ${o.portMin}`, `portMax = ${o.portMin + 49}`,
    'startTimeoutMs = 6000', 'drainMs = 0', ...extra,
    '',
  ].join('\n'));
  const out = openSync(join(o.dir, `${o.id}.log`), 'a');
  return spawn(process.execPath, [CLI, 'runner', '--config', file], { env: { PATH: process.env.PATH, HOME: process.env.HOME }, stdio: ['ignore', out, out] });
}

/** Resolves once the child has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', () => resolve()));
}

/**
 * A second runner for one test: started now, woken and stopped when the test ends (whatever the test did to it),
 * with `kill` and `start` for drills that take it down and bring it back.
 */
export class TestRunner {
  child: ChildProcess | undefined;

  constructor(private readonly options: SecondRunnerOptions) {
    this.start();
    onTestFinished(() => this.stop());
  }

  get id(): string {
    return this.options.id;
  }

  /** Starts it (again). */
  start(): ChildProcess {
    this.child = startSecondRunner(this.options);
    return this.child;
  }

  /** Sends `signal` to it and waits until it has exited. */
  async kill(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill(signal);
    await exited(child);
    this.child = undefined;
  }

  /** SIGCONT (a frozen one cannot stop), then SIGTERM and the wait. */
  async stop(): Promise<void> {
    this.child?.kill('SIGCONT');
    await this.kill('SIGTERM');
  }
}

/** Whether the platform's nexus lists node `id` as alive. */
export async function isNodeAlive(p: Platform, id: string): Promise<boolean> {
  return (await p.admin<{ nodes: Array<{ id: string; status: string }> }>('GET', '/v1/nodes')).json.nodes.some((n) => n.id === id && n.status === 'alive');
}
