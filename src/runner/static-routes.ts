/**
 * The vassal options that serve an app's `static:` mounts from uWSGI itself, without Python (pure). Checked
 * against Debian's uWSGI 2.0.21 (core/static.c, core/routing.c, plugins/router_static):
 *
 * - Files are served by the `static-next:` routing action (plugin router_static), which stats, opens and sends
 *   the file in the vassal's worker, so as the app's user, never as root. It answers `Content-Type` (from
 *   /etc/mime.types), `Content-Length`, `Last-Modified`, 304 on `If-Modified-Since`, HEAD, ranges, and with
 *   `static-gzip-all` the precompressed `FILE.gz` (`FILE.br`) when `Accept-Encoding` names gzip (br), with
 *   `Content-Encoding`.
 * - Its path check: the route hands it one whole path (`DIR/<rest of PATH_INFO>`), and it serves only when that
 *   path's realpath() starts with the path itself. A `..`, a symlink (to /etc, to ../wsgi.py, or even inside the
 *   folder) or anything realpath() rewrites is refused. DIR must therefore be free of symlinks (the runner
 *   resolves the release folder once).
 * - What uWSGI lacks is added here: a miss, a refused path or another method falls through to the app with
 *   `static-next`, so a mapped prefix answers 404 itself; a raw URI under a prefix with a dot segment, an encoded
 *   dot, slash or backslash, a backslash or NUL is refused before any file is looked at (uWSGI decodes
 *   `%2e%2e` into PATH_INFO and resolves `/static/../x` to `/x`, which would reach the app); `ETag`,
 *   `Cache-Control`, `Vary: Accept-Encoding`, `X-Content-Type-Options: nosniff` and, for an extension
 *   /etc/mime.types does not know, `Content-Type: application/octet-stream` are added by response routes.
 * - The ETag is weak and built from Last-Modified (`W/"pier-<hex of the Last-Modified text>"`): uWSGI validates
 *   by mtime only, so that is what the tag stands for. uWSGI ignores `If-None-Match`; the balancer turns a tag
 *   of this form back into `If-Modified-Since` (balancer/static-validators.ts), so both validators give a 304.
 * - uWSGI's own 304 and a route's 404 pass through response routes too; the static branch ends with `last:`,
 *   before the vassal's chunking rules, which would otherwise chunk a body-less 304.
 */
import { ValidationError } from '../core/errors.js';

/** One mount as the vassal serves it. */
export interface StaticServeMount {
  /** URL prefix, as parseStaticMap checked it (`/static/`). */
  prefix: string;
  /** Absolute folder, free of symlinks, e.g. `/var/lib/pier/runner-1/releases/blog/ab12…/app/staticfiles`. */
  dir: string;
}

/** What the vassal serves from files. */
export interface StaticServing {
  /** Mounts, longest prefix first. */
  mounts: StaticServeMount[];
  /** `Cache-Control` max-age of names without a content hash, in seconds. */
  maxAgeS: number;
  /**
   * uWSGI offload threads (file bodies sent by a thread of their own, freeing the worker); 0 = none. The runner uses
   * none: with them uWSGI 2.0.21 closes the client's keep-alive connection after every offloaded file, which cut
   * balancer throughput to a third in bench/static.ts. @default 0
   */
  offloadThreads?: number;
}

/** `Cache-Control` of names holding a content hash (`base.4f3c2a1b9e8d.css`, Django's ManifestStaticFilesStorage). */
export const HASHED_CACHE_CONTROL = 'public, max-age=31536000, immutable';
/** A name with a content hash: `.<8..64 hex>.<ext>` at its end. */
export const HASHED_NAME = '\\.[0-9a-f]{8,64}\\.[A-Za-z0-9]+$';
/** Default max-age of un-hashed names (runner.staticMaxAgeMs): one hour. */
export const DEFAULT_STATIC_MAX_AGE_MS = 3_600_000;
/** Longest max-age accepted, in seconds (one year, as HASHED_CACHE_CONTROL). */
export const MAX_STATIC_MAX_AGE_S = 31_536_000;
/** Raw request URIs a mapped prefix refuses: a `.`/`..` segment, encoded `.`, `/`, `\` or NUL, a backslash. */
const UNSAFE_URI = '^[^?]*(/\\.\\.?(/|\\?|$)|%2[eEfF]|%5[cC]|%00|\\\\)';
/** Content-Type of a file of unknown type (nginx's default_type). */
const DEFAULT_TYPE = 'application/octet-stream';
/** Statuses uWSGI's file server answers with once it took the request (a miss leaves another status). */
const SERVED_STATUSES = ['200', '206', '304', '416'];
const DIR = /^\/[A-Za-z0-9._/~-]+$/;

/** An option line: `[key, value]`, the value not yet ini-escaped (vassal.ts escapes every value). */
export type IniOption = [string, string];

/** The option lines, in three groups for vassal.ts to place (see renderVassal). */
export interface StaticOptions {
  /** Plain options (offload threads, gzip lookup). */
  settings: IniOption[];
  /** Response-header collection and the jump into the static branch: before the vassal's own response routes. */
  responseHead: IniOption[];
  /** The static response branch: after the vassal's own response routes. */
  responseTail: IniOption[];
  /** Request routes. */
  requestRoutes: IniOption[];
}

