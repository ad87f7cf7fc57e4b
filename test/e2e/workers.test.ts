/**
 * Procfile background process types through the whole platform, as root with app users and real uWSGI (issue #12,
 * Must show 1 and 6 (ps:scale / Procfile)). The test app's web part queues job files into a folder
 * the app's user made (under the file's sticky `record/`), and its `worker:` consumes them by renaming each into
 * `done/` with its process name and pid; each worker notes itself in `alive/<pid>` and `alive/<pid>.term` when it
 * gets SIGTERM. App names start with `wk`.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import type { Instance } from '../../src/protocol/index.js';
import { packDirectory } from '../../src/archive/index.js';
import { appUserName } from '../../src/runner/app-users.js';
import { runCli } from '../helpers/cli.js';
import { platformForFile } from '../helpers/platform.js';
import { waitFor } from '../helpers/wait.js';

const isRoot = process.getuid?.() === 0;
const apps: string[] = [];
const p = platformForFile({ prefix: 'wk', apps, runner: { stopGraceMs: 3000, workerSettleMs: 500 } });
const cli = (args: string[]) => runCli(args, { PIER_API_URL: p.nexus.api, PIER_TOKEN: p.tokens.owner });

function appFiles(jobs: string, version: string): Record<string, string> {
  return {
    Procfile: 'web: wsgi:application\nworker: python3 worker.py\nbuild: python3 phase.py build\nrelease: python3 phase.py release\n',
    // Each phase notes itself (phase, version, uid) in the app's job folder: proof that it ran, how often and as whom.
    'phase.py': [
      'import os, sys',
      `JOBS = ${JSON.stringify(jobs)}`,
      'os.makedirs(JOBS, exist_ok=True)',
      'with open(JOBS + "/phases.log", "a") as f:',
      '    f.write("%s %s %d\\n" % (sys.argv[1], open("version.txt").read().strip(), os.getuid()))',
      '',
    ].join('\n'),
    'version.txt': `${version}\n`,
    'wsgi.py': [
      'import os, time',
      `JOBS = ${JSON.stringify(jobs)}`,
      'def application(environ, start_response):',
      '    query = environ.get("QUERY_STRING", "")',
      '    n = int(query[2:]) if query.startswith("n=") else 0',
      '    os.makedirs(JOBS + "/queue", exist_ok=True)',
      '    for i in range(n):',
      '        path = "%s/queue/%d-%d" % (JOBS, time.time_ns(), i)',
      '        with open(path + ".tmp", "w") as f:',
      '            f.write("job")',
      '        os.rename(path + ".tmp", path + ".job")',
      '    start_response("200 OK", [("Content-Type", "text/plain")])',
      '    return [b"queued"]',
      '',
    ].join('\n'),
    'worker.py': [
      'import os, signal, sys, time',
      `JOBS = ${JSON.stringify(jobs)}`,
      'me, pid = os.environ["DYNO"], os.getpid()',
      'version = open("version.txt").read().strip()',
      'for d in ("queue", "done", "alive"):',
      '    os.makedirs(JOBS + "/" + d, exist_ok=True)',
      'with open("%s/alive/%d" % (JOBS, pid), "w") as f:',
      '    f.write("%s %s %d %s" % (me, version, os.getuid(), "PORT" in os.environ))',
      'def term(*_):',
      '    print("%s %s got SIGTERM" % (me, version), flush=True)',
      '    open("%s/alive/%d.term" % (JOBS, pid), "w").close()',
      '    sys.exit(0)',
      'signal.signal(signal.SIGTERM, term)',
      'print("%s %s consuming as pid %d" % (me, version, pid), flush=True)',
      'while True:',
      '    for name in sorted(os.listdir(JOBS + "/queue")):',
      '        if name.endswith(".job"):',
      '            try:',
      '                os.rename(JOBS + "/queue/" + name, "%s/done/%s.%s.%d" % (JOBS, name, me, pid))',
      '            except OSError:',
      '                pass',
      '            time.sleep(0.02)',
      '    time.sleep(0.05)',
      '',
    ].join('\n'),
  };
}

/** Workers that noted themselves, by pid: name, version, uid, whether PORT was set. */
function alive(jobs: string): Map<number, { name: string; version: string; uid: number; hasPort: boolean }> {
  const dir = join(jobs, 'alive');
  const found = new Map<number, { name: string; version: string; uid: number; hasPort: boolean }>();
  if (!existsSync(dir)) return found;
  for (const file of readdirSync(dir).filter((f) => /^\d+$/.test(f))) {
    const [name, version, uid, hasPort] = readFileSync(join(dir, file), 'utf8').split(' ');
    found.set(Number(file), { name: name!, version: version!, uid: Number(uid), hasPort: hasPort === 'True' });
  }
  return found;
}

/** Pids of those still running (not a zombie). */
function running(jobs: string): Array<{ pid: number; name: string; version: string; uid: number; hasPort: boolean }> {
  return [...alive(jobs)].filter(([pid]) => {
    try {
      return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
    } catch {
      return false;
    }
  }).map(([pid, w]) => ({ pid, ...w }));
}

