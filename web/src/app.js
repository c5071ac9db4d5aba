// apimeter's dashboard: sign-in, then five views (segmentation, time
// series, event stream, customer, alerts) routed by the URL's hash. State lives in
// the hash so every view can be linked to and reloaded.
import { APIError, Client, DIMENSIONS, METRICS, RANGES, TIME_UNITS, bucketEnd, fmtWall, format, getJSON, quote, rangeEnd, resolveRange, tzOffset, validZone } from './api.js';
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
  // A sign-in link that could not sign in (used, expired, or its key
  // revoked) lands here with signin=CODE.
  const linkNotice = SIGNIN_NOTICES[q.get('signin')];
  if (q.has('signin')) {
    q.delete('signin');
    history.replaceState(null, '', location.pathname + (q.toString() ? '?' + q : '') + location.hash);
  }
  try {
    sess = await getJSON('/v1/session');
  } catch (err) {
    if (err.status === 401) { signIn(linkNotice); return; }
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

const SIGNIN_NOTICES = {
  invalid_token: 'That sign-in link has already been used or has expired. Sign in with your read key, or ask for a new link.',
  invalid_key: 'The key of that sign-in link is no longer valid. Sign in with a read key.',
};

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
  message ? h('p', { class: 'notice', id: 'signin-notice' }, message) : null,
  h('label', {}, 'API read key', key),
  err,
  h('button', { class: 'primary', type: 'submit' }, 'Sign in'));
  main.append(form);
  key.focus();
}

// ---- shared parts ----------------------------------------------------------

function rangeText(r) {
  return `${fmtWall(r.from, r.tz)} – ${fmtWall(r.to, r.tz)} ${r.tz}`;
}

// apiLink keeps the Metrics API request a chart was drawn from behind a
// "Show query" toggle: a portal of your own can make the same call.
function apiLink(url) {
  return h('details', { class: 'api-link', dataset: { url } },
    h('summary', {}, 'Show query'),
    h('p', {}, 'GET ', h('a', { href: url, target: '_blank', rel: 'noopener' }, url)));
}

function customerLink(group, name) {
  if (!name) return h('span', { class: 'muted' }, '(none)');
  if (group === 'user_id' || group === 'company_id') {
    const kind = group === 'user_id' ? 'user' : 'company';
    return h('a', { href: `#/customer?kind=${kind}&id=${encodeURIComponent(name)}` }, name);
  }
  return name;
}

// csvField writes one CSV field. Text that a spreadsheet would run as a
// formula (=, +, -, @ first) is kept as text with a leading quote: ids
// and routes come from API callers.
function csvField(v) {
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : '';
  let s = v == null ? '' : String(v);
  if (/^[=+\-@\t\r]/.test(s)) s = "'" + s;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function downloadCSV(name, header, rows) {
  const text = [header, ...rows].map((r) => r.map(csvField).join(',')).join('\r\n') + '\r\n';
  const url = URL.createObjectURL(new Blob([text], { type: 'text/csv;charset=utf-8' }));
  const a = h('a', { href: url, download: `${name}.csv`, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10e3);
}

// tableBox puts a table in a box that scrolls sideways on narrow screens,
// with a "Download CSV" button: rows() gives [header, rows] (raw values),
// else the table's text is written as shown.
function tableBox(name, table, rows) {
  const textRows = () => {
    const header = [...table.querySelectorAll('thead th')].map((th) => th.textContent.replace(/ [▼▲]$/, ''));
    return [header, [...table.querySelectorAll('tbody tr')].map((tr) => [...tr.cells].map((td) => td.textContent))];
  };
  return h('div', { class: 'table-box' },
    h('div', { class: 'table-tools' }, h('button', { type: 'button', class: 'link csv', dataset: { table: name }, onclick: () => downloadCSV(name, ...(rows ? rows() : textRows())) }, 'Download CSV')),
    h('div', { class: 'scroll' }, table));
}

// sortableTable renders rows with clickable headers; cols are
// {key, label, kind} and each row has row[key]. It comes in a tableBox
// whose CSV has the raw values, in the order shown.
function sortableTable(cols, rows, sortKey, dir, rowAttrs = () => ({}), cell = (c, r) => r[c.key], name = 'table') {
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
    }, c.kind ? (c.kind === 'delta' ? deltaText(r[c.key]) : format(c.kind, r[c.key])) : cell(c, r)))))));
  };
  draw();
  return tableBox(name, table, () => [cols.map((c) => c.label), rows.map((r) => cols.map((c) => r[c.key] ?? ''))]);
}

