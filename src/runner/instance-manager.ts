/**
 * Keeps this runner's vassals equal to its assignments: starts assigned instances (prepare the release, pick a
 * port, write the vassal, wait for HTTP, warm up, report ready), stops the ones the nexus marks stopping or
 * removes, and re-adopts vassals that were already running when the runner (re)started.
 */
import type { Logger } from 'pino';
import { PierError, toPierError, ValidationError } from '../core/errors.js';
import { sleep } from '../core/wait.js';
import type { Instance, InstanceSpec } from '../protocol/index.js';
import type { ControlClient } from '../transport/index.js';
import type { Emperor } from './emperor.js';
import type { PortPool } from './ports.js';
import type { PreparedRelease, ReleaseCache } from './release-cache.js';
import type { WsgiEntry } from './app-detect.js';
import { readVassalMeta, renderVassal } from './vassal.js';
import { summarize } from './log-tail.js';
import type { LogShipper } from './log-shipper.js';
import type { AppUser, AppUsers } from './app-users.js';
import { chmod, chown, mkdir, realpath } from 'node:fs/promises';
import { removeOwnedEntry } from './app-files.js';
import { basename, dirname, join } from 'node:path';
import { DEFAULT_STATIC_MAX_AGE_MS, staticMaxAgeS, type StaticServing } from './static-routes.js';
import { probeCheck, waitForHttp, warmUp } from './probe.js';
import { DEFAULT_CHECK, type Check } from '../protocol/index.js';
import type { WriteVassalOptions } from './emperor.js';
import type { Cgroups, InstanceLimits } from './cgroups.js';
import type { LimitWatch } from './limit-watch.js';
import { checkListener, PortSquattedError } from './listener.js';
import type { PhaseOutput } from './phase-output.js';
import { runReleasePhase } from './phase-runner.js';
import { WorkerProcess } from './workers.js';
import { lostLeaseError, SingletonLease } from './singleton-lease.js';
import type { HeldVassal } from './integrity.js';
import { KEEP_FORGOTTEN_MS, RELEASE_GRACE_MS, RoutedInstances } from './forgotten-vassals.js';

export interface InstanceManagerOptions {
  runnerId: string;
  control: ControlClient;
  emperor: Emperor;
  releases: ReleaseCache;
  ports: PortPool;
  /** Ships each vassal's log file to the stats collectors. */
  shipper?: LogShipper;
  /** Address instances listen on. @default '127.0.0.1' */
  bindHost?: string;
  /** Time a retired serving instance keeps running for its in-flight requests. @default 0 */
  drainMs?: number;
  /** Per-app system users (the runner is root): instances run as them. @default none: as the runner's user */
  appUsers?: AppUsers;
  /** Folder of the instances' HOME/TMPDIR folders (with appUsers). */
  homesDir?: string;
  /** Per-instance cgroups (the runner is root and they are mounted). @default none: no memory, process or CPU limit */
  cgroups?: Cgroups;
  /** Reports instances hitting their cgroup limits in their app's log (with cgroups). */
  limitWatch?: LimitWatch;
  /** Limits of an instance whose app has none of its own. */
  limits: InstanceLimits;
  /**
   * Awaited before an instance of `app` starts, with its user: waits out a clean-up of the app's name still under
   * way, and records that this runner runs the app (see AppCleanup). @default none
   */
  beforeStart?: (app: string, user: AppUser | undefined) => Promise<void>;
  /** Sends build and release phase output to the nexus (shown by `pier deploy`). @default none */
  phaseOutput?: PhaseOutput;
  /** Time a release phase gets before it is killed. @default 300000 */
  releaseTimeoutMs?: number;
  startTimeoutMs: number;
  /** SIGTERM to SIGKILL for a background process being stopped. @default 10000 */
  stopGraceMs?: number;
  /** A background process that has run this long is ready. @default 1000 */
  workerSettleMs?: number;
  warmupRequests: number;
  processes: number;
  threads: number;
  /** `Cache-Control` max-age of un-hashed static names unless the app sets PIER_STATIC_MAX_AGE. @default 3600000 */
  staticMaxAgeMs?: number;
  log: Logger;
}

/** uWSGI's last words when the app cannot be loaded (need-app makes the vassal exit right after). */
const FATAL = /no app loaded\. GAME OVER|unable to load app/;

/** Ports an instance tries before its start fails, when each is found held by someone else. */
const MAX_PORT_ATTEMPTS = 3;

/** Longest wait for the emperor to stop a removed vassal before its cgroup is emptied by force. */
const VASSAL_STOP_WAIT_MS = 15_000;

/** Longest grace a background process gets when the runner itself stops. */
const SHUTDOWN_WORKER_GRACE_MS = 5000;

