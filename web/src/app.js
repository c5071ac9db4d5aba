// apimeter's dashboard: sign-in, then five views (segmentation, time
// series, event stream, customer, alerts) routed by the URL's hash. State lives in
// the hash so every view can be linked to and reloaded.
import { APIError, Client, DIMENSIONS, METRICS, RANGES, TIME_UNITS, apigeeTime, format, getJSON, quote, timeRange } from './api.js';
import { barChart, lineChart } from './chart.js';

const main = document.getElementById('main');
let client = null;
let cleanup = () => {};

// Timings the browser test reads (window.apimeter.firstView: ms from
// navigation start to the first view's chart and table on screen).
window.apimeter = { firstView: null, views: 0 };

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

function select(name, options, value, onchange) {
  return h('select', { name, onchange },
    Object.entries(options).map(([v, label]) => h('option', { value: v, selected: v === value }, label)));
}

function showError(err) {
  if (err instanceof APIError && err.status === 401) { signIn('Your session has ended; sign in again.'); return; }
  main.prepend(h('div', { class: 'error', role: 'alert' }, err.message || String(err)));
}

// ---- routing -------------------------------------------------------------

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [view, qs] = raw.split('?');
  return { view: view || 'segmentation', params: Object.fromEntries(new URLSearchParams(qs || '')) };
}

function go(view, params, replace = false) {
  const qs = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== '' && v != null)).toString();
  const hash = `#/${view}${qs ? '?' + qs : ''}`;
  if (replace) { history.replaceState(null, '', hash); route(); } else location.hash = hash;
}

const VIEWS = { segmentation, timeseries, stream, customer, alerts };

function route() {
  cleanup();
  cleanup = () => {};
  const { view, params } = parseHash();
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.view === view);
  main.textContent = '';
  (VIEWS[view] || segmentation)(params).catch(showError);
}

// ---- session -------------------------------------------------------------

async function start() {
  performance.mark('app:start');
  const q = new URLSearchParams(location.search);
  let sess = null;
  try {
    sess = await getJSON('/v1/session');
  } catch (err) {
    if (err.status === 401) { signIn(); return; }
    // 404: this server has no sign-in (reads are open); org and env come
    // from the page's URL.
    if (err.status !== 404) { showError(err); return; }
  }
  const org = q.get('org') || (sess && sess.org);
  const env = q.get('env') || (sess && sess.envs && sess.envs[0]) || 'prod';
  if (!org) {
    main.textContent = '';
    main.append(h('div', { class: 'notice' }, 'Open the dashboard with ?org=YOUR_ORG&env=prod in its address.'));
    return;
  }
  client = new Client(org, env);
  document.getElementById('who').textContent = `${org} / ${env}` + (sess && sess.name ? ` · ${sess.name}` : '');
  document.getElementById('nav').hidden = false;
  const out = document.getElementById('signout');
  out.hidden = !sess;
  out.onclick = async () => {
    await fetch('/v1/session', { method: 'DELETE', credentials: 'same-origin' });
    location.reload();
  };
  window.addEventListener('hashchange', route);
  route();
}

function signIn(message) {
  cleanup();
  document.getElementById('nav').hidden = true;
  main.textContent = '';
  const key = h('input', { type: 'password', name: 'key', autocomplete: 'off', placeholder: 'read key', required: true });
  const err = h('p', { class: 'error', hidden: true });
  const form = h('form', {
    class: 'card signin',
    async onsubmit(e) {
      e.preventDefault();
      err.hidden = true;
      try {
        await getJSON('/v1/session', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ key: key.value }) });
        location.reload();
      } catch (e2) {
        err.textContent = e2.status === 401 || e2.status === 403 ? 'That key was not accepted.' : e2.message;
        err.hidden = false;
      }
    },
  },
  h('h1', {}, 'Sign in to apimeter'),
  message ? h('p', { class: 'notice' }, message) : null,
  h('label', {}, 'API read key', key),
  err,
  h('button', { class: 'primary', type: 'submit' }, 'Sign in'));
  main.append(form);
  key.focus();
}

