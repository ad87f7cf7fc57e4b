/**
 * Attack 2 of issue #10 through the whole platform (test/helpers/root-platform.ts): apps that swap their vassal.log
 * for a link to a root-only file (while serving, and while failing to start), and an app that goes after the
 * emperor's log through its inherited descriptors and by path. App names start with `rb`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { randomId } from '../../src/core/ids.js';
import { waitFor } from '../helpers/wait.js';
import { rootPlatform } from '../helpers/root-platform.js';

const isRoot = process.getuid?.() === 0;
const p = await rootPlatform('rb');
const secret = `rb-secret-${randomId(16)}`;
const sentinel = join(p.dir, 'admin.json');
beforeAll(() => writeFileSync(sentinel, `{"adminToken": "${secret}"}\n`, { mode: 0o600 }));

/** Python finding this instance's vassal.log from its HOME (`<runner>/homes/<instance>`), as an attacker would. */
const FIND_LOG = [
  'import os',
  'def _log():',
  '    home = os.environ["HOME"]',
  '    return os.path.join(os.path.dirname(os.path.dirname(home)), "emperor", "logs", os.path.basename(home), "vassal.log")',
  'def _swap():',
  '    log = _log()',
  '    if os.path.islink(log):',
  '        return',
  '    if os.path.exists(log):',
  '        os.rename(log, log + ".1")',
  `    os.symlink(${JSON.stringify(sentinel)}, log)`,
].join('\n');

describe.runIf(isRoot)('a root runner against apps going after files through their logs', () => {
  it("ships a serving app's own lines, and nothing of the root-only file it links its vassal.log to", async () => {
    const app = await p.createApp('swap');
    const release = await p.deploy(app, p.writeApp(app, {
      'wsgi.py': `${FIND_LOG}\nprint("rb own line before the swap", flush=True)\ndef application(environ, start_response):\n    if environ["PATH_INFO"] == "/swap":\n        _swap()\n        print("rb line after the swap", flush=True)\n    start_response("200 OK", [])\n    return [b"swapped"]\n`,
    }));
    expect(release.status).toBe('live');
    await waitFor(async () => (await p.logsOf(app)).some((l) => l.endsWith('rb own line before the swap')), { name: 'own line shipped', timeoutMs: 5000 });
    expect(await p.get(app, '/swap')).toBe('swapped');
    const lines = await waitFor(async () => {
      const all = await p.logsOf(app);
      return all.some((l) => l.endsWith('pier: this log file was replaced (it is a symbolic link) and is ignored')) ? all : undefined;
    }, { name: 'replaced line shipped', timeoutMs: 5000 });
    expect(lines.join('\n')).not.toContain(secret);
  }, 60_000);

  it('keeps a root-only file out of the deploy error of an app that links its vassal.log to it and fails', async () => {
    const app = await p.createApp('swapfail');
    const release = await p.deploy(app, p.writeApp(app, {
      'wsgi.py': `${FIND_LOG}\n_swap()\nraise RuntimeError("rb fails after the swap")\ndef application(environ, start_response):\n    pass\n`,
    }));
    expect(release.status).toBe('failed');
    // uWSGI writes its first line only once the app is loaded, so the link is there first: the logger cannot open it.
    expect(release.error).toContain('pier: this log file was replaced (it is a symbolic link) and is ignored');
    expect(release.error).not.toContain(secret);
    expect((await p.logsOf(app)).join('\n')).not.toContain(secret);
  }, 60_000);

  it("gives an app no way to read the emperor's log: not by its inherited descriptors, not by path", async () => {
    const app = await p.createApp('peek');
    const release = await p.deploy(app, p.writeApp(app, {
      'wsgi.py': [
        'import json, os',
        'def _read(path):',
        '    try:',
        '        with open(path, "rb") as f:',
        '            return "read:" + f.read(300).decode("utf8", "replace")',
        '    except OSError as e:',
        '        return "error:" + e.strerror',
        'def application(environ, start_response):',
        '    runner = os.path.dirname(os.path.dirname(os.environ["HOME"]))',
        '    fds = {}',
        '    for fd in range(64):',
        '        try:',
        '            fds[fd] = [os.readlink("/proc/self/fd/%d" % fd), _read("/proc/self/fd/%d" % fd)]',
        '        except OSError:',
        '            pass',
        '    paths = {p: _read(os.path.join(runner, "emperor", p)) for p in ["logs/emperor.log", "private/emperor.log"]}',
        '    try:',
        '        listing = os.listdir(os.path.join(runner, "emperor", "logs"))',
        '    except OSError as e:',
        '        listing = "error:" + e.strerror',
        '    start_response("200 OK", [("Content-Type", "application/json")])',
        '    return [json.dumps({"fds": fds, "paths": paths, "listing": listing}).encode()]',
        '',
      ].join('\n'),
    }));
    expect(release.status).toBe('live');
    const body = await p.get(app);
    const facts = JSON.parse(body) as { fds: Record<string, [string, string]>; paths: Record<string, string>; listing: unknown };
    // stdout and stderr are uWSGI's log pipe; the emperor's own stderr is still open (write-only) but not re-openable.
    expect(facts.fds['1']![1]).toBe('error:No such device or address');
    expect(facts.fds['2']![1]).toBe('error:No such device or address');
    const emperorFds = Object.values(facts.fds).filter(([target]) => target.endsWith('/emperor/private/emperor.log'));
    expect(emperorFds.length).toBeGreaterThan(0);
    for (const [, result] of emperorFds) expect(result).toBe('error:Permission denied');
    expect(facts.paths['private/emperor.log']).toBe('error:Permission denied');
    expect(facts.paths['logs/emperor.log']).toBe('error:No such file or directory');
    expect(facts.listing).toBe('error:Permission denied');
    expect(body).not.toContain('uWSGI Emperor');
    expect(body).not.toContain('[emperor]');
    // The emperor's log still gets what the emperor says (operators read it as root).
    expect(readFileSync(join(p.runner.dir, 'emperor', 'private', 'emperor.log'), 'utf8')).toContain(`[emperor] vassal ${app}`);
  }, 60_000);
});
