/**
 * `pier up`: the whole platform on one machine as child processes of one supervisor — the embedded PostgreSQL
 * server (unless DATABASE_URL is set) and every nexus replica in `cluster.nexus` — with their logs, configs,
 * keys and the admin token in one data folder.
 */
import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify as toToml } from 'smol-toml';
import type { Logger } from 'pino';
import type { NexusAddress, PierConfig } from '../config/index.js';
import { ConflictError, PierError } from '../core/errors.js';
import { newToken } from '../core/ids.js';
import { Lifecycle, type Service } from '../core/service.js';
import { sleep } from '../core/wait.js';
import { EmbeddedPostgres, createPool, ensureAdmin, migrate, withTransaction } from '../db/index.js';
import { ensureClusterKeys, type DaemonKeys } from '../transport/index.js';
import { SupervisedChild } from './child.js';
import { ensureSystemUser } from '../core/privileges.js';
import { prepareDataDir, upDaemonUser } from './data-dir.js';
import { platformPaths, type PlatformPaths } from './paths.js';
import { cleanupStale, isAlive, readState, type PlatformState } from './state.js';

/** Name of the admin owner `pier up` creates. */
export const ADMIN_OWNER = 'admin';

export interface PlatformOptions {
  config: PierConfig;
  /** Runners to start on this machine, each with its own folder and port range. @default 1 */
  runners?: number;
  log: Logger;
  /** Environment passed on to the daemons. */
  env: NodeJS.ProcessEnv;
}

/** The CLI entry the supervisor runs its daemons with (the .ts source under tsx, the built .js otherwise). */
function cliEntry(): string {
  const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
  return fileURLToPath(new URL(`../cli/main.${ext}`, import.meta.url));
}

function portOf(endpoint: string): string {
  return endpoint.slice(endpoint.lastIndexOf(':') + 1);
}

/** The loopback bind address of a configured endpoint (pier up runs every daemon on this machine). */
function localBind(endpoint: string): string {
  return `tcp://127.0.0.1:${portOf(endpoint)}`;
}

export class Platform implements Service {
  readonly paths: PlatformPaths;
  readonly children: SupervisedChild[] = [];
  private readonly lifecycle: Lifecycle;
  private readonly log: Logger;
  private postgres: EmbeddedPostgres | undefined;
  private dbUrl = '';
  /** Set once the platform is up and up.json written. */
  private apiUrls: string[] | undefined;
  /** Each daemon's own keys folder (with CURVE on), by daemon name. */
  private keyDirs = new Map<string, string>();
  /** The user nexus, balancer and stats drop to ('' keeps them as this process's user). */
  private daemonUser = '';

  constructor(private readonly options: PlatformOptions) {
    this.paths = platformPaths(options.config.dataDir);
    this.log = options.log.child({ component: 'up' });
    this.lifecycle = new Lifecycle('pier up', this.log);
  }

  start(): Promise<void> {
    return this.lifecycle.start(async () => {
      const { config } = this.options;
      const paths = this.paths;
      prepareDataDir(config, this.options.runners ?? 1);
      // Nexus, balancer and stats parse what the internet and the apps send: they drop root to this user once started.
      const daemonUser = upDaemonUser(config);
      if (daemonUser !== undefined) this.daemonUser = ensureSystemUser(daemonUser).name;
      this.claimPidFile();
      this.lifecycle.defer('pid file', () => rmSync(paths.pidFile, { force: true }));
      await cleanupStale(paths, this.log);

      if (config.db.url !== '') {
        this.dbUrl = config.db.url;
      } else {
        const postgres = new EmbeddedPostgres({ dataDir: paths.postgresDir, port: config.db.embeddedPort, log: this.log });
        this.postgres = postgres;
        // Restarted by its watchdog when it dies: keep up.json's pid true, as for a restarted daemon.
        postgres.onRestart = () => {
          if (this.apiUrls) this.writeState(this.apiUrls);
        };
        this.lifecycle.defer('postgres', () => postgres.stop());
        await postgres.start();
        this.dbUrl = postgres.url;
      }
      const token = await this.prepareDatabase();
      const count = this.options.runners ?? 1;
      if (config.security.curve) this.keyDirs = ensureClusterKeys(config.security.keysDir, this.daemonKeys(count));

      this.lifecycle.defer('daemons', () => this.stopChildren());
      await this.waitReady(config.cluster.nexus.map((address, i) => this.spawnNexus(address, i)));
      // The rest need a nexus to register with. Collectors start first (and so stop last): they get every last line.
      const collectors = config.cluster.stats.map((address, i) => this.spawnDaemon('stats', `stats-${i + 1}`, {
        stats: {
          ...config.stats, id: `stats-${i + 1}`, intakeBind: localBind(address.intake), tailBind: localBind(address.tail),
          queryBind: localBind(address.query),
        },
      }));
      const runners = Array.from({ length: count }, (_, i) => {
        // Split the instance port range between the runners of this machine.
        const span = Math.floor((config.runner.portMax - config.runner.portMin + 1) / count);
        const portMin = config.runner.portMin + i * span;
        // And the add-on port range (Redis servers), so two runners here never pick the same port.
        const addonSpan = Math.floor((config.runner.addonPortMax - config.runner.addonPortMin + 1) / count);
        const addonPortMin = config.runner.addonPortMin + i * addonSpan;
        return this.spawnDaemon('runner', `runner-${i + 1}`, {
          runner: { ...config.runner, id: `runner-${i + 1}`, portMin, portMax: portMin + span - 1, addonPortMin, addonPortMax: addonPortMin + addonSpan - 1 },
        });
      });
      await this.waitReady([...collectors, this.spawnDaemon('balancer', 'balancer-1', { balancer: { ...config.balancer, id: 'balancer-1' } }), ...runners]);

      const apiUrls = config.cluster.nexus.map((n) => n.api);
      writeFileSync(paths.adminFile, `${JSON.stringify({ apiUrls, token }, null, 2)}\n`, { mode: 0o600 });
      this.apiUrls = apiUrls;
      this.writeState(apiUrls);
      this.lifecycle.defer('state file', () => {
        this.apiUrls = undefined;
        rmSync(paths.stateFile, { force: true });
      });
    });
  }

