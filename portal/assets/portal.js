// apimeter's customer portal page. It reads its token from the URL
// fragment (#token=apmp_...), which browsers never send to a server or in
// a Referer, forgets the fragment, and reads the portal's JSON API with
// the token as a Bearer credential. It loads nothing from elsewhere.
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get('token') || '';
  if (location.hash) history.replaceState(null, '', location.pathname + location.search);

  // Theme: a few CSS variables, each value checked, from the fragment.
  const color = /^(#[0-9a-fA-F]{3,8}|rgba?\([0-9.,%\s]+\)|[a-zA-Z]{3,20})$/;
  const fonts = ['system-ui', 'sans-serif', 'serif', 'monospace'];
  for (const [k, ok] of [['bg', color], ['fg', color], ['muted', color], ['accent', color], ['error', color], ['border', color]]) {
    const v = params.get(k);
    if (v && ok.test(v)) document.documentElement.style.setProperty('--portal-' + k, v);
  }
  const font = params.get('font');
  if (font && fonts.includes(font)) document.documentElement.style.setProperty('--portal-font', font);
  const radius = params.get('radius');
  if (radius && /^\d{1,2}px$/.test(radius)) document.documentElement.style.setProperty('--portal-radius', radius);

  const nf = new Intl.NumberFormat('en-US');
  const fmtN = (n) => nf.format(n);
  const fmtMs = (v) => (v == null ? '–' : (v >= 100 ? Math.round(v) : Math.round(v * 10) / 10) + ' ms');

  function status(msg, isError) {
    const s = $('status');
    s.textContent = msg;
    s.className = isError ? 'error' : '';
    s.hidden = !msg;
  }

  async function api(path) {
    const r = await fetch('../api/v1/' + path, { headers: { Authorization: 'Bearer ' + token }, cache: 'no-store', credentials: 'omit' });
    const body = await r.json().catch(() => null);
    if (!r.ok) {
      const msg = body && body.error ? body.error.message : 'HTTP ' + r.status;
      const e = new Error(msg);
      e.status = r.status;
      throw e;
    }
    return body;
  }

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k);
    return e;
  }

  function table(id, head, rows) {
    const t = $(id);
    t.replaceChildren();
    t.append(el('tr', {}, ...head.map(([h, n]) => el('th', n ? { class: 'n' } : {}, h))));
    if (rows.length === 0) t.append(el('tr', {}, el('td', { colspan: String(head.length) }, 'No calls')));
    for (const r of rows) t.append(r);
  }

  function groupRows(gs) {
    return gs.map((g) => el('tr', { 'data-name': g.name, 'data-calls': String(g.calls) },
      el('td', {}, g.name || '(none)'), el('td', { class: 'n' }, fmtN(g.calls)),
      el('td', { class: 'n' }, fmtN(g.errors)), el('td', { class: 'n' }, fmtMs(g.p95_ms))));
  }

  const SVG = 'http://www.w3.org/2000/svg';
  function chart(series) {
    const pts = series.points;
    const fig = $('chart');
    fig.replaceChildren();
    const W = 1000, H = 160, pad = 18;
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('role', 'img');
    const max = Math.max(1, ...pts.map((p) => p.calls));
    const bw = pts.length ? W / pts.length : W;
    pts.forEach((p, i) => {
      for (const [cls, v] of [['calls', p.calls], ['errors', p.errors]]) {
        const h = (v / max) * (H - pad);
        const r = document.createElementNS(SVG, 'rect');
        r.setAttribute('class', cls);
        r.setAttribute('x', String(i * bw + 1));
        r.setAttribute('width', String(Math.max(1, bw - 2)));
        r.setAttribute('y', String(H - pad - h));
        r.setAttribute('height', String(h));
        const t = document.createElementNS(SVG, 'title');
        t.textContent = `${new Date(p.t).toISOString().slice(0, series.unit === 'hour' ? 13 : 10)}: ${fmtN(v)} ${cls}`;
        r.append(t);
        svg.append(r);
      }
    });
    const lab = document.createElementNS(SVG, 'text');
    lab.setAttribute('class', 'axis');
    lab.setAttribute('x', '2');
    lab.setAttribute('y', '10');
    lab.textContent = `max ${fmtN(max)} calls per ${series.unit}`;
    svg.append(lab);
    svg.dataset.points = String(pts.length);
    fig.append(svg);
  }

  function setFigure(name, text, value) {
    const e = document.querySelector(`[data-figure="${name}"]`);
    e.textContent = text;
    if (value !== undefined) e.dataset.value = value == null ? '' : String(value);
  }

  async function loadUsage(period) {
    showUsage(await api('usage?period=' + encodeURIComponent(period)));
  }

  function showUsage(u) {
    const t = u.total;
    setFigure('calls', fmtN(t.calls), t.calls);
    setFigure('errors', fmtN(t.errors), t.errors);
    setFigure('error_rate', t.calls ? (Math.round((t.errors / t.calls) * 1000) / 10) + '%' : '');
    for (const k of ['p50_ms', 'p95_ms', 'p99_ms']) setFigure(k, fmtMs(t[k]), t[k]);
    chart(u.series);
    const head = [['Name'], ['Calls', 1], ['Errors', 1], ['p95', 1]];
    table('routes', head, groupRows(u.routes));
    table('apis', head, groupRows(u.apis));
    table('keys', [['Key'], ['Calls', 1], ['Errors', 1], ['p95', 1]], groupRows(u.keys));
    table('statuses', [['Status'], ['Calls', 1]], u.statuses.map((s) =>
      el('tr', { class: s.status === '0' || Number(s.status) >= 400 ? 'err' : '', 'data-name': s.status, 'data-calls': String(s.calls) },
        el('td', {}, s.status === '0' ? 'no answer' : s.status), el('td', { class: 'n' }, fmtN(s.calls)))));
    $('usage').hidden = false;
  }

  function showCalls(events) {
    const rows = events.map((e, i) => {
      const st = e.response ? e.response.status : 0;
      return el('tr', { 'data-i': String(i), class: st === 0 || st >= 400 ? 'err' : '' },
        el('td', {}, (e.request.time || '').replace('T', ' ').slice(0, 19)),
        el('td', {}, e.request.verb || ''), el('td', {}, e.request.uri || ''),
        el('td', { class: 'n' }, st ? String(st) : '–'));
    });
    table('events', [['Time (UTC)'], ['Method'], ['URL'], ['Status', 1]], rows);
    $('events').onclick = (ev) => {
      const tr = ev.target.closest('tr[data-i]');
      if (!tr) return;
      const pre = $('event');
      pre.textContent = JSON.stringify(events[Number(tr.dataset.i)], null, 2);
      pre.hidden = false;
      resized();
    };
    $('calls').hidden = false;
  }

  function showQuota(quotas) {
    const box = $('quotas');
    box.replaceChildren();
    if (quotas.length === 0) box.append(el('p', { class: 'sub' }, 'No quota applies.'));
    for (const q of quotas) {
      const bar = el('div', { class: q.remaining === 0 ? 'bar full' : 'bar' }, el('span'));
      bar.firstChild.style.width = Math.min(100, q.limit ? (q.used / q.limit) * 100 : 0) + '%';
      box.append(el('div', { class: 'quota', 'data-name': q.name, 'data-used': String(q.used), 'data-limit': String(q.limit) },
        el('div', {}, `${q.name}: ${fmtN(q.used)} of ${fmtN(q.limit)} calls per ${q.per.replace('_', ' ')}`),
        bar, el('div', { class: 'sub' }, `${fmtN(q.remaining)} left; resets ${q.resets.replace('T', ' ').slice(0, 16)} UTC`)));
    }
    $('quota').hidden = false;
  }

  function showJSON(page, v) {
    $(page + '-data').textContent = JSON.stringify(v, null, 2);
    $(page).hidden = false;
  }

  // The height of the page, for a provider's page that sizes its frame.
  function resized() {
    if (parent !== window) parent.postMessage({ type: 'apimeter-portal:height', height: document.documentElement.scrollHeight }, '*');
  }

  // The first view is one request: view answers who the token reads for
  // with the usage, recent calls, quota, meters and statements of the
  // pages it may read, so nothing waits for a round trip to learn the
  // token's pages. It leaves as soon as this script runs, while the page
  // is still being drawn.
  const first = token ? api('view') : null;

  async function main() {
    if (!token) {
      status('This page needs a portal token: open it through the provider\u2019s site.', true);
      return;
    }
    try {
      const view = await first;
      const me = view.me;
      $('customer').textContent = `${me.customer.kind} ${me.customer.id}`;
      const sel = $('period');
      for (const p of me.periods) sel.append(el('option', { value: p.label }, p.label));
      sel.parentElement.hidden = !me.pages.includes('usage');
      sel.onchange = () => {
        status('Loading…');
        loadUsage(sel.value).then(() => { status(''); resized(); }, fail);
      };
      if (view.usage) showUsage(view.usage);
      if (view.events) showCalls(view.events);
      if (view.quotas) showQuota(view.quotas);
      for (const p of ['meters', 'statements']) if (view[p]) showJSON(p, view[p]);
      status('');
      $('portal').setAttribute('aria-busy', 'false');
      window.portalReadyAt = performance.now();
      document.body.dataset.ready = 'true';
      resized();
    } catch (e) {
      fail(e);
    }
  }

  function fail(e) {
    status(e.status === 401 ? 'This link has expired or was revoked: reopen the page from the provider\u2019s site.' : 'Could not load: ' + e.message, true);
    $('portal').setAttribute('aria-busy', 'false');
    document.body.dataset.ready = 'error';
  }

  main();
})();