/** How long a removed vassal's log is still followed. */
const SHIP_LAST_WORDS_MS = 3000;

type Local = {
  id: string; app: string; port: number | null; phase: 'starting' | 'ready' | 'stopping'; work: Promise<void>;
  /** Aborted when a starting instance is stopped, so its start gives up at once. */
  abort: AbortController;
  /** Its app is gone: its log's last words are not shipped. */
  isDiscarded?: boolean;
  /** A background process type (not web): run by `worker`, not by a vassal. */
  processType: string;
  /** Its process name (`worker.1`), for log lines. */
  name: string;
  worker?: WorkerProcess;
  /** A singleton type's lease, renewed while the instance runs. */
  lease?: SingletonLease;
  /** The vassal file as written (or found, when adopted): what the integrity check restores and remediation rewrites. */
  vassal?: HeldVassal;
  /** Found running at start, not yet matched with the state. */
  isAdopted?: boolean;
  /** Host header of its probes, warm-up and checks: the app's platform hostname (InstanceSpec.hostname). @default the probed address */
  hostHeader?: string;
  /** Remediation is restarting it (its vassal is off for a moment): not probed meanwhile. */
  isRestarting?: boolean;
  /** The state forgot it while it served (forgotten-vassals.ts): kept serving until this timer or a replacement. */
  forgotten?: { since: number; timer?: NodeJS.Timeout };
};

/** Times the check is tried on a new instance before its start fails, and the pause between tries. */
const CHECK_ATTEMPTS = 3;
const CHECK_RETRY_MS = 1000;

/** The check failed on a new instance: its message is the release's error as it stands (no log summary). */
class CheckFailedError extends PierError {
  constructor(message: string) {
    super('PIER_ILLEGAL_STATE', message);
  }
}

export class InstanceManager {
  private readonly local = new Map<string, Local>();
  /** Cgroup removals waiting for their vassal to stop. */
  private readonly teardowns = new Set<Promise<void>>();
  private readonly log: Logger;
  private isClosed = false;
  /** Instances of every runner the state routes to, by app (whether a forgotten vassal is still needed). */
  private readonly routed = new RoutedInstances();

  constructor(private readonly options: InstanceManagerOptions) {
    this.log = options.log.child({ component: 'runner.instances' });
  }

  private get bindHost(): string {
    return this.options.bindHost ?? '127.0.0.1';
  }

  /** Where this runner reaches its own instances. */
  private get probeHost(): string {
    return this.bindHost === '0.0.0.0' ? '127.0.0.1' : this.bindHost;
  }

  /** Number of instances this runner holds (for heartbeats). */
  get count(): number {
    return this.local.size;
  }

  /** Ready instances' vassals, as written: what the integrity check compares the emperor's folder with. */
  heldVassals(): HeldVassal[] {
    return [...this.local.values()].filter((l) => l.phase === 'ready' && l.vassal).map((l) => l.vassal!);
  }

  /** True while `id` is an instance of this runner (any phase). */
  isKnown(id: string): boolean {
    return this.local.has(id);
  }

  /** True while `id` is a ready instance of this runner. */
  isReady(id: string): boolean {
    return this.local.get(id)?.phase === 'ready';
  }

  /** Vassals found running at start: kept as ready until the state says otherwise. */
  adopt(id: string, app: string, port: number, ini?: string): void {
    this.options.ports.claim(port);
    const hostHeader = ini === undefined ? undefined : readVassalMeta(ini)?.hostname;
    this.local.set(id, {
      id, app, port, phase: 'ready', work: Promise.resolve(), abort: new AbortController(), processType: 'web', name: id, isAdopted: true,
      ...(ini === undefined ? {} : { vassal: { name: id, ini, options: {} } }),
      ...(typeof hostHeader === 'string' ? { hostHeader } : {}),
    });
    this.options.shipper?.watch(id, app, this.options.emperor.vassalLogPath(id), false);
    void this.options.limitWatch?.watch(id, app);
    this.log.info({ instance: id, port }, 'adopted running vassal');
  }

  /** Reconciles with the full list of instances (after a snapshot). */
  sync(instances: Instance[]): void {
    const mine = instances.filter((i) => i.runnerId === this.options.runnerId);
    const ids = new Set(mine.map((i) => i.id));
    this.routed.load(instances);
    for (const id of [...this.local.keys()]) if (!ids.has(id)) this.forget(id);
    for (const instance of mine) this.apply(instance);
    this.releaseReplaced();
  }

