/**
 * The dashboard: one self-contained page (inline CSS and JS, no CDN, works
 * offline) that polls /api/status every second and derives rates from the
 * difference between two snapshots: requests/s from the request totals,
 * mean latency from latency sum / count. Nothing is kept on the server.
 *
 * Upstreams are grouped by pool (the status lists them pool by pool); routes are
 * listed with their hit counts and hits/s. Tests find upstream rows by
 * `data-upstream="<address>"` (`pool/address` outside the pool default) and read
 * `data-health="up|down|draining"`; worker rows carry `data-worker="<slot>"`.
 *
 * The token, when one is configured, comes from `?token=` and is sent in an
 * Authorization header on every fetch. The script and style are covered by
 * a Content-Security-Policy built from their SHA-256 hashes, so nothing but
 * this exact code runs on the page, and the page may only talk to its origin.
 */
import { createHash } from 'node:crypto'

const style = `
:root { --up: #1a7f37; --down: #cf222e; --draining: #9a6700; --fg: #1f2328; --muted: #656d76; --line: #d0d7de; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: #fff; }
header { display: flex; align-items: baseline; gap: 16px; padding: 12px 20px; border-bottom: 1px solid var(--line); background: var(--bg); }
header h1 { font-size: 18px; margin: 0; }
#conn { margin-left: auto; font-size: 12px; color: var(--muted); }
#conn.bad { color: var(--down); font-weight: 600; }
main { padding: 12px 20px 24px; max-width: 1200px; }
h2 { font-size: 15px; margin: 20px 0 8px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; min-width: 120px; }
.card .label { font-size: 11px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 18px; font-variant-numeric: tabular-nums; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { font-size: 12px; color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; }
.badge { display: inline-block; min-width: 70px; text-align: center; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px; font-weight: 600; }
.badge.up { background: var(--up); } .badge.down { background: var(--down); } .badge.draining { background: var(--draining); }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; vertical-align: middle; }
button { font: inherit; font-size: 12px; padding: 1px 8px; cursor: pointer; }
#chart { width: 100%; height: 160px; border: 1px solid var(--line); border-radius: 6px; background: #fff; display: block; }
#chart .grid { stroke: var(--line); stroke-width: 1; }
#chart text { font-size: 10px; fill: var(--muted); }
.muted { color: var(--muted); }
`

