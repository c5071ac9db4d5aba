// The dashboard reads only through apimeter's public read APIs: the Metrics
// API (/v1/o/{org}/environments/{env}/stats), the events API and its stream,
// and /v1/usage. Every URL built here is one a customer portal could call.

export class APIError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// getJSON fetches a same-origin URL with the session cookie and returns its
// JSON, or throws an APIError carrying the server's message.
export async function getJSON(url, init = {}) {
  const res = await fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' }, ...init });
  let body = null;
  const text = await res.text();
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!res.ok) {
    let msg = `${res.status} ${res.statusText}`;
    if (body && body.error && body.error.message) msg = body.error.message;
    else if (body && body.message) msg = body.message;
    if (res.status === 429) {
      const after = res.headers.get('Retry-After');
      if (after) msg += ` (retry in ${after} s)`;
    }
    throw new APIError(res.status, msg);
  }
  return body;
}

// Metrics the dashboard offers, each as the Metrics API selects it and how
// its value is formed from the selected columns.
export const METRICS = {
  calls: { label: 'Calls', select: ['sum(message_count)'], value: (v) => v[0], fmt: 'int', additive: true },
  errors: { label: 'Errors', select: ['sum(is_error)'], value: (v) => v[0], fmt: 'int', additive: true },
  error_rate: {
    label: 'Error rate', select: ['sum(is_error)', 'sum(message_count)'],
    value: (v) => (v[1] ? v[0] / v[1] : 0), fmt: 'pct', sortby: 'sum(is_error)',
  },
  p50: { label: 'p50 latency', select: ['p50(total_response_time)'], value: (v) => v[0], fmt: 'ms' },
  p95: { label: 'p95 latency', select: ['p95(total_response_time)'], value: (v) => v[0], fmt: 'ms' },
  p99: { label: 'p99 latency', select: ['p99(total_response_time)'], value: (v) => v[0], fmt: 'ms' },
  bytes: {
    label: 'Bytes', select: ['sum(request_size)', 'sum(response_size)'],
    value: (v) => v[0] + v[1], fmt: 'bytes', sortby: 'sum(response_size)', additive: true,
  },
};

// Group-bys offered, as Metrics API dimensions.
export const DIMENSIONS = {
  user_id: 'User',
  company_id: 'Company',
  apiproxy: 'API',
  route: 'Route',
  response_status_code: 'Status',
  api_key: 'API key',
  request_verb: 'Verb',
};

export const TIME_UNITS = ['minute', 'hour', 'day', 'week', 'month'];

// One formatter for every integer: toLocaleString builds a new one per call,
// which on a table of a few hundred rows was most of the render time.
const intFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

export function format(kind, v) {
  if (v == null || Number.isNaN(v)) return '–';
  switch (kind) {
    case 'int': return intFormat.format(Math.round(v));
    case 'pct': return (v * 100).toFixed(v < 0.1 ? 2 : 1) + ' %';
    case 'ms': return (v >= 100 ? v.toFixed(0) : v.toFixed(1)) + ' ms';
    case 'bytes': {
      const u = ['B', 'kB', 'MB', 'GB', 'TB'];
      let i = 0;
      while (v >= 1000 && i < u.length - 1) { v /= 1000; i++; }
      return (i ? v.toFixed(1) : v.toFixed(0)) + ' ' + u[i];
    }
  }
  return String(v);
}

const pad = (n) => String(n).padStart(2, '0');

