/**
 * A held backend never opens a cross-tenant window (issue #10/#11 follow-up). `pier up` with one runner (as root,
 * app users on), the victim app at web=1 under paced load, and the attacker: a process running as ANOTHER app's
 * user (p-fc-evil) that tries to bind the victim instance's port every millisecond and counts every request it gets
 * carrying the victim's Host.
 *
 * The runner stalls (SIGSTOP) until the nexus declares it dead and forgets its instance — the balancer then holds
 * that last backend, which the runner's emperor keeps serving — and is then killed with kill -9; `pier up` restarts
 * it 0.25 s later. The replacement can only start on that same runner (the seed-297494 case: both instances on one
 * runner). Before this fix the restarted runner stopped the forgotten vassal at once, freeing its port while the
 * balancer still sent the victim's traffic there until the replacement was ready.
 *
 * The victim takes 3 s to load (as a real app's imports do), so its replacement is ready seconds after the restart.
 *
 * Asserted: the attacker does get the port once the old vassal stopped (the window this test looks for is real),
 * yet receives no request for the victim; the replacement got another port; the public sees at most 0.5% failures.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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

const VICTIM = 'fc-victim';
const EVIL = 'fc-evil';

let dataDir: string;
let env: NodeJS.ProcessEnv;
let apiUrl: string;
let webPort: number;
let token: string;
let attacker: ChildProcess | undefined;

/** Binds the port the moment it is free (as fast as an app could), then logs every connection and request. */
const ATTACKER = `
import socket, sys, threading, time
port = int(sys.argv[1])
while True:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        break
    except OSError:
        s.close()
        time.sleep(0.001)
s.listen(128)
print("BOUND", flush=True)
def handle(c):
    data = b""
    try:
        c.settimeout(5)
        while b"\\r\\n\\r\\n" not in data:
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
        host = ""
        for line in data.split(b"\\r\\n")[1:]:
            if line.lower().startswith(b"host:"):
                host = line[5:].strip().decode("latin-1").lower()
        print("HIT " + host, flush=True)
        c.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 4\\r\\nConnection: close\\r\\n\\r\\nEVIL")
    except OSError:
        pass
    finally:
        c.close()
while True:
    c, _ = s.accept()
    print("CONN", flush=True)
    threading.Thread(target=handle, args=(c,), daemon=True).start()
`;

function uidGidOf(user: string): { uid: number; gid: number } {
  const id = (flag: string): number => Number(execFileSync('id', [flag, user], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

function runnerPid(): number {
  const state = JSON.parse(readFileSync(join(dataDir, 'up.json'), 'utf8')) as { children: Array<{ name: string; pid: number }> };
  return state.children.find((c) => c.name === 'runner-1')?.pid ?? 0;
}

async function api<T>(path: string): Promise<T> {
  const res = await fetch(`${apiUrl}${path}`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(2000) });
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return (await res.json()) as T;
}

async function instances(): Promise<Instance[]> {
  return (await api<{ instances: Instance[] }>(`/v1/apps/${VICTIM}/instances`)).instances;
}

beforeAll(async () => {
  dataDir = searchableTempDir('pier-fc-');
  ({ webPort, apiUrl, env } = await writeUpConfig(dataDir, { portBase: 43000, portCount: 20 }));
  const up = await runCli(['up', '--detach'], env, 90_000);
  expect(up.stderr).toBe('');
  token = (JSON.parse(readFileSync(join(dataDir, 'admin.json'), 'utf8')) as { token: string }).token;
  const hello = fileURLToPath(new URL('../../examples/hello', import.meta.url));
  const slow = join(dataDir, 'slow-app');
  mkdirSync(slow);
  writeFileSync(join(slow, 'wsgi.py'), `import time\ntime.sleep(3)\n${readFileSync(join(hello, 'wsgi.py'), 'utf8')}`);
  for (const app of [VICTIM, EVIL]) {
    expect((await runCli(['apps:create', app], env)).code).toBe(0);
    const deployed = await runCli(['deploy', app === VICTIM ? slow : hello, '-a', app], env);
    expect(deployed.stderr).toBe('');
  }
  await waitFor(async () => (await instances()).some((i) => i.state === 'ready' && i.isLive), { name: 'the victim ready', timeoutMs: 40_000, intervalMs: 200 });
}, 180_000);

afterAll(async () => {
  if (attacker?.pid !== undefined && attacker.exitCode === null) attacker.kill('SIGKILL');
  if (env) {
    for (const app of [VICTIM, EVIL]) await runCli(['apps:destroy', app, '--confirm', app], env);
    await runCli(['down'], env, 60_000);
  }
  for (const app of [VICTIM, EVIL]) if (spawnSync('id', [`p-${app}`], { stdio: 'ignore' }).status === 0) execFileSync('userdel', [`p-${app}`], { stdio: 'ignore' });
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
}, 90_000);

describe('held backends after a runner kill -9 and restart', () => {
  it("never send the victim's traffic to another tenant that binds the old port the instant it is free", async () => {
    const [old] = (await instances()).filter((i) => i.state === 'ready' && i.isLive);
    expect(old?.port).toBeTypeOf('number');

    // The attacker, as another app's user, waits for the victim's port.
    const lines: string[] = [];
    attacker = spawn('python3', ['-c', ATTACKER, String(old!.port)], { ...uidGidOf(`p-${EVIL}`), stdio: ['ignore', 'pipe', 'inherit'] });
    attacker.stdout!.setEncoding('utf8').on('data', (chunk: string) => lines.push(...chunk.split('\n').filter(Boolean)));

    const traffic = new SteadyLoad(`http://127.0.0.1:${webPort}/`, `${VICTIM}.localhost`, 4, 5);
    traffic.start();
    await sleep(1000);

    // The runner stalls until the nexus forgets its instance (the balancer holds it), then dies by kill -9.
    const pid = runnerPid();
    process.kill(pid, 'SIGSTOP');
    await waitFor(async () => !(await instances()).some((i) => i.id === old!.id), { name: 'the stalled runner\'s instance forgotten', timeoutMs: 10_000, intervalMs: 25 });
    process.kill(pid, 'SIGKILL');
    await waitFor(() => {
      const next = runnerPid();
      return next > 0 && next !== pid && isAlive(next);
    }, { name: 'pier up restarted the runner', timeoutMs: 10_000, intervalMs: 25 });

    const replacement = await waitFor(async () => (await instances()).find((i) => i.state === 'ready' && i.isLive), {
      name: 'a ready replacement', timeoutMs: 30_000, intervalMs: 50,
    });
    // The old vassal stops once the replacement is ready (after the balancers were told): the port is free then.
    await waitFor(() => lines.includes('BOUND'), { name: 'the attacker bound the old port', timeoutMs: 15_000, intervalMs: 10 });
    await sleep(2000);
    const result = await traffic.stop();

    const hits = lines.filter((l) => l.startsWith('HIT '));
    const victimHits = hits.filter((l) => l.slice(4).startsWith(VICTIM));
    console.log(
      `[held-backends] old port ${old!.port}, replacement port ${replacement.port}; attacker: ${lines.filter((l) => l === 'CONN').length} connections, ` +
        `${victimHits.length} victim requests; public: ${result.ok} ok / ${result.failed} failed ${result.failures.join(', ')}`,
    );
    expect(victimHits).toEqual([]);
    expect(hits).toEqual([]);
    expect(replacement.port).not.toBe(old!.port);
    expect(result.failed / (result.ok + result.failed)).toBeLessThanOrEqual(0.005);
  });
});
