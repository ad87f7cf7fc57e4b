/** GET /: a one-page dashboard (no build step) that shows /v1/status for the token the visitor pastes in. */
import type { FastifyInstance } from 'fastify';

const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Pier</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font:14px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}
 h1{font-size:1.4rem} h2{font-size:1.1rem;margin-top:2rem} table{border-collapse:collapse;width:100%}
 th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #ddd} th{font-weight:600;color:#555}
 .alive{color:#080}.dead{color:#b00}.muted{color:#777} input{width:28rem;font:inherit;padding:.2rem}
 #error{color:#b00}
</style></head><body>
<h1>Pier</h1>
<p><label>API token <input id="token" type="password" autocomplete="off" placeholder="pier_…"></label>
 <button id="save">Show</button> <span id="error"></span></p>
<p id="summary" class="muted"></p>
<h2>Nodes</h2><table><thead><tr><th>node</th><th>kind</th><th>status</th><th>leader</th><th>address</th><th>last heartbeat</th></tr></thead><tbody id="nodes"></tbody></table>
<h2>Apps</h2><table><thead><tr><th>name</th><th>owner</th><th>hostnames</th><th>web</th></tr></thead><tbody id="apps"></tbody></table>
<script>
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => '&#' + c.charCodeAt(0) + ';');
const ago = (t) => t === null ? 'never' : Math.max(0, Math.round((Date.now() - t) / 1000)) + 's ago';
$('token').value = localStorage.getItem('pierToken') || '';
$('save').onclick = () => { localStorage.setItem('pierToken', $('token').value.trim()); refresh(); };
async function refresh() {
  const token = localStorage.getItem('pierToken');
  if (!token) return;
  try {
    const res = await fetch('/v1/status', { headers: { authorization: 'Bearer ' + token } });
    const body = await res.json();
    if (!res.ok) throw new Error(body.error ? body.error.message : 'HTTP ' + res.status);
    $('error').textContent = '';
    $('summary').textContent = 'answered by ' + body.nexusId + ' · event version ' + body.version + ' · signed in as ' + body.owner;
    $('nodes').innerHTML = body.nodes.map((n) => '<tr><td>' + esc(n.id) + '</td><td>' + esc(n.kind) + '</td><td class="' + esc(n.status) + '">' + esc(n.status) +
      '</td><td>' + (n.isLeader ? 'leader' : '') + '</td><td>' + esc(n.address) + '</td><td>' + ago(n.lastHeartbeatAt) + '</td></tr>').join('') ||
      '<tr><td colspan="6" class="muted">operators see nodes here</td></tr>';
    $('apps').innerHTML = body.apps.map((a) => '<tr><td>' + esc(a.name) + '</td><td>' + esc(a.owner) + '</td><td>' + esc(a.hostnames.join(', ') || '-') +
      '</td><td>' + a.webScale + '</td></tr>').join('') || '<tr><td colspan="4" class="muted">no apps</td></tr>';
  } catch (err) { $('error').textContent = err.message; }
}
refresh(); setInterval(refresh, 2000);
</script></body></html>`;

export function dashboardRoutes(app: FastifyInstance): void {
  app.get('/', async (_request, reply) =>
    reply.type('text/html; charset=utf-8').header('content-security-policy', "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'").send(PAGE));
}
