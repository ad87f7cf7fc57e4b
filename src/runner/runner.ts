/**
 * One runner: registers with the nexus, heartbeats, follows the state, and keeps a uWSGI emperor's vassals equal
 * to the instances assigned to it. A restarted runner adopts the vassals its emperor still runs.
 */
import { chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { APP_USERS_REACH, assertReachableByOthers, makeFolders } from '../core/reach.js';
import type { Logger } from 'pino';
import type { PierConfig } from '../config/index.js';
import { Lifecycle, type Service } from '../core/service.js';
import { sleep } from '../core/wait.js';
import type { StateEvent, Instance } from '../protocol/index.js';
import { ControlClient, EventFollower, HeartbeatPublisher, IntakePusher, SocketFactory, type CurveSettings } from '../transport/index.js';
import { Emperor } from './emperor.js';
import { PhaseOutput } from './phase-output.js';
import { InstanceManager } from './instance-manager.js';
import { LogShipper } from './log-shipper.js';
import { AppUsers } from './app-users.js';
import { AppCleanup } from './app-cleanup.js';
import { PortPool } from './ports.js';
import { Cgroups } from './cgroups.js';
import { LimitWatch } from './limit-watch.js';
import { createHash } from 'node:crypto';
import { ReleaseCache } from './release-cache.js';
import { readVassalMeta } from './vassal.js';
import { OneOffs } from './one-offs.js';
import { HealthProber } from './health-prober.js';
import { HealthEvents } from './health-events.js';
import { VassalIntegrity } from './integrity.js';

/** Log lines waiting for the collectors; beyond this they are dropped (and counted). */
const LOG_QUEUE_MAX = 50_000;

export interface RunnerOptions {
  config: PierConfig;
  log: Logger;
  curve?: CurveSettings;
  /** Where instance ports come from. @default a PortPool over runner.portMin..portMax, at random */
  ports?: PortPool;
}

export class Runner implements Service {
  readonly id: string;
  instances: InstanceManager | undefined;
  /** Compares the emperor's vassals with the instances held, and repairs drift (counted). */
  integrity: VassalIntegrity | undefined;
  /** Purges destroyed apps from this machine (tests await its work through `destroyed`). */
  cleanup: AppCleanup | undefined;
  /** One-offs (`pier run`) running here. */
  oneOffs: OneOffs | undefined;
  private readonly lifecycle: Lifecycle;
  private readonly log: Logger;

  constructor(private readonly options: RunnerOptions) {
    this.id = options.config.runner.id;
    this.log = options.log.child({ component: 'runner', runnerId: this.id });
    this.lifecycle = new Lifecycle(`runner '${this.id}'`, this.log);
  }

  get dir(): string {
    const { config } = this.options;
    return config.runner.dir || join(config.dataDir, `runner-${this.id}`);
  }

  start(): Promise<void> {
    return this.lifecycle.start(async () => {
      const { config } = this.options;
      const { cluster, runner } = config;
      const defer = this.lifecycle.defer.bind(this.lifecycle);
      const sockets = new SocketFactory({ maxMessageBytes: cluster.maxMessageBytes, curve: this.options.curve });
      const control = new ControlClient({ endpoints: cluster.nexus.map((n) => n.control), timeoutMs: cluster.controlTimeoutMs, sockets, log: this.log });
      defer('control client', () => control.close());
      // Beats from the first moment: a runner restarted after a crash (its emperor and apps kept serving) must be back
      // within the dead-after budget, or the nexus forgets its instances and starts them elsewhere. A runner that
      // fails to start exits, and its beats stop with it.
      const heartbeat = new HeartbeatPublisher({
        nodeId: this.id, kind: 'runner', endpoints: cluster.nexus.map((n) => n.heartbeats), intervalMs: cluster.heartbeatIntervalMs, sockets,
        sample: () => ({ ...(this.instances ? { instances: this.instances.count } : {}), repairs: this.integrity?.repairs ?? 0 }),
      });
      heartbeat.start();
      defer('heartbeat', () => heartbeat.stop()); // only if the start fails: a running runner stops beating first (below)

      const isolated = runner.appUsers && AppUsers.isPossible();
      if (isolated) await openForAppUsers(this.dir);
      const cgroups = runner.cgroups ? await Cgroups.open({ group: `${this.id}-${createHash('sha256').update(this.dir).digest('hex').slice(0, 8)}` }) : undefined;
      if (!cgroups) this.log.warn({ cgroups: runner.cgroups }, 'instances get no memory, process or CPU limit: cgroups need root and the v1 memory, pids and cpu hierarchies');
      // Registered before the emperor, so it runs after the emperor has stopped every vassal: what is left is killed.
      if (cgroups) defer('cgroups', async () => {
        await this.instances?.settle();
        await cgroups.removeAll();
      });
      const emperor = new Emperor({ dir: join(this.dir, 'emperor'), log: this.log });
      await emperor.start();
      defer('emperor', () => emperor.stop());

      const ports = this.options.ports ?? new PortPool(runner.portMin, runner.portMax, runner.bindHost);
      const releases = new ReleaseCache({ dir: this.dir, control, pipArgs: runner.pipArgs, buildTimeoutMs: runner.buildTimeoutMs, log: this.log });
      // Vassals log to their own files, which the shipper follows and pushes to the collectors (uWSGI's logzmq
      // logger would block every app while no collector pulls).
      const pusher = new IntakePusher({
        endpoints: cluster.stats.map((s) => s.intake), sockets, maxQueue: LOG_QUEUE_MAX, what: 'log lines', log: this.log,
      });
      pusher.start();
      defer('log pusher', () => pusher.stop());
      const shipper = new LogShipper({ pusher, log: this.log });
      shipper.start();
      defer('log shipper', () => shipper.stop());
      const limitWatch = cgroups ? new LimitWatch({ cgroups, pusher, log: this.log }) : undefined;
      limitWatch?.start();
      if (limitWatch) defer('limit watch', async () => limitWatch.stop());
      const appUsers = isolated ? new AppUsers() : undefined;
      const homesDir = isolated ? join(this.dir, 'homes') : undefined;
      const cleanup = new AppCleanup({ dir: this.dir, emperor, ...(appUsers ? { appUsers, homesDir } : {}), log: this.log });
      const manager = new InstanceManager({
        runnerId: this.id, control, emperor, releases, ports, shipper, bindHost: runner.bindHost, drainMs: runner.drainMs,
        ...(appUsers ? { appUsers, homesDir } : {}), beforeStart: (app, user) => cleanup.beforeStart(app, user),
        ...(cgroups ? { cgroups, limitWatch } : {}), limits: runner.limits,
        phaseOutput: new PhaseOutput(control, this.id, this.log), releaseTimeoutMs: runner.releaseTimeoutMs,
        startTimeoutMs: runner.startTimeoutMs, stopGraceMs: runner.stopGraceMs, workerSettleMs: runner.workerSettleMs, warmupRequests: runner.warmupRequests, processes: runner.processes, threads: runner.threads, staticMaxAgeMs: runner.staticMaxAgeMs, log: this.log,
      });
      this.instances = manager;
      this.cleanup = cleanup;
      cleanup.attach(manager);
      for (const name of await emperor.listVassals()) {
        const ini = (await emperor.readVassal(name)) ?? '';
        const meta = readVassalMeta(ini);
        if (meta && typeof meta.app === 'string' && typeof meta.port === 'number') manager.adopt(name, meta.app, meta.port, ini);
        else await emperor.removeVassal(name); // not ours to keep: no record of what it is
      }
      // Cgroups of instances a previous run left behind (and no vassal runs any more).
      await cgroups?.removeAll(new Set(await emperor.listVassals()));
      defer('instances', () => manager.close());
      const oneOffs = new OneOffs({
        runnerId: this.id, endpoints: cluster.nexus.flatMap((n) => (n.sessions ? [n.sessions] : [])), sockets, releases, appUsers, homesDir, cgroups,
        limits: runner.limits, graceMs: runner.runGraceMs, helloIntervalMs: Math.max(100, cluster.heartbeatIntervalMs),
        deadAfterMs: Math.max(1500, cluster.heartbeatIntervalMs * cluster.heartbeatMisses), pusher, beforeStart: (app, user) => cleanup.beforeStart(app, user), log: this.log,
      });
      this.oneOffs = oneOffs;
      oneOffs.start();
      defer('one-offs', () => oneOffs.close());
      // Health checks of the serving instances, reported in batches; remediation and alerts reach them as events.
      const prober = new HealthProber({
        runnerId: this.id, control, serving: () => manager.serving(), emperorStatus: () => emperor.status(),
        host: runner.bindHost === '0.0.0.0' ? '127.0.0.1' : runner.bindHost, log: this.log,
      });
      const healthEvents = new HealthEvents({ manager, prober, pusher, log: this.log });

      await this.register(control);
      // Stopped before the instances and the emperor (defers run in reverse): a stopping runner goes silent at once.
      defer('heartbeat', () => heartbeat.stop());
      prober.start();
      defer('health prober', () => prober.stop());
      const integrity = new VassalIntegrity({
        emperor, held: () => manager.heldVassals(), isKnown: (name) => manager.isKnown(name), isHeld: (name) => manager.isReady(name),
        intervalMs: cluster.integrityIntervalMs, log: this.log,
      });
      this.integrity = integrity;

      const follower = new EventFollower({
        eventEndpoints: cluster.nexus.map((n) => n.events), control, sockets, log: this.log,
        onSnapshot: async (snapshot) => {
          // Apps destroyed while this runner was away go first, so nothing of theirs is adopted or inherited.
          await cleanup.sweep(snapshot.apps);
          manager.sync(snapshot.instances);
          prober.loadChecks(snapshot.checks);
        },
        onEvent: (event: StateEvent) => {
          if (event.type === 'instance.changed') manager.apply(event.data as unknown as Instance);
          else if (event.type === 'instance.removed') manager.removed(String(event.data.id), event.data.forgotten === true);
          else if (event.type === 'app.created' && event.app) cleanup.created(event.app, event.at);
          else if (event.type === 'app.destroyed' && event.app) void cleanup.destroyed(event.app);
          else healthEvents.apply(event);
        },
      });
      // Stopped after the follower (defers run in reverse): a clean-up under way is finished, not cut short.
      defer('app clean-ups', () => cleanup.idle());
      await follower.start();
      defer('follower', () => follower.stop());
      // After the first snapshot: until then, every adopted vassal is held and nothing is known to be extra.
      integrity.start();
      defer('integrity', () => integrity.stop());
      this.log.info({ dir: this.dir, adopted: manager.count }, 'runner ready');
    });
  }

  /** Registers with the nexus, retrying until one answers (a runner can start before the control plane). */
  private async register(control: ControlClient): Promise<void> {
    const { runner } = this.options.config;
    for (let attempt = 0; ; attempt++) {
      try {
        await control.call('node.register', { nodeId: this.id, kind: 'runner', address: runner.advertiseHost, info: { portMin: runner.portMin, portMax: runner.portMax } });
        return;
      } catch (err) {
        if (attempt === 0) this.log.warn({ err: (err as Error).message }, 'cannot register yet; retrying');
        await sleep(Math.min(2000, 200 * 2 ** attempt));
      }
    }
  }

  stop(): Promise<void> {
    return this.lifecycle.stop();
  }
}

/**
 * App users must be able to walk to their release folders: the runner's folder (its own) is made searchable (not
 * listable) by others, and every folder above it must already be. @throws PierError naming the folder and the fix
 */
async function openForAppUsers(dir: string): Promise<void> {
  assertReachableByOthers(dir, APP_USERS_REACH); // before anything is made: a refused start leaves nothing behind
  makeFolders(dir, 0o711);
  await chmod(dir, 0o711);
}
