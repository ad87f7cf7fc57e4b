/**
 * `pier explain` end to end on a real platform (nexus, collector, balancer, a runner in-process and a second runner
 * as its own process): a deploy, a failed deploy, a scale change, a 5xx burst through the balancer and the second
 * runner killed with -9 (with its emperor: the machine dies) all show in the app's timeline, oldest first; another
 * owner gets 404; `--since` and `?since` refuse bad windows in one line; `--json` has the documented shape.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import { isProcessAlive, killGroup } from '../../src/core/process.js';
import type { ExplainEntry, ExplainResponse } from '../../src/protocol/index.js';
import { CLI, runCli } from '../helpers/cli.js';
import { platformForFile } from '../helpers/platform.js';
import { waitFor } from '../helpers/wait.js';

const APP = `dash${randomId().slice(0, 6)}-tl`;
const p = platformForFile({ prefix: 'dash', apps: [APP] });
const LONE = `runner-dash-${randomId().slice(0, 6)}`;
let lone: ChildProcess | undefined;
let loneDir: string;
let emperorPid: number | undefined;

const GOOD = `def application(environ, start_response):
    if environ.get("PATH_INFO") == "/boom":
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
        return [b"boom"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
`;
const BROKEN = 'raise ImportError("v2 cannot import its settings")\n';

/** A runner daemon started from its own config file (as on another machine), heartbeating like the platform's. */
function startLoneRunner(): ChildProcess {
  loneDir = join(p.dir, 'lone');
  mkdirSync(loneDir, { recursive: true });
  // Below the ephemeral range (32768+), where the servers other test files bind on free ports would collide.
  const base = 12000 + (process.pid % 50) * 40;
  const file = join(loneDir, 'runner.toml');
  writeFileSync(file, [
    `dataDir = "${loneDir}"`,
    '[log]', 'level = "warn"',
    '[security]', 'curve = false',
    '[cluster]', 'heartbeatIntervalMs = 100', 'heartbeatMisses = 15', 'stats = []',
    '[[cluster.nexus]]', `control = "${p.nexus.control}"`, `events = "${p.nexus.events}"`, `heartbeats = "${p.nexus.heartbeats}"`, `api = "${p.nexus.api}"`,
    '[runner]', `id = "${LONE}"`, `dir = "${join(loneDir, 'runner')}"`, `portMin = ${base}`, `portMax = ${base + 39}`,
    'startTimeoutMs = 15000', 'drainMs = 0', 'cgroups = false',
  ].join('\n') + '\n');
  const out = openSync(join(loneDir, 'runner.log'), 'a');
  return spawn(process.execPath, [CLI, 'runner', '--config', file], { env: { PATH: process.env.PATH, HOME: process.env.HOME }, stdio: ['ignore', out, out] });
}

async function killLoneRunner(): Promise<void> {
  const child = lone;
  lone = undefined;
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await exited;
  }
  // The emperor runs in its own session and leads its vassals' process group.
  if (emperorPid !== undefined) {
    killGroup(emperorPid);
    const pid = emperorPid;
    await waitFor(() => !isProcessAlive(pid), { name: 'lone emperor gone', timeoutMs: 10_000, intervalMs: 50 });
    emperorPid = undefined;
  }
}

async function explain(since = '1h'): Promise<ExplainResponse> {
  const res = await p.api<ExplainResponse>('GET', `/v1/apps/${APP}/explain?since=${since}`);
  expect(res.status).toBe(200);
  return res.json;
}

const find = (entries: ExplainEntry[], type: string, pred: (e: ExplainEntry) => boolean = () => true): number =>
  entries.findIndex((e) => e.type === type && pred(e));

function cliEnv(): NodeJS.ProcessEnv {
  return { PIER_API_URL: p.nexus.api, PIER_TOKEN: p.tokens.owner, XDG_CONFIG_HOME: join(p.dir, 'xdg'), PIER_DATA: join(p.dir, 'no-data') };
}