// ---- segmentation --------------------------------------------------------

function rangeText(from, to) {
  return `${apigeeTime(from)} – ${apigeeTime(to)} UTC`;
}

function apiLink(url) {
  return h('p', { class: 'api-link', dataset: { url } }, 'GET ', h('a', { href: url, target: '_blank' }, url));
}

function customerLink(group, name) {
  if (!name) return h('span', { class: 'muted' }, '(none)');
  if (group === 'user_id' || group === 'company_id') {
    const kind = group === 'user_id' ? 'user' : 'company';
    return h('a', { href: `#/customer?kind=${kind}&id=${encodeURIComponent(name)}` }, name);
  }
  return name;
}

// sortableTable renders rows with clickable headers; cols are
// {key, label, kind} and each row has row[key].
function sortableTable(cols, rows, sortKey, dir, rowAttrs = () => ({}), cell = (c, r) => r[c.key]) {
  const table = h('table', { class: 'sortable' });
  const draw = () => {
    rows.sort((a, b) => {
      const x = a[sortKey], y = b[sortKey];
      const c = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y), 'en', { numeric: true });
      return dir === 'asc' ? c : -c;
    });
    table.textContent = '';
    table.append(h('thead', {}, h('tr', {}, cols.map((c) => h('th', {
      class: ['sortable', c.kind ? 'num' : '', c.key === sortKey ? `sorted-${dir}` : ''].join(' '),
      dataset: { key: c.key },
      onclick() {
        if (sortKey === c.key) dir = dir === 'asc' ? 'desc' : 'asc';
        else { sortKey = c.key; dir = c.kind ? 'desc' : 'asc'; }
        draw();
      },
    }, c.label)))));
    table.append(h('tbody', {}, rows.map((r) => h('tr', rowAttrs(r), cols.map((c) => h('td', {
      class: c.kind ? 'num' : '', dataset: c.kind ? { key: c.key, value: String(r[c.key]) } : { key: c.key },
    }, c.kind ? format(c.kind, r[c.key]) : cell(c, r)))))));
  };
  draw();
  return table;
}

