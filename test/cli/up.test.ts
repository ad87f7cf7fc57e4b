/**
 * The operator's and app owner's first steps through the real binary: pier up (detached) brings up PostgreSQL and
 * two nexus replicas, pier status shows them, an owner manages apps through the API, pier down leaves nothing.
 */
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAlive } from '../../src/up/index.js';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CLI, runCli, type CliResult } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';
import { reservedPorts } from '../helpers/daemons.js';
import { searchableTempDir } from '../helpers/data-dir.js';

let dataDir: string;
let env: NodeJS.ProcessEnv;
let ports: number[];
let up: CliResult;

function listening(port: number): boolean {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const tables = ['/proc/net/tcp', '/proc/net/tcp6'].map((f) => (existsSync(f) ? readFileSync(f, 'utf8') : ''));
  // state 0A is LISTEN
  return tables.some((t) => t.split('\n').some((line) => line.includes(`:${hex} `) && line.split(/\s+/)[4] === '0A'));
}

beforeAll(async () => {
  dataDir = searchableTempDir('pier-up-');
  // Below the ephemeral range: a port found free there can be any outgoing connection's before pier up binds it.
  ports = await reservedPorts(14);
  const [pg, c1, e1, h1, a1, c2, e2, h2, a2, web, si, st, sq] = ports;
  const instancePorts = 30000 + (process.pid % 100) * 50;
  writeFileSync(
    join(dataDir, 'pier.toml'),
    `[log]\nlevel = "info"\n[db]\nembeddedPort = ${pg}\n[balancer]\nport = ${web}\n[runner]\nportMin = ${instancePorts}\nportMax = ${instancePorts + 49}\n` +
      `[[cluster.stats]]\nintake = "tcp://127.0.0.1:${si}"\ntail = "tcp://127.0.0.1:${st}"\nquery = "tcp://127.0.0.1:${sq}"\n` +
      `[[cluster.nexus]]\ncontrol = "tcp://127.0.0.1:${c1}"\nevents = "tcp://127.0.0.1:${e1}"\nheartbeats = "tcp://127.0.0.1:${h1}"\napi = "http://127.0.0.1:${a1}"\n` +
      `[[cluster.nexus]]\ncontrol = "tcp://127.0.0.1:${c2}"\nevents = "tcp://127.0.0.1:${e2}"\nheartbeats = "tcp://127.0.0.1:${h2}"\napi = "http://127.0.0.1:${a2}"\n`,
  );
  env = { PIER_DATA: dataDir, XDG_CONFIG_HOME: join(dataDir, 'xdg') };
  up = await runCli(['up', '--detach'], env);
}, 90_000);

afterAll(async () => {
  await runCli(['down'], env);
  rmSync(dataDir, { recursive: true, force: true });
}, 60_000);