// deltaText says a relative change: +12.5 %, −3.0 %, or – without a base.
function deltaText(d) {
  if (d == null || !Number.isFinite(d)) return '–';
  const pct = Math.abs(d * 100);
  return `${d > 0 ? '+' : d < 0 ? '−' : '±'}${pct.toFixed(pct < 10 ? 1 : 0)} %`;
}

function change(cur, prev) {
  return prev ? (cur - prev) / prev : null;
}

// Time zones offered at first: UTC, the browser's and common ones; the
// full list (the browser's Intl) is added when the menu is opened, as
// building it costs more than the rest of the view.
const COMMON_ZONES = ['America/Los_Angeles', 'America/Denver', 'America/Chicago', 'America/New_York', 'America/Sao_Paulo', 'Europe/London', 'Europe/Paris', 'Europe/Berlin',
  'Africa/Johannesburg', 'Asia/Dubai', 'Asia/Kolkata', 'Asia/Singapore', 'Asia/Shanghai', 'Asia/Tokyo', 'Australia/Sydney', 'Pacific/Auckland'];

function zoneSelect(current, onchange) {
  const local = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const zones = ['UTC', ...new Set([current, local, ...COMMON_ZONES].filter((z) => z && z !== 'UTC'))];
  const sel = select('tz', Object.fromEntries(zones.map((z) => [z, z])), current, onchange);
  sel.addEventListener('pointerdown', function more() {
    sel.removeEventListener('pointerdown', more);
    let all = [];
    try { all = Intl.supportedValuesOf('timeZone'); } catch { /* older browsers: the first list */ }
    const have = new Set(zones);
    sel.append(...all.filter((z) => !have.has(z)).map((z) => h('option', { value: z }, z)));
  });
  return sel;
}

// rangeControls are the time range, custom from/to, time zone and
// "compare" controls of a view; set(changes) moves to the new address.
// The chosen zone is remembered for the next visit.
function rangeControls(r, params, set) {
  const custom = r.name === 'custom' || params.range === 'custom';
  const from = h('input', { type: 'datetime-local', name: 'from', value: fmtWall(r.from, r.tz, 'T') });
  const to = h('input', { type: 'datetime-local', name: 'to', value: fmtWall(r.to, r.tz, 'T') });
  const fields = h('span', { class: 'custom-range', hidden: !custom },
    h('label', {}, 'From', from), h('label', {}, 'To', to),
    h('button', { type: 'button', name: 'apply-range', onclick: () => set({ range: 'custom', from: from.value, to: to.value }) }, 'Apply'));
  return [
    h('label', {}, 'Time range', select('range', Object.fromEntries(Object.entries(RANGES).map(([k, v]) => [k, v.label])), custom ? 'custom' : r.name, (e) => {
      if (e.target.value === 'custom') { fields.hidden = false; return; }
      set({ range: e.target.value, from: '', to: '' });
    })),
    fields,
    h('label', {}, 'Time zone', zoneSelect(r.tz, (e) => {
      localStorage.setItem('apimeter.tz', e.target.value);
      // A custom range keeps its wall-clock times in the new zone.
      set({ tz: e.target.value });
    })),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'compare', checked: params.compare === '1', onchange: (e) => set({ compare: e.target.checked ? '1' : '' }) }), 'Compare with previous period'),
    h('span', { class: 'muted range-text', id: 'range-text' }, rangeText(r)),
  ];
}

