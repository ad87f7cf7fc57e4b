/**
 * `pier run` through the whole platform (nexus, root runner with app users and cgroups, real CLI processes): the
 * one-off runs in the app's live release as the app's user with its config vars; stdin, stdout, stderr and the exit
 * status come through; a client that goes away has its process killed; bad input starts nothing. App names start
 * with `rn`.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import { appUserName } from '../../src/runner/app-users.js';
import { CLI } from '../helpers/cli.js';
import { platformForFile } from '../helpers/platform.js';
import { sleep, waitFor } from '../helpers/wait.js';

const isRoot = process.getuid?.() === 0;
const apps: string[] = [];
const p = platformForFile({ apps, prefix: 'rn' });

function newApp(what: string): string {
  const app = `rn-${what}-${randomId(2)}`;
  apps.push(app);
  return app;
}

const WSGI = 'def application(environ, start_response):\n    start_response("200 OK", [])\n    return [b"ok"]\n';

interface Ran { code: number; stdout: string; stderr: string }

/** Runs the CLI with `input` on its stdin (a pipe), as the owner. */
function pier(args: string[], input?: string, timeoutMs = 30_000): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, PIER_API_URL: p.nexus.api, PIER_TOKEN: p.tokens.owner },
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    if (input !== undefined) child.stdin!.end(input);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
  });
}

async function deployed(what: string, files: Record<string, string> = { 'wsgi.py': WSGI }, config: Record<string, string> = {}): Promise<string> {
  const app = newApp(what);
  expect((await p.api('POST', '/v1/apps', { name: app })).status).toBe(201);
  if (Object.keys(config).length > 0) expect((await p.api('PATCH', `/v1/apps/${app}/config`, config)).status).toBe(200);
  const release = await p.deploy(app, p.writeApp(app, files));
  expect(release.status).toBe('live');
  return app;
}

function uidOf(app: string): number {
  return Number(execFileSync('id', ['-u', appUserName(app)]).toString().trim());
}