  /**
   * Every daemon this machine runs, and the role of its key; plus an operator key (keys/operator/) for tools
   * that call the owner commands over ZeroMQ.
   */
  private daemonKeys(runners: number): DaemonKeys[] {
    const { cluster } = this.options.config;
    return [
      ...cluster.nexus.map((_, i) => ({ name: `nexus-${i + 1}`, role: 'nexus' as const })),
      ...cluster.stats.map((_, i) => ({ name: `stats-${i + 1}`, role: 'stats' as const })),
      { name: 'balancer-1', role: 'balancer' },
      ...Array.from({ length: runners }, (_, i) => ({ name: `runner-${i + 1}`, role: 'runner' as const })),
      { name: 'operator', role: 'operator' },
    ];
  }

  private claimPidFile(): void {
    const { pidFile } = this.paths;
    if (existsSync(pidFile)) {
      const pid = Number(readFileSync(pidFile, 'utf8').trim());
      if (pid !== process.pid && isAlive(pid)) {
        throw new ConflictError(`pier is already running from '${this.paths.dataDir}' (pid ${pid}); run 'pier down' first`);
      }
    }
    writeFileSync(pidFile, `${process.pid}\n`);
  }

  /** Migrates and makes sure the admin owner has the token kept in the data folder. */
  private async prepareDatabase(): Promise<string> {
    const pool = createPool({ url: this.dbUrl, max: 2, connectTimeoutMs: this.options.config.db.connectTimeoutMs }, this.log);
    try {
      await migrate(pool, this.log);
      const token = readAdminToken(this.paths.adminFile) ?? newToken();
      await withTransaction(pool, (tx) => ensureAdmin(tx, ADMIN_OWNER, token));
      return token;
    } finally {
      await pool.end();
    }
  }

  private spawnNexus(address: NexusAddress, index: number): SupervisedChild {
    return this.spawnDaemon('nexus', `nexus-${index + 1}`, {
      nexus: {
        id: `nexus-${index + 1}`,
        controlBind: localBind(address.control),
        eventsBind: localBind(address.events),
        heartbeatsBind: localBind(address.heartbeats),
        // Runners reach only the nexuses that list a sessions endpoint; one without binds a free port nobody uses.
        sessionsBind: address.sessions ? localBind(address.sessions) : 'tcp://127.0.0.1:*',
        apiHost: '127.0.0.1',
        apiPort: Number(new URL(address.api).port || 80),
      },
      // The platform's public face, which the nexus names (`<app>.<domain>:<port>` in deploy URLs, the hostname rules,
      // the Host of the runners' probes): the balancer's, not the defaults.
      balancer: { domain: this.options.config.balancer.domain, port: this.options.config.balancer.port },
    });
  }