async function segmentation(params) {
  const metric = METRICS[params.metric] ? params.metric : 'calls';
  const group = DIMENSIONS[params.group] ? params.group : 'user_id';
  const range = RANGES[params.range] ? params.range : 'this_month';
  const [from, to] = timeRange(range);
  const m = METRICS[metric];
  const set = (k) => (e) => go('segmentation', { metric, group, range, [k]: e.target.value });
  const chartEl = h('div', { class: 'chart', id: 'segment-chart' });
  const tableEl = h('div', { id: 'segment-table' });
  const linkEl = h('div');
  main.append(
    h('h1', {}, `${m.label} by ${DIMENSIONS[group].toLowerCase()}`, h('span', { class: 'muted' }, ` · ${RANGES[range].label.toLowerCase()}`)),
    h('div', { class: 'controls' },
      h('label', {}, 'Metric', select('metric', Object.fromEntries(Object.entries(METRICS).map(([k, v]) => [k, v.label])), metric, set('metric'))),
      h('label', {}, 'Group by', select('group', DIMENSIONS, group, set('group'))),
      h('label', {}, 'Time range', select('range', Object.fromEntries(Object.entries(RANGES).map(([k, v]) => [k, v.label])), range, set('range'))),
      h('span', { class: 'muted', id: 'range-text' }, rangeText(from, to))),
    h('div', { class: 'card' }, chartEl, linkEl),
    tableEl);
  const sel = [...new Set(['sum(message_count)', 'sum(is_error)', ...m.select])];
  performance.mark('segmentation:query');
  const { url, rows } = await client.stats(group, { select: sel, from, to, sortby: m.sortby || m.select[0], sort: 'DESC', limit: 500 });
  performance.mark('segmentation:answer');
  const idx = (s) => sel.indexOf(s);
  const data = rows.map((r) => ({
    name: r.name,
    calls: r.values[idx('sum(message_count)')],
    errors: r.values[idx('sum(is_error)')],
    error_rate: r.values[idx('sum(message_count)')] ? r.values[idx('sum(is_error)')] / r.values[idx('sum(message_count)')] : 0,
    metric: m.value(m.select.map((s) => r.values[idx(s)])),
  }));
  linkEl.append(apiLink(url));
  const top = [...data].sort((a, b) => b.metric - a.metric).slice(0, 25);
  if (data.length === 0) chartEl.append(h('p', { class: 'muted' }, 'No calls in this range.'));
  else barChart(chartEl, top.map((r) => r.name || '(none)'), top.map((r) => r.metric), m.fmt, m.label);
  performance.mark('segmentation:chart');
  const cols = [{ key: 'name', label: DIMENSIONS[group] }, { key: 'calls', label: 'Calls', kind: 'int' }, { key: 'errors', label: 'Errors', kind: 'int' }, { key: 'error_rate', label: 'Error rate', kind: 'pct' }];
  if (!['calls', 'errors', 'error_rate'].includes(metric)) cols.push({ key: 'metric', label: m.label, kind: m.fmt });
  const sortKey = ['calls', 'errors', 'error_rate'].includes(metric) ? metric : 'metric';
  tableEl.append(sortableTable(cols, data, sortKey, 'desc', (r) => ({ dataset: { name: r.name } }),
    (c, r) => (c.key === 'name' ? customerLink(group, r.name) : r[c.key])));
  performance.mark('segmentation:table');
  markView();
}

// markView records the first view's render time once its DOM has been
// painted.
function markView() {
  window.apimeter.views++;
  if (window.apimeter.firstView != null) return;
  requestAnimationFrame(() => setTimeout(() => {
    if (window.apimeter.firstView == null) window.apimeter.firstView = performance.now();
  }, 0));
}

// ---- time series ---------------------------------------------------------

const UNIT_MS = { minute: 60e3, hour: 3600e3, day: 864e5, week: 7 * 864e5, month: 31 * 864e5 };

async function timeseries(params) {
  const metric = METRICS[params.metric] ? params.metric : 'calls';
  const group = DIMENSIONS[params.group] ? params.group : '';
  const range = RANGES[params.range] ? params.range : 'last_7d';
  const [from, to] = timeRange(range);
  let unit = TIME_UNITS.includes(params.unit) ? params.unit : (to - from > 8 * 864e5 ? 'day' : 'hour');
  const m = METRICS[metric];
  const set = (k) => (e) => go('timeseries', { metric, group, range, unit, [k]: e.target.value });
  const chartEl = h('div', { class: 'chart', id: 'series-chart' });
  const linkEl = h('div');
  const note = h('div');
  main.append(
    h('h1', {}, `${m.label} over time`),
    h('div', { class: 'controls' },
      h('label', {}, 'Metric', select('metric', Object.fromEntries(Object.entries(METRICS).map(([k, v]) => [k, v.label])), metric, set('metric'))),
      h('label', {}, 'Split by', select('group', { '': '(total)', ...DIMENSIONS }, group, set('group'))),
      h('label', {}, 'Time range', select('range', Object.fromEntries(Object.entries(RANGES).map(([k, v]) => [k, v.label])), range, set('range'))),
      h('label', {}, 'Time unit', select('unit', Object.fromEntries(TIME_UNITS.map((u) => [u, u])), unit, set('unit'))),
      h('span', { class: 'muted' }, rangeText(from, to))),
    note,
    h('div', { class: 'card' }, chartEl, linkEl));
  if ((to - from) / UNIT_MS[unit] > 5000) {
    unit = (to - from) / UNIT_MS.hour > 5000 ? 'day' : 'hour';
    note.append(h('p', { class: 'notice' }, `That many ${params.unit} buckets would not fit a chart; showing ${unit}s.`));
  }
  const opts = { select: m.select, from, to, timeUnit: unit, tsAscending: true };
  if (group) Object.assign(opts, { topk: 6, sortby: m.sortby || m.select[0] });
  const { url, rows } = await client.stats(group, opts);
  linkEl.append(apiLink(url));
  const series = rows.map((r) => {
    // Put the selected columns side by side per bucket, then form the metric.
    const byT = new Map();
    r.values.forEach((pts, i) => {
      for (const [t, v] of pts) {
        if (!byT.has(t)) byT.set(t, new Array(r.values.length).fill(0));
        byT.get(t)[i] = v;
      }
    });
    const points = [...byT.entries()].sort((a, b) => a[0] - b[0]).map(([t, vs]) => [t, m.value(vs)]);
    return { label: group ? (r.name || '(none)') : m.label, points };
  });
  if (series.every((s) => s.points.length === 0)) chartEl.append(h('p', { class: 'muted' }, 'No calls in this range.'));
  else lineChart(chartEl, series, m.fmt);
  markView();
}

