/**
 * Build and release phases end to end (root platform, two runners, real uWSGI), driven by the real `pier deploy`:
 * `build:` runs on each runner as the app's user with its config vars and venv, its result is served from the
 * frozen (root's) release; `release:` runs once per release, as the app's user, before any instance is placed; a
 * failing build or release phase fails the deploy with its output and PIER_DEPLOY_FAILED while public traffic
 * sees nothing (0 failed requests). Attack: a build that plants links, a setuid file and writes outside its copy
 * gains nothing.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, lstatSync, mkdirSync, readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import type { Release } from '../../src/protocol/index.js';
import { appUserName } from '../../src/runner/app-users.js';
import { runCli } from '../helpers/cli.js';
import { SteadyLoad } from '../helpers/load.js';
import { platformForFile } from '../helpers/platform.js';
import { waitFor } from '../helpers/wait.js';

const apps: string[] = [];
const p = platformForFile({ prefix: 'ph', apps, runners: 2, runner: { startTimeoutMs: 15_000 } });
const names = `ph${randomId()}`;

const WSGI = `import os
HERE = os.path.dirname(os.path.abspath(__file__))
def application(environ, start_response):
    path = environ["PATH_INFO"]
    try:
        body = open(os.path.join(HERE, "shadow-link" if path == "/shadow" else "built.txt")).read()
    except Exception as e:
        body = type(e).__name__
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
`;

/** Appends one line to a file of the test's record folder (sticky, every user may write). */
const note = (record: string, file: string, text: string): string =>
  `open(${JSON.stringify(join(record, file))}, "a").write(${text} + "\\n")`;

function goodApp(record: string, app: string, version: string): Record<string, string> {
  return {
    'wsgi.py': WSGI,
    Procfile: 'web: wsgi:application\nbuild: python3 build.py\nrelease: python3 release.py\n',
    'build.py': `import os, sys
print("collecting static files for ${version}")
open("built.txt", "w").write("${version} built by uid %d with GREETING=%s" % (os.getuid(), os.environ.get("GREETING")))
${note(record, `${app}-build.log`, '"%d %s %s" % (os.getuid(), os.environ["VIRTUAL_ENV"], sys.executable)')}
`,
    'release.py': `import os, socket
print("migrating ${version}")
memory = [l.split(":")[2] for l in open("/proc/self/cgroup").read().splitlines() if ":memory:" in l]
${note(record, `${app}-release.log`, `"%d %s %s ${version} %s" % (os.getuid(), socket.gethostname(), os.environ.get("GREETING"), (memory or ["-"])[0])`)}
`,
  };
}

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return runCli(args, { PIER_API_URL: p.nexus.api, PIER_TOKEN: p.tokens.owner }, 120_000);
}

async function createApp(suffix: string, web = 1): Promise<string> {
  const name = `${names}-${suffix}`;
  expect((await p.api('POST', '/v1/apps', { name })).status).toBe(201);
  apps.push(name);
  if (web !== 1) expect((await p.api('PATCH', `/v1/apps/${name}/formation`, { web })).status).toBe(200);
  return name;
}

function recordFolder(): string {
  const record = join(p.dir, `record-${randomId()}`);
  mkdirSync(record, { mode: 0o1777 });
  chmodSync(record, 0o1777);
  return record;
}

const lines = (file: string): string[] => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean) : []);
const uidOf = (app: string): number => Number(execFileSync('id', ['-u', appUserName(app)]).toString().trim());

async function publicGet(app: string, path = '/'): Promise<string> {
  const res = await request(`http://127.0.0.1:${p.balancer.port}${path}`, { headers: { host: `${app}.localhost` } });
  expect(res.statusCode).toBe(200);
  return res.body.text();
}

async function deploySteps(app: string, version: number): Promise<Array<{ version: number; step: string; processType?: string; runnerId?: string }>> {
  return (await p.api<{ deploy: { steps: Array<{ version: number; step: string; processType?: string; runnerId?: string }> } }>('GET', `/v1/apps/${app}/deploys/v${version}`)).json.deploy.steps;
}

async function settled(app: string, version: number): Promise<Release> {
  return waitFor(async () => {
    const { release } = (await p.api<{ release: Release }>('GET', `/v1/apps/${app}/releases/v${version}`)).json;
    return release.status === 'pending' ? undefined : release;
  }, { name: `v${version} of ${app} settled`, timeoutMs: 60_000, intervalMs: 100 });
}

/** Settled and live (a failure shows its error). */
async function live(app: string, version: number): Promise<void> {
  const { status, error } = await settled(app, version);
  expect({ status, error }).toEqual({ status: 'live', error: null });
}