  /**
   * The state no longer has instance `id`. A web vassal that serves is kept while the state routes its app to no
   * other instance (balancers hold it meanwhile; see forgotten-vassals.ts); anything else stops now.
   */
  private forget(id: string): void {
    const entry = this.local.get(id);
    if (!entry || entry.forgotten) return;
    if (entry.phase !== 'ready' || entry.processType !== 'web' || entry.port === null || this.isClosed) return this.stop(id, false);
    entry.isAdopted = false;
    entry.forgotten = { since: Date.now() };
    if (this.routed.isRouted(entry.app)) return this.stop(id, false); // balancers route the app elsewhere: nothing holds it
    entry.forgotten.timer = setTimeout(() => {
      this.log.info({ instance: id, keptMs: KEEP_FORGOTTEN_MS }, 'forgotten vassal kept long enough; stopping it');
      this.stop(id, false);
    }, KEEP_FORGOTTEN_MS);
    entry.forgotten.timer.unref();
    this.log.info({ instance: id, port: entry.port }, 'the state forgot a serving vassal and its app has no other; keeping it until a replacement is ready');
  }

  /** Stops the forgotten vassals whose apps the state routes to another instance again. */
  private releaseReplaced(): void {
    for (const entry of [...this.local.values()]) {
      if (entry.forgotten && entry.phase === 'ready' && this.routed.isRouted(entry.app)) {
        this.log.info({ instance: entry.id, keptMs: Date.now() - entry.forgotten.since }, 'a replacement of a forgotten vassal is ready; stopping it');
        this.stop(entry.id, false);
      }
    }
  }

  /** Applies one instance's new state. */
  apply(instance: Instance): void {
    this.routed.update(instance);
    if (this.routed.isRouted(instance.app)) this.releaseReplaced();
    if (instance.runnerId !== this.options.runnerId || this.isClosed) {
      if (this.local.has(instance.id)) this.stop(instance.id, false);
      return;
    }
    const current = this.local.get(instance.id);
    if (instance.state === 'stopping') return this.stop(instance.id, true);
    if (instance.state === 'failed') {
      if (current) this.stop(instance.id, false);
      return;
    }
    if (!current) return this.start(instance);
    if (current.isAdopted) {
      current.isAdopted = false;
      // The runner died after writing this vassal and before reporting it ready: its emperor kept starting it.
      if (current.phase === 'ready' && (instance.state === 'assigned' || instance.state === 'starting')) current.work = this.confirmAdopted(current);
    }
  }

  /** Reports an adopted vassal the state still has as starting ready once it answers HTTP (failed if it never does). */
  private async confirmAdopted(entry: Local): Promise<void> {
    try {
      await waitForHttp(this.probeHost, entry.port!, { timeoutMs: this.options.startTimeoutMs, signal: entry.abort.signal, ...hostOf(entry) });
      if (entry.phase === 'ready') await this.report(entry.id, 'ready', entry.port!);
    } catch (err) {
      if (entry.phase !== 'ready') return;
      entry.phase = 'stopping';
      await this.remove(entry);
      await this.report(entry.id, 'failed', undefined, `the instance did not answer after its runner restarted (${(err as Error).message})`);
    }
  }

  /** The state removed instance `id`; `isForgotten`: its runner was declared dead (it may still serve). */
  removed(id: string, isForgotten = false): void {
    this.routed.remove(id);
    if (!this.local.has(id)) return;
    if (isForgotten) this.forget(id);
    else this.stop(id, false);
  }

  /**
   * Stops every instance of `app` at once (its app was destroyed): vassals removed, HOMEs gone, nothing more of
   * their logs shipped. Resolves when all of them are stopped.
   */
  async stopApp(app: string): Promise<void> {
    const entries = [...this.local.values()].filter((l) => l.app === app);
    for (const entry of entries) {
      entry.isDiscarded = true;
      this.stop(entry.id, false);
    }
    await Promise.allSettled(entries.map((l) => l.work));
  }

  private start(instance: Instance): void {
    const entry: Local = {
      id: instance.id, app: instance.app, port: null, phase: 'starting', work: Promise.resolve(), abort: new AbortController(),
      processType: instance.processType, name: instance.name ?? instance.id,
    };
    this.local.set(instance.id, entry);
    entry.work = this.run(entry).catch((err) => this.log.error({ err, instance: entry.id }, 'instance task failed'));
  }

