/**
 * The balancer's own answers (404 unknown host, 503 no instance, 502 unreachable, 504 too slow), pure: a small
 * HTML page for browsers, plain text for everything else (curl, API clients), each naming the host.
 */
import { STATUS_CODES } from 'node:http';

/** Statuses the balancer answers by itself. */
export type BalancerStatus = 400 | 404 | 502 | 503 | 504;

const EXPLANATIONS: Record<BalancerStatus, { title: string; text: (host: string) => string }> = {
  400: { title: 'Bad Request', text: () => 'The request has no usable Host header.' },
  404: { title: 'No Such App', text: (host) => `No app is served at ${host}. Check the address, or add the hostname to an app with 'pier hosts:add'.` },
  503: { title: 'No Instance Running', text: (host) => `The app at ${host} has no running instance right now. If you own it, deploy it or scale it up with 'pier ps:scale web=1'.` },
  502: { title: 'App Unreachable', text: (host) => `The app at ${host} could not be reached. Try again in a moment.` },
  504: { title: 'App Timed Out', text: (host) => `The app at ${host} did not answer in time.` },
};

export interface ErrorPage {
  body: Buffer;
  contentType: string;
}

/** True when the client's Accept header asks for HTML (browsers do; curl's `*\/*` does not). */
export function wantsHtml(accept: string | undefined): boolean {
  return accept !== undefined && accept.includes('text/html');
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Renders the page for `status`; `host` is the normalized Host header (may be empty). */
export function renderErrorPage(status: BalancerStatus, host: string, requestId: string, accept: string | undefined): ErrorPage {
  const { title, text } = EXPLANATIONS[status];
  const shownHost = host === '' ? 'this address' : host;
  const message = text(shownHost);
  if (!wantsHtml(accept)) {
    return { body: Buffer.from(`${status} ${title}\n${message}\nrequest id: ${requestId}\n`), contentType: 'text/plain; charset=utf-8' };
  }
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${status} ${escapeHtml(title)}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222}h1{font-size:1.4em}code,small{color:#666}</style>
</head><body><h1>${status} ${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p><small>request id <code>${escapeHtml(requestId)}</code> · pier</small></body></html>
`;
  return { body: Buffer.from(html), contentType: 'text/html; charset=utf-8' };
}

/** A complete HTTP/1.1 response for a raw socket (upgrade requests), closing the connection. */
export function rawErrorResponse(status: BalancerStatus, host: string, requestId: string, accept: string | undefined): Buffer {
  const page = renderErrorPage(status, host, requestId, accept);
  const head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\ncontent-type: ${page.contentType}\r\ncontent-length: ${page.body.length}\r\n`
    + `cache-control: no-store\r\nx-request-id: ${requestId}\r\nconnection: close\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), page.body]);
}