describe('build and release phases', () => {
  it('builds on each runner and runs the release phase once, as the app user, before any instance of the release', async () => {
    const record = recordFolder();
    const app = await createApp('ok', 2);
    expect((await p.api('PATCH', `/v1/apps/${app}/config`, { GREETING: 'hi' })).status).toBe(200);
    const deployed = await cli(['deploy', p.writeApp(app, goodApp(record, app, 'v1')), '-a', app]);
    expect(deployed.stderr).toBe('');
    expect(deployed.code).toBe(0);
    expect(deployed.stdout).toContain('-----> Release phase done');
    expect(deployed.stdout).toMatch(/-----> Release phase output \(runner-\w+\):\n {7}migrating v1\n/);
    expect(deployed.stdout).toMatch(/-----> Build output \(runner-\w+\):[\s\S]* {7}collecting static files for v1\n/);
    expect(deployed.stdout).toMatch(/v1 is live in [\d.]+ s/);
    const uid = uidOf(app);
    expect(uid).toBeGreaterThan(0);
    // Release phase: once, as the app's user, with its config vars.
    // …in cgroups of its own (the release task's: named after the instance, `<app>-v1-…`).
    expect(lines(join(record, `${app}-release.log`))).toEqual([expect.stringMatching(new RegExp(`^${uid} \\S+ hi v1 \\S*/${app}-v1-release-\\w+$`))]);
    // Build: on both runners (one instance each), as the app's user, with the release's venv.
    const builds = lines(join(record, `${app}-build.log`));
    expect(builds).toHaveLength(2);
    for (const line of builds) expect(line).toMatch(new RegExp(`^${uid} \\S+/releases/${app}/[0-9a-f]{16}/venv \\S+/venv/bin/python3$`));
    expect(new Set(builds.map((l) => l.split(' ')[1]!.split('/releases/')[0])).size).toBe(2);
    const steps = await deploySteps(app, 1);
    expect(new Set(steps.filter((s) => s.step === 'build output').map((s) => s.runnerId)).size).toBe(2);
    // The release phase finished before the first web instance was placed.
    const phaseDone = steps.find((s) => s.step === 'instance ready' && s.processType === 'release')!;
    const firstWeb = steps.find((s) => s.step === 'instance assigned' && s.processType === 'web')!;
    expect(phaseDone.version).toBeLessThan(firstWeb.version);
    // What the build wrote is served, from the release folder (root's, read-only to the app).
    expect(await publicGet(app)).toBe(`v1 built by uid ${uid} with GREETING=hi`);

    // A config change is a new release: the release phase runs again (as on Heroku); the build does not.
    expect((await p.api('PATCH', `/v1/apps/${app}/config`, { GREETING: 'hello' })).status).toBe(200);
    await live(app, 2);
    expect(lines(join(record, `${app}-release.log`))).toHaveLength(2);
    expect(lines(join(record, `${app}-release.log`))[1]).toMatch(/ hello v1 /);
    expect(lines(join(record, `${app}-build.log`))).toHaveLength(2);
    // A rollback does not run it again.
    const back = await p.api<{ release: Release }>('POST', `/v1/apps/${app}/rollback`, {});
    expect(back.status).toBe(201);
    await live(app, back.json.release.version);
    expect(lines(join(record, `${app}-release.log`))).toHaveLength(2);
  }, 150_000);

  it('fails a deploy whose build or release phase fails, with its output, and changes nothing public under load', async () => {
    const record = recordFolder();
    const app = await createApp('bad', 2);
    const good = await cli(['deploy', p.writeApp(app, goodApp(record, app, 'v1')), '-a', app]);
    expect(good.stderr).toBe('');
    const before = await publicGet(app);
    const traffic = new SteadyLoad(`http://127.0.0.1:${p.balancer.port}/`, `${app}.localhost`, 4, 5);
    traffic.start();
    try {
      const badBuild = { ...goodApp(record, app, 'v2'), 'build.py': 'print("collecting static files")\nraise SystemExit("collectstatic: no such file static/app.css")\n' };
      const built = await cli(['deploy', p.writeApp(app, badBuild), '-a', app]);
      expect(built.code).toBe(70);
      expect(built.stderr).toBe("error: deploy of v2 failed: collectstatic: no such file static/app.css (PIER_DEPLOY_FAILED)\n");
      expect(built.stdout).toContain('       collecting static files');
      expect(built.stdout).toContain('-----> v2 failed; nothing public changed.');
      expect(await publicGet(app)).toBe(before);

      const badRelease = { ...goodApp(record, app, 'v3'), 'release.py': 'print("applying migration 0042")\nraise SystemExit("migration 0042 failed: column exists")\n' };
      const released = await cli(['deploy', p.writeApp(app, badRelease), '-a', app]);
      expect(released.code).toBe(70);
      expect(released.stderr).toBe("error: deploy of v3 failed: migration 0042 failed: column exists (PIER_DEPLOY_FAILED)\n");
      expect(released.stdout).toMatch(/-----> Release phase output \(runner-\w+\):\n {7}applying migration 0042\n/);
      // No instance of v3 was ever placed: the release phase gates them.
      expect((await deploySteps(app, 3)).filter((s) => s.step === 'instance assigned' && s.processType !== 'release')).toEqual([]);
      expect(await publicGet(app)).toBe(before);

      // An app that cannot import: the one line is its exception, not the traceback's first line.
      const broken = { ...goodApp(record, app, 'v4'), 'wsgi.py': `import no_such_module_here\n${WSGI}` };
      const crashed = await cli(['deploy', p.writeApp(app, broken), '-a', app]);
      expect(crashed.code).toBe(70);
      expect(crashed.stderr).toBe("error: deploy of v4 failed: ModuleNotFoundError: No module named 'no_such_module_here' (PIER_DEPLOY_FAILED)\n");
      expect(crashed.stdout).toContain('Traceback (most recent call last):');
      expect(await publicGet(app)).toBe(before);
    } finally {
      const result = await traffic.stop();
      expect(result.failures).toEqual([]);
      expect(result.failed).toBe(0);
      expect(result.ok).toBeGreaterThan(50);
    }
    const { json } = await p.api<{ releases: Release[] }>('GET', `/v1/apps/${app}/releases`);
    expect(json.releases.map((r) => [r.version, r.status])).toEqual([[4, 'failed'], [3, 'failed'], [2, 'failed'], [1, 'live']]);
  }, 150_000);

  it('gives a build that plants a link to /etc/shadow, a setuid file or writes outside its copy nothing', async () => {
    const record = recordFolder();
    const app = await createApp('evil');
    const attack = `import os, stat
def attempt(what, fn):
    try:
        fn()
        result = "done"
    except Exception as e:
        result = type(e).__name__
    ${note(record, 'attack.log', 'what + " " + result')}
os.symlink("/etc/shadow", "shadow-link")
open("suid", "w").write("#!/bin/sh\\nid\\n")
os.chmod("suid", 0o4755)
open("built.txt", "w").write("built")
attempt("hardlink", lambda: os.link("/etc/shadow", "hard-shadow"))
attempt("write-app", lambda: open("../app/evil.txt", "w").write("x"))
attempt("write-release", lambda: open("../planted.txt", "w").write("x"))
attempt("write-venv", lambda: open("../venv/evil.txt", "w").write("x"))
`;
    const release = await p.deploy(app, p.writeApp(app, { 'wsgi.py': WSGI, Procfile: 'web: wsgi:application\nbuild: python3 attack.py\n', 'attack.py': attack }));
    expect(release.status).toBe('live');
    expect(lines(join(record, 'attack.log'))).toEqual(['hardlink PermissionError', 'write-app PermissionError', 'write-release PermissionError', 'write-venv PermissionError']);
    // The frozen app folder is root's: the planted link is root's and still unreadable to the app, no setuid bit.
    // On whichever runner the one instance went to (the other never prepared the release).
    const releaseDirs = ['runner', 'runner-2'].map((r) => join(p.dir, r, 'releases', app, release.sha256.slice(0, 16))).filter((d) => existsSync(d));
    expect(releaseDirs).toHaveLength(1);
    const releaseDir = releaseDirs[0]!;
    const appDir = join(releaseDir, 'app');
    const link = lstatSync(join(appDir, 'shadow-link'));
    expect(link.isSymbolicLink()).toBe(true);
    expect(link.uid).toBe(0);
    const suid = lstatSync(join(appDir, 'suid'));
    expect(suid.uid).toBe(0);
    expect(suid.mode & 0o7777).toBe(0o755);
    expect(lstatSync(appDir).uid).toBe(0);
    expect(lstatSync(appDir).mode & 0o022).toBe(0);
    expect(existsSync(join(appDir, 'evil.txt'))).toBe(false);
    expect(existsSync(join(appDir, 'hard-shadow'))).toBe(false);
    // Only the release's own folders are left: no build copy, no build HOME, nothing planted.
    expect(readdirSync(releaseDir).sort()).toEqual(['app', 'release.json', 'venv']);
    expect(await publicGet(app, '/shadow')).toBe('PermissionError');
  }, 90_000);
});
