/**
 * Attack 1 of issue #10 through the whole platform (test/helpers/root-platform.ts): a hostile upload whose build
 * runs code (a local requirement's setup.py, a planted venv/__main__.py) and asks pip for /etc/shadow. App names
 * start with `rb`.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { appUserName } from '../../src/runner/app-users.js';
import { rootPlatform } from '../helpers/root-platform.js';

const isRoot = process.getuid?.() === 0;
const p = await rootPlatform('rb', ['--no-index', '--no-build-isolation']);

describe.runIf(isRoot)('a root runner building hostile uploads', () => {
  it("builds a local requirement as the app's user, and serves it from a release the app cannot change", async () => {
    const app = await p.createApp('build');
    const release = await p.deploy(app, p.writeApp(app, {
      'requirements.txt': '.\n',
      'setup.py': `import os\nopen(${JSON.stringify(join(p.record, `${app}-setup`))}, "a").write("%d\\n" % os.getuid())\nfrom setuptools import setup\nsetup(name="rbdep", version="1.0", py_modules=["rbdep"])\n`,
      'rbdep.py': 'VALUE = "from a local requirement"\n',
      'venv/__main__.py': `import os\nopen(${JSON.stringify(join(p.record, `${app}-venv`))}, "a").write("%d\\n" % os.getuid())\n`,
      'wsgi.py': [
        'import os, sys, rbdep',
        'def application(environ, start_response):',
        '    venv = sys.prefix',
        '    try:',
        '        open(os.path.join(venv, "lib", "python3.11", "site-packages", "rbdep.py"), "a").write("# changed")',
        '        writable = True',
        '    except OSError:',
        '        writable = False',
        '    start_response("200 OK", [])',
        '    return [("%s uid=%d venv-writable=%s" % (rbdep.VALUE, os.getuid(), writable)).encode()]',
        '',
      ].join('\n'),
    }));
    expect(release.status).toBe('live');
    const uid = Number(execFileSync('id', ['-u', appUserName(app)]).toString().trim());
    expect(await p.get(app)).toBe(`from a local requirement uid=${uid} venv-writable=False`);
    const setupUids = readFileSync(join(p.record, `${app}-setup`), 'utf8').trim().split('\n').map(Number);
    expect(new Set(setupUids)).toEqual(new Set([uid]));
    expect(() => readFileSync(join(p.record, `${app}-venv`))).toThrow(/ENOENT/);
  }, 60_000);

  it("fails a build that asks pip for /etc/shadow, showing the owner nothing of it", async () => {
    const app = await p.createApp('shadow');
    const release = await p.deploy(app, p.writeApp(app, { 'requirements.txt': '-r /etc/shadow\n', 'wsgi.py': 'def application(e, s):\n    pass\n' }));
    expect(release.status).toBe('failed');
    expect(release.error).toContain("Permission denied: '/etc/shadow'");
    const shadowFirst = readFileSync('/etc/shadow', 'utf8').split('\n')[0]!;
    const shown = `${release.error}\n${(await p.logsOf(app)).join('\n')}`;
    expect(shown).not.toContain(shadowFirst);
    for (const field of shadowFirst.split(':').slice(1).filter((f) => f.length > 3)) expect(shown).not.toContain(field);
  }, 60_000);
});