// apigeeTime formats a Date as the Metrics API's MM/DD/YYYY HH:MM (GMT).
export function apigeeTime(d) {
  return `${pad(d.getUTCMonth() + 1)}/${pad(d.getUTCDate())}/${d.getUTCFullYear()} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
}

// Every view's range ends at the start of the current minute (rangeEnd):
// the Metrics API counts to the minute, and a range that ends in the past
// gives the same answer to everyone who asks (a portal, a test, a second
// tab, another view of this page).
export function rangeEnd(now = Date.now()) {
  const d = new Date(now);
  d.setUTCSeconds(0, 0);
  return d;
}

// ---- time zones ------------------------------------------------------------
// The Metrics API takes times in GMT and aligns buckets to a fixed offset
// (tzo, minutes east of UTC). A zone's offset is read from Intl at the
// moment concerned.

const zoneFormats = new Map();

// tzOffset answers the offset of zone tz at date, in minutes east of UTC.
export function tzOffset(tz, date) {
  if (!tz || tz === 'UTC') return 0;
  let f = zoneFormats.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone: tz, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric' });
    zoneFormats.set(tz, f);
  }
  const ms = Math.floor(+date / 1000) * 1000;
  const g = Object.fromEntries(f.formatToParts(new Date(ms)).map((p) => [p.type, p.value]));
  return Math.round((Date.UTC(+g.year, +g.month - 1, +g.day, +g.hour % 24, +g.minute, +g.second) - ms) / 60e3);
}

// wall returns date's wall-clock fields in tz as a Date read with getUTC*.
function wall(date, tz) {
  return new Date(+date + tzOffset(tz, date) * 60e3);
}

// fromWall is the instant whose wall clock in tz reads the given fields.
export function fromWall(y, mo, d, h, mi, tz) {
  const guess = Date.UTC(y, mo, d, h, mi);
  let t = guess - tzOffset(tz, new Date(guess)) * 60e3;
  t = guess - tzOffset(tz, new Date(t)) * 60e3;
  return new Date(t);
}

// fmtWall formats date in tz as YYYY-MM-DD HH:MM (sep 'T' gives the
// value of an <input type=datetime-local>).
export function fmtWall(date, tz, sep = ' ') {
  const w = wall(date, tz);
  return `${w.getUTCFullYear()}-${pad(w.getUTCMonth() + 1)}-${pad(w.getUTCDate())}${sep}${pad(w.getUTCHours())}:${pad(w.getUTCMinutes())}`;
}

// parseWall reads YYYY-MM-DDTHH:MM as a wall-clock time in tz.
export function parseWall(s, tz) {
  const m = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})$/.exec(s || '');
  if (!m) return null;
  return fromWall(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], tz);
}

function monthStart(date, tz, delta = 0) {
  const w = wall(date, tz);
  return fromWall(w.getUTCFullYear(), w.getUTCMonth() + delta, 1, 0, 0, tz);
}

function dayStart(date, tz) {
  const w = wall(date, tz);
  return fromWall(w.getUTCFullYear(), w.getUTCMonth(), w.getUTCDate(), 0, 0, tz);
}

// RANGES are the preset ranges, in the chosen time zone; `custom` takes
// from and to (wall-clock times in that zone). Each gives its previous
// period, what the summary tiles and the comparison set against it.
export const RANGES = {
  this_month: { label: 'This month', range: (now, tz) => [monthStart(now, tz), rangeEnd(now)], prev: (f, t, tz) => [monthStart(f, tz, -1), new Date(Math.min(+monthStart(f, tz, -1) + (t - f), +f))] },
  today: { label: 'Today', range: (now, tz) => [dayStart(now, tz), rangeEnd(now)], prev: (f, t, tz) => { const p = dayStart(new Date(f - 1), tz); return [p, new Date(Math.min(+p + (t - f), +f))]; } },
  last_24h: { label: 'Last 24 hours', range: (now) => { const e = rangeEnd(now); return [new Date(e - 864e5), e]; } },
  last_7d: { label: 'Last 7 days', range: (now) => { const e = rangeEnd(now); return [new Date(e - 7 * 864e5), e]; } },
  last_30d: { label: 'Last 30 days', range: (now) => { const e = rangeEnd(now); return [new Date(e - 30 * 864e5), e]; } },
  previous_month: { label: 'Previous month', range: (now, tz) => [monthStart(now, tz, -1), monthStart(now, tz)], prev: (f, t, tz) => [monthStart(f, tz, -1), f] },
  custom: { label: 'Custom…' },
};

// resolveRange reads a view's range parameters (range, from, to, tz) into
// {name, from, to, prevFrom, prevTo, tz, label}. An empty range (the first
// minute of a month) is stretched to one minute.
export function resolveRange(params, fallback = 'this_month', now = Date.now()) {
  const tz = validZone(params.tz) ? params.tz : 'UTC';
  let name = RANGES[params.range] ? params.range : fallback;
  let from, to;
  if (name === 'custom') {
    from = parseWall(params.from, tz);
    to = parseWall(params.to, tz);
    if (!from || !to || to <= from) name = fallback;
    // A custom range that reaches past now ends at this minute, as every
    // other range does.
    else if (to > rangeEnd(now)) to = rangeEnd(now);
  }
  if (name !== 'custom') [from, to] = RANGES[name].range(now, tz);
  if (to <= from) to = new Date(+from + 60e3);
  const [prevFrom, prevTo] = RANGES[name].prev ? RANGES[name].prev(from, to, tz) : [new Date(from - (to - from)), from];
  const label = name === 'custom' ? `${fmtWall(from, tz)} – ${fmtWall(to, tz)}` : RANGES[name].label;
  return { name, from, to, prevFrom, prevTo, tz, label };
}

export function validZone(tz) {
  if (!tz) return false;
  try { new Intl.DateTimeFormat('en-US', { timeZone: tz }); return true; } catch { return false; }
}

// bucketEnd is when the bucket starting at t (ms) ends.
export function bucketEnd(t, unit, tzo = 0) {
  if (unit === 'month') {
    const w = new Date(t + tzo * 60e3);
    return Date.UTC(w.getUTCFullYear(), w.getUTCMonth() + 1, 1) - tzo * 60e3;
  }
  return t + { second: 1e3, minute: 60e3, hour: 3600e3, day: 864e5, week: 7 * 864e5 }[unit];
}

export class Client {
  constructor(org, env) {
    this.org = org;
    this.env = env;
  }

  base() {
    return `/v1/o/${encodeURIComponent(this.org)}/environments/${encodeURIComponent(this.env)}`;
  }

  // statsURL builds a Metrics API URL: dimension may be '' for totals.
  statsURL(dimension, { select, from, to, timeUnit, tzo, sortby, sort, limit, topk, filter, tsAscending }) {
    const q = new URLSearchParams();
    q.set('select', select.join(','));
    q.set('timeRange', `${apigeeTime(from)}~${apigeeTime(to)}`);
    if (timeUnit) q.set('timeUnit', timeUnit);
    if (timeUnit && tzo) q.set('tzo', String(tzo));
    if (tsAscending) q.set('tsAscending', 'true');
    if (sortby) q.set('sortby', sortby);
    if (sort) q.set('sort', sort);
    if (limit) q.set('limit', String(limit));
    if (topk) q.set('topk', String(topk));
    if (filter) q.set('filter', filter);
    return `${this.base()}/stats/${dimension}?${q}`;
  }

  // stats answers rows [{name, values: [number per select] }] for a
  // dimension, or one row named '' for totals. With timeUnit each value is
  // a series [[ms, value], ...] oldest first.
  async stats(dimension, opts) {
    const url = this.statsURL(dimension, opts);
    const body = await getJSON(url);
    return { url, rows: parseStats(body, opts.select, !!opts.timeUnit) };
  }

  eventsURL(filter = {}, path = '/events') {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(filter)) if (v !== '' && v != null && v !== false) q.set(k, String(v));
    const s = q.toString();
    return `${this.base()}${path}${s ? '?' + s : ''}`;
  }

  async events(filter) {
    const body = await getJSON(this.eventsURL(filter));
    return body.events || [];
  }

  async usage(group, period = 'current') {
    const q = new URLSearchParams({ org: this.org, env: this.env, period, group });
    return getJSON(`/v1/usage?${q}`);
  }
}

function parseStats(body, select, series) {
  const env = (body.environments || [])[0] || {};
  const groups = env.dimensions ? env.dimensions : [{ name: '', metrics: env.metrics || [] }];
  return groups.map((g) => {
    const byName = new Map((g.metrics || []).map((m) => [m.name, m.values || []]));
    const values = select.map((s) => {
      const vs = byName.get(s) || [];
      if (!series) return vs.length ? parseFloat(typeof vs[0] === 'object' ? vs[0].value : vs[0]) : 0;
      return vs.map((p) => [Number(p.timestamp), parseFloat(p.value)]).sort((a, b) => a[0] - b[0]);
    });
    return { name: g.name, values };
  });
}

// quote makes a Metrics API filter value.
export function quote(v) {
  return "'" + String(v).replace(/'/g, "''") + "'";
}
