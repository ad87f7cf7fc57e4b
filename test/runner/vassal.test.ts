import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/core/errors.js';
import { checkEnvVar, iniValue, readVassalMeta, renderVassal, type VassalSpec } from '../../src/runner/vassal.js';

const BASE: VassalSpec = {
  name: 'hello-1',
  appDir: '/srv/pier/releases/hello/v1',
  wsgi: { module: 'wsgi', callable: 'application' },
  port: 20001,
  processes: 2,
  threads: 4,
  env: {},
};

describe('renderVassal', () => {
  it('renders a minimal vassal with strict first and the plugins right after', () => {
    expect(renderVassal(BASE)).toBe(
      [
        '[uwsgi]',
        '; written by Pier; changes are overwritten',
        'strict = true',
        'plugins = python3,transformation_chunked',
        'master = true',
        'need-app = true',
        'die-on-term = true',
        'single-interpreter = true',
        'enable-threads = true',
        'http11-socket = 127.0.0.1:20001',
        'tcp-nodelay = true',
        'response-header-collect = Content-Length PIER_CL',
        'response-header-collect = Transfer-Encoding PIER_TE',
        'response-route-if-not = empty:${PIER_TE} last:',
        'response-route-if = equal:${SERVER_PROTOCOL};HTTP/1.0 last:',
        'response-route-if = empty:${PIER_CL} chunked:',
        'chdir = /srv/pier/releases/hello/v1',
        'module = wsgi:application',
        'processes = 2',
        'threads = 4',
        'buffer-size = 32768',
        'procname-prefix-spaced = pier-hello-1',
        'env = PYTHONUNBUFFERED=1',
        'env = PORT=20001',
        '',
      ].join('\n'),
    );
  });

  it('renders every option of a full spec', () => {
    const ini = renderVassal({
      ...BASE,
      host: '0.0.0.0',
      venvDir: '/srv/pier/venvs/hello/v1',
      env: { GREETING: 'hi there', PORT: '1', PYTHONUNBUFFERED: '0' },
      uid: 'pier-hello',
      gid: 1001,
      logFile: '/srv/pier/logs/hello-1.log',
      logMaxBytes: 1_000_000,
      bufferSize: 16384,
      harakiriMs: 30_500,
      maxFd: 512,
      cgroups: ['/sys/fs/cgroup/memory/pier-r/i-1', '/sys/fs/cgroup/pids/pier-r/i-1'],
      meta: { app: 'hello', port: 20001 },
    });
    const lines = ini.split('\n');
    expect(lines).toContain('plugins = python3,transformation_chunked,logfile');
    expect(lines).toContain('http11-socket = 0.0.0.0:20001');
    expect(lines).toContain('virtualenv = /srv/pier/venvs/hello/v1');
    expect(lines).toContain('uid = pier-hello');
    expect(lines).toContain('gid = 1001');
    expect(lines).toContain('buffer-size = 16384');
    expect(lines).toContain('harakiri = 31');
    expect(lines).toContain('max-fd = 512');
    expect(lines.filter((l) => l.startsWith('cgroup'))).toEqual(['cgroup = /sys/fs/cgroup/memory/pier-r/i-1', 'cgroup = /sys/fs/cgroup/pids/pier-r/i-1']);
    expect(lines.filter((l) => l.startsWith('env = '))).toEqual(['env = GREETING=hi there', 'env = PYTHONUNBUFFERED=0', 'env = PORT=20001']);
    expect(lines).toContain('logger = pierfile file:logfile=/srv/pier/logs/hello-1.log,maxsize=1000000,backupname=/srv/pier/logs/hello-1.log.1');
    expect(lines).toContain('log-route = pierfile .*');
    expect(lines.some((l) => l.includes('zeromq'))).toBe(false); // no plain log intake: the runner ships the file
    expect(readVassalMeta(ini)).toEqual({ app: 'hello', port: 20001 });
  });

  it("escapes what uWSGI's ini reader would expand", () => {
    const ini = renderVassal({ ...BASE, env: { A: '100%', B: '$(HOME)', C: '@(/etc/shadow)', D: 'x%ty', E: 'a=b;c#d' } });
    const env = ini.split('\n').filter((l) => l.startsWith('env = '));
    expect(env).toEqual([
      'env = PYTHONUNBUFFERED=1',
      'env = A=100%%',
      'env = B=$%(pier_lp)HOME)',
      'env = C=@%(pier_lp)/etc/shadow)',
      'env = D=x%%ty',
      'env = E=a=b;c#d',
      'env = PORT=20001',
    ]);
    expect(ini.trimEnd().split('\n').at(-1)).toBe('set-placeholder = pier_lp=(');
  });

  it.each([
    [{ env: { X: 'two\nlines' } }, 'config var X contains a line break or control character, which a uWSGI ini file cannot hold'],
    [{ env: { X: 'carriage\r' } }, 'config var X contains a line break or control character, which a uWSGI ini file cannot hold'],
    [{ env: { X: 'trailing ' } }, "config var X starts or ends with whitespace, which uWSGI's ini parser drops"],
    [{ env: { X: '%(chdir)' } }, "config var X contains '%(', which uWSGI expands as an option reference and cannot escape"],
    [{ env: { '1X': 'v' } }, "config var name '1X' must be letters, digits and '_', not starting with a digit"],
    [{ appDir: 'relative/dir' }, 'appDir must be an absolute path'],
    [{ name: '../x' }, "vassal name '../x' must be 1-128 letters, digits, '.', '_' or '-'"],
    [{ port: 70000 }, 'port must be 1..65535'],
    [{ uid: 'root; rm' }, "uid 'root; rm' is not a user or group name or number"],
    [{ logFile: '/a,b.log' }, "logFile cannot contain ',' or '=' (uWSGI's file logger splits its options on them)"],
    [{ wsgi: { module: 'wsgi', callable: 'app\nstrict = false' } }, 'wsgi contains a line break or control character, which a uWSGI ini file cannot hold'],
  ])('rejects %j', (override, message) => {
    const err = (() => {
      try {
        renderVassal({ ...BASE, ...override } as VassalSpec);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as Error).message).toBe(message);
  });
});

describe('checkEnvVar', () => {
  it('accepts what a vassal can carry and rejects the rest', () => {
    expect(() => checkEnvVar('DATABASE_URL', 'postgres://u:p%40ss@db/x?a=$b')).not.toThrow();
    expect(() => checkEnvVar('TABS', 'a\tb')).not.toThrow();
    expect(() => checkEnvVar('BAD', 'x\u0000')).toThrow(ValidationError);
  });

  it('keeps leading spaces inside env values, which uWSGI preserves after KEY=', () => {
    expect(iniValue('K=  indented', 'env.K')).toBe('K=  indented');
  });
});