// viewRange reads the range of a view's address, the zone falling back to
// the one chosen last.
function viewRange(params, fallback) {
  const tz = validZone(params.tz) ? params.tz : (validZone(localStorage.getItem('apimeter.tz')) ? localStorage.getItem('apimeter.tz') : 'UTC');
  return resolveRange({ ...params, tz }, fallback);
}

// ---- summary tiles -------------------------------------------------------------

const TILE_SELECT = ['sum(message_count)', 'sum(is_error)', 'p95(total_response_time)', 'unique_users'];

const TILES = [
  { id: 'calls', label: 'Calls', fmt: 'int', value: (v) => v[0] },
  { id: 'error_rate', label: 'Error rate', fmt: 'pct', value: (v) => (v[0] ? v[1] / v[0] : null), lowerIsBetter: true },
  { id: 'p95', label: 'p95 latency', fmt: 'ms', value: (v) => (v[0] ? v[2] : null), lowerIsBetter: true },
  { id: 'active', label: 'Active customers', fmt: 'int', value: (v) => v[3] },
];

// summaryTiles reads the period's and the previous period's totals and
// shows each figure with its change.
async function summaryTiles(el, r, filter) {
  const opts = { select: TILE_SELECT, filter };
  const [cur, prev] = await Promise.all([
    client.stats('', { ...opts, from: r.from, to: r.to }),
    client.stats('', { ...opts, from: r.prevFrom, to: r.prevTo }),
  ]);
  const cv = cur.rows[0]?.values || [0, 0, 0, 0];
  const pv = prev.rows[0]?.values || [0, 0, 0, 0];
  el.replaceChildren(...TILES.map((t) => {
    const c = t.value(cv), p = t.value(pv);
    const d = c == null || p == null ? null : change(c, p);
    const good = d == null || d === 0 ? '' : (d > 0) !== !!t.lowerIsBetter ? 'up' : 'down';
    return h('div', { class: 'tile', id: `tile-${t.id}`, dataset: { value: String(c ?? ''), prev: String(p ?? '') } },
      h('span', { class: 'tile-label' }, t.label),
      h('b', {}, format(t.fmt, c)),
      h('span', { class: `delta ${good}` }, deltaText(d), h('span', { class: 'muted' }, ` vs ${format(t.fmt, p)}`)));
  }));
  el.dataset.range = new URL(cur.url, location.href).searchParams.get('timeRange');
  el.dataset.prevRange = new URL(prev.url, location.href).searchParams.get('timeRange');
}

// ---- segmentation --------------------------------------------------------