  /**
   * Writes DATA/config/<name>.toml (the shared sections plus the daemon's own) and starts `pier <kind> --config`
   * under supervision. The database URL carries a password: it goes in the environment (of the nexus and the
   * collectors only), never in a file.
   */
  private spawnDaemon(kind: 'nexus' | 'runner' | 'balancer' | 'stats', name: string, own: Record<string, unknown>): SupervisedChild {
    const { config } = this.options;
    const file = join(this.paths.configDir, `${name}.toml`);
    // Each daemon is pointed at its own keys folder: only a nexus's holds server.key, only a collector's stats.key.
    // Keys stay root's (0700): each daemon reads them before it drops root. Only the runner keeps root.
    const user = kind === 'runner' ? '' : this.daemonUser;
    const security = { ...config.security, ...(config.security.curve ? { keysDir: this.keyDirs.get(name)! } : {}), user };
    const daemonConfig = { dataDir: config.dataDir, log: { level: config.log.level }, cluster: { ...config.cluster }, security, ...own };
    writeFileSync(file, `# written by pier up; edit ${join(this.paths.dataDir, 'pier.toml')} instead\n${toToml(daemonConfig)}\n`, { mode: 0o600 });
    chmodSync(file, 0o600);
    const child = new SupervisedChild(
      {
        name,
        command: process.execPath,
        args: [...process.execArgv, cliEntry(), kind, '--config', file],
        // Only the nexus and the collectors use the database: a balancer or runner never holds its password.
        env: { ...this.options.env, PIER_DB_URL: kind === 'nexus' || kind === 'stats' ? this.dbUrl : '', DATABASE_URL: '', PIER_SUPERVISOR_PID: String(process.pid) },
        logFile: join(this.paths.logsDir, `${name}.log`),
        // A runner stops its emperor and every app before exiting: give it the emperor's grace and more.
        stopGraceMs: kind === 'runner' ? 30_000 : 10_000,
        // A killed runner leaves its emperor and apps serving: back within the dead-after budget (1.5 s by default),
        // it keeps its instances where they are. The others wait 1 s: a nexus restarted at once competes with the
        // survivor's takeover while PostgreSQL still holds the dead replica's session (the failover drill).
        restartBaseMs: kind === 'runner' ? 250 : 1000,
      },
      this.log,
    );
    this.children.push(child);
    // A restarted daemon has a new pid: keep up.json true, so `pier down` and a later cleanup find it.
    child.onStart = () => {
      if (this.apiUrls) this.writeState(this.apiUrls);
    };
    child.start();
    return child;
  }

  /** Stops daemons in reverse start order (balancers and runners before the nexus they report to). */
  private async stopChildren(): Promise<void> {
    for (const child of [...this.children].reverse()) await child.stop();
  }

  /** Waits until each child logged `ready`; fails with a daemon's last log lines if it dies while starting. */
  private async waitReady(children: SupervisedChild[], timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const pending = new Set(children);
    while (pending.size > 0) {
      for (const child of [...pending]) {
        if (child.isReady()) pending.delete(child);
        else if (child.restarts > 0) {
          const reason = child.failureReason();
          const hint = /EADDRINUSE/.test(reason) ? `; free the port or choose another in ${join(this.paths.dataDir, 'pier.toml')}` : `; see ${child.spec.logFile}`;
          throw new PierError('PIER_ILLEGAL_STATE', `${child.spec.name} could not start: ${reason}${hint}`);
        }
      }
      if (pending.size === 0) break;
      if (Date.now() > deadline) {
        throw new PierError('PIER_TIMEOUT', `${[...pending].map((c) => c.spec.name).join(', ')} did not become ready in ${timeoutMs / 1000} s; see ${this.paths.logsDir}`);
      }
      await sleep(100);
    }
  }

  private writeState(apiUrls: string[]): void {
    const { config } = this.options;
    const state: PlatformState = {
      pid: process.pid,
      startedAt: Date.now(),
      dataDir: config.dataDir,
      apiUrls,
      postgres: this.postgres ? { pid: this.postgres.pid ?? 0, port: config.db.embeddedPort, dir: this.paths.postgresDir } : null,
      children: this.children.map((c) => ({ name: c.spec.name, pid: c.pid ?? 0, logFile: c.spec.logFile })),
      nexus: config.cluster.nexus.map((n, i) => ({ id: `nexus-${i + 1}`, ...n })),
      stats: config.cluster.stats.map((s, i) => ({ id: `stats-${i + 1}`, ...s })),
      balancerUrl: `http://${config.balancer.domain}:${config.balancer.port}/`,
      domain: config.balancer.domain,
    };
    writeFileSync(this.paths.stateFile, `${JSON.stringify(state, null, 2)}\n`);
  }

  /** The state as written once ready (children pids change on restart, so re-read for `pier status`). */
  state(): PlatformState | undefined {
    return readState(this.paths);
  }

  stop(): Promise<void> {
    return this.lifecycle.stop();
  }
}

function readAdminToken(file: string): string | undefined {
  try {
    const value = JSON.parse(readFileSync(file, 'utf8')) as { token?: unknown };
    return typeof value.token === 'string' && value.token.startsWith('pier_') ? value.token : undefined;
  } catch {
    return undefined;
  }
}