/** Renders the options serving `serving`. @throws ValidationError for a folder or max-age that cannot be written safely. */
export function staticOptions(serving: StaticServing): StaticOptions {
  const maxAge = serving.maxAgeS;
  if (!Number.isInteger(maxAge) || maxAge < 0 || maxAge > MAX_STATIC_MAX_AGE_S) {
    throw new ValidationError(`static max-age ${maxAge} must be an integer 0..${MAX_STATIC_MAX_AGE_S} seconds`);
  }
  const settings: IniOption[] = [['static-gzip-all', 'true']];
  const offload = serving.offloadThreads ?? 0;
  if (offload > 0) settings.push(['offload-threads', String(offload)]);
  const responseHead: IniOption[] = [['response-header-collect', 'Last-Modified PIER_LM'], ['response-header-collect', 'Content-Type PIER_CT']];
  const requestRoutes: IniOption[] = [];
  const sections: IniOption[] = [];
  serving.mounts.forEach((mount, i) => {
    if (!DIR.test(mount.dir) || mount.dir.split('/').some((s) => s === '.' || s === '..')) {
      throw new ValidationError(`static folder '${mount.dir}' must be an absolute path of letters, digits, '.', '_', '~', '-' and '/'`);
    }
    const label = `pier-static-${i}`;
    const prefix = `^${escapeRegex(mount.prefix)}`;
    responseHead.push(['response-route-if', `startswith:\${PATH_INFO};${mount.prefix} goto:pier-static-response`]);
    requestRoutes.push(['route-uri', `${prefix} goto:${label}`], ['route', `${prefix} goto:${label}`]);
    sections.push(
      ['route-label', label],
      ['route-uri', `${UNSAFE_URI} return:404`],
      ['route', `${prefix}(.*)$ static-next:${mount.dir}/$1`],
      ...SERVED_STATUSES.map((status): IniOption => ['route-if', `equal:\${uwsgi[status]};${status} break:`]),
      ['route-run', 'return:404'],
    );
  });
  // Past the jumps, every other request goes on to the app without entering a static section.
  requestRoutes.push(['route-run', 'last:'], ...sections);
  const responseTail: IniOption[] = [
    ['response-route-run', 'last:'],
    ['response-route-label', 'pier-static-response'],
    ['response-route-if', 'equal:${uwsgi[status]};200 goto:pier-static-body'],
    ['response-route-if', 'equal:${uwsgi[status]};206 goto:pier-static-body'],
    ['response-route-if', 'equal:${uwsgi[status]};304 goto:pier-static-validators'],
    ['response-route-run', 'last:'],
    // Headers of a body only: a 304 carrying them would overwrite what the client stored (RFC 9111 §4.3.4).
    ['response-route-label', 'pier-static-body'],
    // A file whose extension /etc/mime.types does not know gets no Content-Type from uWSGI: say what nginx says.
    ['response-route-if', `empty:\${PIER_CT} addheader:Content-Type: ${DEFAULT_TYPE}`],
    ['response-route-run', 'addheader:X-Content-Type-Options: nosniff'],
    ['response-route-label', 'pier-static-validators'],
    ['response-route-run', 'addheader:Vary: Accept-Encoding'],
    ['response-route-if-not', 'empty:${PIER_LM} addheader:ETag: W/"pier-${hex[PIER_LM]}"'],
    ['response-route', `${HASHED_NAME} goto:pier-static-hashed`],
    ['response-route-run', `addheader:Cache-Control: public, max-age=${maxAge}`],
    ['response-route-run', 'last:'],
    ['response-route-label', 'pier-static-hashed'],
    ['response-route-run', `addheader:Cache-Control: ${HASHED_CACHE_CONTROL}`],
    ['response-route-run', 'last:'],
  ];
  return { settings, responseHead, responseTail, requestRoutes };
}

/** The config var an app sets to choose the max-age (seconds) of its un-hashed static names. */
export const STATIC_MAX_AGE_VAR = 'PIER_STATIC_MAX_AGE';

/** Checks a `PIER_STATIC_MAX_AGE` value at `config:set`. @throws ValidationError naming the variable and the range. */
export function checkStaticMaxAge(value: string): number {
  const seconds = /^\d{1,8}$/.test(value) ? Number(value) : NaN;
  if (!(seconds <= MAX_STATIC_MAX_AGE_S)) {
    throw new ValidationError(`config var ${STATIC_MAX_AGE_VAR} must be a whole number of seconds 0..${MAX_STATIC_MAX_AGE_S}, not '${value}'`, { details: { path: `env.${STATIC_MAX_AGE_VAR}` } });
  }
  return seconds;
}

/**
 * The max-age (seconds) for an app: its `PIER_STATIC_MAX_AGE`, else the runner's default.
 * @throws ValidationError for a malformed `PIER_STATIC_MAX_AGE` (the deploy fails naming it; the old release serves on).
 */
export function staticMaxAgeS(config: Record<string, string>, defaultMs: number): number {
  const value = config[STATIC_MAX_AGE_VAR];
  return value === undefined ? Math.min(MAX_STATIC_MAX_AGE_S, Math.floor(defaultMs / 1000)) : checkStaticMaxAge(value);
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