// ---- event stream --------------------------------------------------------

const STREAM_FILTERS = [['user_id', 'User'], ['company_id', 'Company'], ['api_name', 'API'], ['route', 'Route'], ['status', 'Status']];

function latency(e) {
  if (!e.response || !e.response.time) return null;
  return Date.parse(e.response.time) - Date.parse(e.request.time);
}

function pathOf(uri) {
  try { const u = new URL(uri, 'http://x'); return u.pathname + u.search; } catch { return uri; }
}

function eventRow(e, onopen) {
  const status = e.response ? e.response.status : 0;
  return h('tr', { class: 'clickable', dataset: { id: e.event_id, user: e.user_id || '' }, onclick: () => onopen(e) },
    h('td', {}, new Date(e.request.time).toISOString().replace('T', ' ').slice(0, 23)),
    h('td', {}, e.request.verb),
    h('td', {}, pathOf(e.request.uri)),
    h('td', { class: status >= 400 || status === 0 ? 'status-err num' : 'num' }, String(status)),
    h('td', { class: 'num' }, format('ms', latency(e))),
    h('td', {}, e.user_id ? h('a', { href: `#/customer?kind=user&id=${encodeURIComponent(e.user_id)}`, onclick: (ev) => ev.stopPropagation() }, e.user_id) : ''),
    h('td', {}, e.company_id || ''),
    h('td', {}, e.api_name || ''));
}

function headersText(hs) {
  if (!hs) return '';
  return Object.entries(hs).map(([k, v]) => `${k}: ${v}`).join('\n');
}

function bodyText(b) {
  if (b == null) return '';
  return typeof b === 'string' ? b : JSON.stringify(b, null, 2);
}

function eventDetail(e) {
  const res = e.response || {};
  return h('aside', { class: 'card drawer', id: 'event-detail' },
    h('button', { class: 'link close', onclick: (ev) => ev.target.closest('aside').remove() }, 'Close ✕'),
    h('h2', {}, `${e.request.verb} ${pathOf(e.request.uri)} → ${res.status ?? 'no response'}`),
    h('p', { class: 'muted' }, `event ${e.event_id} · user ${e.user_id || '–'} · company ${e.company_id || '–'} · API key ${e.api_key_id || '–'} · route ${e.route || '–'}`),
    h('h2', {}, 'Request headers'), h('pre', {}, headersText(e.request.headers)),
    h('h2', {}, 'Request body'), h('pre', {}, bodyText(e.request.body) || '(none)'),
    h('h2', {}, 'Response headers'), h('pre', {}, headersText(res.headers)),
    h('h2', {}, 'Response body'), h('pre', {}, bodyText(res.body) || '(none)'));
}

