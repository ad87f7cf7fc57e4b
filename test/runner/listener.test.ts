/**
 * Who listens on an instance's port, judged from /proc: a real uWSGI vassal is "ours", a squatter (another
 * user's process, or one of the runner's own uid that is not the vassal) is "foreign". And instance ports are
 * random, never taken, and a squatted one is set aside.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { checkListener } from '../../src/runner/listener.js';
import { PortPool } from '../../src/runner/ports.js';
import { renderVassal } from '../../src/runner/vassal.js';
import { freePort } from '../helpers/ports.js';
import { emperorForFile, writeHelloApp } from '../helpers/uwsgi.js';
import { sleep, waitFor } from '../helpers/wait.js';

const h = emperorForFile();
const squatters: ChildProcess[] = [];
afterEach(async () => {
  for (const child of squatters.splice(0)) {
    child.kill('SIGKILL');
    if (child.exitCode === null && child.signalCode === null) await new Promise((resolve) => child.once('exit', resolve));
  }
});

/** A process listening on `port` (as `uid` when given), answering nothing: the squatter. */
/** The first of `n` neighbouring ports free now (other test files take ports meanwhile: each one is checked). */
async function freeRun(n: number): Promise<number> {
  for (let tries = 0; ; tries++) {
    const port = await freePort();
    let free = true;
    for (let i = 1; i < n && free; i++) free = await isFree(port + i);
    if (free || tries >= 50) return port;
  }
}

/** Whether a listener could bind 127.0.0.1:port now. */
function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

async function squat(port: number, uid?: number): Promise<ChildProcess> {
  // SO_REUSEPORT too: uWSGI does not set it, so it still cannot share the port (the kernel also wants the same uid).
  const code = `import socket,sys\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)\ns.bind(("127.0.0.1", ${port}))\ns.listen(8)\nprint("up", flush=True)\nsys.stdin.read()\n`;
  const child = spawn('python3', ['-c', code], { stdio: ['pipe', 'pipe', 'inherit'], ...(uid === undefined ? {} : { uid, gid: uid }) });
  squatters.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`squatter exited with ${code}`)));
  });
  return child;
}

async function vassalPid(name: string): Promise<number> {
  return waitFor(async () => (await h.emperor.status()).vassals.find((v) => v.name === name)?.pid, { name: `${name} spawned`, timeoutMs: 10_000 });
}

describe('checkListener', () => {
  it("finds nothing on a free port, and the vassal's own socket as ours", async () => {
    const port = await freePort();
    expect(await checkListener(port, { vassalPid: undefined })).toEqual({ state: 'none' });
    const appDir = writeHelloApp(h.dir, 'rl-listener');
    await h.emperor.writeVassal('rl-listener', renderVassal({
      name: 'rl-listener', appDir, port, wsgi: { module: 'wsgi', callable: 'application' }, processes: 2, threads: 1, env: {},
    }));
    try {
      const pid = await vassalPid('rl-listener');
      const verdict = await waitFor(async () => {
        const v = await checkListener(port, { vassalPid: pid, uid: process.getuid!() });
        return v.state === 'none' ? undefined : v;
      }, { name: 'vassal listening', timeoutMs: 10_000 });
      expect(verdict).toEqual({ state: 'ours' });
      // A process that is not the vassal (nor its parent) does not hold this socket.
      const other = spawn('sleep', ['30']);
      squatters.push(other);
      expect((await checkListener(port, { vassalPid: other.pid })).state).toBe('foreign');
    } finally {
      await h.emperor.removeVassal('rl-listener');
    }
  }, 20_000);

  it('judges a vassal the emperor spawns while the runner is slow to look as ours: the table is read before the emperor is asked', async () => {
    // A busy runner (its event loop shared with deploys, probes, heartbeats) may take a while between the emperor's
    // answer and the next step; a stall of 300 ms is faked after each answer. Had the pid been read before the
    // socket table, a vassal spawned in that gap would hold a socket no named process holds: measured here, 4 of 4
    // spawns were then judged squatters.
    const names = ['rl-spawn-1', 'rl-spawn-2', 'rl-spawn-3'];
    const verdicts = await Promise.all(names.map(async (name) => {
      const port = await freePort();
      await h.emperor.writeVassal(name, renderVassal({
        name, appDir: writeHelloApp(h.dir, name), port, wsgi: { module: 'wsgi', callable: 'application' }, processes: 1, threads: 1, env: {},
      }));
      let asked = 0;
      const lookup = async (): Promise<number | undefined> => {
        asked += 1;
        const pid = (await h.emperor.status()).vassals.find((v) => v.name === name)?.pid;
        await sleep(300);
        return pid;
      };
      const seen: string[] = [];
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline && seen.at(-1) !== 'ours') seen.push((await checkListener(port, { vassalPid: lookup, uid: process.getuid!() })).state);
      return { seen, asked };
    })).finally(() => Promise.all(names.map((name) => h.emperor.removeVassal(name))));
    for (const { seen, asked } of verdicts) {
      expect(seen.at(-1)).toBe('ours');
      expect(seen.filter((s) => s === 'foreign')).toEqual([]);
      expect(asked).toBeGreaterThan(0); // the emperor was asked only once a socket was there
    }
  }, 20_000);

  it("calls a squatter of the runner's own uid foreign: its socket is in no process of the vassal", async () => {
    const port = await freePort();
    await squat(port);
    // The emperor's tree (a real vassal parent) holds no socket of the squatter's.
    const verdict = await checkListener(port, { vassalPid: h.emperor.pid, uid: process.getuid!() });
    expect(verdict).toMatchObject({ state: 'foreign', uid: process.getuid!() });
    expect(verdict.state === 'foreign' && verdict.reason).toMatch(/no process of the vassal holds/);
    expect((await checkListener(port, { vassalPid: undefined })).state).toBe('foreign');
  });

  it("calls a squatter running as another user foreign by its socket's uid", async () => {
    const port = await freePort();
    await squat(port, 65534); // nobody
    const verdict = await checkListener(port, { vassalPid: h.emperor.pid, uid: 12345 });
    expect(verdict).toMatchObject({ state: 'foreign', uid: 65534 });
    expect(verdict.state === 'foreign' && verdict.reason).toContain('not the app\'s uid 12345');
  });
});

