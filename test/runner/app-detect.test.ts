import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/core/errors.js';
import { defaultFormation, detectApp, parseProcfile, processTypes } from '../../src/runner/app-detect.js';
import { EXAMPLES_DIR } from '../helpers/uwsgi.js';

const root = mkdtempSync(join(tmpdir(), 'pier-detect-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let counter = 0;

function app(files: Record<string, string>): string {
  const dir = join(root, `app-${++counter}`);
  mkdirSync(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

describe('detectApp', () => {
  it('uses wsgi.py and its application when there is no Procfile', async () => {
    expect(await detectApp(join(EXAMPLES_DIR, 'hello'))).toEqual({
      wsgi: { module: 'wsgi', callable: 'application' },
      processes: {},
      build: null,
      release: null,
      hasRequirements: false,
      source: 'wsgi.py',
    });
  });

  it("uses the Procfile's wsgi: line over wsgi.py, with workers and requirements", async () => {
    const dir = app({
      Procfile: '# processes\nwsgi: mysite.wsgi:app\r\nworker: python worker.py --queue default\nclock:python clock.py\n',
      'wsgi.py': 'application = None\n',
      'requirements.txt': 'flask\n',
    });
    expect(await detectApp(dir)).toEqual({
      wsgi: { module: 'mysite.wsgi', callable: 'app' },
      processes: { worker: 'python worker.py --queue default', clock: 'python clock.py' },
      build: null,
      release: null,
      hasRequirements: true,
      source: 'procfile',
    });
  });

  it('defaults the callable to application for a bare module', async () => {
    expect((await detectApp(app({ Procfile: 'wsgi: project.wsgi\n' }))).wsgi).toEqual({ module: 'project.wsgi', callable: 'application' });
  });

  it('ignores a web: line when a wsgi: line is present', async () => {
    const spec = await detectApp(app({ Procfile: 'web: gunicorn app:app\nwsgi: app:app\n' }));
    expect(spec.wsgi).toEqual({ module: 'app', callable: 'app' });
    expect(spec.processes).toEqual({});
  });

  it('takes web: module:callable as the WSGI app, with build: and release: phases beside the process types', async () => {
    const spec = await detectApp(app({ Procfile: 'web: mysite.wsgi:application\nbuild: python manage.py collectstatic --noinput\nrelease: python manage.py migrate --noinput\nworker: python worker.py\n' }));
    expect(spec).toMatchObject({
      wsgi: { module: 'mysite.wsgi', callable: 'application' },
      processes: { worker: 'python worker.py' },
      build: 'python manage.py collectstatic --noinput',
      release: 'python manage.py migrate --noinput',
    });
    expect(processTypes(spec)).toEqual(['web', 'worker']);
    expect(defaultFormation(spec)).toEqual({ web: 1, worker: 0 });
  });

  it('runs a Procfile with only background types, starting its first type at 1', async () => {
    const spec = await detectApp(app({ Procfile: 'clock: python clock.py\nworker: python w.py\n' }));
    expect(spec.wsgi).toBeNull();
    expect(defaultFormation(spec)).toEqual({ clock: 1, worker: 0 });
  });

  it('serves wsgi.py beside a Procfile that only names phases and workers', async () => {
    const spec = await detectApp(app({ Procfile: 'release: python migrate.py\n', 'wsgi.py': 'application = None\n' }));
    expect(spec.wsgi).toEqual({ module: 'wsgi', callable: 'application' });
    expect(spec.release).toBe('python migrate.py');
  });

  it('explains, with the line to write, when the Procfile only has a gunicorn web: line', async () => {
    await expect(detectApp(app({ Procfile: 'web: gunicorn --bind 0.0.0.0:$PORT myapp:app\n' }))).rejects.toThrow(
      "Procfile has a 'web:' line, which Pier does not run: it serves WSGI apps under uWSGI; add 'wsgi: module:callable' instead (here: 'wsgi: myapp:app')",
    );
  });

  it('fails with a clear message when there is neither wsgi.py nor a wsgi: line', async () => {
    const err = await detectApp(app({ Procfile: 'build: make\n', 'main.py': '' })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as Error).message).toMatch(/^no wsgi\.py and no 'web:' line in Procfile; /);
  });

  it('fails when wsgi.py never mentions application', async () => {
    await expect(detectApp(app({ 'wsgi.py': 'from flask import Flask\napp = Flask(__name__)\n' }))).rejects.toThrow(
      "wsgi.py does not define 'application'",
    );
  });
});

describe('parseProcfile', () => {
  it.each([
    ['wsgi: not a target', "Procfile line 1: 'wsgi: not a target' is not 'module:callable'"],
    ['wsgi: a:b\nwsgi: c:d', "Procfile line 2: 'wsgi:' appears twice"],
    ['cron: 0 * * * * python x.py', "Procfile line 1: 'cron:' is not supported by Pier"],
    ['run: python x.py', "Procfile line 1: 'run' is reserved for one-off processes (pier run); name the type differently"],
    ['9lives: python x.py', "Procfile line 1: process type '9lives' must start with a letter"],
    ['just words', "Procfile line 1: expected 'type: command'"],
    ['\n\nworker:', "Procfile line 3: 'worker:' has no command"],
  ])('rejects %j', (text, message) => {
    expect(() => parseProcfile(text)).toThrow(message);
  });
});
