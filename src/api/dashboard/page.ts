/** The dashboard's HTML and CSS: static text, no value in them (the script fills every cell with textContent). */

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Pier</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="stylesheet" href="/dashboard.css">
<script src="/dashboard.js" defer></script>
</head><body>
<header><h1>Pier</h1><span id="summary" class="muted"></span>
 <button id="signout" type="button" hidden>Sign out</button></header>
<p id="error" role="alert"></p>
<section id="signin">
 <h2>Sign in</h2>
 <p class="muted">Paste your API token (<code>pier owners:create</code> printed it; <code>pier tokens:rotate</code> makes a new one).
 It stays in this tab only and is sent in a header, never in a URL.</p>
 <p><label for="token">API token</label> <input id="token" type="password" autocomplete="off" spellcheck="false" placeholder="pier_…">
 <button id="signin-button" type="button">Sign in</button></p>
</section>
<main id="board" hidden>
 <section><h2>Alerts</h2>
  <table><thead><tr><th>app</th><th>instance</th><th>reason</th><th>since</th><th>cleared</th></tr></thead><tbody id="alerts"></tbody></table></section>
 <section><h2>Apps</h2>
  <table><thead><tr><th>app</th><th>owner</th><th>hostnames</th><th>formation</th><th>live release</th><th>health</th></tr></thead><tbody id="apps"></tbody></table></section>
 <section id="nodes-section"><h2>Nodes</h2>
  <table><thead><tr><th>node</th><th>kind</th><th>status</th><th>leader</th><th>load</th><th>instances</th><th>address</th><th>last heartbeat</th></tr></thead><tbody id="nodes"></tbody></table></section>
 <section id="detail" hidden>
  <h2>App <span id="app-title"></span></h2>
  <h3>Health</h3>
  <table><thead><tr><th>instance</th><th>process</th><th>release</th><th>runner</th><th>state</th><th>healthy</th><th>status</th><th>latency</th><th>checked</th><th>reason</th></tr></thead><tbody id="health"></tbody></table>
  <h3>Deploys</h3>
  <table><thead><tr><th>release</th><th>status</th><th>description</th><th>by</th><th>created</th><th>error</th></tr></thead><tbody id="deploys"></tbody></table>
  <h3>Timeline <select id="since"><option value="30m">30 min</option><option value="1h" selected>1 hour</option><option value="6h">6 hours</option><option value="1d">1 day</option><option value="7d">7 days</option></select></h3>
  <p id="timeline-note" class="muted"></p>
  <table><thead><tr><th>at</th><th>kind</th><th>release</th><th>what happened</th></tr></thead><tbody id="timeline"></tbody></table>
 </section>
</main>
</body></html>
`;

export const DASHBOARD_CSS = `body{font:14px/1.5 system-ui,sans-serif;margin:1.5rem auto;max-width:72rem;padding:0 1rem;color:#222}
header{display:flex;gap:1rem;align-items:baseline} h1{font-size:1.4rem;margin:0} h2{font-size:1.1rem;margin-top:1.8rem} h3{font-size:1rem;margin-top:1.2rem}
table{border-collapse:collapse;width:100%} th,td{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #ddd;vertical-align:top}
th{font-weight:600;color:#555} td.num{text-align:right} .muted{color:#777} #error{color:#b00;min-height:1.2em}
.alive,.ok,.live{color:#080} .dead,.bad,.failed{color:#b00} .warn{color:#a60} input{width:28rem;font:inherit;padding:.2rem}
button.link{background:none;border:none;padding:0;color:#0645ad;cursor:pointer;font:inherit;text-decoration:underline}
tr.selected td{background:#f3f6ff} tr.cleared td{color:#999} td.at{white-space:nowrap;font-family:ui-monospace,monospace;font-size:12px}
`;