beforeAll(async () => {
  lone = startLoneRunner();
  await waitFor(async () => (await p.admin<{ nodes: Array<{ id: string; status: string }> }>('GET', '/v1/status')).json.nodes.some((n) => n.id === LONE && n.status === 'alive'), {
    name: 'lone runner alive', timeoutMs: 20_000, intervalMs: 100,
  });
  emperorPid = (JSON.parse(readFileSync(join(loneDir, 'runner', 'emperor', 'emperor.json'), 'utf8')) as { pid: number }).pid;

  // v1 deploys, v2 fails to import, then web=2 puts one instance on each runner.
  expect(await p.deploy(APP, p.writeApp('v1', { 'wsgi.py': GOOD }))).toMatchObject({ version: 1, status: 'live' });
  expect(await p.deploy(APP, p.writeApp('v2', { 'wsgi.py': BROKEN }))).toMatchObject({ version: 2, status: 'failed' });
  expect((await p.api('PATCH', `/v1/apps/${APP}/formation`, { web: 2 })).status).toBe(200);
  await waitFor(async () => {
    const ready = await p.readyInstances(APP);
    return ready.length === 2 && new Set(ready.map((i) => i.runnerId)).size === 2;
  }, { name: 'v1 on both runners', timeoutMs: 30_000, intervalMs: 100 }).catch(async (err: unknown) => {
    // Say where the instances are, so a failure here can be read without rerunning it.
    const { instances } = (await p.api<{ instances: unknown[] }>('GET', `/v1/apps/${APP}/instances`)).json;
    const nodes = (await p.admin<{ nodes: unknown[] }>('GET', '/v1/status')).json.nodes;
    throw new Error(`${(err as Error).message}; instances ${JSON.stringify(instances)}; nodes ${JSON.stringify(nodes)}`);
  });

  // A burst of 5xx through the balancer (12 of 12 requests in the minute).
  for (let i = 0; i < 12; i++) {
    const res = await request(`http://127.0.0.1:${p.balancer.port}/boom`, { headers: { host: `${APP}.localhost` } });
    expect(res.statusCode).toBe(500);
    await res.body.dump();
  }

  // The second machine dies.
  await killLoneRunner();
  await waitFor(async () => ((await explain()).entries.some((e) => e.type === 'node.down') ? true : undefined), {
    name: 'node.down in the timeline', timeoutMs: 15_000, intervalMs: 200,
  });
}, 120_000);

afterAll(async () => {
  await killLoneRunner();
}, 20_000);

