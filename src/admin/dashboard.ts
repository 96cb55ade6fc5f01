/**
 * The dashboard: one self-contained page (inline CSS and JS, no CDN, works
 * offline) that polls /api/status every second and derives rates from the
 * difference between two snapshots (requests/s, 5xx/s) and latency
 * percentiles from histogram deltas over the last minute of snapshots
 * (p50/p95/p99, interpolated as Prometheus' histogram_quantile). Nothing is
 * kept on the server. HAProxy's stats page is the bar: per upstream its state
 * and time in it, open connections (a gauge, not a cumulative count), 4xx/5xx
 * including switchyard's own answers, percentiles, bytes, retries; the chart
 * has a legend, clock-time labels, a 5xx line, and is drawn in CSS pixels so
 * text is never stretched.
 *
 * Tests find upstream rows by `data-upstream="<address>"` and read
 * `data-health="up|down|draining"`, cells by `data-col`; cards carry
 * `data-card`, worker rows `data-worker="<slot>"`, chart lines and legend
 * entries `data-series`.
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
main { padding: 12px 20px 24px; max-width: 1400px; }
h2 { font-size: 15px; margin: 20px 0 8px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; min-width: 110px; }
.card .label { font-size: 11px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 18px; font-variant-numeric: tabular-nums; }
.card .sub { font-size: 11px; color: var(--muted); }
.card.alert .value { color: var(--down); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; font-size: 12.5px; }
th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { font-size: 11px; color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; }
td.bad { color: var(--down); font-weight: 600; }
.badge { display: inline-block; min-width: 70px; text-align: center; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px; font-weight: 600; }
.badge.up { background: var(--up); } .badge.down { background: var(--down); } .badge.draining { background: var(--draining); }
tr.expiring td { background: #fff1c2; color: #7a4b00; font-weight: 600; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; vertical-align: middle; }
.swatch.dashed { height: 0; border-top: 2px dashed var(--down); border-radius: 0; width: 14px; }
button { font: inherit; font-size: 12px; padding: 1px 8px; cursor: pointer; }
#chart { width: 100%; height: 180px; border: 1px solid var(--line); border-radius: 6px; background: #fff; display: block; }
#chart .grid { stroke: var(--line); stroke-width: 1; }
#chart text { font-size: 11px; fill: var(--muted); }
#legend { display: flex; flex-wrap: wrap; gap: 14px; margin-top: 6px; font-size: 12px; }
.muted { color: var(--muted); }
`

const script = `
'use strict';
(function () {
  var token = new URLSearchParams(location.search).get('token');
  var headers = token ? { authorization: 'Bearer ' + token } : {};
  var WINDOW_S = 300;
  // latency percentiles cover the last minute of snapshots (histogram deltas)
  var QUANTILE_WINDOW_MS = 60000;
  var COLORS = ['#0969da', '#bf3989', '#1a7f37', '#9a6700', '#8250df', '#1b7c83', '#57606a', '#953800'];
  var TOTAL_COLOR = '#1f2328', ERROR_COLOR = '#cf222e';
  var previous = null;
  var history = [];
  var snaps = [];
  var rows = new Map();
  var colorOf = new Map();
  var $ = function (id) { return document.getElementById(id); };

  function el (tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmt (n, digits) { return n === null || n === undefined || !isFinite(n) ? '\\u2013' : n.toFixed(digits === undefined ? 1 : digits); }
  function int (n) { return Math.round(n).toLocaleString('en-US'); }
  function ms (n) { return n === null ? '\\u2013' : n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : Math.round(n).toString(); }
  function bytes (n) {
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'], i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(Math.round(n)) : n.toFixed(1)) + ' ' + units[i];
  }
  function duration (ms) {
    var s = Math.floor(ms / 1000), d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    return (d ? d + 'd ' : '') + (d || h ? h + 'h ' : '') + m + 'm ' + (s % 60) + 's';
  }
  function clock (t) { return new Date(t).toLocaleTimeString('en-GB', { hour12: false }); }
  function color (address) {
    if (!colorOf.has(address)) colorOf.set(address, COLORS[colorOf.size % COLORS.length]);
    return colorOf.get(address);
  }
  function sum (a) { var t = 0; for (var i = 0; i < a.length; i++) t += a[i]; return t; }

  // the q-quantile of non-cumulative buckets over bounds (+Inf last), linear within a bucket (histogram_quantile)
  function quantile (buckets, bounds, q) {
    var total = sum(buckets);
    if (total === 0) return null;
    var rank = q * total, cum = 0;
    for (var i = 0; i < buckets.length; i++) {
      var c = buckets[i];
      if (c > 0 && cum + c >= rank) {
        if (i >= bounds.length) return bounds[bounds.length - 1];
        var lower = i === 0 ? 0 : bounds[i - 1];
        return lower + (bounds[i] - lower) * ((rank - cum) / c);
      }
      cum += c;
    }
    return bounds[bounds.length - 1];
  }
  function diff (now, then) { return then ? now.map(function (v, i) { return v - (then[i] || 0); }) : now; }
  function pcts (buckets, bounds) {
    return [0.5, 0.95, 0.99].map(function (q) { return quantile(buckets, bounds, q); });
  }

  function card (key, label, value, sub, alert) {
    var c = el('div', 'card' + (alert ? ' alert' : '')); c.setAttribute('data-card', key);
    c.appendChild(el('div', 'label', label)); c.appendChild(el('div', 'value', value));
    if (sub) c.appendChild(el('div', 'sub', sub));
    return c;
  }

  function act (id, action) {
    fetch('/api/upstreams/' + encodeURIComponent(id) + '/' + action, { method: 'POST', headers: headers })
      .then(function () { return poll(true); });
  }

  var COLUMNS = ['health', 'address', 'inState', 'rps', 'open', 'active', 'latency', '4xx', '5xx', 'failures', 'retries', 'bytes', 'check', 'action'];
  var NUMERIC = ['inState', 'rps', 'open', 'active', 'latency', '4xx', '5xx', 'failures', 'retries', 'bytes'];
  function upstreamRow (u) {
    var row = rows.get(u.address);
    if (!row) {
      var tr = el('tr'); tr.setAttribute('data-upstream', u.address);
      var cells = {};
      COLUMNS.forEach(function (k) {
        cells[k] = el('td', NUMERIC.indexOf(k) >= 0 ? 'num' : '');
        cells[k].setAttribute('data-col', k);
        tr.appendChild(cells[k]);
      });
      var badge = el('span', 'badge'); cells.health.appendChild(badge);
      var sw = el('span', 'swatch'); sw.style.background = color(u.address);
      cells.address.appendChild(sw); cells.address.appendChild(document.createTextNode(u.address + ' (' + u.id + ')'));
      var button = el('button'); cells.action.appendChild(button);
      button.addEventListener('click', function () { act(row.id, row.health === 'draining' ? 'enable' : 'drain'); });
      row = { tr: tr, cells: cells, badge: badge, button: button, id: u.id, health: '' };
      rows.set(u.address, row);
    }
    return row;
  }

  function render (s) {
    var prev = previous; previous = s;
    var now = Date.now();
    var dt = prev ? (s.uptimeMs - prev.uptimeMs) / 1000 : 0;
    var prevBy = new Map(prev ? prev.upstreams.map(function (u) { return [u.address, u]; }) : []);
    var prevWorkers = new Map(prev ? prev.workers.map(function (w) { return [w.slot + ':' + w.threadId, w]; }) : []);
    var bounds = s.latencyBoundsMs;

    // snapshots for windowed percentiles
    snaps.push({ t: s.uptimeMs, dur: s.totals.durationBuckets, up: new Map(s.upstreams.map(function (u) { return [u.address, u.totals.latencyBuckets]; })) });
    while (snaps.length > 2 && s.uptimeMs - snaps[1].t >= QUANTILE_WINDOW_MS) snaps.shift();
    var oldest = snaps.length > 1 ? snaps[0] : null;

    $('version').textContent = 'v' + s.version;
    $('mode').textContent = s.mode === 'sequential' ? 'sequential (1 thread)' : s.workerCount + ' worker threads';
    var t = s.totals;
    var totalRps = dt > 0 ? (t.requests - prev.totals.requests) / dt : null;
    var errorRps = dt > 0 ? (t.responses['5xx'] - prev.totals.responses['5xx']) / dt : null;
    var openConns = sum(s.workers.map(function (w) { return w.openConnections; }));
    var d = pcts(diff(t.durationBuckets, oldest && oldest.dur), bounds);
    $('cards').replaceChildren(
      card('uptime', 'uptime', duration(s.uptimeMs)),
      card('rps', 'requests/s', fmt(totalRps)),
      card('requests', 'requests', int(t.requests)),
      card('open', 'open connections', int(openConns), int(t.connectionsAccepted) + ' accepted'),
      card('duration', 'p50 / p95 / p99', ms(d[0]) + ' / ' + ms(d[1]) + ' / ' + ms(d[2]) + ' ms', 'request head to last byte, last minute'),
      card('4xx', '4xx', int(t.responses['4xx']), int(t.responsesBySource.local['4xx']) + ' local'),
      card('5xx', '5xx', int(t.responses['5xx']), int(t.responsesBySource.local['5xx']) + ' local, ' + int(t.responsesBySource.upstream['5xx']) + ' from upstreams', t.responses['5xx'] > 0),
      card('bytes', 'bytes in / out', bytes(t.requestBytes) + ' / ' + bytes(t.responseBytes)),
      card('rateLimited', 'rate limited', int(t.rateLimited)),
      card('firewall', 'firewall blocked', int(t.firewallBlocked)),
      card('protocol', 'protocol errors', int(t.protocolErrors)),
      card('restarts', 'worker restarts', int(t.workerRestarts)),
      card('rateTable', 'rate table', s.rateLimit.enabled ? int(s.rateLimit.slotsUsed) + ' / ' + int(s.rateLimit.tableSize) : 'off'),
      card('cache', 'cache', s.cache.enabled ? int(s.cache.entries) + ' entries, ' + int(s.cache.hits) + ' hits' : 'off'));

    var body = $('upstreams'); var seen = new Set(); var point = { t: now, rps: new Map(), total: totalRps || 0, errors: errorRps || 0 };
    s.upstreams.forEach(function (u) {
      seen.add(u.address);
      var row = upstreamRow(u); var p = prevBy.get(u.address); var ut = u.totals;
      row.id = u.id; row.health = u.health;
      row.tr.setAttribute('data-health', u.health);
      row.badge.className = 'badge ' + u.health; row.badge.textContent = u.health;
      var rps = p && dt > 0 ? (ut.requests - p.totals.requests) / dt : null;
      point.rps.set(u.address, rps || 0);
      var q = pcts(diff(ut.latencyBuckets, oldest && oldest.up.get(u.address)), bounds);
      var c4 = ut.responses['4xx'] + ut.localResponses['4xx'], c5 = ut.responses['5xx'] + ut.localResponses['5xx'];
      var cells = row.cells;
      cells.inState.textContent = duration(u.inStateMs);
      cells.rps.textContent = fmt(rps);
      cells.open.textContent = int(u.openSockets);
      cells.active.textContent = int(u.activeRequests);
      cells.latency.textContent = ms(q[0]) + ' / ' + ms(q[1]) + ' / ' + ms(q[2]);
      cells['4xx'].textContent = int(c4);
      cells['5xx'].textContent = int(c5);
      cells['5xx'].title = int(ut.responses['5xx']) + ' from the upstream, ' + int(ut.localResponses['5xx']) + ' answered locally (502, 504)';
      cells['5xx'].className = 'num' + (c5 > 0 ? ' bad' : '');
      cells.failures.textContent = int(ut.failures);
      cells.retries.textContent = int(ut.retries);
      cells.bytes.textContent = bytes(ut.requestBytes) + ' / ' + bytes(ut.responseBytes);
      cells.check.textContent = u.lastCheck ? u.lastCheck.reason + ', ' + fmt(u.lastCheck.ageMs / 1000, 0) + ' s ago' : 'no active check';
      row.button.textContent = u.health === 'draining' ? 'enable' : 'drain';
      body.appendChild(row.tr);
    });
    rows.forEach(function (row, address) { if (!seen.has(address)) { row.tr.remove(); rows.delete(address); } });

    var wbody = $('workers'); wbody.replaceChildren();
    s.workers.forEach(function (w) {
      var p = prevWorkers.get(w.slot + ':' + w.threadId);
      var tr = el('tr'); tr.setAttribute('data-worker', String(w.slot));
      [['slot', String(w.slot)], ['thread', s.mode === 'sequential' ? 'primary' : String(w.threadId)], ['open', int(w.openConnections)],
        ['rps', fmt(p && dt > 0 ? (w.requests - p.requests) / dt : null)], ['requests', int(w.requests)], ['lag', fmt(w.loopLagMs, 2) + ' ms'], ['heap', bytes(w.heapUsedBytes)]]
        .forEach(function (c, i) { var td = el('td', i >= 2 ? 'num' : '', c[1]); td.setAttribute('data-col', c[0]); tr.appendChild(td); });
      wbody.appendChild(tr);
    });

    // certificates: expiring within 14 days (or expired) are shown in the warning colour
    var cbody = $('certificates'); cbody.replaceChildren();
    (s.certificates || []).forEach(function (c) {
      var tr = el('tr'); tr.setAttribute('data-expiring', c.daysLeft < 14 ? 'true' : 'false');
      if (c.daysLeft < 14) tr.className = 'expiring';
      [c.names.join(', '), c.listener, c.issuer, c.source, c.notAfter, String(c.daysLeft)]
        .forEach(function (text, i) { tr.appendChild(el('td', i === 5 ? 'num' : '', text)); });
      cbody.appendChild(tr);
    });
    // cluster (config.cluster): the live instances, as this instance last heard from Redis
    var cl = $('cluster'); cl.hidden = !s.cluster;
    if (s.cluster) {
      $('cluster-state').textContent = 'Redis ' + (s.cluster.redisUp ? 'up: global limits' : 'down: ' + s.cluster.onRedisFailure) +
        ', ' + s.cluster.instances.length + ' live';
      var cbody = $('instances'); cbody.replaceChildren();
      s.cluster.instances.forEach(function (m) {
        var tr = el('tr'); tr.setAttribute('data-instance', m.id);
        [m.id + (m.id === s.cluster.instanceId ? ' (this one)' : ''), m.address, m.version, m.startedAt, fmt(m.lastSeenMs / 1000, 1) + ' s ago']
          .forEach(function (text) { tr.appendChild(el('td', '', text)); });
        cbody.appendChild(tr);
      });
    }

    if (dt > 0) { history.push(point); if (history.length > WINDOW_S) history.shift(); }
    chart(s.upstreams.map(function (u) { return u.address; }));
  }

  var ns = 'http://www.w3.org/2000/svg';
  function svgEl (tag, attrs, text) {
    var e = document.createElementNS(ns, tag);
    for (var k in attrs) e.setAttribute(k, String(attrs[k]));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function chart (addresses) {
    var svg = $('chart');
    // the drawing is in CSS pixels (viewBox = the element's own size), so text is never stretched
    var W = Math.max(200, svg.clientWidth), H = Math.max(100, svg.clientHeight);
    var left = 64, right = W - 8, top = 8, bottom = H - 20;
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    var span = Math.min(WINDOW_S, Math.max(60, history.length));
    var max = 1;
    history.forEach(function (p) { max = Math.max(max, p.total, p.errors); });
    svg.replaceChildren();
    [0, 0.5, 1].forEach(function (f) {
      var y = bottom - f * (bottom - top);
      svg.appendChild(svgEl('line', { class: 'grid', x1: left, x2: right, y1: y, y2: y }));
      svg.appendChild(svgEl('text', { x: left - 6, y: y + 4, 'text-anchor': 'end' }, fmt(max * f, max < 10 ? 1 : 0) + '/s'));
    });
    var step = (right - left) / (span - 1);
    var xOf = function (i) { return right - (history.length - 1 - i) * step; };
    if (history.length > 0) {
      // clock-time labels at the start, middle and end of the axis (one point a second, the newest at the right)
      var newest = history[history.length - 1].t;
      [0, 0.5, 1].forEach(function (f) {
        var x = left + f * (right - left);
        svg.appendChild(svgEl('line', { class: 'grid', x1: x, x2: x, y1: bottom, y2: bottom + 4 }));
        var anchor = f === 0 ? 'start' : f === 1 ? 'end' : 'middle';
        svg.appendChild(svgEl('text', { class: 'time', x: x, y: H - 5, 'text-anchor': anchor }, clock(newest - (1 - f) * (span - 1) * 1000)));
      });
    }
    var series = [{ key: 'total', name: 'all requests/s', color: TOTAL_COLOR, width: 2, read: function (p) { return p.total; } }]
      .concat(addresses.map(function (a) { return { key: a, name: a, color: color(a), width: 1.25, read: function (p) { return p.rps.get(a) || 0; } }; }))
      .concat([{ key: '5xx', name: '5xx/s', color: ERROR_COLOR, width: 1.5, dashed: true, read: function (p) { return p.errors; } }]);
    series.forEach(function (line) {
      if (history.length < 2) return;
      var pts = history.map(function (p, i) { return xOf(i).toFixed(1) + ',' + (bottom - (line.read(p) / max) * (bottom - top)).toFixed(1); });
      var attrs = { points: pts.join(' '), fill: 'none', stroke: line.color, 'stroke-width': line.width, 'data-series': line.key };
      if (line.dashed) attrs['stroke-dasharray'] = '5 3';
      svg.appendChild(svgEl('polyline', attrs));
    });
    var legend = $('legend'); legend.replaceChildren();
    series.forEach(function (line) {
      var item = el('span'); item.setAttribute('data-series', line.key);
      var sw = el('span', 'swatch' + (line.dashed ? ' dashed' : ''));
      if (!line.dashed) sw.style.background = line.color;
      item.appendChild(sw); item.appendChild(document.createTextNode(line.name));
      legend.appendChild(item);
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
<div class="scroll">
<table>
<thead><tr><th>health</th><th>upstream</th><th class="num">in state</th><th class="num">req/s</th><th class="num">open conns</th><th class="num">in flight</th><th class="num">p50 / p95 / p99 ms</th><th class="num">4xx</th><th class="num">5xx</th><th class="num">failures</th><th class="num">retries</th><th class="num">bytes in / out</th><th>last check</th><th></th></tr></thead>
<tbody id="upstreams"></tbody>
</table>
</div>
<h2>Requests per second (up to the last 5 minutes)</h2>
<svg id="chart" role="img" aria-label="requests per second, per upstream, and 5xx responses per second"></svg>
<div id="legend"></div>
<h2>Certificates</h2>
<table>
<thead><tr><th>names</th><th>listener</th><th>issuer</th><th>source</th><th>expires</th><th class="num">days left</th></tr></thead>
<tbody id="certificates"></tbody>
</table>
<section id="cluster" hidden><h2>Cluster <span id="cluster-state" class="muted"></span></h2>
<table><thead><tr><th>instance</th><th>address</th><th>version</th><th>started</th><th>heartbeat</th></tr></thead>
<tbody id="instances"></tbody></table></section>
<h2>Workers</h2>
<table>
<thead><tr><th>slot</th><th>thread</th><th class="num">open connections</th><th class="num">req/s</th><th class="num">requests</th><th class="num">loop lag p99</th><th class="num">heap</th></tr></thead>
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
