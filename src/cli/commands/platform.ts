/** pier up, down, status, login, and the single-daemon commands (pier nexus --config FILE). */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import type { PierConfig } from '../../config/index.js';
import { PierError } from '../../core/errors.js';
import { sleep } from '../../core/wait.js';
import type { App, Node } from '../../protocol/common.js';
import type { PlatformState } from '../../up/index.js';
// The supervisor pulls in PostgreSQL and ZeroMQ; load it only for the commands that need it (CLI start-up time).
const loadUp = () => import('../../up/index.js');
import { ApiClient } from '../client.js';
import { saveLogin } from '../credentials.js';
import { seg, type CliContext } from '../context.js';
import { ago, print, printJson, printTable } from '../output.js';
import { printOpenAlerts } from './health.js';
import { action, jsonOption } from './shared.js';

interface UpOptions {
  data?: string;
  runners: string;
  config?: string;
  detach?: boolean;
  supervise?: boolean;
}

async function upConfig(ctx: CliContext, opts: UpOptions): Promise<PierConfig> {
  const { loadConfig } = await import('../../config/index.js');
  const dataDir = ctx.dataDir(opts.data);
  const fileInData = join(dataDir, 'pier.toml');
  const file = opts.config ?? (existsSync(fileInData) ? fileInData : undefined);
  return loadConfig({ file, env: ctx.env, overrides: { dataDir } });
}

async function printSummary(ctx: CliContext, state: PlatformState): Promise<void> {
  const paths = (await loadUp()).platformPaths(state.dataDir);
  print(`Pier is up (supervisor pid ${state.pid})`);
  print(`  apps         ${state.balancerUrl.replace('//', '//<app>.')}  (the balancer)`);
  print(`  API          ${state.apiUrls.join('  ')}`);
  for (const n of state.nexus) {
    const child = state.children.find((c) => c.name === n.id);
    print(`  ${n.id.padEnd(12)} control ${n.control}  events ${n.events}  heartbeats ${n.heartbeats}  (pid ${child?.pid ?? '?'})`);
  }
  for (const s of state.stats ?? []) {
    const child = state.children.find((c) => c.name === s.id);
    print(`  ${s.id.padEnd(12)} intake ${s.intake}  live tail ${s.tail}  queries ${s.query}  (pid ${child?.pid ?? '?'})`);
  }
  print(`  PostgreSQL   ${state.postgres ? `embedded on 127.0.0.1:${state.postgres.port}, data in ${state.postgres.dir}` : 'external (DATABASE_URL)'}`);
  print(`  data folder  ${state.dataDir}`);
  print(`  logs         ${paths.logsDir}/`);
  print(`  admin token  ${paths.adminFile} (the pier CLI on this machine uses it)`);
  print(`  stop         pier down${state.dataDir === ctx.dataDir() ? '' : ` --data ${state.dataDir}`}`);
}

function runnerCount(opts: UpOptions): number {
  const n = Number(opts.runners);
  if (!Number.isInteger(n) || n < 0 || n > 16) throw new PierError('PIER_VALIDATION', `--runners must be a whole number from 0 to 16, not '${opts.runners}'`);
  return n;
}

/** Runs the supervisor in this process until SIGTERM/SIGINT. */
async function supervise(ctx: CliContext, opts: UpOptions, isQuiet: boolean): Promise<void> {
  const config = await upConfig(ctx, opts);
  const runners = runnerCount(opts);
  const { Platform, platformPaths, prepareDataDir } = await loadUp();
  const [{ pino }, { createLogger }, { runDaemon }] = await Promise.all([import('pino'), import('../../core/logger.js'), import('../../core/daemon.js')]);
  const paths = platformPaths(config.dataDir);
  prepareDataDir(config, runners);
  mkdirSync(paths.logsDir, { recursive: true });
  const log = createLogger({ level: config.log.level, name: 'up' }, pino.destination({ dest: join(paths.logsDir, 'up.log'), mkdir: true, sync: true, mode: 0o600 }));
  const platform = new Platform({ config, log, env: ctx.env, runners });
  await runDaemon(platform, log, {
    what: 'pier up',
    onReady: () => {
      if (isQuiet) return;
      void printSummary(ctx, platform.state()!).then(() => print('Press Ctrl-C to stop.'));
    },
  });
}