describe('pier explain', () => {
  it('shows the deploy, the failed deploy, the scale change, the 5xx burst and the runner kill, oldest first', async () => {
    const body = await explain();
    const { entries } = body;
    expect(body.app).toBe(APP);
    expect(body.truncated).toBe(false);
    for (let i = 1; i < entries.length; i++) expect(entries[i]!.at).toBeGreaterThanOrEqual(entries[i - 1]!.at);

    const created1 = find(entries, 'release.created', (e) => e.version === 1);
    const live1 = find(entries, 'release.live', (e) => e.version === 1);
    const created2 = find(entries, 'release.created', (e) => e.version === 2);
    const failed2 = find(entries, 'release.failed', (e) => e.version === 2);
    const scaled = find(entries, 'formation.changed', (e) => e.summary === 'scaled web=2');
    const down = find(entries, 'node.down', (e) => (e.data as { id?: string }).id === LONE);
    expect([created1, live1, created2, failed2, scaled, down].every((i) => i >= 0)).toBe(true);
    expect(created1).toBeLessThan(live1);
    expect(live1).toBeLessThan(created2);
    expect(created2).toBeLessThan(failed2);
    expect(failed2).toBeLessThan(scaled);
    expect(scaled).toBeLessThan(down);

    expect(entries[created1]).toMatchObject({ kind: 'deploy', version: 1 });
    expect(entries[created1]!.summary).toMatch(/^v1 created by dash-owner-/);
    expect(entries[failed2]).toMatchObject({ kind: 'deploy', version: 2 });
    expect(entries[failed2]!.summary).toMatch(/^v2 failed: .+/);
    expect(entries[scaled]!.kind).toBe('scale');
    expect(entries.some((e) => e.kind === 'lock' && e.version === 1)).toBe(true);
    expect(entries.some((e) => e.kind === 'instance' && e.version === 1 && /ready on /.test(e.summary))).toBe(true);

    // The node entry names the instance it took down: the one of this app that was on that runner.
    expect(entries[down]!.kind).toBe('node');
    expect(entries[down]!.summary).toMatch(new RegExp(`^runner ${LONE} down, it held ${APP}`));
    const burst = entries.find((e) => e.kind === 'traffic');
    expect(burst).toBeDefined();
    expect(burst!.data).toMatchObject({ s5xx: 12, requests: 12 });
    expect(burst!.summary).toMatch(/^5xx burst: 12 of 12 requests \(100%\)/);

    // The scheduler moved the lost instance back: web=2 on the runner still alive, and that shows too.
    await waitFor(async () => ((await p.readyInstances(APP)).length === 2 ? true : undefined), { name: 'web=2 again', timeoutMs: 30_000, intervalMs: 200 });
    const later = (await explain()).entries;
    const lastDown = find(later, 'node.down');
    expect(later.slice(lastDown).some((e) => e.kind === 'instance' && /ready on /.test(e.summary) && !e.summary.includes(LONE))).toBe(true);
  });

  it('answers 404 to another owner, as for a missing app', async () => {
    const res = await p.stranger<{ error: { code: string; message: string } }>('GET', `/v1/apps/${APP}/explain`);
    expect(res.status).toBe(404);
    expect(res.json.error.code).toBe('PIER_NOT_FOUND');
    expect(JSON.stringify(res.json)).not.toContain('release');
  });

  it('refuses a bad window in one line (API and CLI)', async () => {
    for (const since of ['abc', '31d', '0h', '5x']) {
      const res = await p.api<{ error: { code: string; message: string } }>('GET', `/v1/apps/${APP}/explain?since=${since}`);
      expect(res.status).toBe(400);
      expect(res.json.error).toEqual({ code: 'PIER_VALIDATION', message: `since '${since}' is not a window like 30m, 1h or 2d (at most 30 days)` });
      const cli = await runCli(['explain', '-a', APP, '--since', since], cliEnv());
      expect(cli.code).toBe(64);
      expect(cli.stdout).toBe('');
      expect(cli.stderr).toBe(`error: --since '${since}' is not a window like 30m, 1h or 2d (at most 30 days) (PIER_VALIDATION)\n`);
    }
  });

  it('prints one line per entry, and --json gives the documented shape', async () => {
    const text = await runCli(['explain', '-a', APP, '--since', '30m'], cliEnv());
    expect(text.stderr).toBe('');
    expect(text.code).toBe(0);
    const lines = text.stdout.trimEnd().split('\n');
    // Kinds are padded to the widest here ('instance', 8 characters), then one space.
    expect(lines.find((l) => l.includes('v1 created'))).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z {2}deploy {3}v1 created by dash-owner-/);
    expect(lines.some((l) => /Z {2}node {5}runner .* down, it held /.test(l))).toBe(true);
    expect(lines.some((l) => /Z {2}traffic {2}5xx burst: 12 of 12 requests/.test(l))).toBe(true);
    expect(lines.every((l) => /^\d{4}-\d\d-\d\dT\S+Z {2}\S+ +\S/.test(l))).toBe(true);

    const json = await runCli(['explain', '-a', APP, '--json', '--since', '2d'], cliEnv());
    expect(json.code).toBe(0);
    const body = JSON.parse(json.stdout) as ExplainResponse;
    expect(Object.keys(body).sort()).toEqual(['app', 'entries', 'since', 'truncated']);
    expect(body.app).toBe(APP);
    expect(body.since).toBeLessThanOrEqual(Date.now());
    for (const e of body.entries) {
      expect(Object.keys(e).sort()).toEqual(['at', 'data', 'event', 'kind', 'summary', 'type', 'version']);
      expect(typeof e.summary).toBe('string');
      expect(e.version === null || Number.isInteger(e.version)).toBe(true);
    }
  });
});
