/**
 * The embedded PostgreSQL under `pier up` dies (kill -9 of its postmaster) while the public sends requests: the
 * public never notices (the balancer routes from memory), the API and the CLI say "database unavailable" in one
 * line while it is down, `pier up` restarts it on the same folder, port and password within seconds, and the
 * control plane works again without `pier down` / `pier up`. `pier down` afterwards leaves no postgres behind.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Instance } from '../../src/protocol/index.js';
import { isAlive } from '../../src/up/index.js';
import { runCli } from '../helpers/cli.js';
import { searchableTempDir } from '../helpers/data-dir.js';
import { SteadyLoad } from '../helpers/load.js';
import { writeUpConfig } from '../helpers/up-config.js';
import { sleep, waitFor } from '../helpers/wait.js';

const APP = 'sv-steady';
let dataDir: string;
let env: NodeJS.ProcessEnv;
let apiUrl: string;
let webPort: number;
let token: string;
let isDown = false;

type UpState = { postgres: { pid: number; dir: string } | null };

function postgresPid(): number {
  const state = JSON.parse(readFileSync(join(dataDir, 'up.json'), 'utf8')) as UpState;
  return state.postgres!.pid;
}

/** Processes working in the cluster's folder: the postmaster and its backends. */
function postgresProcesses(): number[] {
  const dir = join(dataDir, 'postgres');
  return readdirSync('/proc').filter((e) => /^\d+$/.test(e)).filter((e) => {
    try {
      return readlinkSync(`/proc/${e}/cwd`) === dir;
    } catch {
      return false;
    }
  }).map(Number);
}

/** One API call straight to the nexus: its status and error code (undefined when it answered 2xx). */
async function apiCall(path: string): Promise<{ status: number; code?: string }> {
  const res = await fetch(`${apiUrl}${path}`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(2000) });
  const body = (await res.json()) as { error?: { code: string } };
  return { status: res.status, ...(body.error ? { code: body.error.code } : {}) };
}

/** Kills the postmaster with -9; resolves once up.json names a new, live one, with the time it took. */
async function killPostgres(): Promise<{ oldPid: number; newPid: number; backMs: number; seen503: string[] }> {
  const oldPid = postgresPid();
  process.kill(oldPid, 'SIGKILL');
  const killedAt = Date.now();
  const seen503 = new Set<string>();
  const newPid = await waitFor(async () => {
    const pid = postgresPid();
    if (pid !== oldPid && isAlive(pid)) return pid;
    const answer = await apiCall('/v1/apps').catch(() => undefined);
    if (answer?.status === 503) seen503.add(answer.code ?? 'no code');
    return undefined;
  }, { name: 'a new postmaster in up.json', timeoutMs: 15_000, intervalMs: 25 });
  return { oldPid, newPid, backMs: Date.now() - killedAt, seen503: [...seen503] };
}

beforeAll(async () => {
  dataDir = searchableTempDir('pier-sv-');
  ({ webPort, apiUrl, env } = await writeUpConfig(dataDir, { portBase: 33000, portCount: 20 }));
  const up = await runCli(['up', '--detach'], env, 90_000);
  expect(up.stderr).toBe('');
  token = (JSON.parse(readFileSync(join(dataDir, 'admin.json'), 'utf8')) as { token: string }).token;
  expect((await runCli(['apps:create', APP], env)).code).toBe(0);
  const deployed = await runCli(['deploy', fileURLToPath(new URL('../../examples/hello', import.meta.url)), '-a', APP], env);
  expect(deployed.stderr).toBe('');
  await waitFor(async () => {
    const res = await fetch(`${apiUrl}/v1/apps/${APP}/instances`, { headers: { authorization: `Bearer ${token}` } });
    const { instances } = (await res.json()) as { instances: Instance[] };
    return instances.some((i) => i.state === 'ready' && i.isLive);
  }, { name: 'a ready instance', timeoutMs: 30_000, intervalMs: 200 });
}, 150_000);

