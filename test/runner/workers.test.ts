/**
 * WorkerProcess, the runner's supervisor of background process types, against real processes: as an unprivileged
 * user (`nobody`), in the app folder, with the release's venv and config vars, output appended to its log; restart
 * with back-off; SIGTERM then SIGKILL after the grace; and an app that swaps its log for a link to a root-only file
 * (the log is opened by the app's user, so root writes nothing there).
 */
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/logger.js';
import { WorkerProcess, type WorkerSpec } from '../../src/runner/workers.js';
import { searchableTempDir } from '../helpers/data-dir.js';
import { waitFor } from '../helpers/wait.js';

const isRoot = process.getuid?.() === 0;
const NOBODY = { uid: 65534, gid: 65534 };
const dir = searchableTempDir('pier-wk-workers-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
/** An app folder and a log folder owned by nobody, as the runner lays them out. */
function layout(): { appDir: string; logDir: string } {
  n++;
  const appDir = join(dir, `app${n}`);
  const logDir = join(dir, `log${n}`);
  mkdirSync(appDir, { recursive: true });
  mkdirSync(logDir, { recursive: true });
  chownSync(logDir, NOBODY.uid, NOBODY.gid);
  chmodSync(logDir, 0o750);
  return { appDir, logDir };
}

function worker(spec: Partial<WorkerSpec> & Pick<WorkerSpec, 'command' | 'appDir' | 'logPath'>, stopGraceMs = 1000): WorkerProcess {
  const w = new WorkerProcess({ id: 'wk-test', name: 'worker.1', env: {}, user: NOBODY, ...spec }, { stopGraceMs, settleMs: 200, log: silentLogger() });
  return w;
}

describe.runIf(isRoot)('WorkerProcess', () => {
  it('runs the command as the app user in the app folder, with the venv, config vars and DYNO, output in its log', async () => {
    const { appDir, logDir } = layout();
    const venvDir = join(dir, 'venv');
    writeFileSync(join(appDir, 'show.sh'), 'echo "uid=$(id -u) pwd=$(pwd) path=$PATH venv=$VIRTUAL_ENV dyno=$DYNO greeting=$GREETING port=${PORT-unset} nofile=$(ulimit -n)"\nexec sleep 30\n');
    const logPath = join(logDir, 'vassal.log');
    const w = worker({ command: 'sh show.sh', appDir, venvDir, logPath, env: { GREETING: 'hello', PORT: '5000' }, maxFd: 256 });
    await w.start();
    await w.ready();
    const line = await waitFor(() => (existsSync(logPath) ? readFileSync(logPath, 'utf8').trim() || undefined : undefined), { name: 'log line', timeoutMs: 3000 });
    expect(line).toBe(`uid=65534 pwd=${appDir} path=${venvDir}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin venv=${venvDir} dyno=worker.1 greeting=hello port=unset nofile=256`);
    await w.stop();
  });

  it('restarts a process that exits, with a growing delay', async () => {
    const { appDir, logDir } = layout();
    const w = worker({ command: 'sh -c "echo start; exit 3"', appDir, logPath: join(logDir, 'vassal.log') });
    await w.start();
    await waitFor(() => w.starts >= 3, { name: 'three starts', timeoutMs: 5000, intervalMs: 20 });
    const startsAfter3 = w.starts;
    await new Promise((resolve) => setTimeout(resolve, 600));
    // 500 ms, then 1 s, then 2 s between starts: the fourth start is not there 600 ms after the third.
    expect(w.starts).toBe(startsAfter3);
    await w.stop();
    expect(readFileSync(join(logDir, 'vassal.log'), 'utf8').split('\n').filter((l) => l === 'start').length).toBe(w.starts);
  });

  it('sends SIGTERM, and SIGKILLs a process that ignores it once the grace is over', async () => {
    const { appDir, logDir } = layout();
    const logPath = join(logDir, 'vassal.log');
    const polite = worker({ command: 'sh -c "trap \'echo got TERM; exit 0\' TERM; while true; do sleep 0.05; done"', appDir, logPath }, 5000);
    await polite.start();
    await polite.ready();
    let started = Date.now();
    await polite.stop();
    expect(Date.now() - started).toBeLessThan(2000);
    expect(readFileSync(logPath, 'utf8')).toContain('got TERM');

    const stubborn = worker({ command: 'sh -c "trap \'echo ignoring TERM\' TERM; while true; do sleep 0.05; done"', appDir, logPath }, 800);
    await stubborn.start();
    await stubborn.ready();
    const pid = stubborn.pid!;
    started = Date.now();
    await stubborn.stop();
    const tookMs = Date.now() - started;
    expect(tookMs).toBeGreaterThanOrEqual(750);
    expect(tookMs).toBeLessThan(3000);
    expect(existsSync(`/proc/${pid}`)).toBe(false);
    expect(readFileSync(logPath, 'utf8')).toContain('ignoring TERM');
  });

  it('writes nothing into a root-only file the app links its log to', async () => {
    const { appDir, logDir } = layout();
    const secret = join(dir, 'root-only.json');
    writeFileSync(secret, '{"root": true}\n', { mode: 0o600 });
    const logPath = join(logDir, 'vassal.log');
    symlinkSync(secret, logPath); // the app owns the folder: it can put this link there
    const w = worker({ command: 'sh -c "echo planted; sleep 30"', appDir, logPath });
    await w.start();
    await waitFor(() => w.starts >= 2, { name: 'a refused start restarted', timeoutMs: 5000, intervalMs: 20 });
    await w.stop();
    expect(readFileSync(secret, 'utf8')).toBe('{"root": true}\n');
  });
});
