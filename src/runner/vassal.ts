/**
 * Renders one app instance's uWSGI vassal `.ini` (pure). Every value goes through `iniValue`, because uWSGI
 * rewrites ini text before using it (checked against Debian's 2.0.21, core/utils.c and core/uwsgi.c):
 *
 * - `%X` is a "magic variable" everywhere in the file (`%t` is a timestamp, unknown letters become nothing);
 *   `%%` is a literal `%`, so every `%` is doubled.
 * - `$(NAME)` is replaced by the environment variable, `@(PATH)` by the contents of that file (read as the
 *   emperor's user: root), `%(option)` by another option's value. There is no escape syntax; `$(` and `@(` are
 *   written as `$%(pier_lp)` (a placeholder holding `(`, expanded in the last pass, after `$` and `@`), and
 *   `%(` is rejected, since the reference pass re-scans its own output.
 * - Values lose trailing spaces and tabs and cannot hold a line break: both are rejected.
 *
 * Responses without a Content-Length are sent chunked (see `renderVassal`), so HTTP/1.1 keep-alive works for
 * streaming apps too.
 *
 * `strict = true` makes uWSGI exit on any option it does not know (a typo, or an option whose plugin is not
 * loaded), so `plugins` comes right after it.
 */
import { ValidationError } from '../core/errors.js';
import type { WsgiEntry } from './app-detect.js';
import { checkStaticMaxAge, STATIC_MAX_AGE_VAR, staticOptions, type StaticServing } from './static-routes.js';

/** What one vassal runs and how. */
export interface VassalSpec {
  /** Vassal name (the emperor's file name without `.ini`); shown in process titles as `pier-<name>`. */
  name: string;
  /** The unpacked release (absolute path); uWSGI chdirs into it. */
  appDir: string;
  /** The release's virtualenv (absolute path). @default none: system Python */
  venvDir?: string;
  wsgi: WsgiEntry;
  /** Port of the HTTP/1.1 keep-alive socket. */
  port: number;
  /** Address the socket binds. @default '127.0.0.1' */
  host?: string;
  /** uWSGI worker processes. */
  processes: number;
  /** Threads per worker. */
  threads: number;
  /** Config vars. `PORT` is always set to `port` (a config var named PORT is overridden); `PYTHONUNBUFFERED=1` unless given. */
  env: Record<string, string>;
  /** User and group the vassal drops to (name or number); needed when the emperor runs as root. @default none */
  uid?: string | number;
  gid?: string | number;
  /** The vassal's own log file: uWSGI's messages and the app's stdout/stderr. @default none: the emperor's log */
  logFile?: string;
  /** Size at which `logFile` is rotated to `<logFile>.1` (one old file kept). @default 10485760 (10 MiB) */
  logMaxBytes?: number;
  /** Largest request header block uWSGI accepts, in bytes. @default 32768 */
  bufferSize?: number;
  /** A request running longer than this gets its worker killed and respawned; whole seconds, rounded up. @default none */
  harakiriMs?: number;
  /** Open files per process (uWSGI `max-fd`, set as root before the vassal drops privileges). @default uWSGI's: inherited */
  maxFd?: number;
  /**
   * cgroup folders (absolute, one per controller) the vassal's master joins before it drops root and loads the
   * app, so every process of the app is inside them (uWSGI `cgroup`). They must exist. @default none
   */
  cgroups?: string[];
  /** URL prefixes uWSGI serves from folders without Python (the Procfile's `static:`; static-routes.ts). @default none */
  static?: StaticServing;
  /** Written as a comment for a restarted runner to read back with `readVassalMeta` (values are JSON). @default none */
  meta?: Record<string, string | number | boolean>;
}

/** Default `logMaxBytes`. */
export const DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024;
/** Default `bufferSize`. */
export const DEFAULT_BUFFER_SIZE = 32 * 1024;

const META_PREFIX = '; pier-meta = ';
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
const HOST = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])$/;
const ACCOUNT = /^(?:\d+|[a-z_][a-z0-9_-]{0,31})$/;

