/**
 * A worker whose runner dies moves (issue #12, Must show 1): two runners (the platform's, in-process, and a second
 * one as its own `pier runner` process), `worker=2` spread over both; `kill -9` of the second runner takes its
 * worker down with it (parent-death signal, no emperor keeps it) and the nexus runs it again on the first runner
 * within 10 s, never two copies of a worker at once (sampled every 50 ms). The killed runner then comes back and
 * runs nothing twice. App names start with `wk`.
 */
import type { ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import type { Instance } from '../../src/protocol/index.js';
import { exited, startSecondRunner } from '../helpers/second-runner.js';
import { platformForFile } from '../helpers/platform.js';
import { waitFor } from '../helpers/wait.js';

const isRoot = process.getuid?.() === 0;
const apps: string[] = [];
const p = platformForFile({ prefix: 'wk', apps, runner: { stopGraceMs: 2000, workerSettleMs: 500 } });

const worker = (jobs: string) => [
  'import os, time',
  `jobs = ${JSON.stringify(jobs)}`,
  'os.makedirs(jobs, exist_ok=True)',
  'open("%s/%d" % (jobs, os.getpid()), "w").write(os.environ["DYNO"])',
  'while True:',
  '    time.sleep(0.1)',
  '',
].join('\n');

/** Running workers noted in `jobs`: pid → process name. */
function running(jobs: string): Map<number, string> {
  const found = new Map<number, string>();
  if (!existsSync(jobs)) return found;
  for (const file of readdirSync(jobs).filter((f) => /^\d+$/.test(f))) {
    try {
      if (/^State:\s+Z/m.test(readFileSync(`/proc/${file}/status`, 'utf8'))) continue;
      found.set(Number(file), readFileSync(join(jobs, file), 'utf8'));
    } catch {
      // gone
    }
  }
  return found;
}

describe.runIf(isRoot)('a worker whose runner dies', () => {
  it('runs again on a live runner within 10 s, and never twice', async () => {
    const app = `wk${randomId()}-move`;
    apps.push(app);
    const record = join(p.dir, 'record');
    mkdirSync(record, { recursive: true, mode: 0o1777 });
    chmodSync(record, 0o1777);
    const jobs = join(record, app);
    const second = `runner-wk2-${randomId(3)}`;
    const portMin = 23000 + (process.pid % 19) * 50; // outside the platform runner's 24000-28999
    let child: ChildProcess | undefined = startSecondRunner({ id: second, dir: p.dir, nexus: p.nexus, portMin: portMin, runner: { stopGraceMs: 2000, workerSettleMs: 500 } });
    onTestFinished(async () => {
      if (child) {
        child.kill('SIGTERM');
        await exited(child);
      }
    });
    await waitFor(async () => (await p.admin<{ nodes: Array<{ id: string; status: string }> }>('GET', '/v1/nodes')).json.nodes.some((n) => n.id === second && n.status === 'alive'), {
      name: 'second runner alive', timeoutMs: 15_000, intervalMs: 100,
    });

    const release = await p.deploy(app, p.writeApp(app, {
      Procfile: 'worker: python3 worker.py\n', 'worker.py': worker(jobs),
    }));
    expect(release.error ?? release.status).toBe('live');
    // No web process: the first type starts at 1.
    expect((await p.api('GET', `/v1/apps/${app}/formation`)).json).toEqual({ worker: 1 });
    expect((await p.api('PATCH', `/v1/apps/${app}/formation`, { worker: 2 })).status).toBe(200);
    const list = async () => (await p.api<{ instances: Instance[] }>('GET', `/v1/apps/${app}/instances`)).json.instances;
    const placed = await waitFor(async () => {
      const ready = (await list()).filter((i) => i.state === 'ready' && i.processType === 'worker');
      return ready.length === 2 && running(jobs).size === 2 ? ready : undefined;
    }, { name: 'two workers, one per runner', timeoutMs: 20_000, intervalMs: 100 });
    expect(new Set(placed.map((i) => i.runnerId))).toEqual(new Set([p.runner.id, second]));
    const victim = placed.find((i) => i.runnerId === second)!;
    const victimPid = [...running(jobs)].find(([, name]) => name === victim.name)![0];

    // Sample every 50 ms: never two processes with one name.
    let maxCopies = 0;
    const sampler = setInterval(() => {
      const names = [...running(jobs).values()];
      for (const name of new Set(names)) maxCopies = Math.max(maxCopies, names.filter((n) => n === name).length);
    }, 50);
    try {
      child.kill('SIGKILL');
      await exited(child);
      child = undefined;
      const killedAt = Date.now();
      await waitFor(() => !running(jobs).has(victimPid), { name: 'the dead runner\'s worker gone', timeoutMs: 2000, intervalMs: 20 });
      const goneMs = Date.now() - killedAt;
      const moved = await waitFor(() => {
        const again = [...running(jobs)].find(([pid, name]) => name === victim.name && pid !== victimPid);
        return again;
      }, { name: `${victim.name} running again`, timeoutMs: 10_000, intervalMs: 50 });
      const movedMs = Date.now() - killedAt;
      console.log(`[workers] runner kill -9: its ${victim.name} gone after ${goneMs} ms, running again elsewhere after ${movedMs} ms (pid ${moved[0]})`);
      expect(movedMs).toBeLessThan(10_000);
      const now = await list();
      expect(now.filter((i) => i.processType === 'worker').every((i) => i.runnerId === p.runner.id)).toBe(true);

      // The runner comes back: it starts nothing of what moved away.
      child = startSecondRunner({ id: second, dir: p.dir, nexus: p.nexus, portMin: portMin, runner: { stopGraceMs: 2000, workerSettleMs: 500 } });
      await waitFor(async () => (await p.admin<{ nodes: Array<{ id: string; status: string }> }>('GET', '/v1/nodes')).json.nodes.some((n) => n.id === second && n.status === 'alive'), {
        name: 'second runner back', timeoutMs: 15_000, intervalMs: 100,
      });
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(running(jobs).size).toBe(2);
    } finally {
      clearInterval(sampler);
    }
    expect(maxCopies).toBe(1);
  }, 90_000);
});