describe('uWSGI and a squatter', () => {
  it('exits when another user holds its port (SO_REUSEPORT or not), and never listens there', async () => {
    const port = await freePort();
    await squat(port, 65534);
    const appDir = writeHelloApp(h.dir, 'rl-squatted');
    const logFile = h.emperor.vassalLogPath('rl-squatted');
    await h.emperor.writeVassal('rl-squatted', renderVassal({
      name: 'rl-squatted', appDir, port, wsgi: { module: 'wsgi', callable: 'application' }, processes: 1, threads: 1, env: {}, logFile,
    }));
    try {
      await waitFor(async () => (await h.emperor.readVassalLog('rl-squatted', 200)).some((l) => l.includes('bind(): Address already in use')), { name: 'bind refused', timeoutMs: 10_000 });
      const pid = (await h.emperor.status()).vassals.find((v) => v.name === 'rl-squatted')?.pid;
      expect(await checkListener(port, { vassalPid: pid, uid: process.getuid!() })).toMatchObject({ state: 'foreign', uid: 65534 });
    } finally {
      await h.emperor.removeVassal('rl-squatted');
    }
  }, 20_000);
});

describe('PortPool', () => {
  it('hands out ports at random, never one taken or bound, and sets a squatted one aside', async () => {
    const min = await freePort();
    const pool = new PortPool(min, min + 199);
    const got: number[] = [];
    for (let i = 0; i < 20; i++) got.push(await pool.allocate());
    expect(new Set(got).size).toBe(20);
    const steps = got.slice(1).map((p, i) => p - got[i]!);
    expect(steps.filter((s) => s === 1).length).toBeLessThan(5); // not handed out in order
    for (const p of got) expect(p >= min && p <= min + 199).toBe(true);

    const base = await freeRun(3);
    const tiny = new PortPool(base, base + 2, '127.0.0.1', () => base);
    const first = await tiny.allocate();
    expect(first).toBe(base);
    tiny.quarantine(first);
    const next = [await tiny.allocate(), await tiny.allocate()].sort();
    expect(next).toEqual([base + 1, base + 2]);
    await expect(tiny.allocate()).rejects.toThrow(/no free port in/);
  });

  it('skips a port someone else listens on', async () => {
    const port = await freeRun(2);
    await squat(port);
    const pool = new PortPool(port, port + 1, '127.0.0.1', () => port);
    expect(await pool.allocate()).toBe(port + 1);
  });
});