/** Renders the `.ini` text for `spec`. @throws ValidationError naming the field that cannot be written safely. */
export function renderVassal(spec: VassalSpec): string {
  check(NAME.test(spec.name), 'name', `vassal name '${spec.name}' must be 1-128 letters, digits, '.', '_' or '-'`);
  check(Number.isInteger(spec.port) && spec.port > 0 && spec.port < 65536, 'port', 'port must be 1..65535');
  const host = spec.host ?? '127.0.0.1';
  check(HOST.test(host), 'host', `host '${host}' is not a hostname or IP address`);
  check(isCount(spec.processes, 1024), 'processes', 'processes must be an integer 1..1024');
  check(isCount(spec.threads, 1024), 'threads', 'threads must be an integer 1..1024');
  const served = spec.static && spec.static.mounts.length > 0 ? staticOptions(spec.static) : undefined;
  const plugins = ['python3', 'transformation_chunked', ...(spec.logFile ? ['logfile'] : []), ...(served ? ['router_static'] : [])];
  const lines: string[] = ['[uwsgi]', '; written by Pier; changes are overwritten'];
  if (spec.meta) lines.push(META_PREFIX + JSON.stringify(spec.meta)); // a comment: never expanded
  const opt = (key: string, value: string | number, field: string = key): void => {
    lines.push(`${key} = ${iniValue(String(value), field)}`);
  };
  opt('strict', 'true');
  opt('plugins', plugins.join(','));
  for (const flag of ['master', 'need-app', 'die-on-term', 'single-interpreter', 'enable-threads']) opt(flag, 'true');
  opt('http11-socket', `${host}:${spec.port}`);
  // A chunked response leaves in several small writes; without TCP_NODELAY the last one waits for the ACK the
  // balancer delays: 40 ms per request on a kept-alive connection (measured: 45 ms → 1 ms).
  opt('tcp-nodelay', 'true');
  for (const [key, value] of served?.settings ?? []) opt(key, value, 'static');
  // The static branch's jump comes before the chunking rules below (see static-routes.ts).
  for (const [key, value] of served?.responseHead ?? []) opt(key, value, 'static');
  // A keep-alive response needs framing: without Content-Length (a generator body) uWSGI sends neither a length
  // nor chunks, and the client waits for the 4 s socket timeout. Chunk exactly those responses: not ones the app
  // already chunked (a WSGI shim may), and not for HTTP/1.0 clients, whose connection uWSGI closes instead.
  opt('response-header-collect', 'Content-Length PIER_CL');
  opt('response-header-collect', 'Transfer-Encoding PIER_TE');
  opt('response-route-if-not', 'empty:${PIER_TE} last:');
  opt('response-route-if', 'equal:${SERVER_PROTOCOL};HTTP/1.0 last:');
  opt('response-route-if', 'empty:${PIER_CL} chunked:');
  for (const [key, value] of [...(served?.responseTail ?? []), ...(served?.requestRoutes ?? [])]) opt(key, value, 'static');
  opt('chdir', absolute(spec.appDir, 'appDir'), 'appDir');
  if (spec.venvDir !== undefined) opt('virtualenv', absolute(spec.venvDir, 'venvDir'), 'venvDir');
  opt('module', `${spec.wsgi.module}:${spec.wsgi.callable}`, 'wsgi');
  opt('processes', spec.processes);
  opt('threads', spec.threads);
  opt('buffer-size', checkedInt(spec.bufferSize ?? DEFAULT_BUFFER_SIZE, 'bufferSize', 4096, 65535));
  if (spec.harakiriMs !== undefined) opt('harakiri', Math.ceil(checkedInt(spec.harakiriMs, 'harakiriMs', 1, 86_400_000) / 1000));
  if (spec.maxFd !== undefined) opt('max-fd', checkedInt(spec.maxFd, 'maxFd', 16, 1_048_576));
  for (const dir of spec.cgroups ?? []) opt('cgroup', absolute(dir, 'cgroups'), 'cgroups');
  opt('procname-prefix-spaced', `pier-${spec.name}`);
  if (spec.uid !== undefined) opt('uid', account(spec.uid, 'uid'));
  if (spec.gid !== undefined) opt('gid', account(spec.gid, 'gid'));
  for (const [key, value] of envEntries(spec)) opt('env', `${key}=${value}`, `env.${key}`);
  addLoggers(spec, opt);
  if (lines.some((line) => line.includes('%(pier_lp)'))) lines.push('set-placeholder = pier_lp=(');
  return `${lines.join('\n')}\n`;
}