afterAll(async () => {
  if (!isDown && env) {
    await runCli(['apps:destroy', APP, '--confirm', APP], env);
    await runCli(['down'], env);
  }
  if (spawnSync('id', [`p-${APP}`], { stdio: 'ignore' }).status === 0) execFileSync('userdel', [`p-${APP}`], { stdio: 'ignore' });
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
}, 90_000);

describe('kill -9 of the embedded PostgreSQL under pier up', () => {
  it('the public never fails; the API answers 503 PIER_DB_UNAVAILABLE; pier up restarts it; the CLI works again by itself', async () => {
    const traffic = new SteadyLoad(`http://127.0.0.1:${webPort}/`, `${APP}.localhost`, 4, 5);
    traffic.start();
    await sleep(500);

    // First death: back within seconds; meanwhile the API says the database is away, in its error shape.
    const first = await killPostgres();
    const firstCliStarted = Date.now();
    await waitFor(async () => (await runCli(['apps', '--json'], env)).code === 0, { name: 'pier apps works again', timeoutMs: 15_000, intervalMs: 50 });
    const firstCliMs = Date.now() - firstCliStarted + first.backMs;

    // Second death soon after the restart: the back-off doubles only if it served less than 3× its last delay (core/backoff.ts).
    const secondPid = postgresPid();
    process.kill(secondPid, 'SIGKILL');
    const killedAt = Date.now();
    await waitFor(async () => (await apiCall('/v1/apps').catch(() => undefined))?.status === 503, { name: 'the API answers 503', timeoutMs: 2000, intervalMs: 10 });
    const during = await runCli(['apps'], env, 20_000);
    const duringMs = Date.now() - killedAt;
    const newPid = await waitFor(() => {
      const pid = postgresPid();
      return pid !== secondPid && isAlive(pid) ? pid : undefined;
    }, { name: 'a third postmaster', timeoutMs: 15_000, intervalMs: 25 });
    const secondBackMs = Date.now() - killedAt;
    await waitFor(async () => (await runCli(['apps', '--json'], env)).code === 0, { name: 'pier apps works again', timeoutMs: 15_000, intervalMs: 50 });
    const secondCliMs = Date.now() - killedAt;
    const apps = await runCli(['apps', '--json'], env);
    await sleep(500);
    const result = await traffic.stop();

    console.log(
      `[postgres-kill] first kill: postgres back (new pid) after ${first.backMs} ms, first good CLI call after ${firstCliMs} ms, ` +
        `API said ${first.seen503.join(', ')}; second kill: CLI said "${during.stderr.trim()}" at +${duringMs} ms, ` +
        `postgres back after ${secondBackMs} ms, first good CLI call after ${secondCliMs} ms; public ${result.ok} ok / ${result.failed} failed at ${result.rate} req/s`,
    );
    expect(first.newPid).not.toBe(first.oldPid);
    expect(isAlive(first.oldPid)).toBe(false);
    expect(first.seen503).toEqual(['PIER_DB_UNAVAILABLE']);
    expect(first.backMs).toBeLessThan(5000);
    expect(firstCliMs).toBeLessThan(8000);
    expect(during.code).toBe(69);
    expect(during.stdout).toBe('');
    expect(during.stderr).toBe('error: the database is unavailable; Pier retries by itself, try again in a moment (PIER_DB_UNAVAILABLE)\n');
    expect(newPid).not.toBe(secondPid);
    expect(secondBackMs).toBeLessThan(8000);
    expect(apps.code).toBe(0);
    expect(JSON.parse(apps.stdout)).toEqual(expect.arrayContaining([expect.objectContaining({ name: APP })]));
    expect(result.failures).toEqual([]);
    expect(result.ok).toBeGreaterThan(200);
  }, 90_000);

  it('pier down afterwards leaves no postgres process behind', async () => {
    const pid = postgresPid();
    expect(postgresProcesses()).toContain(pid);
    expect((await runCli(['apps:destroy', APP, '--confirm', APP], env)).code).toBe(0);
    const down = await runCli(['down'], env, 60_000);
    isDown = true;
    expect(down.code, down.stderr).toBe(0);
    expect(isAlive(pid)).toBe(false);
    expect(postgresProcesses()).toEqual([]);
  }, 90_000);
});
