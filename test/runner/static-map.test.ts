import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/core/errors.js';
import { parseProcfile, specFrom } from '../../src/runner/app-detect.js';
import { parseStaticMap } from '../../src/runner/static-map.js';

describe('parseStaticMap', () => {
  it('reads several pairs, drops trailing slashes of folders and puts the longest prefix first', () => {
    expect(parseStaticMap('/static/=staticfiles/  /static/admin/=vendor/admin /media/=public/media/')).toEqual([
      { prefix: '/static/admin/', folder: 'vendor/admin' },
      { prefix: '/static/', folder: 'staticfiles' },
      { prefix: '/media/', folder: 'public/media' },
    ]);
  });

  it.each([
    ['static/=staticfiles/', "static prefix 'static/' must start and end with '/'"],
    ['/static=staticfiles/', "static prefix '/static' must start and end with '/'"],
    ['/=staticfiles/', "static prefix '/' would take every URL of the app"],
    ['/a//b/=s/', "static prefix '/a//b/' holds an empty segment ('//')"],
    ['/a/../b/=s/', "static prefix '/a/../b/' holds a '..' segment"],
    ['/a/./=s/', "static prefix '/a/./' holds a '.' segment"],
    ['/%2e%2e/=s/', "static prefix '/%2e%2e/' holds an encoded character ('%')"],
    ['/a\\b/=s/', "static prefix '/a\\b/' may hold only letters"],
    ['/st$(x)/=s/', "static prefix '/st$(x)/' may hold only letters"],
    ['/static/', "static pair '/static/' is not 'PREFIX=FOLDER'"],
    ['/static/=', "static folder '' is empty"],
    ['/static/=/etc/', "static folder '/etc/' is absolute"],
    ['/static/=../up/', "static folder '../up/' holds a '..' segment"],
    ['/static/=a/../../b', "static folder 'a/../../b' holds a '..' segment"],
    ['/static/=./', "static folder './' holds a '.' segment"],
    ['/static/=a//b', "static folder 'a//b' holds an empty segment ('//')"],
    ['/static/=%2e%2e', "static folder '%2e%2e' holds an encoded character ('%')"],
    ['/static/=a=b', "static folder 'a=b' may hold only letters"],
    ['/static/=a /static/=b', "static prefix '/static/' appears twice"],
  ])('refuses %j', (text, message) => {
    expect(() => parseStaticMap(text, 'Procfile line 3')).toThrow(ValidationError);
    expect(() => parseStaticMap(text, 'Procfile line 3')).toThrow(`Procfile line 3: ${message}`);
  });

  it('refuses more than 16 pairs', () => {
    const text = Array.from({ length: 17 }, (_, i) => `/s${i}/=f${i}`).join(' ');
    expect(() => parseStaticMap(text)).toThrow('at most 16 are allowed');
  });
});

describe('Procfile static:', () => {
  it('names the line of a malformed static: pair, in one line', () => {
    let message = '';
    try {
      parseProcfile('web: app:application\n\nstatic: /static/=../wsgi.py\n');
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toBe("Procfile line 3: static folder '../wsgi.py' holds a '..' segment; name a folder inside the release, such as 'staticfiles/'");
    expect(message).not.toContain('\n');
  });

  it('gives the spec its mounts beside the web app, never as a process type', () => {
    const spec = specFrom('web: app:application\nstatic: /static/=staticfiles/\nworker: python w.py\n', undefined, false);
    expect(spec.static).toEqual([{ prefix: '/static/', folder: 'staticfiles' }]);
    expect(spec.processes).toEqual({ worker: 'python w.py' });
  });

  it('leaves static out of a spec without a static: line', () => {
    expect('static' in specFrom('web: app:application\n', undefined, false)).toBe(false);
  });

  it('refuses a static: line without a web app to serve it', () => {
    expect(() => specFrom('worker: python w.py\nstatic: /static/=s/\n', 'application = 1', false)).toThrow("'static:' line but no web app");
    expect(() => specFrom('static: /static/=s/\n', undefined, false)).toThrow("'static:' line but no web app");
  });

  it('takes a wsgi.py as the web app of a Procfile holding only static:', () => {
    const spec = specFrom('static: /static/=s/\n', 'application = 1', false);
    expect(spec.wsgi).toEqual({ module: 'wsgi', callable: 'application' });
    expect(spec.static).toEqual([{ prefix: '/static/', folder: 's' }]);
  });
});