const script = `
'use strict';
(function () {
  var token = new URLSearchParams(location.search).get('token');
  var headers = token ? { authorization: 'Bearer ' + token } : {};
  var WINDOW_S = 300;
  var COLORS = ['#0969da', '#bf3989', '#1a7f37', '#9a6700', '#8250df', '#cf222e', '#1b7c83', '#57606a'];
  var previous = null;
  var history = [];
  var rows = new Map();
  var colorOf = new Map();
  var $ = function (id) { return document.getElementById(id); };

  function el (tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmt (n, digits) { return n === null || !isFinite(n) ? '\\u2013' : n.toFixed(digits === undefined ? 1 : digits); }
  function int (n) { return Math.round(n).toLocaleString('en-US'); }
  function duration (ms) {
    var s = Math.floor(ms / 1000), d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    return (d ? d + 'd ' : '') + (d || h ? h + 'h ' : '') + m + 'm ' + (s % 60) + 's';
  }
  function color (address) {
    if (!colorOf.has(address)) colorOf.set(address, COLORS[colorOf.size % COLORS.length]);
    return colorOf.get(address);
  }

  function card (label, value) {
    var c = el('div', 'card'); c.appendChild(el('div', 'label', label)); c.appendChild(el('div', 'value', value)); return c;
  }

  function act (id, action) {
    fetch('/api/upstreams/' + encodeURIComponent(id) + '/' + action, { method: 'POST', headers: headers })
      .then(function () { return poll(true); });
  }

  function upstreamRow (u) {
    var row = rows.get(u.key);
    if (!row) {
      var tr = el('tr'); tr.setAttribute('data-upstream', u.key); tr.setAttribute('data-pool', u.pool);
      var cells = {};
      ['health', 'pool', 'address', 'rps', 'active', 'sockets', 'latency', 'errors', 'check', 'action'].forEach(function (k) {
        cells[k] = el('td', ['rps', 'active', 'sockets', 'latency', 'errors'].indexOf(k) >= 0 ? 'num' : '');
        tr.appendChild(cells[k]);
      });
      var badge = el('span', 'badge'); cells.health.appendChild(badge);
      var sw = el('span', 'swatch'); sw.style.background = color(u.key);
      cells.pool.textContent = u.pool;
      cells.address.appendChild(sw); cells.address.appendChild(document.createTextNode(u.address + ' (' + u.id + ')'));
      var button = el('button'); cells.action.appendChild(button);
      button.addEventListener('click', function () { act(row.id, row.health === 'draining' ? 'enable' : 'drain'); });
      row = { tr: tr, cells: cells, badge: badge, button: button, id: u.id, health: '' };
      rows.set(u.key, row);
    }
    return row;
  }

  function render (s) {
    var prev = previous; previous = s;
    var dt = prev ? (s.uptimeMs - prev.uptimeMs) / 1000 : 0;
    var prevBy = new Map(prev ? prev.upstreams.map(function (u) { return [u.key, u]; }) : []);
    var prevRoutes = new Map(prev ? prev.routes.map(function (r) { return [r.index + ':' + r.name, r]; }) : []);
    var prevWorkers = new Map(prev ? prev.workers.map(function (w) { return [w.slot + ':' + w.threadId, w]; }) : []);

    $('version').textContent = 'v' + s.version;
    $('mode').textContent = s.mode === 'sequential' ? 'sequential (1 thread)' : s.workerCount + ' worker threads';
    var totalRps = dt > 0 ? (s.totals.requests - prev.totals.requests) / dt : null;
    var cards = $('cards'); cards.replaceChildren(
      card('uptime', duration(s.uptimeMs)),
      card('requests/s', fmt(totalRps)),
      card('requests', int(s.totals.requests)),
      card('connections', int(s.totals.connectionsAccepted)),
      card('5xx', int(s.totals.responses['5xx'])),
      card('rate limited', int(s.totals.rateLimited)),
      card('firewall blocked', int(s.totals.firewallBlocked)),
      card('protocol errors', int(s.totals.protocolErrors)),
      card('worker restarts', int(s.totals.workerRestarts)),
      card('rate table', s.rateLimit.enabled ? int(s.rateLimit.slotsUsed) + ' / ' + int(s.rateLimit.tableSize) : 'off'),
      card('cache', s.cache.enabled ? int(s.cache.entries) + ' entries, ' + int(s.cache.hits) + ' hits' : 'off'));

    var body = $('upstreams'); var seen = new Set(); var point = { rps: new Map(), total: totalRps || 0 };
    s.upstreams.forEach(function (u) {
      seen.add(u.key);
      var row = upstreamRow(u); var p = prevBy.get(u.key);
      row.id = u.id; row.health = u.health;
      row.tr.setAttribute('data-health', u.health);
      row.badge.className = 'badge ' + u.health; row.badge.textContent = u.health;
      var rps = p && dt > 0 ? (u.totals.requests - p.totals.requests) / dt : null;
      var dCount = p ? u.totals.latencyCount - p.totals.latencyCount : 0;
      var latency = dCount > 0 ? (u.totals.latencySumMs - p.totals.latencySumMs) / dCount : null;
      point.rps.set(u.key, rps || 0);
      row.cells.rps.textContent = fmt(rps);
      row.cells.active.textContent = int(u.activeRequests);
      row.cells.sockets.textContent = int(u.openSockets);
      row.cells.latency.textContent = latency === null ? '\\u2013' : fmt(latency, 1) + ' ms';
      row.cells.errors.textContent = int(u.totals.failures) + ' / ' + int(u.totals.responses['5xx']);
      row.cells.check.textContent = u.lastCheck ? u.lastCheck.reason + ', ' + fmt(u.lastCheck.ageMs / 1000, 0) + ' s ago' : 'no active check';
      row.button.textContent = u.health === 'draining' ? 'enable' : 'drain';
      body.appendChild(row.tr);
    });
    rows.forEach(function (row, key) { if (!seen.has(key)) { row.tr.remove(); rows.delete(key); } });

    var rbody = $('routes'); rbody.replaceChildren();
    s.routes.forEach(function (r) {
      var p = prevRoutes.get(r.index + ':' + r.name);
      var tr = el('tr'); tr.setAttribute('data-route', r.name);
      [String(r.index), r.name, r.target, int(r.hits), fmt(p && dt > 0 ? (r.hits - p.hits) / dt : null)]
        .forEach(function (text, i) { tr.appendChild(el('td', i >= 3 ? 'num' : '', text)); });
      rbody.appendChild(tr);
    });
    if (s.routes.length === 0) { var none = el('tr'); none.appendChild(el('td', 'muted', 'no routes: every request goes to the pool default')); rbody.appendChild(none); }

    var wbody = $('workers'); wbody.replaceChildren();
    s.workers.forEach(function (w) {
      var p = prevWorkers.get(w.slot + ':' + w.threadId);
      var tr = el('tr'); tr.setAttribute('data-worker', String(w.slot));
      [String(w.slot), s.mode === 'sequential' ? 'primary' : String(w.threadId), int(w.openConnections),
        fmt(p && dt > 0 ? (w.requests - p.requests) / dt : null), int(w.requests), fmt(w.loopLagMs, 2) + ' ms']
        .forEach(function (text, i) { tr.appendChild(el('td', i >= 2 ? 'num' : '', text)); });
      wbody.appendChild(tr);
    });

    if (dt > 0) { history.push(point); if (history.length > WINDOW_S) history.shift(); }
    chart(s.upstreams.map(function (u) { return u.key; }));
  }

  function chart (addresses) {
    var svg = $('chart'), W = 600, H = 160, top = 10, bottom = 150;
    // the first minute fills the width; after that the axis grows to WINDOW_S
    var span = Math.min(WINDOW_S, Math.max(60, history.length));
    var max = 1;
    history.forEach(function (p) { max = Math.max(max, p.total); });
    var ns = 'http://www.w3.org/2000/svg';
    svg.replaceChildren();
    [0, 0.5, 1].forEach(function (f) {
      var y = bottom - f * (bottom - top);
      var line = document.createElementNS(ns, 'line');
      line.setAttribute('class', 'grid'); line.setAttribute('x1', '0'); line.setAttribute('x2', String(W));
      line.setAttribute('y1', String(y)); line.setAttribute('y2', String(y)); svg.appendChild(line);
      var label = document.createElementNS(ns, 'text'); label.setAttribute('x', '4'); label.setAttribute('y', String(y - 2));
      label.textContent = fmt(max * f, 0) + ' req/s'; svg.appendChild(label);
    });
    var series = [{ key: null, color: '#1f2328' }].concat(addresses.map(function (a) { return { key: a, color: color(a) }; }));
    series.forEach(function (line) {
      var pts = history.map(function (p, i) {
        var v = line.key === null ? p.total : (p.rps.get(line.key) || 0);
        var x = W - (history.length - 1 - i) * (W / (span - 1));
        return x.toFixed(1) + ',' + (bottom - (v / max) * (bottom - top)).toFixed(1);
      });
      if (pts.length < 2) return;
      var poly = document.createElementNS(ns, 'polyline');
      poly.setAttribute('points', pts.join(' ')); poly.setAttribute('fill', 'none');
      poly.setAttribute('stroke', line.color); poly.setAttribute('stroke-width', line.key === null ? '2' : '1.25');
      svg.appendChild(poly);
    });
  }

  var timer = null;
  function poll (once) {
    if (!once && timer !== null) { clearTimeout(timer); timer = null; }
    return fetch('/api/status', { headers: headers, cache: 'no-store' })
      .then(function (res) {
        if (res.status === 401) throw new Error('unauthorized: open this page as /?token=<admin token>');
        if (!res.ok) throw new Error('status ' + res.status);
        return res.json();
      })
      .then(function (s) { render(s); $('conn').className = ''; $('conn').textContent = 'updated ' + new Date().toLocaleTimeString(); },
        function (err) { $('conn').className = 'bad'; $('conn').textContent = 'disconnected: ' + err.message; })
      .then(function () { if (!once) timer = setTimeout(poll, 1000); });
  }
  poll(false);
})();
`