async function segmentation(params) {
  const metric = METRICS[params.metric] ? params.metric : 'calls';
  const group = DIMENSIONS[params.group] ? params.group : 'user_id';
  const r = viewRange(params, 'this_month');
  const compare = params.compare === '1';
  const m = METRICS[metric];
  const state = { metric, group, range: r.name, from: r.name === 'custom' ? params.from : '', to: r.name === 'custom' ? params.to : '', tz: params.tz || '', compare: compare ? '1' : '' };
  const set = (changes) => go('segmentation', { ...state, ...changes });
  const tiles = h('div', { class: 'tiles', id: 'tiles' }, TILES.map((t) => h('div', { class: 'tile' }, h('span', { class: 'tile-label' }, t.label), h('b', {}, '…'), h('span', { class: 'delta' }, ' '))));
  const chartEl = h('div', { class: 'chart', id: 'segment-chart' });
  const tableEl = h('div', { id: 'segment-table' });
  const linkEl = h('div');
  main.append(
    h('h1', {}, `${m.label} by ${DIMENSIONS[group].toLowerCase()}`, h('span', { class: 'muted' }, ` · ${r.label.toLowerCase()}`)),
    h('div', { class: 'controls' },
      h('label', {}, 'Metric', select('metric', Object.fromEntries(Object.entries(METRICS).map(([k, v]) => [k, v.label])), metric, (e) => set({ metric: e.target.value }))),
      h('label', {}, 'Group by', select('group', DIMENSIONS, group, (e) => set({ group: e.target.value }))),
      rangeControls(r, params, set)),
    tiles,
    h('div', { class: 'card' }, chartEl, linkEl),
    tableEl);
  const sel = [...new Set(['sum(message_count)', 'sum(is_error)', ...m.select])];
  performance.mark('segmentation:query');
  const q = { select: sel, sortby: m.sortby || m.select[0], sort: 'DESC', limit: 500 };
  const [{ url, rows }, prevAnswer] = await Promise.all([
    client.stats(group, { ...q, from: r.from, to: r.to }),
    compare ? client.stats(group, { ...q, from: r.prevFrom, to: r.prevTo }) : null,
  ]);
  // The tiles are asked for once the table's answer is in (their queries
  // would otherwise share the server with it) and fill in their kept place
  // while the chart and table are drawn: nothing moves.
  summaryTiles(tiles, r).catch(showError);
  performance.mark('segmentation:answer');
  const idx = (s) => sel.indexOf(s);
  const rowOf = (row) => ({
    name: row.name,
    calls: row.values[idx('sum(message_count)')],
    errors: row.values[idx('sum(is_error)')],
    error_rate: row.values[idx('sum(message_count)')] ? row.values[idx('sum(is_error)')] / row.values[idx('sum(message_count)')] : 0,
    metric: m.value(m.select.map((s) => row.values[idx(s)])),
  });
  const data = rows.map(rowOf);
  const prevBy = new Map((prevAnswer ? prevAnswer.rows : []).map((row) => [row.name, rowOf(row)]));
  const mainKey = ['calls', 'errors', 'error_rate'].includes(metric) ? metric : 'metric';
  if (compare) {
    for (const d of data) {
      const p = prevBy.get(d.name);
      d.prev = p ? p[mainKey] : 0;
      d.change = change(d[mainKey], d.prev);
    }
  }
  linkEl.append(apiLink(url));
  const top = [...data].sort((a, b) => b.metric - a.metric).slice(0, 25);
  if (data.length === 0) chartEl.append(h('p', { class: 'muted' }, 'No calls in this range.'));
  else barChart(chartEl, top.map((x) => x.name || '(none)'), top.map((x) => x.metric), m.fmt, m.label, compare ? top.map((x) => prevBy.get(x.name)?.metric ?? 0) : null);
  performance.mark('segmentation:chart');
  const cols = [{ key: 'name', label: DIMENSIONS[group] }, { key: 'calls', label: 'Calls', kind: 'int' }, { key: 'errors', label: 'Errors', kind: 'int' }, { key: 'error_rate', label: 'Error rate', kind: 'pct' }];
  if (mainKey === 'metric') cols.push({ key: 'metric', label: m.label, kind: m.fmt });
  if (compare) {
    const fmt = mainKey === 'metric' ? m.fmt : cols.find((c) => c.key === mainKey).kind;
    cols.push({ key: 'prev', label: `${m.label}, previous period`, kind: fmt }, { key: 'change', label: 'Change', kind: 'delta' });
  }
  tableEl.append(sortableTable(cols, data, mainKey, 'desc', (x) => ({ dataset: { name: x.name } }),
    (c, x) => (c.key === 'name' ? customerLink(group, x.name) : x[c.key]), `${metric}-by-${group}`));
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

// seriesOf forms a metric per bucket from a stats row's selected columns.
function seriesOf(row, m) {
  const byT = new Map();
  row.values.forEach((pts, i) => {
    for (const [t, v] of pts) {
      if (!byT.has(t)) byT.set(t, new Array(row.values.length).fill(0));
      byT.get(t)[i] = v;
    }
  });
  return [...byT.entries()].sort((a, b) => a[0] - b[0]).map(([t, vs]) => [t, m.value(vs)]);
}

// timeOptions are what lineChart needs to place and name buckets of unit
// over range r: the first bucket that has not ended by r.to is partial.
function timeOptions(r, unit, points, tzo) {
  const starts = points.map((p) => p[0]);
  const partial = starts.find((t) => bucketEnd(t, unit, tzo) > +r.to);
  return {
    tz: r.tz,
    from: +r.from,
    to: +r.to,
    partialFrom: partial ?? Infinity,
    partialNote: `counted to ${fmtWall(r.to, r.tz)}; the ${unit} is not over`,
    timeLabel: (t) => `${unit} from ${fmtWall(new Date(t), r.tz)} ${r.tz}`,
  };
}

async function timeseries(params) {
  const metric = METRICS[params.metric] ? params.metric : 'calls';
  const group = DIMENSIONS[params.group] ? params.group : '';
  const r = viewRange(params, 'last_7d');
  const compare = params.compare === '1';
  let unit = TIME_UNITS.includes(params.unit) ? params.unit : (r.to - r.from > 8 * 864e5 ? 'day' : 'hour');
  const m = METRICS[metric];
  const state = { metric, group, range: r.name, from: r.name === 'custom' ? params.from : '', to: r.name === 'custom' ? params.to : '', tz: params.tz || '', unit, compare: compare ? '1' : '' };
  const set = (changes) => go('timeseries', { ...state, ...changes });
  const chartEl = h('div', { class: 'chart', id: 'series-chart' });
  const linkEl = h('div');
  const note = h('div');
  main.append(
    h('h1', {}, `${m.label} over time`),
    h('div', { class: 'controls' },
      h('label', {}, 'Metric', select('metric', Object.fromEntries(Object.entries(METRICS).map(([k, v]) => [k, v.label])), metric, (e) => set({ metric: e.target.value }))),
      h('label', {}, 'Split by', select('group', { '': '(total)', ...DIMENSIONS }, group, (e) => set({ group: e.target.value }))),
      h('label', {}, 'Time unit', select('unit', Object.fromEntries(TIME_UNITS.map((u) => [u, u])), unit, (e) => set({ unit: e.target.value }))),
      rangeControls(r, params, set)),
    note,
    h('div', { class: 'card' }, chartEl, linkEl));
  if ((r.to - r.from) / UNIT_MS[unit] > 5000) {
    unit = (r.to - r.from) / UNIT_MS.hour > 5000 ? 'day' : 'hour';
    note.append(h('p', { class: 'notice' }, `That many ${params.unit} buckets would not fit a chart; showing ${unit}s.`));
  }
  const tzo = tzOffset(r.tz, r.to);
  const opts = { select: m.select, timeUnit: unit, tzo, tsAscending: true };
  if (group) Object.assign(opts, { topk: 6, sortby: m.sortby || m.select[0] });
  const [{ url, rows }, prev] = await Promise.all([
    client.stats(group, { ...opts, from: r.from, to: r.to }),
    compare ? client.stats('', { ...opts, topk: undefined, sortby: undefined, from: r.prevFrom, to: r.prevTo }) : null,
  ]);
  linkEl.append(apiLink(url));
  const series = rows.map((row) => ({ label: group ? (row.name || '(none)') : m.label, points: seriesOf(row, m) }));
  if (prev && prev.rows[0]) {
    // The previous period, moved onto this one's time axis.
    const shift = r.from - r.prevFrom;
    series.push({ label: `${group ? 'total, ' : ''}previous period`, color: '#98a2b3', dash: [6, 4], points: seriesOf(prev.rows[0], m).map(([t, v]) => [t + shift, v]).filter(([t]) => t < +r.to) });
  }
  if (m.additive) {
    // A bucket without calls is 0 calls (or errors, bytes), not a gap: the
    // Metrics API leaves such buckets out.
    const times = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))];
    for (const s of series) {
      const have = new Set(s.points.map((p) => p[0]));
      s.points = s.points.concat(times.filter((t) => !have.has(t)).map((t) => [t, 0])).sort((a, b) => a[0] - b[0]);
    }
  }
  if (series.every((s) => s.points.length === 0)) chartEl.append(h('p', { class: 'muted' }, 'No calls in this range.'));
  else lineChart(chartEl, series, m.fmt, timeOptions(r, unit, series.filter((s) => !s.dash).flatMap((s) => s.points), tzo));
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

