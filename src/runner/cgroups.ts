/**
 * Per-instance cgroups (v1: memory, pids, cpu), so one app's fork bomb or memory hog stays inside its own limits.
 *
 * Layout: `<mount>/<controller>/<the runner's own cgroup>/pier-<group>/<instance>`, nested under the runner's own
 * cgroup of each controller (read from /proc/self/cgroup), so whatever limits the operator put on the runner also
 * bound its apps. The runner creates each instance's folders and writes the limits (root only); the vassal joins
 * them with uWSGI's `cgroup` option before it drops root and loads the app (no `cgroup-opt`: uWSGI writes those
 * keys into every `cgroup` folder, and a memory key fails in the pids folder). Files in these folders are root's,
 * so the app cannot raise its own limits.
 *
 * One cgroup per instance, not per app: a deploy runs old and new instances side by side, and a limit then means
 * the same thing as a Heroku dyno size, whatever the scale.
 */
import { mkdir, readFile, readdir, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sleep } from '../core/wait.js';

/** What one instance may use. */
export interface InstanceLimits {
  /** Memory (RSS + page cache) of all its processes, in MiB; the kernel kills one of them beyond it. */
  memoryMb: number;
  /** Tasks (processes and threads) at once; fork() fails beyond it. */
  processes: number;
  /** Open files per process (uWSGI `max-fd`, RLIMIT_NOFILE). */
  openFiles: number;
  /** CPU weight against the other instances (cgroup cpu.shares; 1024 is one normal share). */
  cpuShares: number;
  /** A request running longer gets its worker killed and respawned (uWSGI `harakiri`), in ms. */
  requestTimeoutMs: number;
}

/** Counters of the times an instance hit its limits. */
export interface LimitCounters {
  /** Processes the kernel killed at the memory limit. */
  oomKills: number;
  /** fork()/clone() calls refused at the process limit. */
  forksRefused: number;
}

const CONTROLLERS = ['memory', 'pids', 'cpu'] as const;
type Controller = (typeof CONTROLLERS)[number];
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export interface CgroupsOptions {
  /** Unique to this runner on this machine (its id and a digest of its folder). */
  group: string;
  /** Where the v1 hierarchies are mounted. @default '/sys/fs/cgroup' */
  mountDir?: string;
}

export class Cgroups {
  private constructor(private readonly parents: Record<Controller, string>) {}

  /**
   * The runner's cgroups, or undefined when they cannot be used here (not root, or no v1 memory, pids and cpu
   * hierarchies): then memory, processes and CPU are not limited, and the runner says so at start.
   */
  static async open(options: CgroupsOptions): Promise<Cgroups | undefined> {
    if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined;
    const mountDir = options.mountDir ?? '/sys/fs/cgroup';
    const own = await ownCgroups();
    const parents = {} as Record<Controller, string>;
    for (const controller of CONTROLLERS) {
      const base = join(mountDir, controller);
      const inside = own.get(controller) ?? '/';
      try {
        await readFile(join(base, inside, 'cgroup.procs'), 'utf8');
      } catch {
        return undefined;
      }
      parents[controller] = join(base, inside, `pier-${options.group}`);
    }
    try {
      for (const controller of CONTROLLERS) await mkdir(parents[controller], { recursive: true, mode: 0o755 });
    } catch {
      return undefined; // mounted read-only (a container), or not delegated to us
    }
    return new Cgroups(parents);
  }

  /** The folders a vassal of `instance` joins (uWSGI `cgroup` lines). */
  dirsOf(instance: string): string[] {
    return CONTROLLERS.map((c) => this.dirOf(c, instance));
  }

  /** Creates (or updates) the instance's cgroups with `limits`. */
  async create(instance: string, limits: InstanceLimits): Promise<string[]> {
    for (const controller of CONTROLLERS) await mkdir(this.dirOf(controller, instance), { recursive: true, mode: 0o755 });
    const memory = this.dirOf('memory', instance);
    const bytes = String(limits.memoryMb * 1024 * 1024);
    await writeFile(join(memory, 'memory.limit_in_bytes'), bytes);
    // With swap accounting, swap counts too (else a hog swaps the machine to a crawl); absent without it.
    await writeFile(join(memory, 'memory.memsw.limit_in_bytes'), bytes).catch(() => undefined);
    await writeFile(join(this.dirOf('pids', instance), 'pids.max'), String(limits.processes));
    await writeFile(join(this.dirOf('cpu', instance), 'cpu.shares'), String(limits.cpuShares));
    return this.dirsOf(instance);
  }