async function stream(params) {
  const filter = {};
  for (const [k] of STREAM_FILTERS) if (params[k]) filter[k] = params[k];
  if (params.errors === 'true') filter.errors = 'true';
  const inputs = STREAM_FILTERS.map(([k, label]) => h('label', {}, label, h('input', { name: k, value: params[k] || '', size: k === 'route' ? 22 : 10 })));
  const errors = h('input', { type: 'checkbox', name: 'errors', checked: params.errors === 'true' });
  const form = h('form', {
    class: 'controls',
    onsubmit(e) {
      e.preventDefault();
      const p = {};
      for (const el of form.querySelectorAll('input[type=text], input:not([type])')) if (el.value.trim()) p[el.name] = el.value.trim();
      if (errors.checked) p.errors = 'true';
      go('stream', p);
    },
  }, inputs, h('label', {}, 'Errors only', errors), h('button', { type: 'submit' }, 'Apply'));
  const live = h('span', { class: 'live off', id: 'live-dot' });
  const status = h('span', { class: 'muted', id: 'live-status' }, 'connecting…');
  const notice = h('div');
  const tbody = h('tbody', { id: 'stream-rows' });
  const detail = h('div');
  const open = (e) => { detail.textContent = ''; detail.append(eventDetail(e)); };
  main.append(
    h('h1', {}, 'Event stream ', h('small', {}, live, status)),
    form, notice,
    h('div', { class: 'card' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Time (UTC)', 'Verb', 'Path', 'Status', 'Latency', 'User', 'Company', 'API'].map((t) => h('th', {}, t)))),
      tbody)),
    detail);
  const seen = new Set();
  const add = (e, fresh) => {
    if (seen.has(e.event_id)) return;
    seen.add(e.event_id);
    const row = eventRow(e, open);
    if (fresh) { row.classList.add('fresh'); tbody.prepend(row); } else tbody.append(row);
    while (tbody.rows.length > 200) tbody.lastElementChild.remove();
  };
  // Subscribe first, then read the backlog, so that no call falls between.
  const es = new EventSource(client.eventsURL(filter, '/events/stream'), { withCredentials: true });
  const queued = [];
  let backlogDone = false;
  es.addEventListener('open', () => { live.classList.remove('off'); status.textContent = 'live'; });
  es.addEventListener('error', () => { live.classList.add('off'); status.textContent = 'reconnecting…'; });
  es.addEventListener('call', (m) => {
    const e = JSON.parse(m.data);
    if (backlogDone) add(e, true); else queued.push(e);
  });
  es.addEventListener('dropped', (m) => {
    const n = JSON.parse(m.data).dropped;
    notice.textContent = '';
    notice.append(h('p', { class: 'notice', id: 'dropped' }, `${n} calls were left out of this stream because the page read too slowly; reload to catch up.`));
  });
  cleanup = () => es.close();
  const backlogFilter = { ...filter, limit: 50 };
  for (const e of await client.events(backlogFilter)) add(e, false);
  backlogDone = true;
  for (const e of queued) add(e, true);
  markView();
}

// ---- customer ------------------------------------------------------------