/** Reads back the `meta` a vassal was rendered with; undefined when it has none or it is unreadable. */
export function readVassalMeta(ini: string): Record<string, unknown> | undefined {
  const line = ini.split('\n').find((l) => l.startsWith(META_PREFIX));
  if (!line) return undefined;
  try {
    const value: unknown = JSON.parse(line.slice(META_PREFIX.length));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Checks a config var can reach the app through a vassal unchanged. Exported so the API can refuse it at
 * `config:set` time instead of the deploy failing later.
 * @throws ValidationError naming the variable.
 */
export function checkEnvVar(key: string, value: string): void {
  check(ENV_KEY.test(key), `env.${key}`, `config var name '${key}' must be letters, digits and '_', not starting with a digit`);
  iniValue(`${key}=${value}`, `env.${key}`);
  if (key === STATIC_MAX_AGE_VAR) checkStaticMaxAge(value);
}

/**
 * Escapes one ini value for uWSGI (see the module comment).
 * @throws ValidationError for a line break or control character, trailing whitespace, or `%(`.
 */
export function iniValue(value: string, field: string): string {
  const name = field.startsWith('env.') ? `config var ${field.slice(4)}` : field;
  check(!/[\u0000-\u0008\u000a-\u001f\u007f]/.test(value), field, `${name} contains a line break or control character, which a uWSGI ini file cannot hold`);
  check(!/^[ \t]|[ \t]$/.test(value), field, `${name} starts or ends with whitespace, which uWSGI's ini parser drops`);
  check(!value.includes('%('), field, `${name} contains '%(', which uWSGI expands as an option reference and cannot escape`);
  return value.replace(/%|[$@]\(/g, (m) => (m === '%' ? '%%' : `${m[0]}%(pier_lp)`));
}

function envEntries(spec: VassalSpec): Array<[string, string]> {
  const entries = Object.entries(spec.env).filter(([key]) => key !== 'PORT');
  for (const [key, value] of entries) checkEnvVar(key, value);
  if (!Object.hasOwn(spec.env, 'PYTHONUNBUFFERED')) entries.unshift(['PYTHONUNBUFFERED', '1']);
  entries.push(['PORT', String(spec.port)]);
  return entries;
}

function addLoggers(spec: VassalSpec, opt: (key: string, value: string | number, field?: string) => void): void {
  if (spec.logFile !== undefined) {
    const file = absolute(spec.logFile, 'logFile');
    check(!/[,=]/.test(file), 'logFile', "logFile cannot contain ',' or '=' (uWSGI's file logger splits its options on them)");
    const maxBytes = checkedInt(spec.logMaxBytes ?? DEFAULT_LOG_MAX_BYTES, 'logMaxBytes', 4096, 2 ** 40);
    // Named loggers receive only routed lines; '.*' routes every line to each.
    opt('logger', `pierfile file:logfile=${file},maxsize=${maxBytes},backupname=${file}.1`, 'logFile');
    opt('log-route', 'pierfile .*');
  }
}

function check(ok: boolean, field: string, message: string): asserts ok {
  if (!ok) throw new ValidationError(message, { details: { path: field } });
}

function isCount(value: number, max: number): boolean {
  return Number.isInteger(value) && value >= 1 && value <= max;
}

function checkedInt(value: number, field: string, min: number, max: number): number {
  check(Number.isInteger(value) && value >= min && value <= max, field, `${field} must be an integer ${min}..${max}`);
  return value;
}

function absolute(path: string, field: string): string {
  check(path.startsWith('/'), field, `${field} must be an absolute path`);
  return path;
}

function account(value: string | number, field: string): string {
  const text = String(value);
  check(ACCOUNT.test(text), field, `${field} '${text}' is not a user or group name or number`);
  return text;
}