function sha256 (text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('base64')
}

export const dashboardHtml = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>switchyard</title>
<link rel="icon" href="data:,">
<style>${style}</style>
</head>
<body>
<header><h1>switchyard</h1><span id="version" class="muted"></span><span id="mode" class="muted"></span><span id="conn">connecting\u2026</span></header>
<main>
<div id="cards" class="cards"></div>
<h2>Upstreams</h2>
<table>
<thead><tr><th>health</th><th>pool</th><th>upstream</th><th class="num">req/s</th><th class="num">in flight</th><th class="num">sockets</th><th class="num">mean latency</th><th class="num">failures / 5xx</th><th>last check</th><th></th></tr></thead>
<tbody id="upstreams"></tbody>
</table>
<h2>Routes (first match wins)</h2>
<table>
<thead><tr><th>#</th><th>route</th><th>to</th><th class="num">hits</th><th class="num">hits/s</th></tr></thead>
<tbody id="routes"></tbody>
</table>
<h2>Requests per second (up to the last 5 minutes)</h2>
<svg id="chart" viewBox="0 0 600 160" preserveAspectRatio="none" role="img" aria-label="requests per second"></svg>
<h2>Workers</h2>
<table>
<thead><tr><th>slot</th><th>thread</th><th class="num">connections</th><th class="num">req/s</th><th class="num">requests</th><th class="num">loop lag p99</th></tr></thead>
<tbody id="workers"></tbody>
</table>
</main>
<script>${script}</script>
</body>
</html>
`

/** Only this page's own script and style may run; fetches go to the same origin only. */
export const dashboardCsp = [
  "default-src 'none'",
  `script-src 'sha256-${sha256(script)}'`,
  `style-src 'sha256-${sha256(style)}'`,
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ')
