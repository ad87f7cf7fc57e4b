/**
 * The dashboard's script, served as its own file (/dashboard.js) so the page's Content-Security-Policy can forbid
 * inline script. Every value reaches the page through textContent or a DOM attribute set by property, never through
 * innerHTML, so an app name or a timeline line holding markup shows as text. The token lives in sessionStorage (this
 * tab only) and goes in the Authorization header, never in a URL.
 */
export const DASHBOARD_JS = String.raw`'use strict';
(function () {
  var KEY = 'pierToken';
  var REFRESH_MS = 3000;
  var MAX_APPS = 50;
  var MAX_DEPLOYS = 20;
  var state = { selected: null, timer: null, busy: false };
  var $ = function (id) { return document.getElementById(id); };

  /** An element with text children (strings become text nodes, never markup). */
  function el(tag, props) {
    var node = document.createElement(tag);
    if (props) Object.keys(props).forEach(function (k) { if (k === 'dataset') Object.assign(node.dataset, props[k]); else node[k] = props[k]; });
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  function fill(id, rows, empty, columns) {
    var body = $(id);
    body.replaceChildren.apply(body, rows.length ? rows : [el('tr', null, el('td', { colSpan: columns, className: 'muted' }, empty))]);
  }
  function td(text, className) { return el('td', className ? { className: className } : null, text === null || text === undefined || text === '' ? '-' : text); }
  function iso(ms) { return typeof ms === 'number' ? new Date(ms).toISOString().replace('T', ' ').slice(0, 19) : '-'; }
  function ago(ms) {
    if (typeof ms !== 'number') return 'never';
    var s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    return s < 60 ? s + 's ago' : s < 3600 ? Math.round(s / 60) + 'm ago' : Math.round(s / 3600) + 'h ago';
  }
  function token() { return sessionStorage.getItem(KEY); }
  function showError(text) { $('error').textContent = text || ''; }

  function ApiError(status, code, message) { this.status = status; this.code = code; this.message = message; }
  async function api(path) {
    var res = await fetch(path, { headers: { authorization: 'Bearer ' + token() }, cache: 'no-store', credentials: 'omit' });
    var body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    if (!res.ok) {
      var err = body && body.error ? body.error : { code: 'HTTP_' + res.status, message: 'HTTP ' + res.status };
      throw new ApiError(res.status, err.code, err.message);
    }
    return body;
  }
  /** An endpoint another part may not have yet: a 404 "no such endpoint" reads as empty. */
  async function optional(path, fallback) {
    try { return await api(path); } catch (e) {
      if (e instanceof ApiError && e.status === 404) return fallback;
      throw e;
    }
  }
  var seg = encodeURIComponent;

  function formation(app) {
    if (app.formation && typeof app.formation === 'object') {
      return Object.keys(app.formation).map(function (t) { return t + '=' + app.formation[t]; }).join(' ');
    }
    return 'web=' + app.webScale;
  }
  function liveRelease(deploys) {
    var live = deploys.filter(function (d) { return d.release && d.release.status === 'live'; })[0];
    return live ? 'v' + live.release.version : 'none';
  }
  function healthOf(health, instances) {
    var list = health.instances || [];
    if (list.length) {
      var good = list.filter(function (i) { return i.healthy; }).length;
      return { text: good + '/' + list.length + ' healthy', className: good === list.length ? 'ok' : 'bad' };
    }
    var ready = instances.filter(function (i) { return i.state === 'ready'; }).length;
    return { text: ready + '/' + instances.length + ' ready', className: instances.length && ready === instances.length ? 'ok' : instances.length ? 'warn' : 'muted' };
  }

  function renderNodes(status) {
    $('nodes-section').hidden = !status.isAdmin;
    fill('nodes', status.nodes.map(function (n) {
      var info = n.info || {};
      return el('tr', null, td(n.id), td(n.kind), td(n.drainingSince ? n.status + ', draining' : n.status, n.status), td(n.isLeader ? 'leader' : ''),
        td(typeof info.load === 'number' ? info.load.toFixed(2) : null, 'num'), td(typeof info.instances === 'number' ? info.instances : null, 'num'),
        td(n.address), td(ago(n.lastHeartbeatAt)));
    }), 'no nodes', 8);
  }

  function renderAlerts(alerts) {
    var list = (alerts && alerts.alerts) || [];
    fill('alerts', list.map(function (a) {
      return el('tr', { className: a.clearedAt ? 'cleared' : 'active', dataset: { alert: String(a.id) } },
        td(a.app), td(a.instance), td(a.reason, a.clearedAt ? '' : 'bad'), td(iso(a.since)), td(a.clearedAt ? iso(a.clearedAt) : 'active'));
    }), 'no alerts', 5);
  }

  function renderApps(apps, details) {
    fill('apps', apps.map(function (app, i) {
      var d = details[i];
      var pick = el('button', { type: 'button', className: 'link', dataset: { app: app.name } }, app.name);
      pick.addEventListener('click', function () { state.selected = app.name; refresh(); });
      var health = d ? healthOf(d.health, d.instances) : { text: '…', className: 'muted' };
      return el('tr', { className: app.name === state.selected ? 'selected' : '', dataset: { app: app.name } },
        el('td', null, pick), td(app.owner), td(app.hostnames.join(', ')), td(formation(app)), td(d ? liveRelease(d.deploys) : '…'), td(health.text, health.className));
    }), 'no apps yet: pier apps:create NAME', 6);
  }

  function renderDetail(name, d, timeline) {
    $('detail').hidden = false;
    $('app-title').textContent = name;
    var health = (d.health.instances && d.health.instances.length) ? d.health.instances : d.instances.map(function (i) {
      return { name: i.id, processType: i.processType, release: i.release, runner: i.runnerId, state: i.state, healthy: null, status: null, latencyMs: null, at: null, reason: null };
    });
    fill('health', health.map(function (h) {
      return el('tr', null, td(h.name || h.id), td(h.processType), td(h.release ? 'v' + h.release : null), td(h.runner), td(h.state),
        td(h.healthy === null || h.healthy === undefined ? null : h.healthy ? 'yes' : 'no', h.healthy ? 'ok' : h.healthy === false ? 'bad' : ''),
        td(h.status, 'num'), td(typeof h.latencyMs === 'number' ? h.latencyMs + ' ms' : null, 'num'), td(ago(h.at)), td(h.reason));
    }), 'no instances', 10);
    fill('deploys', d.deploys.slice(0, MAX_DEPLOYS).map(function (dep) {
      var r = dep.release;
      return el('tr', { dataset: { release: String(r.version) } }, td('v' + r.version), td(r.status, r.status), td(r.description), td(r.createdBy), td(iso(r.createdAt)), td(r.error, 'bad'));
    }), 'no deploys yet: pier deploy', 6);
    $('timeline-note').textContent = timeline.note || '';
    fill('timeline', timeline.entries.slice().reverse().map(function (e) {
      return el('tr', { className: 'entry', dataset: { kind: e.kind } }, td(new Date(e.at).toISOString(), 'at'), td(e.kind), td(e.version ? 'v' + e.version : null), td(e.summary));
    }), 'nothing happened in this window', 4);
  }

  async function appDetails(app) {
    var base = '/v1/apps/' + seg(app.name);
    var got = await Promise.all([
      api(base + '/deploys'), optional(base + '/health', { instances: [] }), api(base + '/instances'),
    ]);
    return { deploys: got[0].deploys, health: got[1], instances: got[2].instances };
  }

  async function refresh() {
    if (!token() || state.busy) return;
    state.busy = true;
    try {
      var status = await api('/v1/status');
      var alerts = await optional('/v1/alerts', { alerts: [] });
      var apps = status.apps.slice(0, MAX_APPS);
      if (state.selected && !apps.some(function (a) { return a.name === state.selected; })) state.selected = null;
      if (!state.selected && apps.length) state.selected = apps[0].name;
      var details = await Promise.all(apps.map(function (a) { return appDetails(a).catch(function () { return null; }); }));
      $('summary').textContent = 'signed in as ' + status.owner + (status.isAdmin ? ' (operator)' : '') + ' · answered by ' + status.nexusId + ' · event version ' + status.version;
      renderNodes(status);
      renderAlerts(alerts);
      renderApps(apps, details);
      var index = apps.findIndex(function (a) { return a.name === state.selected; });
      if (index >= 0 && details[index]) {
        var timeline = await api('/v1/apps/' + seg(state.selected) + '/explain?since=' + seg($('since').value));
        renderDetail(state.selected, details[index], timeline);
      } else {
        $('detail').hidden = true;
      }
      showError('');
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) { signOut(); showError('that token was refused: ' + e.message); }
      else showError(e && e.message ? e.message : String(e));
    } finally {
      state.busy = false;
    }
  }

  function signedIn(isIn) {
    $('signin').hidden = isIn;
    $('board').hidden = !isIn;
    $('signout').hidden = !isIn;
    if (!isIn) $('summary').textContent = '';
  }
  function signIn() {
    var value = $('token').value.trim();
    $('token').value = '';
    if (!value) { showError('paste an API token first'); return; }
    sessionStorage.setItem(KEY, value);
    signedIn(true);
    refresh();
  }
  function signOut() {
    sessionStorage.removeItem(KEY);
    state.selected = null;
    ['nodes', 'apps', 'alerts', 'health', 'deploys', 'timeline'].forEach(function (id) { $(id).replaceChildren(); });
    $('detail').hidden = true;
    signedIn(false);
    showError('');
  }

  document.addEventListener('DOMContentLoaded', function () {
    $('signin-button').addEventListener('click', signIn);
    $('token').addEventListener('keydown', function (e) { if (e.key === 'Enter') signIn(); });
    $('signout').addEventListener('click', signOut);
    $('since').addEventListener('change', refresh);
    signedIn(Boolean(token()));
    refresh();
    state.timer = setInterval(refresh, REFRESH_MS);
  });
})();
`;