const EVENT_COLUMNS = ['Time (UTC)', 'Verb', 'Path', 'Status', 'Latency', 'User', 'Company', 'API'];

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
    h('div', { class: 'card' }, tableBox('events', h('table', {},
      h('thead', {}, h('tr', {}, EVENT_COLUMNS.map((t) => h('th', {}, t)))),
      tbody))),
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

// profileOf reads a user's or company's profile (what /v1/users and
// /v1/companies stored), or null when there is none.
async function profileOf(kind, id) {
  try {
    return await getJSON(`${client.base()}/${kind === 'user' ? 'users' : 'companies'}/${encodeURIComponent(id)}`);
  } catch (err) {
    if (err.status === 404) return null;
    throw err;
  }
}

// quotasOf reads the gateway's quotas that count this customer; none on
// a server without a gateway.
async function quotasOf(kind, id) {
  try {
    const a = await getJSON(`${client.base()}/${kind === 'user' ? 'users' : 'companies'}/${encodeURIComponent(id)}/quotas`);
    return a.quotas || [];
  } catch (err) {
    if (err.status === 404) return [];
    throw err;
  }
}

function profileValue(v) {
  if (v == null) return '–';
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

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
  // The billing period so far, to the start of this minute as every view
  // counts (not /v1/usage's live counters, which run ahead of the others).
  const usage = await client.usage(group);
  const from = new Date(usage.start);
  const to = new Date(Math.max(+from + 60e3, Math.min(+rangeEnd(), +new Date(usage.end))));
  const r = { from, to, tz: 'UTC' };
  const periodText = h('p', { class: 'muted', id: 'customer-period' }, `Billing period ${usage.period}: ${rangeText(r)}`);
  if (!id) {
    const busiest = await client.stats(group, { select: ['sum(message_count)', 'sum(is_error)', 'sum(request_size)', 'sum(response_size)'], from, to, sortby: 'sum(message_count)', sort: 'DESC', limit: 50 });
    main.append(h('h2', {}, `Busiest ${kind === 'user' ? 'users' : 'companies'} this billing period`), periodText,
      sortableTable([{ key: 'id', label: 'Id' }, { key: 'calls', label: 'Calls', kind: 'int' }, { key: 'errors', label: 'Errors', kind: 'int' }, { key: 'bytes', label: 'Bytes', kind: 'bytes' }],
        busiest.rows.map((x) => ({ id: x.name, calls: x.values[0], errors: x.values[1], bytes: x.values[2] + x.values[3] })), 'calls', 'desc', () => ({}), (c, x) => customerLink(group, x.id), `busiest-${kind === 'user' ? 'users' : 'companies'}`),
      apiLink(busiest.url));
    markView();
    return;
  }
  const filter = `${group} eq ${quote(id)}`;
  const unit = to - from > 3 * 864e5 ? 'day' : 'hour';
  const [totals, routes, keys, recent, months, daily, profile, quotas] = await Promise.all([
    client.stats('', { select: ['sum(message_count)', 'sum(is_error)', 'sum(request_size)', 'sum(response_size)', 'p50(total_response_time)', 'p95(total_response_time)', 'p99(total_response_time)'], from, to, filter }),
    client.stats('route', { select: ['sum(message_count)', 'sum(is_error)', 'p95(total_response_time)'], from, to, filter, limit: 100 }),
    client.stats('api_key', { select: ['sum(message_count)'], from, to, filter, limit: 100 }),
    client.events({ [group]: id, limit: 10 }),
    client.stats('', { select: ['sum(message_count)'], from: new Date(Date.UTC(2000, 0, 1)), to: new Date(Date.now() + 60e3), filter, timeUnit: 'month', tsAscending: true }),
    client.stats('', { select: ['sum(message_count)', 'sum(is_error)'], from, to, filter, timeUnit: unit, tsAscending: true }),
    profileOf(kind, id),
    quotasOf(kind, id),
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
  const [calls = 0, errors = 0, reqBytes = 0, resBytes = 0, p50, p95, p99] = totals.rows[0]?.values || [];
  // Without calls there is no latency to show (the API answers 0).
  const lat = (v) => (calls ? format('ms', v) : '–');
  const meta = (profile && profile.metadata) || {};
  const kpi = (label, value, id2, data) => h('div', { class: 'kpi', id: id2, dataset: data }, h('b', {}, value), h('span', {}, label));
  const chartEl = h('div', { class: 'chart', id: 'customer-chart' });
  main.append(
    periodText,
    h('div', { class: 'kpis', id: 'customer-kpis' },
      kpi('calls this period', format('int', calls), 'kpi-calls', { value: String(calls) }),
      meta.plan != null ? kpi('plan', profileValue(meta.plan), 'kpi-plan') : null,
      quotas.map((q) => kpi(`quota ${q.name}: per ${q.per.replace('_', ' ')}, resets ${when(q.resets)}`, `${format('int', q.used)} / ${format('int', q.limit)}`, `kpi-quota-${q.name}`, { used: String(q.used), limit: String(q.limit) })),
      kpi('errors', `${format('int', errors)} (${calls ? format('pct', errors / calls) : '–'})`, 'kpi-errors'),
      kpi('bytes', format('bytes', reqBytes + resBytes)),
      kpi('latency p50 / p95 / p99', `${lat(p50)} / ${lat(p95)} / ${lat(p99)}`, 'kpi-latency'),
      kpi('first seen', firstSeen, 'kpi-first'),
      kpi('last seen', lastSeen, 'kpi-last')),
    h('div', { class: 'card' }, h('h2', {}, `Calls per ${unit} this period`), chartEl, apiLink(daily.url)),
    h('div', { class: 'split' },
      h('div', {},
        h('h2', {}, 'Routes used this period'),
        sortableTable([{ key: 'name', label: 'Route' }, { key: 'calls', label: 'Calls', kind: 'int' }, { key: 'errors', label: 'Errors', kind: 'int' }, { key: 'p95', label: 'p95', kind: 'ms' }],
          routes.rows.map((x) => ({ name: x.name || '(none)', calls: x.values[0], errors: x.values[1], p95: x.values[2] })), 'calls', 'desc', undefined, undefined, `${kind}-${id}-routes`),
        apiLink(routes.url)),
      h('div', {},
        h('h2', {}, 'Profile'),
        profile ? tableBox(`${kind}-${id}-profile`, h('table', { id: 'customer-profile' },
          h('thead', {}, h('tr', {}, h('th', {}, 'Field'), h('th', {}, 'Value'))),
          h('tbody', {}, Object.entries(profile).filter(([k]) => k !== 'metadata').concat(Object.entries(meta))
            .map(([k, v]) => h('tr', { dataset: { key: k } }, h('td', {}, k), h('td', {}, profileValue(v)))))))
          : h('p', { class: 'muted', id: 'customer-profile' }, `No profile: send one to /v1/${kind === 'user' ? 'users' : 'companies'} (Moesif's update${kind === 'user' ? 'User' : 'Company'}).`),
        h('h2', {}, 'API keys (fingerprints)'),
        sortableTable([{ key: 'name', label: 'Key' }, { key: 'calls', label: 'Calls', kind: 'int' }],
          keys.rows.map((x) => ({ name: x.name || '(none)', calls: x.values[0] })), 'calls', 'desc', undefined, undefined, `${kind}-${id}-keys`))),
    h('h2', {}, 'Recent calls ', h('a', { href: `#/stream?${group}=${encodeURIComponent(id)}` }, '(live)')),
    h('div', { class: 'card' }, tableBox(`${kind}-${id}-recent`, h('table', {},
      h('thead', {}, h('tr', {}, EVENT_COLUMNS.map((t) => h('th', {}, t)))),
      h('tbody', {}, recent.map((e) => eventRow(e, () => go('stream', { [group]: id }))))))));
  const points = seriesOf(daily.rows[0] || { values: [[], []] }, METRICS.calls);
  if (points.length) lineChart(chartEl, [{ label: 'Calls', points }], 'int', timeOptions(r, unit, points, 0));
  else chartEl.append(h('p', { class: 'muted' }, 'No calls this period.'));
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
    main.append(h('div', { class: 'card' }, tableBox('alert-rules', h('table', { id: 'alert-rules' },
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
      }))))));
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
  main.append(h('div', { class: 'card' }, shown.length ? tableBox('alert-instances', h('table', { id: 'alert-instances' },
    h('thead', {}, h('tr', {}, ['Rule', 'Customer', 'State', 'Value', 'Threshold', 'Calls', 'Since'].map((c) => h('th', {}, c)))),
    h('tbody', {}, shown.map((i) => h('tr', {},
      h('td', {}, h('a', { href: `#/alerts?rule=${encodeURIComponent(i.rule_id)}` }, i.rule_id)),
      h('td', {}, customerCell(i)),
      h('td', {}, stateBadge(i.state)),
      h('td', { class: 'num' }, instanceValue(i.value)),
      h('td', { class: 'num' }, instanceValue(i.threshold)),
      h('td', { class: 'num' }, format('int', i.volume)),
      h('td', {}, when(i.since)))))))
    : h('p', { class: 'muted' }, 'Every rule is OK.')));
  const ds = new Map();
  for (const d of notes.deliveries || []) {
    if (!ds.has(d.notification)) ds.set(d.notification, []);
    ds.get(d.notification).push(d);
  }
  main.append(h('h2', {}, 'Recent notifications'));
  const ns = (notes.notifications || []).filter((n) => !params.rule || n.rule_id === params.rule);
  main.append(h('div', { class: 'card' }, ns.length ? tableBox('alert-notifications', h('table', { id: 'alert-notifications' },
    h('thead', {}, h('tr', {}, ['Time', 'Event', 'Rule', 'Customer', 'Value', 'Threshold', 'Deliveries'].map((c) => h('th', {}, c)))),
    h('tbody', {}, ns.map((n) => h('tr', {},
      h('td', {}, when(n.at)),
      h('td', {}, stateBadge(n.event === 'firing' ? 'firing' : 'ok', null), ' ', n.event),
      h('td', {}, n.rule_id),
      h('td', {}, customerCell(n)),
      h('td', { class: 'num' }, instanceValue(n.value)),
      h('td', { class: 'num' }, instanceValue(n.threshold)),
      h('td', {}, (ds.get(n.id) || []).reverse().map((d) => h('div', { class: d.outcome === 'delivered' ? '' : 'status-err' },
        `${d.channel_type} #${d.attempt}: ${d.outcome}${d.status ? ` (HTTP ${d.status})` : ''}${d.error && d.outcome !== 'delivered' ? ` ${d.error}` : ''}`))))))))
    : h('p', { class: 'muted' }, 'No notifications yet.')));
  markView();
}

start().catch(showError);
