/**
 * The single source of truth for Pier's configuration: one TypeBox schema with defaults.
 * Every duration is an integer number of milliseconds (`*Ms`), every size a number of bytes (`*Bytes`).
 */
import { Type, type Static } from '@sinclair/typebox';

const Port = (def: number) => Type.Integer({ minimum: 1, maximum: 65535, default: def });
const Ms = (def: number, minimum = 1) => Type.Integer({ minimum, maximum: 86_400_000, default: def });
const Endpoint = (def: string) => Type.String({ pattern: '^(tcp|ipc|inproc)://.+$', default: def });
const Section = <T extends Parameters<typeof Type.Object>[0]>(props: T) =>
  Type.Object(props, { additionalProperties: false, default: {} });

/** Where one nexus replica can be reached; every node knows the whole list. */
export const NexusAddress = Type.Object(
  {
    /** ZeroMQ control endpoint (ROUTER). */
    control: Endpoint('tcp://127.0.0.1:7400'),
    /** ZeroMQ event endpoint (PUB). */
    events: Endpoint('tcp://127.0.0.1:7401'),
    /** ZeroMQ heartbeat intake (SUB). */
    heartbeats: Endpoint('tcp://127.0.0.1:7402'),
    /** JSON API base URL. */
    api: Type.String({ pattern: '^https?://.+$', default: 'http://127.0.0.1:7480' }),
    /** ZeroMQ sessions endpoint (ROUTER) that runners connect a DEALER to for one-offs (`pier run`); runners reach only the nexuses that list one. */
    sessions: Type.Optional(Type.String({ pattern: '^(tcp|ipc|inproc)://.+$' })),
  },
  { additionalProperties: false },
);
export type NexusAddress = Static<typeof NexusAddress>;

/** Where one stats collector can be reached; every node pushes to all of them. */
export const StatsAddress = Type.Object(
  {
    /** PULL intake for logs and access records. */
    intake: Endpoint('tcp://127.0.0.1:7500'),
    /** PUB of live log lines (topic `log.<app>`). */
    tail: Endpoint('tcp://127.0.0.1:7501'),
    /** ROUTER answering `logs.tail` and `stats.query` (the API asks every collector). */
    query: Endpoint('tcp://127.0.0.1:7502'),
  },
  { additionalProperties: false },
);
export type StatsAddress = Static<typeof StatsAddress>;

export const DEFAULT_NEXUS_ADDRESSES: NexusAddress[] = [
  { control: 'tcp://127.0.0.1:7400', events: 'tcp://127.0.0.1:7401', heartbeats: 'tcp://127.0.0.1:7402', api: 'http://127.0.0.1:7480', sessions: 'tcp://127.0.0.1:7403' },
  { control: 'tcp://127.0.0.1:7410', events: 'tcp://127.0.0.1:7411', heartbeats: 'tcp://127.0.0.1:7412', api: 'http://127.0.0.1:7490', sessions: 'tcp://127.0.0.1:7413' },
];

export const DEFAULT_STATS_ADDRESSES: StatsAddress[] = [
  { intake: 'tcp://127.0.0.1:7500', tail: 'tcp://127.0.0.1:7501', query: 'tcp://127.0.0.1:7502' },
];