async function customer(params) {
  const kind = params.kind === 'company' ? 'company' : 'user';
  const id = params.id || '';
  const group = kind === 'user' ? 'user_id' : 'company_id';
  const picker = h('form', {
    class: 'controls',
    onsubmit(e) {
      e.preventDefault();
      go('customer', { kind: picker.kind.value, id: picker.id.value.trim() });
    },
  },
  h('label', {}, 'Kind', select('kind', { user: 'User', company: 'Company' }, kind)),
  h('label', {}, 'Id', h('input', { name: 'id', value: id, size: 14 })),
  h('button', { type: 'submit' }, 'Show'));
  main.append(h('h1', {}, id ? `${kind === 'user' ? 'User' : 'Company'} ${id}` : 'Customer'), picker);
  const usage = await client.usage(group);
  if (!id) {
    main.append(h('h2', {}, `Busiest ${kind === 'user' ? 'users' : 'companies'} this billing period`),
      sortableTable([{ key: 'id', label: 'Id' }, { key: 'calls', label: 'Calls', kind: 'int' }, { key: 'errors', label: 'Errors', kind: 'int' }, { key: 'bytes', label: 'Bytes', kind: 'bytes' }],
        (usage.rows || []).slice(0, 50), 'calls', 'desc', () => ({}), (c, r) => customerLink(group, r.id)));
    markView();
    return;
  }
  const row = (usage.rows || []).find((r) => r.id === id) || { calls: 0, errors: 0, bytes: 0 };
  const from = new Date(usage.start), to = new Date(usage.end);
  const filter = `${group} eq ${quote(id)}`;
  const [totals, routes, keys, recent, months] = await Promise.all([
    client.stats('', { select: ['p50(total_response_time)', 'p95(total_response_time)', 'p99(total_response_time)'], from, to, filter }),
    client.stats('route', { select: ['sum(message_count)', 'sum(is_error)', 'p95(total_response_time)'], from, to, filter, limit: 100 }),
    client.stats('api_key', { select: ['sum(message_count)'], from, to, filter, limit: 100 }),
    client.events({ [group]: id, limit: 10 }),
    client.stats('', { select: ['sum(message_count)'], from: new Date(Date.UTC(2000, 0, 1)), to: new Date(Date.now() + 60e3), filter, timeUnit: 'month', tsAscending: true }),
  ]);
  const firstMonth = (months.rows[0]?.values[0] || []).find((p) => p[1] > 0);
  let firstSeen = '–';
  if (firstMonth) {
    const start = new Date(firstMonth[0]);
    const end = new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + 1, 1));
    const days = await client.stats('', { select: ['sum(message_count)'], from: start, to: end, filter, timeUnit: 'day', tsAscending: true });
    const d = (days.rows[0]?.values[0] || []).find((p) => p[1] > 0);
    firstSeen = d ? new Date(d[0]).toISOString().slice(0, 10) : start.toISOString().slice(0, 7);
  }
  const lastSeen = recent[0] ? new Date(recent[0].request.time).toISOString().replace('T', ' ').slice(0, 19) + ' UTC' : '–';
  const [p50, p95, p99] = totals.rows[0]?.values || [];
  const kpi = (label, value, id2) => h('div', { class: 'kpi', id: id2 }, h('b', {}, value), h('span', {}, label));
  main.append(
    h('p', { class: 'muted' }, `Billing period ${usage.period}: ${from.toISOString().slice(0, 10)} to ${to.toISOString().slice(0, 10)} (UTC)`),
    h('div', { class: 'kpis', id: 'customer-kpis' },
      kpi('calls this period', format('int', row.calls), 'kpi-calls'),
      kpi('quota (set in the gateway; not readable here)', '–', 'kpi-quota'),
      kpi('errors', `${format('int', row.errors)} (${format('pct', row.calls ? row.errors / row.calls : 0)})`, 'kpi-errors'),
      kpi('bytes', format('bytes', row.bytes)),
      kpi('latency p50 / p95 / p99', `${format('ms', p50)} / ${format('ms', p95)} / ${format('ms', p99)}`),
      kpi('first seen', firstSeen, 'kpi-first'),
      kpi('last seen', lastSeen, 'kpi-last')),
    h('div', { class: 'split' },
      h('div', {},
        h('h2', {}, 'Routes used this period'),
        sortableTable([{ key: 'name', label: 'Route' }, { key: 'calls', label: 'Calls', kind: 'int' }, { key: 'errors', label: 'Errors', kind: 'int' }, { key: 'p95', label: 'p95', kind: 'ms' }],
          routes.rows.map((r) => ({ name: r.name || '(none)', calls: r.values[0], errors: r.values[1], p95: r.values[2] })), 'calls', 'desc'),
        apiLink(routes.url)),
      h('div', {},
        h('h2', {}, 'API keys (fingerprints)'),
        sortableTable([{ key: 'name', label: 'Key' }, { key: 'calls', label: 'Calls', kind: 'int' }],
          keys.rows.map((r) => ({ name: r.name || '(none)', calls: r.values[0] })), 'calls', 'desc'))),
    h('h2', {}, 'Recent calls ', h('a', { href: `#/stream?${group}=${encodeURIComponent(id)}` }, '(live)')),
    h('div', { class: 'card' }, h('table', {}, h('tbody', {}, recent.map((e) => eventRow(e, () => go('stream', { [group]: id })))))));
  markView();
}