describe.runIf(isRoot)('pier run', () => {
  it("runs in the live release as the app's user with its config vars, and exits with the remote status", async () => {
    const app = await deployed('env', { 'wsgi.py': WSGI }, { GREETING: 'hello from config' });
    const script = 'import os, sys; print(os.getuid(), os.environ["GREETING"]); print("to stderr", file=sys.stderr); sys.exit(3)';
    const ran = await pier(['run', '-a', app, '--', 'python', '-c', script]);
    expect(ran.stderr).toBe('to stderr\n');
    expect(ran.stdout).toBe(`${uidOf(app)} hello from config\n`);
    expect(ran.code).toBe(3);
    // The release's virtualenv is the python on PATH, HOME/TMPDIR are the one-off's own.
    const where = await pier(['run', '-a', app, '--', 'python', '-c', 'import os, sys; print(sys.prefix == os.environ["VIRTUAL_ENV"], os.environ["HOME"] == os.environ["TMPDIR"], os.access(os.environ["HOME"], os.W_OK), os.environ["DYNO"])']);
    expect(where.stdout).toMatch(/^True True True run\.\d+\n$/);
    expect(where.code).toBe(0);
  }, 60_000);

  it('streams piped stdin to the process and its end as EOF', async () => {
    const app = await deployed('stdin');
    const ran = await pier(['run', '-a', app, '--', 'cat'], 'hi\n');
    expect(ran).toMatchObject({ code: 0, stdout: 'hi\n', stderr: '' });
    const big = 'x'.repeat(1_000_000) + '\n';
    const counted = await pier(['run', '-a', app, '--', 'wc', '-c'], big);
    expect(counted.stdout.trim()).toBe(String(big.length));
  }, 60_000);

  it('streams 10 MiB of output whole, in order, through the credit window', async () => {
    const app = await deployed('stream');
    const ran = await pier(['run', '-a', app, '--', 'python', '-c', 'import sys\nfor i in range(10 * 1024):\n    sys.stdout.write("%07d" % i + "." * 1016 + "\\n")']);
    expect(ran.stderr).toBe('');
    expect(ran.code).toBe(0);
    const lines = ran.stdout.split('\n');
    expect(lines.length).toBe(10 * 1024 + 1);
    const zeros = await pier(['run', '-a', app, '--', 'head', '-c', String(10 * 1024 * 1024), '/dev/zero']);
    expect(zeros.stderr).toBe('');
    expect(zeros.stdout.length).toBe(10 * 1024 * 1024);
    expect(lines.every((line, i) => i === 10 * 1024 ? line === '' : line === `${String(i).padStart(7, '0')}${'.'.repeat(1016)}`)).toBe(true);
  }, 60_000);

  it('exits with the remote status even when the exit arrives while its output still waits for a late reader', async () => {
    const app = await deployed('late');
    // The one-off prints 3 MiB and ends at once; nobody reads the CLI's stdout for a second, so the exit frame (and
    // the nexus closing the connection after it) arrive while output is still queued: that close is not a loss.
    const child = spawn(process.execPath, [CLI, 'run', '-a', app, '--', 'python', '-c', 'import sys; sys.stdout.write("y" * 3145728); sys.exit(4)'], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, PIER_API_URL: p.nexus.api, PIER_TOKEN: p.tokens.owner },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    child.stdout!.pause();
    const exited = new Promise<number>((resolve) => child.once('exit', (code) => resolve(code ?? -1)));
    await sleep(1500);
    let bytes = 0;
    child.stdout!.on('data', (c: Buffer) => (bytes += c.length));
    child.stdout!.resume();
    expect(await exited).toBe(4);
    expect(stderr).toBe('');
    expect(bytes).toBe(3 * 1024 * 1024);
  }, 60_000);

  it('slows a fast producer to a slow reader: no more than the credit window is in flight', async () => {
    const app = await deployed('flow');
    const progress = `/tmp/rn-flow-${randomId()}`;
    const total = 20 * 1024 * 1024;
    // Writes 64 KiB at a time and records after each write how much it has written (root reads it from /tmp).
    const script = `import os\nchunk = b"y" * 65536\nn = 0\nwhile n < ${total}:\n    os.write(1, chunk)\n    n += len(chunk)\n    open("${progress}.tmp", "w").write(str(n)); os.replace("${progress}.tmp", "${progress}")\n`;
    const child = spawn(process.execPath, [CLI, 'run', '-a', app, '--', 'python', '-c', script], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, PIER_API_URL: p.nexus.api, PIER_TOKEN: p.tokens.owner }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    const written = (): number => {
      try {
        return Number(readFileSync(progress, 'utf8'));
      } catch {
        return 0;
      }
    };
    try {
      child.stdout.pause(); // the reader stalls: nothing is read from the CLI's stdout
      await waitFor(() => written() > 0 || undefined, { name: 'the producer started', timeoutMs: 20_000, intervalMs: 50 });
      await new Promise((resolve) => setTimeout(resolve, 3000));
      const stalled = written();
      await new Promise((resolve) => setTimeout(resolve, 1000));
      expect(written()).toBe(stalled); // blocked, not merely slow
      // The output window (1 MiB) plus a few pipe and stream buffers of 64 KiB: never the whole stream.
      expect(stalled).toBeLessThan(4 * 1024 * 1024);
      let received = 0;
      child.stdout.on('data', (c: Buffer) => (received += c.length));
      child.stdout.resume();
      const code = await new Promise<number>((resolve) => child.once('exit', (c) => resolve(c ?? 128)));
      expect(code).toBe(0);
      expect(received).toBe(total);
      console.log(`[run] flow control: the producer stalled at ${(stalled / 1048576).toFixed(2)} MiB of ${total / 1048576} MiB while nobody read`);
    } finally {
      child.kill('SIGKILL');
      rmSync(progress, { force: true });
    }
  }, 60_000);

  it('kills the remote process after the grace when the client goes away', async () => {
    const app = await deployed('gone');
    const marker = `rn-sleep-${randomId()}`;
    const child = spawn(process.execPath, [CLI, 'run', '-a', app, '--', 'python', '-c', 'import time; time.sleep(300)', marker], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, PIER_API_URL: p.nexus.api, PIER_TOKEN: p.tokens.owner }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    const uid = uidOf(app);
    const remote = (): number[] => {
      try {
        return execFileSync('pgrep', ['-u', String(uid), '-f', marker]).toString().trim().split('\n').filter(Boolean).map(Number);
      } catch {
        return [];
      }
    };
    await waitFor(() => remote().length > 0 || undefined, { name: 'the remote sleep started', timeoutMs: 20_000 });
    child.kill('SIGKILL');
    const killedAt = Date.now();
    await waitFor(() => remote().length === 0 || undefined, { name: 'the remote sleep was killed', timeoutMs: 10_000, intervalMs: 100 });
    // SIGHUP goes first, so a plain sleep dies at once; the runner's grace (2 s) bounds the rest.
    expect(Date.now() - killedAt).toBeLessThan(8000);
  }, 60_000);

  it('stops a one-off at its time limit with one line', async () => {
    const app = await deployed('limit');
    const started = Date.now();
    const ran = await pier(['run', '-a', app, '--timeout', '1s', '--', 'sleep', '30']);
    expect(ran.stderr).toMatch(/^pier: run\.\d+ reached its time limit \(1 s\) and was stopped\n$/);
    expect(ran.code).toBe(129); // SIGHUP, as a terminal's hang-up
    expect(Date.now() - started).toBeLessThan(15_000);
  }, 60_000);

  it("cannot become root or another app, and cannot read another app's release", async () => {
    const app = await deployed('attack');
    const other = await deployed('victim', { 'wsgi.py': WSGI, 'secret.txt': 'victim secret\n' });
    const script = [
      'import os, glob',
      'try:\n    os.setuid(0)\n    print("setuid ok")\nexcept PermissionError:\n    print("setuid refused")',
      `print("victim", [p for p in glob.glob("${p.dir}/runner/releases/${other}/*/app/secret.txt")] or os.access("${p.dir}/runner/releases/${other}", os.R_OK))`,
      'print("groups", os.getgroups() == [os.getgid()] or os.getgroups() == [])',
      'print("root-owned cwd", os.stat(".").st_uid == 0)',
    ].join('\n');
    const ran = await pier(['run', '-a', app, '--', 'python', '-c', script]);
    expect(ran.stdout).toBe('setuid refused\nvictim False\ngroups True\nroot-owned cwd True\n');
    expect(ran.code).toBe(0);
  }, 60_000);

  it('runs detached with its output in the logs, lists it, and stops it with ps:stop', async () => {
    const app = await deployed('detach');
    const ran = await pier(['run', '--detach', '-a', app, '--', 'python', '-c', 'import time; print("detached hello", flush=True); time.sleep(120)']);
    expect(ran.stderr).toBe('');
    expect(ran.code).toBe(0);
    const name = /as (run\.\d+) on /.exec(ran.stdout)?.[1];
    expect(ran.stdout).toBe(`running 'python -c import time; print("detached hello", flush=True); time.sleep(120)' as ${name} on ${p.runner.id}; its output: pier logs -a ${app}; stop it: pier ps:stop ${name} -a ${app}\n`);
    const listed = (await p.api<{ dynos: Array<{ name: string; command: string; runnerId: string; state: string }> }>('GET', `/v1/apps/${app}/dynos`)).json.dynos;
    expect(listed).toMatchObject([{ name, runnerId: p.runner.id, command: 'python -c import time; print("detached hello", flush=True); time.sleep(120)' }]);
    // pier ps lists the running one-off beside the app's processes.
    const ps = await pier(['ps', '-a', app]);
    expect(ps.stdout).toContain('=== run: one-off processes');
    expect(ps.stdout).toMatch(new RegExp(`^${name!.replace('.', '\\.')}\\s+python -c import time`, 'm'));
    await waitFor(async () => {
      const { lines } = (await p.api<{ lines: string[] }>('GET', `/v1/apps/${app}/logs?lines=100`)).json;
      return lines.some((l) => l.endsWith(` app[${name}]: detached hello`)) || undefined;
    }, { name: 'the detached output in pier logs', timeoutMs: 15_000, intervalMs: 200 });
    expect((await pier(['ps:stop', 'worker.1', '-a', app])).stderr).toBe(`error: 'worker.1' is not a one-off; one-offs are named run.N (see 'pier ps -a ${app}'); scale process types with pier ps:scale TYPE=N (PIER_VALIDATION)\n`);
    expect((await pier(['ps:stop', 'run.99', '-a', app])).stderr).toBe(`error: no running one-off 'run.99' of '${app}'; run 'pier ps -a ${app}' (PIER_NOT_FOUND)\n`);
    const stopped = await pier(['ps:stop', name!, '-a', app]);
    expect(stopped).toMatchObject({ code: 0, stdout: `stopping ${name} of ${app}\n` });
    await waitFor(async () => (await p.api<{ dynos: unknown[] }>('GET', `/v1/apps/${app}/dynos`)).json.dynos.length === 0 || undefined, { name: 'the one-off ended', timeoutMs: 10_000, intervalMs: 100 });
    // The runner tells the end before it cleans up (cgroups, HOME): its own list empties right after.
    await waitFor(() => p.runner.oneOffs!.running.length === 0 || undefined, { name: 'the runner forgot the one-off', timeoutMs: 5000, intervalMs: 50 });
  }, 60_000);

  it('refuses bad input with one line and starts nothing', async () => {
    const app = newApp('bad');
    expect((await p.api('POST', '/v1/apps', { name: app })).status).toBe(201);
    const noRelease = await pier(['run', '-a', app, '--', 'true']);
    expect(noRelease.stderr).toBe(`error: app '${app}' has no release yet; deploy one first: pier deploy DIR -a ${app} (PIER_CONFLICT)\n`);
    expect(noRelease.code).toBe(65);
    const live = await deployed('badtype');
    const empty = await pier(['run', '-a', live]);
    expect(empty.stderr).toBe('error: no command given; put it after --: pier run -a APP -- CMD ARGS... (PIER_VALIDATION)\n');
    const emptyApi = await p.api('POST', `/v1/apps/${live}/dynos`, { command: [] });
    expect(emptyApi.status).toBe(400);
    const type = await pier(['run', '-a', live, '--type', 'worker', '--', 'true']);
    expect(type.stderr).toMatch(/^error: unknown process type 'worker'; v1 of 'rn-badtype-\w+' has 'web' \(PIER_VALIDATION\)\n$/);
    expect(type.code).toBe(64);
    const timeout = await pier(['run', '-a', live, '--timeout', 'soon', '--', 'true']);
    expect(timeout.stderr).toBe("error: --timeout 'soon' is not a duration like 90s, 30m or 2h (PIER_VALIDATION)\n");
    const missing = await pier(['run', '-a', live, '--', 'no-such-command-rn']);
    expect(missing.stderr).toBe('pier run: no-such-command-rn: No such file or directory\n');
    expect(missing.code).toBe(127);
    // A stranger sees no app; nothing of it runs.
    expect((await p.stranger('POST', `/v1/apps/${live}/dynos`, { command: ['true'] })).status).toBe(404);
    expect((await p.api<{ dynos: unknown[] }>('GET', `/v1/apps/${live}/dynos`)).json.dynos).toEqual([]);
  }, 60_000);
});