export const PierConfig = Type.Object(
  {
    /** Folder for this node's state (embedded PostgreSQL, logs, caches). @default '/var/lib/pier' as root, else ~/.local/share/pier */
    dataDir: Type.String({ default: '' }),
    log: Section({
      /** Minimum log level. @default 'info' */
      level: Type.Union(
        [
          Type.Literal('fatal'), Type.Literal('error'), Type.Literal('warn'), Type.Literal('info'),
          Type.Literal('debug'), Type.Literal('trace'), Type.Literal('silent'),
        ],
        { default: 'info' },
      ),
    }),
    db: Section({
      /** PostgreSQL URL (`DATABASE_URL`); empty means the embedded server in `dataDir/postgres`. @default '' */
      url: Type.String({ default: '' }),
      /** Embedded server port. @default 7432 */
      embeddedPort: Port(7432),
      /** Connections per process. @default 10 */
      poolMax: Type.Integer({ minimum: 1, maximum: 200, default: 10 }),
      /** Time allowed to get a connection. @default 5000 */
      connectTimeoutMs: Ms(5000),
    }),
    cluster: Section({
      /** Every nexus replica, in the order clients try them. */
      nexus: Type.Array(NexusAddress, { minItems: 1, maxItems: 16, default: DEFAULT_NEXUS_ADDRESSES }),
      /** How often every node publishes a heartbeat. @default 500 */
      heartbeatIntervalMs: Ms(500, 10),
      /** Missed heartbeats after which a node is dead. @default 3 */
      heartbeatMisses: Type.Integer({ minimum: 1, maximum: 100, default: 3 }),
      /** Every stats collector. */
      stats: Type.Array(StatsAddress, { maxItems: 16, default: DEFAULT_STATS_ADDRESSES }),
      /** Time a control call waits for one nexus before trying the next. @default 1000 */
      controlTimeoutMs: Ms(1000, 10),
      /** Largest ZeroMQ message accepted or sent. @default 4194304 (4 MiB) */
      maxMessageBytes: Type.Integer({ minimum: 1024, maximum: 256 * 1024 * 1024, default: 4 * 1024 * 1024 }),
      /**
       * How often the integrity checks run: each runner compares its vassal files and the emperor's processes with
       * the instances it holds, and the leader compares each balancer's route digest with the state's. @default 10000
       */
      integrityIntervalMs: Ms(10_000, 50),
    }),
    security: Section({
      /** Encrypt every ZeroMQ socket with CURVE and admit only allowed node keys (ZAP). @default true */
      curve: Type.Boolean({ default: true }),
      /**
       * Folder of this daemon's CURVE key files: `node.key`, `server.pub`, `stats.pub`, plus `server.key` on a nexus,
       * `stats.key` on a collector and `allowed/<role>/<node-id>.pub` on both (src/transport/keys.ts). @default '' (dataDir/keys)
       */
      keysDir: Type.String({ default: '' }),
      /**
       * Unprivileged user a nexus, balancer or stats daemon started as root drops to once its sockets are bound and
       * its files open (a runner refuses it: it needs root). `pier up` uses 'pier' when empty; 'root' keeps root
       * (not recommended). Ignored when not started as root. @default '' (no drop)
       */
      user: Type.String({ pattern: '^$|^[a-z_][a-z0-9_-]{0,31}$', default: '' }),
    }),
    nexus: Section({
      /** This replica's node id. @default 'nexus-1' */
      id: Type.String({ pattern: '^[a-z0-9][a-z0-9.-]{0,62}$', default: 'nexus-1' }),
      /** Control ROUTER bind address. @default 'tcp://127.0.0.1:7400' */
      controlBind: Endpoint('tcp://127.0.0.1:7400'),
      /** Event PUB bind address. @default 'tcp://127.0.0.1:7401' */
      eventsBind: Endpoint('tcp://127.0.0.1:7401'),
      /** Heartbeat SUB bind address. @default 'tcp://127.0.0.1:7402' */
      heartbeatsBind: Endpoint('tcp://127.0.0.1:7402'),
      /** Sessions ROUTER bind address (one-offs: runners connect, the API relays `pier run` streams). @default 'tcp://127.0.0.1:7403' */
      sessionsBind: Endpoint('tcp://127.0.0.1:7403'),
      /** Time limit of a one-off (`pier run`) that asks for none. @default 3600000 (1 h) */
      runTimeoutMs: Ms(3_600_000, 1000),
      /** Longest time limit a one-off may ask for (`pier run --timeout`). @default 86400000 (24 h) */
      runMaxTimeoutMs: Ms(86_400_000, 1000),
      /** JSON API listen host. @default '127.0.0.1' */
      apiHost: Type.String({ minLength: 1, default: '127.0.0.1' }),
      /** JSON API listen port (0 picks a free one). @default 7480 */
      apiPort: Type.Integer({ minimum: 0, maximum: 65535, default: 7480 }),
      /** Largest API request body. @default 1048576 */
      apiBodyLimitBytes: Type.Integer({ minimum: 1024, maximum: 1024 * 1024 * 1024, default: 1024 * 1024 }),
      /** How often a tick with the current event version is published when idle. @default 1000 */
      tickIntervalMs: Ms(1000, 10),
      /** How often a follower polls the events table in case a NOTIFY was missed. @default 1000 */
      eventPollMs: Ms(1000, 10),
      /** How long repeated mutation ids are remembered. @default 86400000 (1 day) */
      requestRetentionMs: Ms(86_400_000),
      /** Time given to in-flight requests at stop. @default 2000 */
      shutdownGraceMs: Ms(2000, 0),
      /** How often the leader reconciles instances with what is wanted (it is also woken by events). @default 500 */
      schedulerIntervalMs: Ms(500, 10),
      /**
       * Lease of a singleton process type (`ps:scale clock=1 --singleton`): its runner renews it every quarter, stops
       * the process once half of it passed unrenewed, and the scheduler starts a successor only after it ran out
       * (so at most this long without one after a runner is cut off). @default 4000
       */
      singletonLeaseMs: Ms(4000, 200),
      /**
       * After a release goes live, the previous one keeps running this long while their live traffic is compared;
       * a clearly worse new release (5xx rate, p95) is switched back at once. 0 turns the verdict off. @default 30000
       */
      verdictWindowMs: Ms(30_000, 0),
      /** Requests the new release must have served before the verdict judges it. @default 20 */
      verdictMinRequests: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 20 }),
      /** Lease of the deploy lock the API takes for a deploy; the leader renews it at half while the deploy runs. @default 60000 */
      deployLockLeaseMs: Ms(60_000, 100),
      /** Longest a deploy request waits for another deploy's lock when the caller asks to wait (Pier-Lock-Wait). @default 25000 */
      deployLockWaitMaxMs: Ms(25_000, 0),
      /** A deploy fails when an instance is not ready this long after assignment. @default 120000 */
      instanceStartTimeoutMs: Ms(120_000, 100),
      /**
       * Where every app's alerts (raised and cleared) are POSTed as JSON, besides each app's own webhook
       * (`pier alerts:webhook`); retried with back-off, never blocking. Set by the operator, so it may point anywhere
       * (loopback and private addresses included): owners' webhooks are the ones checked. @default '' (none)
       */
      alertWebhookUrl: Type.String({ maxLength: 2048, pattern: '^$|^https?://', default: '' }),
      /**
       * Lets owners aim their app's webhook at loopback, private and link-local addresses too (a platform whose
       * owners are all trusted, with their receivers on a private network). Off, an owner's webhook must reach a
       * public address; the operator's alertWebhookUrl may always point anywhere. @default false
       */
      alertWebhookAllowPrivate: Type.Boolean({ default: false }),
      /** How long raw health-check results are kept (the newest per target stays while the target exists). @default 3600000 (1 h) */
      healthRetentionMs: Ms(3_600_000, 60_000),
      /** Largest release upload (tar.gz). @default 104857600 (100 MiB) */
      maxReleaseBytes: Type.Integer({ minimum: 1024, maximum: 1024 * 1024 * 1024, default: 100 * 1024 * 1024 }),
    }),
    runner: Section({
      /** This runner's node id. @default 'runner-1' */
      id: Type.String({ pattern: '^[a-z0-9][a-z0-9.-]{0,62}$', default: 'runner-1' }),
      /** Address the balancer reaches this runner's instances at. @default '127.0.0.1' */
      advertiseHost: Type.String({ minLength: 1, default: '127.0.0.1' }),
      /**
       * Address app instances listen on. Keep the default when the balancer runs on this machine; with balancers
       * elsewhere use this machine's private address (what advertiseHost names) or '0.0.0.0'. @default '127.0.0.1'
       */
      bindHost: Type.String({ pattern: '^(\\d{1,3}\\.){3}\\d{1,3}$', default: '127.0.0.1' }),
      /** First and last port handed to app instances. @default 20000, 29999 */
      portMin: Port(20000),
      portMax: Port(29999),
      /**
       * First and last port handed to add-on servers (Redis) on this runner: apart from the instance range, never
       * routed by a balancer, below the ephemeral range (32768). @default 30000, 30999
       */
      addonPortMin: Port(30000),
      addonPortMax: Port(30999),
      /** Folder for this runner's vassals, releases, virtualenvs and artifact cache. @default '' (dataDir/runner-<id>) */
      dir: Type.String({ default: '' }),
      /** Extra pip arguments, e.g. ['--no-index', '--find-links', '/srv/wheels'] for machines without a package index. @default [] */
      pipArgs: Type.Array(Type.String({ maxLength: 1024 }), { maxItems: 32, default: [] }),
      /** Time an instance gets to answer HTTP before its start fails. @default 30000 */
      startTimeoutMs: Ms(30_000, 100),
      /**
       * Time a retired instance (switched away from by a deploy, scaled down) keeps serving the requests already
       * sent to it before its vassal is removed. @default 5000
       */
      drainMs: Ms(5000, 0),
      /**
       * Time a background process (Procfile `worker:` …) gets between SIGTERM and SIGKILL when it is stopped by a
       * deploy, a scale-down or the runner stopping (Heroku gives 30 s; 10 s keeps deploys brisk). @default 10000
       */
      stopGraceMs: Ms(10_000, 0),
      /** A background process that has run this long without exiting is ready (workers have no HTTP to probe). @default 1000 */
      workerSettleMs: Ms(1000, 0),
      /**
       * Run each app as its own system user (`p-<app>`, created on first use) when the runner runs as root, so
       * customer code never runs as root and apps cannot read each other's files. @default true
       */
      appUsers: Type.Boolean({ default: true }),
      /** Requests sent to a new instance before it is reported ready. @default 3 */
      warmupRequests: Type.Integer({ minimum: 0, maximum: 100, default: 3 }),
      /** uWSGI worker processes and threads per instance. @default 1, 4 */
      processes: Type.Integer({ minimum: 1, maximum: 64, default: 1 }),
      threads: Type.Integer({ minimum: 1, maximum: 64, default: 4 }),
      /**
       * `Cache-Control: public, max-age` of static files (Procfile `static:`) whose names hold no content hash; an app
       * sets its own with the config var PIER_STATIC_MAX_AGE (seconds). Hashed names (`base.4f3c2a1b9e8d.css`) get a
       * year and `immutable`. Whole seconds. @default 3600000
       */
      staticMaxAgeMs: Ms(3_600_000, 0),
      /**
       * Time a one-off gets between the hang-up (its client went away, its nexus was lost, its time limit passed,
       * `pier ps:stop`) and SIGKILL of everything it started. @default 2000
       */
      runGraceMs: Ms(2000, 0),
      /** Time to build a virtualenv (pip install) before the deploy fails. @default 300000 */
      buildTimeoutMs: Ms(300_000, 1000),
      /** Time the release phase (the Procfile's `release:` command) gets before it is killed and the deploy fails. @default 300000 */
      releaseTimeoutMs: Ms(300_000, 1000),
      /**
       * Put each instance in cgroups of its own (v1 memory, pids, cpu) holding `limits`, when the runner runs as
       * root and the hierarchies are mounted; otherwise only openFiles and requestTimeoutMs hold. @default true
       */
      cgroups: Type.Boolean({ default: true }),
      /** Each instance's limits unless an operator set the app's own (`pier limits:set`). */
      limits: Section({
        /** Memory of an instance's processes together, in MiB; beyond it the kernel kills one of them. @default 512 */
        memoryMb: Type.Integer({ minimum: 32, maximum: 1_048_576, default: 512 }),
        /** Processes and threads of an instance at once; fork() fails beyond it. @default 256 */
        processes: Type.Integer({ minimum: 8, maximum: 65_536, default: 256 }),
        /** Open files per process (uWSGI max-fd). @default 1024 */
        openFiles: Type.Integer({ minimum: 64, maximum: 1_048_576, default: 1024 }),
        /** CPU weight against the other instances (cgroup cpu.shares; 1024 is one share). @default 1024 */
        cpuShares: Type.Integer({ minimum: 2, maximum: 262_144, default: 1024 }),
        /** A request running longer has its worker killed and respawned (uWSGI harakiri; whole seconds). @default 60000 */
        requestTimeoutMs: Ms(60_000, 1000),
      }),
    }),
    balancer: Section({
      /** This balancer's node id. @default 'balancer-1' */
      id: Type.String({ pattern: '^[a-z0-9][a-z0-9.-]{0,62}$', default: 'balancer-1' }),
      /** Public HTTP listen host. @default '0.0.0.0' */
      host: Type.String({ minLength: 1, default: '0.0.0.0' }),
      /** Public HTTP port. @default 8080 */
      port: Type.Integer({ minimum: 0, maximum: 65535, default: 8080 }),
      /** Domain under which every app gets `<app>.<domain>`. @default 'localhost' */
      domain: Type.String({ minLength: 1, default: 'localhost' }),
      /** Time to open a connection to an instance before trying another one. @default 2000 */
      connectTimeoutMs: Ms(2000, 1),
      /** Time an instance gets to send its response headers before the client gets a 504 (checked about every 0.5 s). @default 60000 */
      responseTimeoutMs: Ms(60_000, 1),
      /** Longest silence between two chunks of a response body before the response is cut. @default 300000 */
      bodyTimeoutMs: Ms(300_000, 1),
      /** How long an idle keep-alive connection to an instance is kept (keep below uWSGI's socket timeout). @default 3000 */
      upstreamKeepAliveMs: Ms(3000, 1),
      /**
       * Most connections to one instance; further requests queue in the balancer. Below this, the balancer keeps
       * one fewer than the instance's reported capacity (processes x threads; balancer/upstreams.ts): a uWSGI
       * thread holds one kept-alive connection until it closes, so more connections than threads stall (measured
       * with 2 workers: 16 connections 14k req/s, 64 connections 4–12k with multi-second tails).
       * @default 16
       */
      maxConnectionsPerBackend: Type.Integer({ minimum: 1, maximum: 65_535, default: 16 }),
      /** An instance that refused a connection is skipped (while others remain) for this long. @default 2000 */
      backendCooldownMs: Ms(2000, 0),
      /** How long an idle client keep-alive connection is kept. @default 5000 */
      clientKeepAliveMs: Ms(5000, 1),
      /** Time in-flight requests get to finish at stop. @default 5000 */
      shutdownGraceMs: Ms(5000, 0),
      /** Access records waiting for the stats collectors; beyond this they are dropped (and counted). @default 10000 */
      accessQueueMax: Type.Integer({ minimum: 0, maximum: 1_000_000, default: 10_000 }),
      /**
       * Memory for hot static files (Procfile `static:` answers the vassals mark as such), served without a hop to
       * the instance; at most a quarter per app, bodies up to 1 MiB, each for min(max-age, 30 s). 0 turns it off.
       * @default 33554432 (32 MiB)
       */
      staticCacheBytes: Type.Integer({ minimum: 0, maximum: 4 * 1024 * 1024 * 1024, default: 32 * 1024 * 1024 }),
      /**
       * Proxies in front of the balancer (a TLS terminator, a cloud load balancer), as addresses or CIDR blocks:
       * their `X-Forwarded-Proto` is passed on to apps; anyone else's is replaced by `http`. @default [] (none)
       */
      trustedProxies: Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { maxItems: 256, default: [] }),
    }),
    services: Section({
      /**
       * PostgreSQL where `pier addons:create postgresql` makes each app's database and role: the URL of a role with
       * CREATEDB and CREATEROLE (a superuser also works). Empty means the platform's own server (the nexus's
       * DATABASE_URL, or the embedded one). @default ''
       */
      postgresUrl: Type.String({ maxLength: 2048, pattern: '^$|^postgres(ql)?://', default: '' }),
      /** Host apps reach that server at, in their DATABASE_URL (e.g. the machine's private address). @default '' (the URL's host) */
      postgresHost: Type.String({ maxLength: 253, pattern: '^$|^[A-Za-z0-9._:-]+$', default: '' }),
      /** Port apps reach that server at. @default 0 (the URL's port) */
      postgresPort: Type.Integer({ minimum: 0, maximum: 65535, default: 0 }),
      /** Most connections one app's role may hold at once (PostgreSQL CONNECTION LIMIT). @default 20 */
      postgresConnectionLimit: Type.Integer({ minimum: 1, maximum: 10_000, default: 20 }),
      /** Memory of each app's Redis (`pier addons:create redis`): its maxmemory (allkeys-lru), in MiB. @default 64 */
      redisMaxmemoryMb: Type.Integer({ minimum: 8, maximum: 65_536, default: 64 }),
    }),
    stats: Section({
      /** This collector's node id. @default 'stats-1' */
      id: Type.String({ pattern: '^[a-z0-9][a-z0-9.-]{0,62}$', default: 'stats-1' }),
      /** PULL intake for logs, access records and metrics. @default 'tcp://127.0.0.1:7500' */
      intakeBind: Endpoint('tcp://127.0.0.1:7500'),
      /** PUB of live log lines for `pier logs -f`. @default 'tcp://127.0.0.1:7501' */
      tailBind: Endpoint('tcp://127.0.0.1:7501'),
      /** ROUTER answering `logs.tail` and `stats.query`. @default 'tcp://127.0.0.1:7502' */
      queryBind: Endpoint('tcp://127.0.0.1:7502'),
      /** Folder of the per-app log chunks (`<dir>/logs/<app>/000001.log`). @default '' (dataDir/stats) */
      dir: Type.String({ default: '' }),
      /** Size at which an app's log chunk is closed and the next one started. @default 8388608 (8 MiB) */
      chunkBytes: Type.Integer({ minimum: 4096, maximum: 1024 * 1024 * 1024, default: 8 * 1024 * 1024 }),
      /** Chunks kept per app; older ones are deleted. @default 8 */
      retainChunks: Type.Integer({ minimum: 1, maximum: 10_000, default: 8 }),
      /** Write one `router[...]` log line per public request into the app's log, as Heroku does. @default true */
      routerLogs: Type.Boolean({ default: true }),
      /** How often request aggregates (the current minute included) are upserted into PostgreSQL. @default 5000 */
      flushIntervalMs: Ms(5000, 10),
      /** Request aggregates older than this are deleted. @default 1209600000 (14 days) */
      statsRetentionMs: Type.Integer({ minimum: 60_000, maximum: 3650 * 86_400_000, default: 14 * 86_400_000 }),
      /** App-minutes kept in memory while PostgreSQL is unreachable; beyond this the oldest are dropped (and counted). @default 50000 */
      maxPendingMinutes: Type.Integer({ minimum: 1, maximum: 10_000_000, default: 50_000 }),
      /** Time the last flush of logs and aggregates gets at stop. @default 2000 */
      shutdownGraceMs: Ms(2000, 0),
    }),
  },
  { additionalProperties: false },
);
export type PierConfig = Static<typeof PierConfig>;

/** Settings that were removed, with what to do instead; a config that still sets one gets this one-line error. */
export const REMOVED_SETTINGS: ReadonlyArray<{ path: string; fix: string }> = [
  {
    path: 'stats.uwsgiLogBind',
    fix: "the plain uWSGI log intake was removed (anyone local could write into any app's log): delete it; runners ship vassal logs over the CURVE intake",
  },
  {
    path: 'cluster.stats[].uwsgiLog',
    fix: "the plain uWSGI log intake was removed (anyone local could write into any app's log): delete it; runners ship vassal logs over the CURVE intake",
  },
];
