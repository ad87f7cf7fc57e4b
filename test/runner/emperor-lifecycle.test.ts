/** The emperor process itself: stopping leaves nothing, a restarted runner adopts it, a dead one comes back. */
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { IllegalStateError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/logger.js';
import { isProcessAlive } from '../../src/core/process.js';
import { Emperor } from '../../src/runner/emperor.js';
import { waitForHttp } from '../../src/runner/probe.js';
import { renderVassal } from '../../src/runner/vassal.js';
import { freePort } from '../helpers/ports.js';
import { processesUnder, tempDirForFile, writeHelloApp } from '../helpers/uwsgi.js';
import { waitFor } from '../helpers/wait.js';

const root = tempDirForFile();
let counter = 0;

/** A fresh emperor folder with the hello app, and an emperor on it (stopped after the test). */
function setUp(): { dir: string; app: string; make: () => Emperor } {
  const dir = join(root, `case-${++counter}`);
  const app = writeHelloApp(dir);
  const made: Emperor[] = [];
  onTestFinished(async () => {
    for (const emperor of made) await emperor.stop();
  });
  const make = (): Emperor => {
    const emperor = new Emperor({ dir: join(dir, 'emperor'), log: silentLogger(), watchIntervalMs: 200 });
    made.push(emperor);
    return emperor;
  };
  return { dir, app, make };
}

async function runHello(emperor: Emperor, app: string): Promise<number> {
  const port = await freePort();
  const spec = { name: 'hello', appDir: app, wsgi: { module: 'wsgi', callable: 'application' }, port, processes: 1, threads: 1, env: {} };
  await emperor.writeVassal('hello', renderVassal(spec));
  await waitForHttp('127.0.0.1', port, { timeoutMs: 8000 });
  return port;
}

describe('Emperor lifecycle', () => {
  it('leaves no uWSGI process behind when stopped', async () => {
    const { dir, app, make } = setUp();
    const emperor = make();
    await emperor.start();
    await runHello(emperor, app);
    expect(processesUnder(dir).length).toBeGreaterThanOrEqual(3); // emperor, vassal master, worker
    const started = Date.now();
    await emperor.stop();
    expect(Date.now() - started).toBeLessThan(8000);
    expect(processesUnder(dir)).toEqual([]);
    await emperor.stop(); // idempotent
  });

  it('is adopted by a new Emperor on the same folder, without restarting its vassals', async () => {
    const { dir, app, make } = setUp();
    const first = make();
    await first.start();
    const port = await runHello(first, app);
    const { pid } = first;
    const vassalPid = (await first.status()).vassals.find((v) => v.name === 'hello')!.pid;
    await first.detach(); // as if the runner died
    expect(isProcessAlive(pid!)).toBe(true);

    const second = make();
    await second.start();
    expect(second.isAdopted).toBe(true);
    expect(second.pid).toBe(pid);
    expect((await second.status()).vassals.find((v) => v.name === 'hello')!.pid).toBe(vassalPid);
    await waitForHttp('127.0.0.1', port, { timeoutMs: 1000 });
    expect(await second.listVassals()).toEqual(['hello']);

    await second.stop();
    expect(processesUnder(dir)).toEqual([]);
  });

  it('restarts a dead emperor, which brings its vassals back', async () => {
    const { dir, app, make } = setUp();
    const emperor = make();
    await emperor.start();
    const port = await runHello(emperor, app);
    const oldPid = emperor.pid!;
    process.kill(oldPid, 'SIGKILL');
    await waitFor(() => emperor.pid !== oldPid && isProcessAlive(emperor.pid ?? 0), { name: 'new emperor', timeoutMs: 5000 });
    await waitForHttp('127.0.0.1', port, { timeoutMs: 8000 });
    await emperor.stop();
    expect(processesUnder(dir)).toEqual([]);
  });

  it('fails to start, releasing everything, when uWSGI cannot run', async () => {
    const { dir } = setUp();
    const emperor = new Emperor({ dir: join(dir, 'emperor'), log: silentLogger(), uwsgiBinary: '/nonexistent/uwsgi' });
    await expect(emperor.start()).rejects.toThrow('cannot run uWSGI: spawn /nonexistent/uwsgi ENOENT');
    await expect(emperor.start()).rejects.toBeInstanceOf(IllegalStateError);
  });
});