function procUid(pid: number): number {
  return Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

/** `record/` in the data folder, writable by every user (sticky): where the apps keep their job folders. */
function recordDir(): string {
  const record = join(p.dir, 'record');
  mkdirSync(record, { recursive: true, mode: 0o1777 });
  chmodSync(record, 0o1777);
  return record;
}

async function enqueue(app: string, n: number): Promise<void> {
  const web = (await p.readyInstances(app)).find((i) => i.processType === 'web')!;
  const res = await fetch(`http://127.0.0.1:${web.port}/?n=${n}`);
  expect(await res.text()).toBe('queued');
}

describe.runIf(isRoot)('Procfile workers on a root runner', () => {
  it('scales workers with ps:scale, runs them as the app user, restarts a killed one, and hands over to v2 with SIGTERM', async () => {
    const app = `wk${randomId()}-jobs`;
    apps.push(app);
    const jobs = join(recordDir(), app);

    const v1 = await p.deploy(app, p.writeApp(app, appFiles(jobs, 'v1')));
    expect(v1.error ?? v1.status).toBe('live');
    const uidOfApp = Number(execFileSync('id', ['-u', appUserName(app)], { encoding: 'utf8' }).trim());
    // The same app's build: and release: lines ran, as the app's user: the build on the (one) runner, the release once.
    expect(readFileSync(join(jobs, 'phases.log'), 'utf8').trim().split('\n').sort()).toEqual([`build v1 ${uidOfApp}`, `release v1 ${uidOfApp}`]);
    // New types start at 0.
    expect((await p.api('GET', `/v1/apps/${app}/formation`)).json).toEqual({ web: 1, worker: 0 });
    const scaled = await cli(['ps:scale', 'worker=2', '-a', app]);
    expect(scaled.stderr).toBe('');
    expect(scaled.stdout.trim()).toBe(`scaled ${app} to web=1 worker=2`);

    const two = await waitFor(() => {
      const list = running(jobs);
      return list.length === 2 ? list : undefined;
    }, { name: 'two workers running', timeoutMs: 15_000, intervalMs: 100 });
    const uid = Number(execFileSync('id', ['-u', appUserName(app)], { encoding: 'utf8' }).trim());
    expect(two.map((w) => w.name).sort()).toEqual(['worker.1', 'worker.2']);
    for (const w of two) {
      expect(w.uid).toBe(uid);
      expect(procUid(w.pid)).toBe(uid);
      expect(w.hasPort).toBe(false);
    }

    // Both consume what the web part queues.
    await enqueue(app, 40);
    const done = await waitFor(() => {
      const files = existsSync(join(jobs, 'done')) ? readdirSync(join(jobs, 'done')) : [];
      return files.length === 40 ? files : undefined;
    }, { name: '40 jobs done', timeoutMs: 15_000, intervalMs: 100 });
    const byWorker = new Set(done.map((f) => f.split('.').slice(-3, -1).join('.')));
    expect([...byWorker].sort()).toEqual(['worker.1', 'worker.2']);

    // pier ps lists them by name.
    const ps = await waitFor(async () => {
      const out = await cli(['ps', '-a', app, '--json']);
      const list = JSON.parse(out.stdout) as Instance[];
      return list.filter((i) => i.processType === 'worker' && i.state === 'ready').length === 2 ? list : undefined;
    }, { name: 'ps shows two ready workers', timeoutMs: 5000, intervalMs: 100 });
    expect(ps.map((i) => i.name).sort()).toEqual(['web.1', 'worker.1', 'worker.2']);

    // kill -9 of a worker: back within 5 s.
    const victim = two.find((w) => w.name === 'worker.1')!;
    process.kill(victim.pid, 'SIGKILL');
    const killedAt = Date.now();
    const back = await waitFor(() => running(jobs).find((w) => w.name === 'worker.1' && w.pid !== victim.pid), {
      name: 'worker.1 back', timeoutMs: 5000, intervalMs: 50,
    });
    const backMs = Date.now() - killedAt;
    console.log(`[workers] kill -9 of worker.1: running again after ${backMs} ms (pid ${victim.pid} → ${back.pid})`);
    expect(backMs).toBeLessThan(5000);

    // Deploy v2: the v1 workers get SIGTERM and exit, v2 workers take over, no v1 worker left.
    const v1Pids = running(jobs).map((w) => w.pid);
    expect(v1Pids).toHaveLength(2);
    const v2 = await p.deploy(app, p.writeApp(app, appFiles(jobs, 'v2')));
    expect(v2.status).toBe('live');
    expect(readFileSync(join(jobs, 'phases.log'), 'utf8').trim().split('\n').filter((l) => l.includes(' v2 ')).sort()).toEqual([`build v2 ${uidOfApp}`, `release v2 ${uidOfApp}`]);
    const v2Workers = await waitFor(() => {
      const list = running(jobs);
      return list.length === 2 && list.every((w) => w.version === 'v2') ? list : undefined;
    }, { name: 'two v2 workers and no v1 worker', timeoutMs: 15_000, intervalMs: 100 });
    expect(v2Workers.map((w) => w.name).sort()).toEqual(['worker.1', 'worker.2']);
    for (const pid of v1Pids) expect(existsSync(join(jobs, 'alive', `${pid}.term`))).toBe(true);
    await enqueue(app, 10);
    await waitFor(() => readdirSync(join(jobs, 'done')).filter((f) => v2Workers.some((w) => f.endsWith(`.${w.pid}`))).length === 10, {
      name: 'v2 workers consume', timeoutMs: 10_000, intervalMs: 100,
    });

    // Logs tag worker lines app[worker.N], including the SIGTERM a v1 worker printed.
    const lines = await waitFor(async () => {
      const all = (await p.api<{ lines: string[] }>('GET', `/v1/apps/${app}/logs?lines=10000`)).json.lines;
      return all.some((l) => / app\[worker\.\d\]: worker\.\d v1 got SIGTERM$/.test(l)) && all.some((l) => / app\[worker\.1\]: worker\.1 v2 consuming as pid \d+$/.test(l)) ? all : undefined;
    }, { name: 'worker lines in the logs', timeoutMs: 10_000, intervalMs: 200 });
    expect(lines.length).toBeGreaterThan(0);

    // Scaled to 0: SIGTERM, nothing left.
    expect((await p.api('PATCH', `/v1/apps/${app}/formation`, { worker: 0 })).status).toBe(200);
    await waitFor(() => running(jobs).length === 0, { name: 'no worker left', timeoutMs: 10_000, intervalMs: 100 });
  }, 90_000);

  it('refuses an unknown process type and a Procfile line without a command, in one line, starting nothing', async () => {
    const app = `wk${randomId()}-bad`;
    apps.push(app);
    expect((await p.api('POST', '/v1/apps', { name: app })).status).toBe(201);
    const noCommand = p.writeApp(app, { Procfile: 'web: wsgi:application\nworker:\n', 'wsgi.py': 'def application(e, s):\n    pass\n' });
    const up = await p.api<{ error: { code: string; message: string } }>('POST', `/v1/apps/${app}/releases`, await packDirectory(noCommand));
    expect(up.status).toBe(400);
    expect(up.json.error).toEqual({ code: 'PIER_VALIDATION', message: "Procfile line 2: 'worker:' has no command" });
    const deployed = await cli(['deploy', noCommand, '-a', app]);
    expect(deployed.code).not.toBe(0);
    expect(deployed.stderr.trim().split('\n')).toHaveLength(1);
    expect(deployed.stderr).toContain("Procfile line 2: 'worker:' has no command");
    expect((await p.api<{ releases: unknown[] }>('GET', `/v1/apps/${app}/releases`)).json.releases).toEqual([]);

    const good = await p.deploy(app, p.writeApp(app, appFiles(join(recordDir(), app), 'v1')));
    expect(good.error ?? good.status).toBe('live');
    const unknown = await cli(['ps:scale', 'clock=1', '-a', app]);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr.trim()).toBe("error: unknown process type 'clock'; v1 has web, worker (PIER_VALIDATION)");
    const over = await cli(['ps:scale', 'worker=101', '-a', app]);
    expect(over.stderr.trim()).toBe('error: worker=101 is more than the limit of 100 instances (PIER_VALIDATION)');
    // Nothing half applied: a good type beside a bad one changes nothing.
    const mixed = await p.api<{ error: { message: string } }>('PATCH', `/v1/apps/${app}/formation`, { worker: 3, clock: 1 });
    expect(mixed.status).toBe(400);
    expect((await p.api('GET', `/v1/apps/${app}/formation`)).json).toEqual({ web: 1, worker: 0 });
    expect((await p.readyInstances(app)).map((i) => i.processType)).toEqual(['web']);

    // A running type made a singleton is restarted, so its one instance runs under the lease.
    expect((await p.api('PATCH', `/v1/apps/${app}/formation`, { worker: 1 })).status).toBe(200);
    const plain = await waitFor(async () => (await p.readyInstances(app)).find((i) => i.processType === 'worker'), { name: 'a worker', timeoutMs: 15_000, intervalMs: 100 });
    const marked = await cli(['ps:scale', 'worker=1', '--singleton', '-a', app]);
    expect(marked.stdout.trim()).toBe(`scaled ${app} to web=1 worker=1 (worker: singleton)`);
    const leased = await waitFor(async () => {
      const workers = (await p.api<{ instances: Instance[] }>('GET', `/v1/apps/${app}/instances`)).json.instances.filter((i) => i.processType === 'worker');
      return workers.length === 1 && workers[0]!.id !== plain.id && workers[0]!.state === 'ready' ? workers[0] : undefined;
    }, { name: 'the worker restarted as a singleton', timeoutMs: 15_000, intervalMs: 100 });
    expect(leased.name).toBe('worker.1');
    const tooMany = await p.api<{ error: { message: string } }>('PATCH', `/v1/apps/${app}/formation`, { worker: 2 });
    expect(tooMany.json.error.message).toBe('worker is a singleton: it runs at most once (worker=0 or worker=1; --no-singleton to scale it out)');
  }, 90_000);
});
