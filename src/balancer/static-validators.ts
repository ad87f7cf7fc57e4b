/**
 * `If-None-Match` for the static files vassals serve (pure). uWSGI's file server validates by mtime only and
 * ignores `If-None-Match`; its vassal therefore tags each file with a weak ETag that carries the file's
 * Last-Modified text in hex (`W/"pier-<hex>"`, runner/static-routes.ts). A request whose `If-None-Match` holds
 * such a tag is sent on with that date as `If-Modified-Since`, so uWSGI answers 304 exactly when the
 * Last-Modified the tag stands for is still current or newer; the 304 gets the tag back as its ETag.
 *
 * Only tags of this shape are touched, and only into a well-formed HTTP date, so an app's own ETags and
 * conditional requests pass as they are. An app could forge such a tag for its own paths, which changes only
 * the `If-Modified-Since` its own code sees.
 */

/** `W/"pier-<hex>"` (the `W/` optional: If-None-Match compares weakly). */
const PIER_TAG = /^(?:W\/)?"pier-((?:[0-9A-Fa-f]{2}){29})"$/;
/** RFC 9110 IMF-fixdate, the only form uWSGI's parser reads. */
const IMF_FIXDATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;

/** The rewritten request headers, and the tag to give a 304 (undefined: nothing was rewritten). */
export interface StaticValidation {
  headers: string[];
  etag?: string;
}

/**
 * For a GET or HEAD whose `If-None-Match` holds a Pier static tag: the headers with `If-Modified-Since` set to the
 * tag's date (any client value replaced: If-None-Match takes precedence, RFC 9110 §13.2.2). Else `headers` as given.
 */
export function translateStaticValidator(method: string | undefined, headers: string[]): StaticValidation {
  if (method !== 'GET' && method !== 'HEAD') return { headers };
  let found: { tag: string; date: string } | undefined;
  for (let i = 0; i < headers.length && !found; i += 2) {
    if (headers[i]!.toLowerCase() !== 'if-none-match') continue;
    for (const candidate of headers[i + 1]!.split(',')) {
      const tag = candidate.trim();
      const match = PIER_TAG.exec(tag);
      if (!match) continue;
      const date = Buffer.from(match[1]!, 'hex').toString('latin1');
      if (IMF_FIXDATE.test(date)) {
        found = { tag, date };
        break;
      }
    }
  }
  if (!found) return { headers };
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i]!.toLowerCase() !== 'if-modified-since') out.push(headers[i]!, headers[i + 1]!);
  }
  out.push('if-modified-since', found.date);
  return { headers: out, etag: found.tag.startsWith('W/') ? found.tag : `W/${found.tag}` };
}