  private async run(entry: Local): Promise<void> {
    const { control, emperor, releases, ports } = this.options;
    const started = Date.now();
    try {
      const spec = await control.call('instance.spec', { instanceId: entry.id });
      if (spec.hostname !== undefined) entry.hostHeader = spec.hostname;
      // A singleton's lease is renewed from the start: preparing the release may take longer than the lease.
      if (spec.singleton) await this.holdLease(entry);
      await this.options.beforeStart?.(spec.app, undefined);
      if (entry.phase !== 'starting') return;
      const user = this.options.appUsers ? await this.options.appUsers.ensure(spec.app) : undefined;
      if (user) await this.options.beforeStart?.(spec.app, user);
      const output = this.options.phaseOutput;
      const release = await releases.prepare(spec, user, output ? { onBuildOutput: output.sink(entry.id, 'build') } : {}).finally(() => output?.flush(entry.id));
      if (entry.phase !== 'starting') return;
      if (spec.processType === 'release') return await this.runPhase(entry, spec, release, user);
      const env = { ...(user ? await this.isolate(entry.id, release.appDir, user) : {}), ...spec.config };
      const limits: InstanceLimits = { ...this.options.limits, ...spec.limits };
      const cgroups = this.options.cgroups ? await this.options.cgroups.create(entry.id, limits) : undefined;
      if (cgroups) await this.options.limitWatch?.watch(entry.id, spec.app);
      if (spec.processType !== 'web') return await this.runWorker(entry, spec, release, env, limits, cgroups, user, started);
      this.options.shipper?.watch(entry.id, spec.app, emperor.vassalLogPath(entry.id), true);
      // The listener must be the vassal's own (listener.ts): a port someone else took first is given up for another.
      const uid = user?.uid ?? process.getuid?.();
      const staticServing = await this.staticServing(release, spec.config);
      for (let attempt = 1; ; attempt++) {
        entry.port = await ports.allocate();
        const ini = renderVassal({
          name: entry.id, appDir: release.appDir, venvDir: release.venvDir, wsgi: webEntry(release, entry.id), host: this.bindHost, port: entry.port,
          env, processes: this.options.processes, threads: this.options.threads, ...(user ? { uid: user.uid, gid: user.gid } : {}),
          harakiriMs: limits.requestTimeoutMs, maxFd: limits.openFiles, ...(cgroups ? { cgroups } : {}),
          logFile: emperor.vassalLogPath(entry.id), ...(staticServing ? { static: staticServing } : {}),
          meta: { app: spec.app, port: entry.port, release: spec.release, ...(entry.hostHeader ? { hostname: entry.hostHeader } : {}) },
        });
        const writeOptions = user ? { logOwner: { uid: user.uid, gid: user.gid } } : {};
        await emperor.writeVassal(entry.id, ini, writeOptions);
        entry.vassal = { name: entry.id, ini, options: writeOptions };
        await this.report(entry.id, 'starting', entry.port);
        try {
          await this.waitUntilServing(entry.id, entry.port, entry.abort.signal, uid, entry.hostHeader);
          await warmUp(this.probeHost, entry.port, this.options.warmupRequests, hostOf(entry));
          await this.passCheck(entry, spec.check ?? DEFAULT_CHECK); // the deploy's gate: never ready before it passes
          await this.proveListener(entry.id, entry.port, uid, true); // again, right before it is routed
          break;
        } catch (err) {
          if (!(err instanceof PortSquattedError) || attempt >= MAX_PORT_ATTEMPTS || entry.phase !== 'starting') throw err;
          this.log.warn({ instance: entry.id, port: entry.port, attempt, reason: err.message }, 'instance port held by another process; moving');
          ports.quarantine(entry.port);
          entry.port = null;
        }
      }
      if (entry.phase !== 'starting') return;
      entry.phase = 'ready';
      await this.report(entry.id, 'ready', entry.port);
      this.log.info({ instance: entry.id, port: entry.port, durationMs: Date.now() - started }, 'instance ready');
    } catch (err) {
      if (entry.phase !== 'starting') return;
      const lines = await this.options.emperor.readVassalLog(entry.id, 200).catch(() => []);
      const message = toPierError(err).message === 'internal error' ? String((err as Error).message) : toPierError(err).message;
      // What the owner needs first is the app's own error (its traceback), then what the runner saw.
      const summary = err instanceof CheckFailedError ? undefined : summarize(lines);
      // A log without an error (the app started, then did not answer in time) says less than the runner's reason:
      // that reason is then the error's last line, the one `pier deploy` shows.
      const error = !summary ? message : summary.isAppError ? `${summary.text}\n(${message})` : `${summary.text}\n${message}`;
      this.log.warn({ instance: entry.id, err: message }, 'instance failed to start');
      await this.remove(entry);
      await this.report(entry.id, 'failed', undefined, error);
    }
  }

  /**
   * The release's `static:` mounts as the vassal serves them. The release folder is resolved once (a runner folder,
   * root's; nothing under it is followed): uWSGI refuses any file whose realpath differs from the path asked for.
   */
  private async staticServing(release: PreparedRelease, config: Record<string, string>): Promise<StaticServing | undefined> {
    if (!release.static?.length) return undefined;
    const releaseDir = await realpath(dirname(release.appDir));
    const appDir = join(releaseDir, basename(release.appDir));
    return {
      mounts: release.static.map((m) => ({ prefix: m.prefix, dir: join(appDir, m.folder) })),
      // No offload threads: uWSGI closes the keep-alive connection after each offloaded file (bench/static.ts).
      maxAgeS: staticMaxAgeS(config, this.options.staticMaxAgeMs ?? DEFAULT_STATIC_MAX_AGE_MS),
    };
  }

