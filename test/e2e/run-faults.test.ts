/**
 * `pier run` when its runner dies: a runner started alone from its config file (`pier runner --config`, as on
 * another machine) runs the one-off; kill -9 of it ends the CLI with one line and a non-zero code within seconds,
 * the orphaned command is killed by its helper, and with no runner left `pier run` says so and starts nothing.
 * App names start with `rn`.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import { Cgroups } from '../../src/runner/cgroups.js';
import { appUserName } from '../../src/runner/app-users.js';
import { CLI } from '../helpers/cli.js';
import { platformForFile } from '../helpers/platform.js';
import { waitFor } from '../helpers/wait.js';

const isRoot = process.getuid?.() === 0;
const apps: string[] = [];
const p = platformForFile({ apps, prefix: 'rn' });
const LONE = `runner-rn-${randomId()}`;
let lone: ChildProcess | undefined;
const loneDir = (): string => join(p.dir, 'lone');

function killLone(): void {
  const emperor = join(loneDir(), 'emperor', 'emperor.json');
  if (lone?.pid) {
    try {
      process.kill(-lone.pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  if (existsSync(emperor)) {
    try {
      process.kill(-(JSON.parse(readFileSync(emperor, 'utf8')) as { pid: number }).pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

afterAll(async () => {
  killLone();
  // The lone runner's cgroups (named as the runner names them) and whatever is left in them.
  const cgroups = await Cgroups.open({ group: `${LONE}-${createHash('sha256').update(loneDir()).digest('hex').slice(0, 8)}` });
  await cgroups?.removeAll();
}, 30_000);

function startLone(): ChildProcess {
  const file = join(p.dir, 'lone.toml');
  const base = 24000 + (process.pid % 50) * 100 + 50;
  writeFileSync(file, [
    `dataDir = "${p.dir}"`,
    '[log]', 'level = "warn"',
    '[security]', 'curve = false',
    '[cluster]', 'heartbeatIntervalMs = 100', 'heartbeatMisses = 15', 'stats = []',
    '[[cluster.nexus]]', `control = "${p.nexus.control}"`, `events = "${p.nexus.events}"`, `heartbeats = "${p.nexus.heartbeats}"`, `api = "${p.nexus.api}"`, `sessions = "${p.nexus.sessions}"`,
    '[runner]', `id = "${LONE}"`, `dir = "${loneDir()}"`, `portMin = ${base}`, `portMax = ${base + 49}`, 'drainMs = 0', 'runGraceMs = 1000',
    '',
  ].join('\n'));
  return spawn(process.execPath, [CLI, 'runner', '--config', file], { env: { PATH: process.env.PATH, HOME: process.env.HOME }, stdio: ['ignore', 'ignore', 'inherit'], detached: true });
}

describe.runIf(isRoot)('pier run when the runner dies', () => {
  it('kill -9 of the runner ends the CLI with one line and a non-zero code; with no runner left, run says so', async () => {
    const app = `rn-lost-${randomId(2)}`;
    apps.push(app);
    expect((await p.api('POST', '/v1/apps', { name: app })).status).toBe(201);
    expect((await p.deploy(app, p.writeApp(app, { 'wsgi.py': 'def application(e, s):\n    s("200 OK", [])\n    return [b"ok"]\n' }))).status).toBe('live');
    lone = startLone();
    await p.runner.stop(); // the lone runner is now the only one
    const hub = p.nexus.nexus.sessions!;
    await waitFor(() => hub.pickRunner() === LONE || undefined, { name: 'only the lone runner takes one-offs', timeoutMs: 20_000, intervalMs: 100 });

    const marker = `rn-orphan-${randomId()}`;
    const cli = spawn(process.execPath, [CLI, 'run', '-a', app, '--', 'python', '-c', 'import time; print("started", flush=True); time.sleep(120)', marker], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, PIER_API_URL: p.nexus.api, PIER_TOKEN: p.tokens.owner }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    cli.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    cli.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number>((resolve) => cli.once('exit', (code) => resolve(code ?? 128)));
    await waitFor(() => stdout.includes('started') || undefined, { name: 'the one-off started on the lone runner', timeoutMs: 30_000, intervalMs: 50 });

    const killedAt = Date.now();
    process.kill(-lone.pid!, 'SIGKILL'); // the runner alone: its one-off's helper is in a session of its own
    const code = await exited;
    const tookMs = Date.now() - killedAt;
    console.log(`[run-faults] CLI ended ${tookMs} ms after kill -9 of its runner: ${stderr.trim()}`);
    expect(code).toBe(69);
    expect(stderr).toBe(`error: runner '${LONE}' was lost mid-session; the one-off's end is unknown (PIER_NO_RUNNER)\n`);
    expect(tookMs).toBeLessThan(5000);
    // Its helper saw the runner go (EOF on its control socket) and hung up: nothing of the one-off is left.
    const uid = execFileSync('id', ['-u', appUserName(app)]).toString().trim();
    await waitFor(() => {
      try {
        execFileSync('pgrep', ['-u', uid, '-f', marker]);
        return undefined;
      } catch {
        return true;
      }
    }, { name: 'the orphaned one-off was killed', timeoutMs: 10_000, intervalMs: 100 });
    killLone();

    await waitFor(() => hub.pickRunner() === undefined || undefined, { name: 'no runner alive', timeoutMs: 10_000, intervalMs: 100 });
    const none = spawn(process.execPath, [CLI, 'run', '-a', app, '--', 'true'], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, PIER_API_URL: p.nexus.api, PIER_TOKEN: p.tokens.owner }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let noneErr = '';
    none.stderr.on('data', (c: Buffer) => (noneErr += c.toString()));
    const noneCode = await new Promise<number>((resolve) => none.once('exit', (c) => resolve(c ?? 128)));
    expect(noneErr).toBe("error: no runner is alive to run the one-off; check 'pier nodes' and start a runner (PIER_NO_RUNNER)\n");
    expect(noneCode).toBe(69);
    expect((await p.api<{ dynos: unknown[] }>('GET', `/v1/apps/${app}/dynos`)).json.dynos).toEqual([]);
  }, 90_000);
});