// ---- alerts --------------------------------------------------------------

// condition describes a rule the way a person would say it.
function condition(r) {
  const who = r.per ? ` per ${r.per}` : '';
  const where = [r.api && `api ${r.api}`, r.route && `route ${r.route}`, r.status != null && `status ${r.status}`,
    r.user && `user ${r.user}`, r.company && `company ${r.company}`, r.key && `key ${r.key}`, r.filter && `filter ${r.filter}`].filter(Boolean);
  const scope = where.length ? ` (${where.join(', ')})` : '';
  if (r.kind === 'absence') return `no calls for ${r.window}${scope}`;
  if (r.kind === 'quota') return `calls this ${r.quota ? `quota ${r.quota} window` : 'billing period'}${who} ≥ ${r.percent}% of ${r.quota ? 'the quota' : r.limit}${scope}`;
  const vol = r.min_volume ? `, at least ${r.min_volume} calls` : '';
  const hold = r.for && r.for !== '0s' ? `, for ${r.for}` : '';
  return `${r.metric || r.meter}${who} ${r.op === 'below' ? '<' : '>'} ${r.threshold} over ${r.window}${scope}${vol}${hold}`;
}

function stateBadge(state, n) {
  const cls = state === 'firing' ? 'badge firing' : state === 'pending' ? 'badge pending' : 'badge ok';
  return h('span', { class: cls, dataset: { state } }, n != null ? `${n} ${state}` : state.toUpperCase());
}

function when(t) {
  return t ? new Date(t).toISOString().replace('T', ' ').slice(0, 19) + ' UTC' : '–';
}

function instanceValue(v) {
  return v == null ? '–' : Number(v.toPrecision(6)).toString();
}

