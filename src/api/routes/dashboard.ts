/**
 * GET / (the dashboard page), /dashboard.js and /dashboard.css: one page, no build step. An owner signs in with a
 * token; the script reads /v1/status, /v1/alerts, and for each app its deploys, health and instances, and the
 * explain timeline of the selected app. The page carries a strict Content-Security-Policy: script and style from
 * this origin only (no inline script), fetches to this origin only, no frames, no forms, no base URL.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { DASHBOARD_CSS, DASHBOARD_HTML } from '../dashboard/page.js';
import { DASHBOARD_JS } from '../dashboard/script.js';

export const DASHBOARD_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

function send(reply: FastifyReply, type: string, body: string): FastifyReply {
  return reply.type(type)
    .header('content-security-policy', DASHBOARD_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('x-frame-options', 'DENY')
    .header('referrer-policy', 'no-referrer')
    .header('cache-control', 'no-store')
    .send(body);
}

export function dashboardRoutes(app: FastifyInstance): void {
  app.get('/', async (_request, reply) => send(reply, 'text/html; charset=utf-8', DASHBOARD_HTML));
  app.get('/dashboard.js', async (_request, reply) => send(reply, 'text/javascript; charset=utf-8', DASHBOARD_JS));
  app.get('/dashboard.css', async (_request, reply) => send(reply, 'text/css; charset=utf-8', DASHBOARD_CSS));
}
