/**
 * The add-on servers (Redis) this runner runs: equal to its assignments, pulled from the nexus (`addons.assigned`)
 * at start, after every snapshot and on every `addon.*` event. A server is started once per generation; an
 * assignment older than one applied is refused; a server no longer assigned here (placed elsewhere while this
 * runner was cut off, or its add-on destroyed) is stopped. Each start, failure and stop is reported
 * (`addon.report`), so the leader sets REDIS_URL, places a failed one again, or deletes a destroyed one's row.
 */
import { chown, mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Coalesced } from '../core/coalesce.js';
import { newRequestId, randomId } from '../core/ids.js';
import { sleep } from '../core/wait.js';
import type { AddonAssignment } from '../protocol/index.js';
import type { ControlClient } from '../transport/index.js';
import { removeOwnedEntry } from './app-files.js';
import type { AppUser, AppUsers } from './app-users.js';
import type { Cgroups } from './cgroups.js';
import { RedisServer } from './redis-server.js';

export interface AddonServersOptions {
  runnerId: string;
  control: Pick<ControlClient, 'call'>;
  /** The runner's folder; servers' working folders are made under `addons/` in it. */
  dir: string;
  bindHost: string;
  /** App users (runner as root); without them servers run as the runner's user. */
  appUsers?: AppUsers;
  cgroups?: Cgroups;
  /** Called before a server of `app` starts (records that this runner runs the app as `user`). */
  beforeStart?: (app: string, user: AppUser | undefined) => Promise<void>;
  /** Open files per server process. @default 1024 */
  openFiles?: number;
  /** Time a server gets to answer AUTH + PING. @default 10000 */
  startTimeoutMs?: number;
  log: Logger;
}

interface Held {
  assignment: AddonAssignment;
  server: RedisServer;
  workDir: string;
  cgroup: string | undefined;
  started: Promise<void>;
}

/** Memory the server's cgroup allows beyond `maxmemory`: Redis's own structures, buffers and fragmentation. */
export function redisCgroupMb(maxmemoryMb: number): number {
  return Math.ceil(maxmemoryMb * 1.25) + 32;
}

export class AddonServers {
  private readonly held = new Map<string, Held>();
  /** Highest generation applied per add-on: an older assignment is refused. */
  private readonly applied = new Map<string, number>();
  private readonly syncs = new Coalesced(() => this.pull(), (err) => this.log.warn({ err: err.message }, 'cannot pull add-on assignments; will retry'));
  private isClosed = false;
  /** Generation whose start failed here, per add-on: not tried again (the leader places it anew). */
  private readonly failed = new Map<string, number>();
  /** `<name>-g<generation>` of the servers an earlier run of this runner had (they died with it). */
  private readonly leftovers = new Set<string>();
  private readonly log: Logger;

  constructor(private readonly options: AddonServersOptions) {
    this.log = options.log.child({ component: 'runner.addons' });
  }

  private get root(): string {
    return join(this.options.dir, 'addons');
  }

  /** Removes what an earlier run left (its servers died with it: parent-death signal), then makes the folder. */
  async open(): Promise<void> {
    await mkdir(this.root, { recursive: true, mode: 0o711 });
    for (const name of await readdir(this.root)) {
      const match = /^(.+-g\d+)-[0-9a-f]+$/.exec(name);
      if (match) this.leftovers.add(match[1]!);
      await removeOwnedEntry(join(this.root, name));
    }
    const cgroups = this.options.cgroups;
    if (cgroups) for (const name of await cgroups.list()) if (name.startsWith('addon-')) await cgroups.remove(name);
  }

  /** The servers held now: add-on name → its pid, generation and port (tests and `pier nodes` read it). */
  servers(): Array<{ name: string; app: string; generation: number; port: number; pid: number | undefined }> {
    return [...this.held.values()].map((h) => ({ name: h.assignment.name, app: h.assignment.app, generation: h.assignment.generation, port: h.assignment.port, pid: h.server.pid }));
  }

  /** Pulls the assignments now (or right after the pull under way). */
  kick(): void {
    if (!this.isClosed) this.syncs.kick();
  }

  private async pull(): Promise<void> {
    if (this.isClosed) return;
    const { addons } = await this.options.control.call('addons.assigned', { nodeId: this.options.runnerId });
    await this.apply(addons);
  }

  /** Makes the servers held equal to `assignments` (the full list for this runner). */
  async apply(assignments: AddonAssignment[]): Promise<void> {
    const wanted = new Map<string, AddonAssignment>();
    const refused = new Set<string>();
    for (const a of assignments) {
      const seen = this.applied.get(a.name) ?? 0;
      if (a.generation < seen) {
        // A stale answer (an older state than one already applied): it changes nothing, the server held stays.
        this.log.warn({ addon: a.name, generation: a.generation, applied: seen }, 'refused an add-on assignment older than one applied');
        refused.add(a.name);
        continue;
      }
      wanted.set(a.name, a);
    }
    for (const [name, held] of this.held) {
      if (refused.has(name)) continue;
      const a = wanted.get(name);
      if (!a || !a.run || a.generation !== held.assignment.generation || a.port !== held.assignment.port) await this.stopHeld(name, held);
    }
    for (const a of wanted.values()) {
      this.applied.set(a.name, a.generation);
      if (!a.run) {
        void this.report(a, 'stopped');
        continue;
      }
      if (!this.held.has(a.name) && this.failed.get(a.name) !== a.generation) await this.startServer(a);
    }
  }