async function alerts(params) {
  const base = client.base() + '/alerts';
  main.append(h('h1', {}, 'Alerts'));
  const [rules, state, notes] = await Promise.all([
    getJSON(`${base}/rules`), getJSON(`${base}/state`), getJSON(`${base}/notifications?limit=50`),
  ]);
  const byRule = new Map();
  for (const i of state.instances || []) {
    if (!byRule.has(i.rule_id)) byRule.set(i.rule_id, []);
    byRule.get(i.rule_id).push(i);
  }
  const list = rules.rules || [];
  main.append(h('h2', {}, 'Rules'));
  if (!list.length) {
    main.append(h('p', { class: 'muted', id: 'alerts-empty' },
      'No alert rules in this environment. Make them with --alerts-config or the alerts API (docs/alerts.md).'));
  } else {
    main.append(h('div', { class: 'card' }, h('table', { id: 'alert-rules' },
      h('thead', {}, h('tr', {}, ['Rule', 'Condition', 'State', 'Channels', 'Last evaluation'].map((c) => h('th', {}, c)))),
      h('tbody', {}, list.map((r) => {
        const ins = byRule.get(r.id) || [];
        const firing = ins.filter((i) => i.state === 'firing').length;
        const pending = ins.length - firing;
        const st = r.error ? h('span', { class: 'status-err' }, r.error)
          : r.disabled ? h('span', { class: 'muted' }, 'disabled')
            : ins.length ? h('span', {}, firing ? stateBadge('firing', firing) : null, ' ', pending ? stateBadge('pending', pending) : null)
              : stateBadge('ok');
        return h('tr', { class: params.rule === r.id ? 'selected' : '', dataset: { rule: r.id } },
          h('td', {}, h('b', {}, r.name || r.id), r.name ? h('div', { class: 'muted' }, r.id) : null),
          h('td', {}, condition(r)),
          h('td', {}, st),
          h('td', {}, (r.channels || []).map((c) => c.type).join(', ') || h('span', { class: 'muted' }, 'none')),
          h('td', {}, r.evaluated ? `${when(r.last_evaluation)} (${r.last_took_ms} ms)` : h('span', { class: 'muted' }, r.source === 'file' ? 'another process' : '–'),
            r.last_error ? h('div', { class: 'status-err' }, r.last_error) : null));
      })))));
  }
  const customerCell = (i) => {
    if (!i.customer) return h('span', { class: 'muted' }, '(all calls)');
    const r = list.find((x) => x.id === i.rule_id);
    return r && (r.per === 'user' || r.per === 'company')
      ? h('a', { href: `#/customer?kind=${r.per}&id=${encodeURIComponent(i.customer)}` }, i.customer) : i.customer;
  };
  const shown = (state.instances || []).filter((i) => !params.rule || i.rule_id === params.rule);
  main.append(h('h2', {}, params.rule ? `Pending and firing: ${params.rule} ` : 'Pending and firing ',
    params.rule ? h('a', { href: '#/alerts' }, '(all rules)') : null));
  main.append(h('div', { class: 'card' }, shown.length ? h('table', { id: 'alert-instances' },
    h('thead', {}, h('tr', {}, ['Rule', 'Customer', 'State', 'Value', 'Threshold', 'Calls', 'Since'].map((c) => h('th', {}, c)))),
    h('tbody', {}, shown.map((i) => h('tr', {},
      h('td', {}, h('a', { href: `#/alerts?rule=${encodeURIComponent(i.rule_id)}` }, i.rule_id)),
      h('td', {}, customerCell(i)),
      h('td', {}, stateBadge(i.state)),
      h('td', { class: 'num' }, instanceValue(i.value)),
      h('td', { class: 'num' }, instanceValue(i.threshold)),
      h('td', { class: 'num' }, format('int', i.volume)),
      h('td', {}, when(i.since))))))
    : h('p', { class: 'muted' }, 'Every rule is OK.')));
  const ds = new Map();
  for (const d of notes.deliveries || []) {
    if (!ds.has(d.notification)) ds.set(d.notification, []);
    ds.get(d.notification).push(d);
  }
  main.append(h('h2', {}, 'Recent notifications'));
  const ns = (notes.notifications || []).filter((n) => !params.rule || n.rule_id === params.rule);
  main.append(h('div', { class: 'card' }, ns.length ? h('table', { id: 'alert-notifications' },
    h('thead', {}, h('tr', {}, ['Time', 'Event', 'Rule', 'Customer', 'Value', 'Threshold', 'Deliveries'].map((c) => h('th', {}, c)))),
    h('tbody', {}, ns.map((n) => h('tr', {},
      h('td', {}, when(n.at)),
      h('td', {}, stateBadge(n.event === 'firing' ? 'firing' : 'ok', null), ' ', n.event),
      h('td', {}, n.rule_id),
      h('td', {}, customerCell(n)),
      h('td', { class: 'num' }, instanceValue(n.value)),
      h('td', { class: 'num' }, instanceValue(n.threshold)),
      h('td', {}, (ds.get(n.id) || []).reverse().map((d) => h('div', { class: d.outcome === 'delivered' ? '' : 'status-err' },
        `${d.channel_type} #${d.attempt}: ${d.outcome}${d.status ? ` (HTTP ${d.status})` : ''}${d.error && d.outcome !== 'delivered' ? ` ${d.error}` : ''}`)))))))
    : h('p', { class: 'muted' }, 'No notifications yet.')));
  markView();
}

start().catch(showError);
