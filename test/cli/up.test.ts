/**
 * The operator's and app owner's first steps through the real binary: pier up (detached) brings up PostgreSQL and
 * two nexus replicas, pier status shows them, an owner manages apps through the API, pier down leaves nothing.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAlive } from '../../src/up/index.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { freePort } from '../helpers/ports.js';

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
  dataDir = mkdtempSync(join(tmpdir(), 'pier-up-'));
  ports = await Promise.all(Array.from({ length: 10 }, () => freePort()));
  const [pg, c1, e1, h1, a1, c2, e2, h2, a2, web] = ports;
  writeFileSync(
    join(dataDir, 'pier.toml'),
    `[log]\nlevel = "info"\n[db]\nembeddedPort = ${pg}\n[balancer]\nport = ${web}\n` +
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

  it('rejects bad input with one line on stderr and a non-zero exit', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['apps:create', 'Bad_Name'], /app name 'Bad_Name' must be lowercase/],
      [['apps:create', 'a'.repeat(31)], /at most 30 characters/],
      [['config:set', 'NOEQUALS', '-a', 'hello'], /'NOEQUALS' is not KEY=VALUE/],
      [['apps', '--frobnicate'], /unknown option '--frobnicate'/],
      [['apps:destroy', 'hello', '--confirm', 'other'], /repeat with --confirm hello/],
      [['hosts:add', 'not a host', '-a', 'hello'], /must be a lowercase hostname/],
      [['apps:info'], /no app given/],
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