  /** The instance's limit counters; zeros when it has no cgroup. */
  async counters(instance: string): Promise<LimitCounters> {
    const oom = await readFile(join(this.dirOf('memory', instance), 'memory.oom_control'), 'utf8').catch(() => '');
    const events = await readFile(join(this.dirOf('pids', instance), 'pids.events'), 'utf8').catch(() => '');
    return { oomKills: field(oom, 'oom_kill'), forksRefused: field(events, 'max') };
  }

  /** The limits its cgroup holds now (for messages), or undefined without one. */
  async currentLimits(instance: string): Promise<{ memoryMb: number; processes: number } | undefined> {
    try {
      const bytes = Number((await readFile(join(this.dirOf('memory', instance), 'memory.limit_in_bytes'), 'utf8')).trim());
      const processes = Number((await readFile(join(this.dirOf('pids', instance), 'pids.max'), 'utf8')).trim());
      return { memoryMb: Math.round(bytes / 1024 / 1024), processes };
    } catch {
      return undefined;
    }
  }

  /** Pids of the processes in the instance's cgroup. */
  async processes(instance: string): Promise<number[]> {
    const text = await readFile(join(this.dirOf('pids', instance), 'cgroup.procs'), 'utf8').catch(() => '');
    return text.split('\n').filter(Boolean).map(Number);
  }

  /**
   * Kills every process left in the instance's cgroup (forks are refused first, so a fork bomb cannot outrun
   * the kill) and removes its folders. Safe to call twice, or for an instance that has none.
   */
  async remove(instance: string, timeoutMs = 5000): Promise<void> {
    const pids = this.dirOf('pids', instance);
    await writeFile(join(pids, 'pids.max'), '0').catch(() => undefined);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left = await this.processes(instance);
      if (left.length === 0) break;
      for (const pid of left) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone already
        }
      }
      if (Date.now() > deadline) break;
      await sleep(20);
    }
    for (const controller of CONTROLLERS) await removeDir(this.dirOf(controller, instance), deadline);
  }

  /** Instances that have a cgroup of this runner. */
  async list(): Promise<string[]> {
    const entries = await readdir(this.parents.pids, { withFileTypes: true }).catch(() => []);
    return entries.filter((e) => e.isDirectory() && NAME.test(e.name)).map((e) => e.name);
  }

  /** Removes every instance's cgroup but those in `keep`; with no `keep`, also the runner's own folders. */
  async removeAll(keep: ReadonlySet<string> = new Set()): Promise<void> {
    const names = new Set<string>();
    for (const controller of CONTROLLERS) {
      const entries = await readdir(this.parents[controller], { withFileTypes: true }).catch(() => []);
      for (const e of entries) if (e.isDirectory() && NAME.test(e.name)) names.add(e.name);
    }
    for (const name of names) if (!keep.has(name)) await this.remove(name);
    if (keep.size === 0) for (const controller of CONTROLLERS) await removeDir(this.parents[controller], Date.now() + 1000);
  }

  private dirOf(controller: Controller, instance: string): string {
    if (!NAME.test(instance)) throw new Error(`instance name '${instance}' cannot name a cgroup`);
    return join(this.parents[controller], instance);
  }
}

/** controller → this process's cgroup path in that hierarchy. */
async function ownCgroups(): Promise<Map<string, string>> {
  const map = new Map<string, string>();
  const text = await readFile('/proc/self/cgroup', 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const [, controllers, path] = line.split(':');
    if (!controllers || path === undefined) continue;
    for (const c of controllers.split(',')) map.set(c, path);
  }
  return map;
}

function field(text: string, name: string): number {
  const match = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  return match ? Number(match[1]) : 0;
}

/** rmdir, retried while the kernel still counts exiting tasks in it (EBUSY); ENOENT is success. */
async function removeDir(dir: string, deadline: number): Promise<void> {
  for (;;) {
    try {
      await rmdir(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || Date.now() > deadline) throw err;
      await sleep(20);
    }
  }
}