/** Starts the supervisor in the background and returns once it is ready (or reports why it is not). */
async function detach(ctx: CliContext, opts: UpOptions): Promise<void> {
  const config = await upConfig(ctx, opts);
  const runners = runnerCount(opts);
  const { platformPaths, prepareDataDir, readState } = await loadUp();
  const paths = platformPaths(config.dataDir);
  // Checked here, not only in the supervisor: a folder another user cannot reach fails in one line, before anything is made.
  prepareDataDir(config, runners);
  mkdirSync(paths.logsDir, { recursive: true });
  const entry = fileURLToPath(new URL(`../main.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url));
  const args = [...process.execArgv, entry, 'up', '--data', config.dataDir, '--runners', String(runners), '--supervise'];
  if (opts.config) args.push('--config', opts.config);
  const logFile = join(paths.logsDir, 'up.log');
  const logStart = existsSync(logFile) ? statSync(logFile).size : 0;
  const child = spawn(process.execPath, args, { detached: true, stdio: 'ignore', env: ctx.env });
  let exitCode: number | null = null;
  child.once('exit', (code) => (exitCode = code ?? 1));
  child.unref();
  const deadline = Date.now() + 60_000;
  for (;;) {
    const state = readState(paths);
    if (state && state.pid === child.pid) return printSummary(ctx, state);
    if (exitCode !== null) {
      const tail = existsSync(logFile) ? readFileSync(logFile, 'utf8').slice(logStart) : '';
      throw new PierError('PIER_ILLEGAL_STATE', `pier up failed: ${lastError(tail)}`);
    }
    if (Date.now() > deadline) throw new PierError('PIER_TIMEOUT', `pier up did not become ready in 60 s; see ${logFile}`);
    await sleep(100);
  }
}

/** The most useful line of a failed supervisor's log: its fatal error message. */
function lastError(logText: string): string {
  const lines = logText.trim().split('\n').reverse();
  for (const line of lines) {
    try {
      const entry = JSON.parse(line) as { level?: number; err?: { message?: string }; msg?: string };
      if ((entry.level ?? 0) >= 50) return entry.err?.message ?? entry.msg ?? line;
    } catch {
      // not a JSON log line; keep looking
    }
  }
  return lines[0] ?? 'no log output';
}

export function registerPlatformCommands(program: Command, ctx: CliContext): void {
  program
    .command('up')
    .description('run the whole platform on this machine (PostgreSQL, nexus replicas); prints where to look')
    .option('--data <dir>', 'data folder (default: $PIER_DATA, /var/lib/pier as root)')
    .option('--config <file>', 'config file (default: DATA/pier.toml when present)')
    .option('--runners <n>', 'runners to start on this machine', '1')
    .option('--detach', 'run in the background; stop with pier down')
    .option('--supervise', 'run as the background supervisor (used by --detach)')
    .action(
      action(ctx, async (opts: UpOptions) => {
        if (opts.detach) return detach(ctx, opts);
        return supervise(ctx, opts, opts.supervise === true);
      }),
    );

  program
    .command('down')
    .description('stop a detached pier up')
    .option('--data <dir>', 'data folder (default: $PIER_DATA, /var/lib/pier as root)')
    .action(
      action(ctx, async (opts: { data?: string }) => {
        const { platformPaths, isAlive, terminate, cleanupStale } = await loadUp();
        const { createLogger } = await import('../../core/logger.js');
        const paths = platformPaths(ctx.dataDir(opts.data));
        const pid = existsSync(paths.pidFile) ? Number(readFileSync(paths.pidFile, 'utf8').trim()) : 0;
        if (isAlive(pid)) {
          const wasKilled = await terminate(pid, 'SIGTERM', 30_000);
          if (wasKilled) print(`pier up (pid ${pid}) did not stop in 30 s and was killed`);
        }
        await cleanupStale(paths, createLogger({ level: 'silent' }));
        print(isAlive(pid) || pid === 0 ? `pier is not running from ${paths.dataDir}` : `stopped pier (data: ${paths.dataDir})`);
      }),
    );

  jsonOption(program.command('status').description('nodes, leader and apps at a glance')).action(
    action(ctx, async (opts: { json?: boolean }) => {
      const status = await ctx.api().get<{ nexusId: string; version: number; owner: string; isAdmin: boolean; nodes: Node[]; apps: App[] }>('/v1/status');
      if (opts.json) return printJson(status);
      print(`answered by ${status.nexusId} · event version ${status.version} · signed in as ${status.owner}${status.isAdmin ? ' (operator)' : ''}`);
      if (status.nodes.length > 0) {
        print();
        printTable(NODE_COLUMNS, status.nodes.map(nodeRow));
      }
      print();
      print(status.apps.length === 0 ? 'apps: none' : `apps: ${status.apps.length} (${status.apps.map((a) => a.name).join(', ')})`);
      await printOpenAlerts(ctx);
    }),
  );

  jsonOption(program.command('nodes').description('every node of the cluster and its liveness (operators)')).action(
    action(ctx, async (opts: { json?: boolean }) => {
      const { nodes } = await ctx.api().get<{ nodes: Node[] }>('/v1/nodes');
      if (opts.json) return printJson(nodes);
      printTable(NODE_COLUMNS, nodes.map(nodeRow));
    }),
  );

  jsonOption(
    program.command('nodes:drain').description('drain a runner: nothing new goes there, what runs there moves to other runners (operators)')
      .argument('<node>', "the runner's id, as 'pier nodes' shows it")
      .option('--undo', 'stop draining it: it takes new instances again'),
  ).action(
    action(ctx, async (node: string, opts: { undo?: boolean; json?: boolean }) => {
      const path = `/v1/nodes/${seg(node)}/drain`;
      const { node: shown } = opts.undo ? await ctx.api().delete<{ node?: Node }>(path) : await ctx.api().post<{ node?: Node }>(path, {});
      if (opts.json) return printJson(shown ?? null);
      print(opts.undo
        ? `${node} is no longer draining: new instances may go there again`
        : `draining ${node}: nothing new goes there; its instances start on other runners and then stop there (watch with 'pier ps'; undo: pier nodes:drain ${node} --undo)`);
    }),
  );

  program
    .command('login')
    .description('store the API URL(s) and token this CLI uses')
    .argument('<url...>', 'API URL of each nexus, e.g. http://10.0.0.1:7480')
    .requiredOption('--token <token>', 'your API token')
    .action(
      action(ctx, async (urls: string[], opts: { token: string }) => {
        for (const url of urls) if (!/^https?:\/\/[^/\s]+/.test(url)) throw new PierError('PIER_VALIDATION', `'${url}' is not an http:// or https:// URL`);
        const client = new ApiClient({ apiUrls: urls, token: opts.token });
        try {
          const status = await client.get<{ owner: string }>('/v1/status');
          const file = saveLogin(ctx.env, { apiUrls: urls, token: opts.token });
          print(`logged in to ${urls.join(', ')} as ${status.owner}; saved in ${file}`);
        } finally {
          await client.close();
        }
      }),
    );

  const daemons = {
    nexus: { what: 'run one nexus replica (control plane, API)', load: () => import('../../nexus/main.js') },
    runner: { what: 'run one runner (app instances under a uWSGI emperor)', load: () => import('../../runner/main.js') },
    balancer: { what: 'run one balancer (public HTTP, routes by Host)', load: () => import('../../balancer/main.js') },
  } as const;
  // `pier stats --config FILE` (the collector daemon) shares its name with `pier stats -a APP`: see commands/logs.ts.
  for (const [kind, daemon] of Object.entries(daemons)) {
    program
      .command(kind)
      .description(daemon.what)
      .requiredOption('--config <file>', 'config file (TOML); see config/*.example.toml')
      .action(
        action(ctx, async (opts: { config: string }) => {
          const { main } = await daemon.load();
          await main(opts.config, ctx.env);
        }),
      );
  }
}

/** Columns of `pier nodes` and `pier status`: liveness, then what each node's newest heartbeat reported. */
const NODE_COLUMNS = ['node', 'kind', 'status', 'leader', 'address', 'heartbeat', 'load', 'instances', 'repairs'];

function nodeRow(n: Node): string[] {
  return [
    n.id, n.kind, n.drainingSince === undefined ? n.status : `${n.status}, draining`, n.isLeader ? 'leader' : '', n.address, ago(n.lastHeartbeatAt),
    n.load === undefined ? '' : n.load.toFixed(2), n.instances === undefined ? '' : String(n.instances), n.repairs === undefined ? '' : String(n.repairs),
  ];
}