  /** Stops every server of `app` at once (it was destroyed: nothing of it may restart). */
  stopApp(app: string): Promise<void> {
    const work: Array<Promise<void>> = [];
    for (const [name, held] of this.held) if (held.assignment.app === app) work.push(this.stopHeld(name, held));
    return Promise.all(work).then(() => undefined);
  }

  private async startServer(a: AddonAssignment): Promise<void> {
    const { appUsers, cgroups } = this.options;
    const user = appUsers ? await appUsers.ensure(a.app) : undefined;
    await this.options.beforeStart?.(a.app, user);
    // A fresh folder each start, made by root in its own 0711 folder, then given to the app's user.
    const workDir = join(this.root, `${a.name}-g${a.generation}-${randomId(3)}`);
    await mkdir(workDir, { mode: 0o700 });
    if (user) await chown(workDir, user.uid, user.gid);
    const cgroup = cgroups ? `addon-${a.name}` : undefined;
    const dirs = cgroups && cgroup
      ? await cgroups.create(cgroup, { memoryMb: redisCgroupMb(a.maxmemoryMb), processes: 64, openFiles: this.options.openFiles ?? 1024, cpuShares: 1024, requestTimeoutMs: 0 })
      : undefined;
    const server = new RedisServer(
      { name: a.name, port: a.port, bindHost: this.options.bindHost, password: a.password, maxmemoryMb: a.maxmemoryMb, workDir, ...(user ? { user } : {}), ...(dirs ? { cgroups: dirs } : {}) },
      {
        ...(this.options.startTimeoutMs ? { startTimeoutMs: this.options.startTimeoutMs } : {}),
        onUp: (restarted, why) => void this.report(a, 'up', restarted
          ? `${why ?? 'restarted empty'} on runner ${this.options.runnerId}`
          : isRerun ? `runner ${this.options.runnerId} restarted; restarted empty` : undefined),
        onFailed: (reason) => {
          const held = this.held.get(a.name);
          this.failed.set(a.name, a.generation);
          if (held?.server === server) void this.stopHeld(a.name, held);
          void this.report(a, 'failed', reason);
        },
        log: this.log,
      },
    );
    // The same generation ran here before this runner restarted: it starts again, empty, and says why.
    const isRerun = this.leftovers.delete(`${a.name}-g${a.generation}`);
    const held: Held = { assignment: a, server, workDir, cgroup, started: Promise.resolve() };
    this.held.set(a.name, held);
    held.started = server.start().catch(() => undefined); // reported by onFailed
    this.log.info({ addon: a.name, app: a.app, port: a.port, generation: a.generation }, 'starting add-on server');
  }

  /** Stops a server; `keepFolder`: the runner is stopping, and its next start finds the folder (and says it restarted). */
  private async stopHeld(name: string, held: Held, keepFolder = false): Promise<void> {
    if (this.held.get(name) === held) this.held.delete(name);
    await held.server.stop();
    await held.started;
    if (held.cgroup) await this.options.cgroups?.remove(held.cgroup).catch((err: Error) => this.log.warn({ err: err.message, addon: name }, 'cannot remove an add-on cgroup'));
    if (keepFolder) return;
    await removeOwnedEntry(held.workDir).catch((err: Error) => this.log.warn({ err: err.message, addon: name }, 'cannot remove an add-on folder'));
  }

  /** Reports to the nexus, retrying a while (a lost 'up' would leave the add-on provisioning). */
  private async report(a: AddonAssignment, state: 'up' | 'failed' | 'stopped', note?: string): Promise<void> {
    const id = newRequestId(); // one id for every retry: the nexus applies the report once
    for (let attempt = 0; attempt < 20 && !this.isClosed; attempt++) {
      try {
        await this.options.control.call('addon.report', { nodeId: this.options.runnerId, name: a.name, generation: a.generation, state, ...(note ? { note: note.slice(0, 2000) } : {}) }, { id });
        return;
      } catch (err) {
        if (attempt === 0) this.log.warn({ err: (err as Error).message, addon: a.name, state }, 'cannot report an add-on server yet; retrying');
        await sleep(Math.min(2000, 100 * 2 ** attempt));
      }
    }
  }

  /** Stops every server (the runner is stopping). */
  async close(): Promise<void> {
    this.isClosed = true;
    await this.syncs.idle();
    await Promise.all([...this.held].map(([name, held]) => this.stopHeld(name, held, true)));
  }
}