  /** Tries the app's check on a starting instance a few times. @throws CheckFailedError with the last answer */
  private async passCheck(entry: Local, check: Check): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const outcome = await probeCheck(this.probeHost, entry.port!, check, entry.hostHeader);
      if (outcome.ok) return;
      if (attempt >= CHECK_ATTEMPTS || entry.phase !== 'starting') throw new CheckFailedError(outcome.error!);
      await sleep(Math.min(CHECK_RETRY_MS, check.intervalMs), entry.abort.signal).catch(() => undefined);
    }
  }

  /** This runner's serving instances with their ports (what the health prober checks). */
  serving(): Array<{ id: string; app: string; port: number; hostHeader?: string }> {
    return [...this.local.values()]
      .filter((l) => l.phase === 'ready' && l.port !== null && !l.isRestarting && !l.forgotten)
      .map((l) => ({ id: l.id, app: l.app, port: l.port!, ...hostOf(l) }));
  }

  /**
   * Remediation rung 'rewrite': writes the instance's vassal again from the runner's record (the file may have been
   * changed or removed); the emperor reloads it. False when this runner does not serve it.
   */
  async rewrite(id: string): Promise<boolean> {
    const entry = this.local.get(id);
    if (!entry || entry.phase !== 'ready') return false;
    const vassal = entry.vassal ?? await this.recordedVassal(entry);
    if (!vassal) return false;
    await this.options.emperor.writeVassal(id, vassal.ini, vassal.options);
    this.log.info({ instance: id }, 'vassal rewritten (remediation)');
    return true;
  }

  /**
   * Remediation rung 'restart': stops the vassal (its file removed until the emperor no longer runs it) and starts
   * it again from the runner's record, on the same port. False when this runner does not serve it.
   */
  async restart(id: string): Promise<boolean> {
    const entry = this.local.get(id);
    if (!entry || entry.phase !== 'ready' || entry.isRestarting) return false;
    const vassal = entry.vassal ?? await this.recordedVassal(entry);
    if (!vassal) return false;
    entry.isRestarting = true;
    try {
      await this.options.emperor.removeVassal(id);
      const deadline = Date.now() + VASSAL_STOP_WAIT_MS;
      while (Date.now() < deadline && !this.isClosed) {
        const status = await this.options.emperor.status().catch(() => undefined);
        if (status && !status.vassals.some((v) => v.name === id)) break;
        await sleep(100);
      }
      if (this.local.get(id) !== entry || entry.phase !== 'ready') return false; // stopped meanwhile: stays stopped
      await this.options.emperor.writeVassal(id, vassal.ini, vassal.options);
      this.log.info({ instance: id }, 'vassal restarted (remediation)');
      return true;
    } finally {
      entry.isRestarting = false;
    }
  }

  /** An adopted instance's vassal as its file holds it (root's own folder: not a path an app controls). */
  private async recordedVassal(entry: Local): Promise<Local['vassal']> {
    const ini = await this.options.emperor.readVassal(entry.id);
    if (ini === undefined) return undefined;
    const user = this.options.appUsers ? await this.options.appUsers.ensure(entry.app) : undefined;
    entry.vassal = { name: entry.id, ini, options: user ? { logOwner: { uid: user.uid, gid: user.gid } } : {} };
    return entry.vassal;
  }

  /**
   * The release's one `release` task: runs its release phase (phase-runner.ts) and reports `ready` when it exited
   * 0 — the scheduler then places the release's instances — or throws (reported `failed`, with its last lines).
   */
  private async runPhase(entry: Local, spec: InstanceSpec, release: PreparedRelease, user: AppUser | undefined): Promise<void> {
    if (!release.release) throw new ValidationError(`the release has no 'release:' line in its Procfile, so it has no release phase to run`);
    await this.report(entry.id, 'starting');
    const home = user ? (await this.isolate(entry.id, release.appDir, user)).HOME! : release.appDir;
    const limits: InstanceLimits = { ...this.options.limits, ...spec.limits };
    const cgroupDirs = this.options.cgroups ? await this.options.cgroups.create(entry.id, limits) : undefined;
    const output = this.options.phaseOutput;
    try {
      await runReleasePhase({
        command: release.release, appDir: release.appDir, venvDir: release.venvDir, config: spec.config, home,
        timeoutMs: this.options.releaseTimeoutMs ?? 300_000, openFiles: limits.openFiles,
        ...(user ? { user: { uid: user.uid, gid: user.gid } } : {}), ...(cgroupDirs ? { cgroupDirs } : {}),
        ...(output ? { onOutput: output.sink(entry.id, 'release') } : {}),
      });
    } finally {
      await output?.flush(entry.id);
    }
    if (entry.phase !== 'starting') return;
    entry.phase = 'ready';
    await this.report(entry.id, 'ready');
    this.log.info({ instance: entry.id, appId: spec.app, release: spec.release }, 'release phase done');
  }

  /**
   * Runs a background process type: its command under a WorkerProcess (see workers.ts for why not a vassal), its
   * output in the instance's log tagged with its process name; ready once it has run the settle time. A crash is
   * restarted by the WorkerProcess with back-off and reported as `starting` until it settles again.
   */
  private async runWorker(
    entry: Local, spec: InstanceSpec, release: PreparedRelease, env: Record<string, string>, limits: InstanceLimits,
    cgroups: string[] | undefined, user: AppUser | undefined, started: number,
  ): Promise<void> {
    const { emperor } = this.options;
    const command = release.processes?.[spec.processType];
    if (command === undefined) throw new ValidationError(`instance ${entry.id}: release v${spec.release} has no '${spec.processType}:' line in its Procfile`);
    await emperor.prepareLogFolder(entry.id, user ? { logOwner: { uid: user.uid, gid: user.gid } } : {});
    const logPath = emperor.vassalLogPath(entry.id);
    this.options.shipper?.watch(entry.id, spec.app, logPath, true, entry.name);
    const worker = new WorkerProcess(
      {
        id: entry.id, name: entry.name, command, appDir: release.appDir, venvDir: release.venvDir, env, logPath,
        ...(user ? { user: { uid: user.uid, gid: user.gid } } : {}), ...(cgroups ? { cgroups } : {}), maxFd: limits.openFiles,
      },
      {
        stopGraceMs: this.options.stopGraceMs ?? 10_000, settleMs: this.options.workerSettleMs ?? 1000, log: this.log,
        onState: (state) => {
          if (entry.phase === 'ready') void this.report(entry.id, state);
        },
      },
    );
    entry.worker = worker;
    if (entry.phase !== 'starting') return;
    if (entry.lease?.lost) throw lostLeaseError(entry.lease.lost);
    await this.report(entry.id, 'starting');
    await worker.start();
    await worker.ready(entry.abort.signal);
    if (entry.phase !== 'starting') return;
    entry.phase = 'ready';
    await this.report(entry.id, 'ready');
    this.log.info({ instance: entry.id, process: entry.name, durationMs: Date.now() - started }, 'worker ready');
  }

  /**
   * Waits until the instance answers HTTP, giving up early when its log shows uWSGI gave up on the app
   * (an import error ends in "no app loaded"), rather than waiting out the whole start time-out.
   */
  private async waitUntilServing(name: string, port: number, stopped: AbortSignal, uid: number | undefined, hostHeader?: string): Promise<void> {
    const abort = new AbortController();
    const onStop = (): void => abort.abort(new PierError('PIER_ILLEGAL_STATE', 'the instance was stopped while starting'));
    stopped.addEventListener('abort', onStop);
    const watch = setInterval(() => {
      void this.options.emperor.readVassalLog(name, 50).then((lines) => {
        if (lines.some((l) => FATAL.test(l))) abort.abort(new PierError('PIER_ILLEGAL_STATE', 'the app failed to load'));
      }).catch(() => undefined);
    }, 250);
    try {
      await waitForHttp(this.probeHost, port, {
        timeoutMs: this.options.startTimeoutMs, signal: abort.signal, beforeAttempt: () => this.proveListener(name, port, uid, false),
        ...(hostHeader === undefined ? {} : { hostHeader }),
      });
    } catch (err) {
      throw abort.signal.aborted ? abort.signal.reason : err;
    } finally {
      clearInterval(watch);
      stopped.removeEventListener('abort', onStop);
    }
  }

  /**
   * True when the vassal's own socket listens on `port`; false while nothing does yet or the emperor cannot say
   * which process is the vassal (with `isFinal`, those throw instead).
   * @throws PortSquattedError when anyone else holds the port
   */
  private async proveListener(name: string, port: number, uid: number | undefined, isFinal: boolean): Promise<boolean> {
    // The emperor is asked only once the kernel's table is read (checkListener calls this): asked first, it could
    // answer just before it spawns the vassal, whose socket would then be held by no process it named.
    let unknown: Error | undefined;
    const vassalPid = async (): Promise<number | undefined> => {
      const status = await this.options.emperor.status().catch((err: Error) => {
        unknown = err;
        return undefined;
      });
      return status?.vassals.find((v) => v.name === name)?.pid;
    };
    const verdict = await checkListener(port, { vassalPid, uid });
    if (unknown) {
      if (isFinal) throw new PierError('PIER_ILLEGAL_STATE', `cannot ask the emperor which process is the instance: ${unknown.message}`);
      return false;
    }
    if (verdict.state === 'foreign') throw new PortSquattedError(port, verdict.reason);
    if (verdict.state === 'none' && isFinal) throw new PierError('PIER_ILLEGAL_STATE', `the instance stopped listening on port ${port}`);
    return verdict.state === 'ours';
  }

  private stop(id: string, isReported: boolean): void {
    const entry = this.local.get(id);
    if (!entry) {
      if (isReported) void this.report(id, 'stopped');
      return;
    }
    if (entry.phase === 'stopping') return;
    if (entry.forgotten) return this.stopForgotten(entry);
    const wasStarting = entry.phase === 'starting';
    // A serving instance the nexus retires (a deploy switched away from it, a scale-down) keeps running for the
    // drain time: balancers stopped routing new requests to it, the ones in flight finish.
    const drainMs = entry.phase === 'ready' && isReported && entry.processType === 'web' ? (this.options.drainMs ?? 0) : 0;
    entry.phase = 'stopping';
    if (wasStarting) entry.abort.abort();
    const previous = entry.work;
    entry.work = (async () => {
      if (wasStarting) await previous;
      if (drainMs > 0 && !this.isClosed) await this.drain(drainMs);
      await this.remove(entry);
      if (isReported) await this.report(id, 'stopped');
    })();
  }

  /**
   * Stops a forgotten vassal without ever leaving its port free while a balancer may send it the app's traffic:
   * the balancers are told first (the report becomes `instance.released`), get RELEASE_GRACE_MS to let go, and
   * the port is quarantined (remove).
   */
  private stopForgotten(entry: Local): void {
    clearTimeout(entry.forgotten?.timer);
    entry.phase = 'stopping';
    entry.work = (async () => {
      await this.report(entry.id, 'stopped');
      if (!this.isClosed) await this.drain(RELEASE_GRACE_MS);
      await this.remove(entry);
    })();
  }

  /** Waits `ms`, cut short when the runner closes. */
  private drain(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const check = setInterval(() => {
        if (this.isClosed) done();
      }, 100);
      function done(): void {
        clearTimeout(timer);
        clearInterval(check);
        resolve();
      }
    });
  }

  /**
   * Readies an instance to run as its app's user: the app's release folder readable by that user's group only,
   * and a HOME/TMPDIR of its own. Returns the environment to add.
   */
  private async isolate(id: string, appDir: string, user: AppUser): Promise<Record<string, string>> {
    const appReleases = dirname(dirname(appDir)); // <runner>/releases/<app>
    await chown(appReleases, 0, user.gid);
    await chmod(appReleases, 0o750);
    const homes = this.options.homesDir!;
    await mkdir(homes, { recursive: true, mode: 0o711 });
    const home = join(homes, id);
    await mkdir(home, { recursive: true, mode: 0o700 });
    await chown(home, user.uid, user.gid);
    return { HOME: home, TMPDIR: home };
  }

  /** Takes over the singleton lease the scheduler took for the instance; losing it stops the process in time. */
  private async holdLease(entry: Local): Promise<void> {
    const lease = new SingletonLease({
      control: this.options.control, nodeId: this.options.runnerId, instanceId: entry.id, log: this.log,
      onLost: (reason) => void this.loseLease(entry, lease, reason),
    });
    entry.lease = lease;
    await lease.hold();
  }

  /** The lease is lost: the process goes now (its grace cut to what is left of the lease), the instance fails. */
  private async loseLease(entry: Local, lease: SingletonLease, reason: string): Promise<void> {
    if (entry.phase === 'stopping') return;
    entry.phase = 'stopping';
    entry.abort.abort();
    await entry.worker?.stop(Math.min(this.options.stopGraceMs ?? 10_000, Math.max(0, lease.mustBeGoneInMs - 250)));
    const previous = entry.work;
    entry.work = (async () => {
      await previous;
      await this.remove(entry);
      await this.report(entry.id, 'failed', undefined, lostLeaseError(reason).message);
    })();
  }

  private async remove(entry: Local): Promise<void> {
    // SIGTERM, the grace, SIGKILL. A singleton keeps renewing its lease meanwhile: its successor waits for it.
    if (entry.worker) await entry.worker.stop().catch((err) => this.log.warn({ err, instance: entry.id }, 'cannot stop worker'));
    entry.lease?.stop();
    await this.options.emperor.removeVassal(entry.id).catch((err) => this.log.warn({ err, instance: entry.id }, 'cannot remove vassal'));
    if (this.options.homesDir) {
      // Other instances of the app (same user) may be changing this HOME right now: removed as the app's user.
      const isGone = await removeOwnedEntry(join(this.options.homesDir, entry.id)).catch((err) => {
        this.log.warn({ err, instance: entry.id }, 'cannot remove HOME');
        return true;
      });
      if (!isGone) this.log.warn({ instance: entry.id }, 'HOME not fully removed: a process of the app keeps writing to it');
    }
    // A forgotten vassal's port may still be in a lagging balancer's table: no other instance gets it for a while.
    if (entry.port !== null && entry.forgotten) this.options.ports.quarantine(entry.port);
    else if (entry.port !== null) this.options.ports.release(entry.port);
    this.local.delete(entry.id);
    if (this.options.cgroups) this.tearDown(entry.id, this.options.cgroups);
    // uWSGI writes the vassal's last words as the emperor stops it: keep shipping for a moment.
    const shipper = this.options.shipper;
    if (shipper && entry.isDiscarded) await shipper.unwatch(entry.id, { discard: true });
    else if (shipper) setTimeout(() => void shipper.unwatch(entry.id), SHIP_LAST_WORDS_MS).unref();
  }

  /**
   * Once the emperor has stopped the removed vassal, kills what is left in its cgroups (processes that left the
   * vassal's tree) and removes them. Runs in the background; `settle()` waits for it.
   */
  private tearDown(id: string, cgroups: Cgroups): void {
    const task = (async () => {
      const deadline = Date.now() + VASSAL_STOP_WAIT_MS;
      while (Date.now() < deadline) {
        const status = await this.options.emperor.status().catch(() => undefined);
        if (!status || !status.vassals.some((v) => v.name === id)) break;
        await sleep(100);
      }
      await this.options.limitWatch?.unwatch(id);
      await cgroups.remove(id);
    })().catch((err) => this.log.warn({ err, instance: id }, 'cannot remove the cgroups of an instance'));
    this.teardowns.add(task);
    void task.finally(() => this.teardowns.delete(task));
  }

  /** Waits for background cgroup removals. */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.teardowns]);
  }

  /** Reports to the nexus, retrying for a while: the nexus may be failing over. */
  private async report(instanceId: string, state: 'starting' | 'ready' | 'failed' | 'stopped', port?: number, error?: string): Promise<void> {
    const id = `${this.options.runnerId}:${instanceId}:${state}:${Date.now()}`;
    for (let attempt = 0; attempt < 30 && !this.isClosed; attempt++) {
      try {
        // With its port goes how many requests it serves at once: balancers keep fewer connections to it (upstreams.ts).
        const served = port === undefined ? {} : { port, capacity: Math.min(65_535, this.options.processes * this.options.threads) };
        await this.options.control.call('instance.report', { nodeId: this.options.runnerId, instanceId, state, ...served, ...(error === undefined ? {} : { error: error.slice(0, 16_000) }) }, { id });
        return;
      } catch (err) {
        this.log.warn({ instance: instanceId, state, err: (err as Error).message }, 'cannot report instance state; retrying');
        await sleep(Math.min(1000, 100 * 2 ** attempt));
      }
    }
  }

  /**
   * Stops taking work and gives in-flight starts and reports up to `graceMs` to finish (a start may wait on
   * a slow app for its whole time-out; the emperor's stop ends it anyway).
   */
  async close(graceMs = 2000): Promise<void> {
    this.isClosed = true;
    for (const entry of this.local.values()) if (entry.forgotten) clearTimeout(entry.forgotten.timer);
    // Background processes are the runner's own children (no emperor keeps them): each gets SIGTERM and a grace
    // capped so the runner still stops its emperor before a supervisor (pier up: 10 s) gives up on it.
    const grace = Math.min(this.options.stopGraceMs ?? 10_000, SHUTDOWN_WORKER_GRACE_MS);
    const workers = [...this.local.values()].flatMap((l) => (l.worker ? [l.worker.stop(grace)] : []));
    await Promise.allSettled(workers);
    // Their leases run out on their own (the nexus may not hear these stops): a successor waits at most one lease.
    for (const entry of this.local.values()) entry.lease?.stop();
    const work = Promise.allSettled([...this.local.values()].map((l) => l.work));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([work, new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
  }
}

/** The web entry point of a prepared release. @throws ValidationError when the release has no web process. */
function webEntry(release: PreparedRelease, instance: string): WsgiEntry {
  if (release.wsgi === null) throw new ValidationError(`instance ${instance}: the release has no web process (no 'web:' line in its Procfile and no wsgi.py)`);
  return release.wsgi;
}

/** The probe options that send `entry`'s Host header, when it has one. */
function hostOf(entry: Local): { hostHeader?: string } {
  return entry.hostHeader === undefined ? {} : { hostHeader: entry.hostHeader };
}