describe('pier up', () => {
  it('prints where everything is when started detached', () => {
    expect(up.stderr).toBe('');
    expect(up.code).toBe(0);
    expect(up.stdout).toContain(`http://127.0.0.1:${ports[4]}`);
    expect(up.stdout).toContain(dataDir);
    expect(up.stdout).toMatch(/stop\s+pier down/);
    expect(up.stdout).toContain(`http://<app>.localhost:${ports[9]}/`);
  });

  it('shows both nexus replicas and one leader in pier status', async () => {
    const status = await runCli(['status', '--json'], env);
    expect(status.code).toBe(0);
    const parsed = JSON.parse(status.stdout) as { nodes: Array<{ id: string; kind: string; status: string; isLeader: boolean }> };
    const nexus = parsed.nodes.filter((n) => n.kind === 'nexus');
    expect(nexus.map((n) => n.id).sort()).toEqual(['nexus-1', 'nexus-2']);
    expect(nexus.every((n) => n.status === 'alive')).toBe(true);
    expect(nexus.filter((n) => n.isLeader)).toHaveLength(1);
    expect(parsed.nodes.filter((n) => n.kind === 'balancer' && n.status === 'alive').map((n) => n.id)).toEqual(['balancer-1']);
    expect(parsed.nodes.filter((n) => n.kind === 'stats' && n.status === 'alive').map((n) => n.id)).toEqual(['stats-1']);
  });

  it('points each daemon at its own keys folder: only nexus replicas hold server.key, only the collector stats.key', () => {
    const keysDirOf = (name: string) => /^keysDir = "(.*)"$/m.exec(readFileSync(join(dataDir, 'config', `${name}.toml`), 'utf8'))?.[1];
    const secretsIn = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.key') && f !== 'node.key').sort();
    for (const name of ['nexus-1', 'nexus-2']) expect(secretsIn(keysDirOf(name)!)).toEqual(['server.key']);
    expect(secretsIn(keysDirOf('stats-1')!)).toEqual(['stats.key']);
    for (const name of ['runner-1', 'balancer-1']) {
      const dir = keysDirOf(name)!;
      expect(dir).toBe(join(dataDir, 'keys', name));
      expect(readdirSync(dir).sort()).toEqual(['node.key', 'server.pub', 'stats.pub']);
    }
    // Every daemon has a key of its own.
    const nodeKeys = ['nexus-1', 'nexus-2', 'stats-1', 'runner-1', 'balancer-1'].map((n) => readFileSync(join(keysDirOf(n)!, 'node.key'), 'utf8'));
    expect(new Set(nodeKeys).size).toBe(5);
  });

  it('serves public HTTP on the balancer: an unknown host gets a clear 404', async () => {
    const { request } = await import('undici');
    const res = await request(`http://127.0.0.1:${ports[9]}/`, { headers: { host: 'nobody.example.test', accept: 'text/plain' } });
    expect(res.statusCode).toBe(404);
    expect(await res.body.text()).toContain('nobody.example.test');
  });

  it('refuses a second pier up on the same data folder with a one-line error', async () => {
    const second = await runCli(['up', '--detach'], env);
    expect(second.code).not.toBe(0);
    expect(second.stderr.trim().split('\n')).toHaveLength(1);
    expect(second.stderr).toMatch(/already running/);
  });

  it('lets an owner manage apps, hostnames and config, and hides them from another owner', async () => {
    const created = await runCli(['owners:create', 'alice'], env);
    expect(created.code).toBe(0);
    const token = created.stdout.trim().split('\n').pop()!;
    expect(token).toMatch(/^pier_/);
    const alice = { ...env, PIER_TOKEN: token };
    expect((await runCli(['apps:create', 'hello'], alice)).code).toBe(0);
    expect((await runCli(['hosts:add', 'www.example.test', '-a', 'hello'], alice)).code).toBe(0);
    expect((await runCli(['config:set', 'GREETING=hi there', 'URL=a=b', '-a', 'hello'], alice)).code).toBe(0);
    const config = await runCli(['config', '--json'], { ...alice, PIER_APP: 'hello' });
    expect(JSON.parse(config.stdout)).toEqual({ GREETING: 'hi there', URL: 'a=b' });
    const hosts = await runCli(['hosts', '-a', 'hello', '--json'], alice);
    expect(JSON.parse(hosts.stdout)).toEqual(['www.example.test']);

    const bobToken = (await runCli(['owners:create', 'bob'], env)).stdout.trim().split('\n').pop()!;
    const bob = { ...env, PIER_TOKEN: bobToken };
    for (const args of [['apps:info', '-a', 'hello'], ['config:set', 'A=1', '-a', 'hello'], ['hosts:add', 'x.example.test', '-a', 'hello']]) {
      const denied = await runCli(args, bob);
      expect(denied.code).toBe(66);
      expect(denied.stderr.trim()).toBe("error: app 'hello' not found; run 'pier apps' to list your apps (PIER_NOT_FOUND)");
    }
    expect(JSON.parse((await runCli(['apps', '--json'], bob)).stdout)).toEqual([]);
    const info = JSON.parse((await runCli(['apps:info', '-a', 'hello', '--json'], alice)).stdout) as { hostnames: string[] };
    expect(info.hostnames).toEqual(['www.example.test']);
  });

  it('deploys examples/hello with the CLI; pier logs shows the router and app lines, -f streams, pier stats counts', async () => {
    const { request } = await import('undici');
    const created = await runCli(['apps:create', 'greeter'], env);
    expect(created.code).toBe(0);
    // The URL comes from the nexus (its balancer's domain and port), not a default the CLI guesses.
    expect(created.stdout).toContain(`once deployed it answers at http://greeter.localhost:${ports[9]}/`);
    const info = await runCli(['apps:info', '-a', 'greeter'], env);
    expect(info.stdout).toMatch(new RegExp(`url:\\s+http://greeter\\.localhost:${ports[9]}/`));
    const deployed = await runCli(['deploy', fileURLToPath(new URL('../../examples/hello', import.meta.url)), '-a', 'greeter'], env);
    expect(deployed.stderr).toBe('');
    expect(deployed.stdout).toMatch(new RegExp(`v1 is live in [\\d.]+ s: http://greeter\\.localhost:${ports[9]}/`));
    const get = async (path: string): Promise<number> => {
      const res = await request(`http://127.0.0.1:${ports[9]}${path}`, { headers: { host: 'greeter.localhost' } });
      expect(await res.body.text()).toBe('Hello from Pier!\n');
      return res.statusCode;
    };
    for (let i = 0; i < 5; i++) expect(await get(`/cli-${i}`)).toBe(200);

    const logs = await waitFor(async () => {
      const result = await runCli(['logs', '-a', 'greeter', '-n', '200'], env);
      return result.stdout.includes('path="/cli-4"') && result.stdout.includes('hello: GET /cli-4') ? result : undefined;
    }, { name: 'router and app lines in pier logs', timeoutMs: 10_000, intervalMs: 200 });
    expect(logs.code).toBe(0);
    expect(logs.stdout).toMatch(/^\S+Z router\[balancer-1\]: method=GET path="\/cli-4" host=greeter.localhost status=200 bytes=17 /m);
    expect(logs.stdout).toMatch(/^\S+Z app\[greeter-v1-\w+\]: hello: GET \/cli-4$/m);
    expect((await runCli(['logs', '-a', 'greeter', '-n', '2'], env)).stdout.trim().split('\n')).toHaveLength(2);

    const follow = spawn(process.execPath, [CLI, 'logs', '-a', 'greeter', '-n', '0', '-f'], { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env } });
    let streamed = '';
    follow.stdout.on('data', (chunk: Buffer) => (streamed += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => follow.once('exit', (code) => resolve(code)));
    try {
      await new Promise((resolve) => setTimeout(resolve, 1500)); // the CLI starts and subscribes
      const sentAt = Date.now();
      expect(await get('/followed')).toBe(200);
      await waitFor(() => streamed.includes('hello: GET /followed'), { name: 'line streamed by pier logs -f', timeoutMs: 5000, intervalMs: 20 });
      expect(Date.now() - sentAt).toBeLessThan(1000);
    } finally {
      follow.kill('SIGINT');
    }
    expect(await exited).toBe(0);

    const stats = await waitFor(async () => {
      const result = await runCli(['stats', '-a', 'greeter', '--json'], env);
      const rows = JSON.parse(result.stdout || '[]') as Array<{ requests: number; s2xx: number; p50Ms: number | null; p95Ms: number | null }>;
      return rows.reduce((n, r) => n + r.requests, 0) >= 6 ? rows : undefined;
    }, { name: 'requests counted in pier stats', timeoutMs: 15_000, intervalMs: 250 });
    expect(stats.reduce((n, r) => n + r.s2xx, 0)).toBeGreaterThanOrEqual(6);
    expect(stats.every((r) => r.p50Ms !== null && r.p95Ms !== null && r.p95Ms >= r.p50Ms)).toBe(true);
    const table = await runCli(['stats', '-a', 'greeter'], env);
    expect(table.stdout).toMatch(/^MINUTE\s+REQUESTS\s+2XX\s+3XX\s+4XX\s+5XX\s+BYTES\s+P50\s+P95\s+P99$/m);
  }, 90_000);

  it('rejects bad input with one line on stderr and a non-zero exit', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['apps:create', 'Bad_Name'], /app name 'Bad_Name' must be lowercase/],
      [['apps:create', 'a'.repeat(31)], /at most 30 characters/],
      [['config:set', 'NOEQUALS', '-a', 'hello'], /'NOEQUALS' is not KEY=VALUE/],
      [['apps', '--frobnicate'], /unknown option '--frobnicate'/],
      [['apps:destroy', 'hello', '--confirm', 'other'], /repeat with --confirm hello/],
      [['hosts:add', 'not a host', '-a', 'hello'], /must be a lowercase hostname/],
      [['apps:info'], /no app given/],
      [['logs', '-a', 'hello', '-n', 'many'], /-n 'many' is not a line count/],
      [['stats', '-a', 'hello', '--since', 'forever'], /--since 'forever' is not a window/],
      [['stats', '--config', '/nonexistent/stats.toml'], /cannot read config file/],
    ];
    for (const [args, message] of cases) {
      const result = await runCli(args, env);
      expect(result.code, args.join(' ')).not.toBe(0);
      expect(result.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(result.stderr).toMatch(message);
      expect(result.stderr).not.toMatch(/\bat .*\.js:\d+/);
    }
  });

  it('leaves no process and no listening port after pier down', async () => {
    const state = JSON.parse(readFileSync(join(dataDir, 'up.json'), 'utf8')) as { pid: number; children: Array<{ pid: number }>; postgres: { pid: number } };
    const pids = [state.pid, ...state.children.map((c) => c.pid), state.postgres.pid];
    expect(pids.every(isAlive)).toBe(true);
    const down = await runCli(['down'], env);
    expect(down.code).toBe(0);
    expect(down.stdout).toMatch(/stopped pier/);
    expect(pids.filter(isAlive)).toEqual([]);
    expect(ports.filter(listening)).toEqual([]);
  });
});
