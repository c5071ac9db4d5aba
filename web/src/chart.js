// Charts through uPlot: a bar chart of groups and a line chart of series,
// each with a hover box that says the values under the cursor.
import uPlot from 'uplot';
import { format } from './api.js';

const COLORS = ['#2f6fed', '#12b76a', '#f79009', '#7a5af8', '#ee46bc', '#06aed4', '#c4320a', '#667085'];

// Whole-number steps for axes of counts, so that a small count's axis
// does not read 1, 1, 2, 2.
const INT_STEPS = [1, 2, 5].flatMap((m) => [1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9].map((p) => m * p)).sort((a, b) => a - b);

function yAxis(kind) {
  const a = { values: (u, splits) => splits.map((v) => format(kind, v)), size: 80 };
  if (kind === 'int' || kind === 'bytes') a.incrs = INT_STEPS;
  return a;
}

function width(el) {
  return Math.max(300, Math.floor(el.getBoundingClientRect().width) - 4);
}

// hoverBox shows, under the cursor, the lines describe(idx) gives for the
// data point idx (text only: values may be user ids).
function hoverBox(el, describe) {
  const tip = document.createElement('div');
  tip.className = 'tip';
  tip.hidden = true;
  return {
    tip,
    hook(u) {
      const idx = u.cursor.idx;
      if (idx == null || u.cursor.left < 0) { tip.hidden = true; return; }
      const lines = describe(idx);
      if (!lines) { tip.hidden = true; return; }
      tip.replaceChildren(...lines.map((l, i) => {
        const d = document.createElement('div');
        if (i === 0) d.className = 'tip-head';
        d.textContent = l;
        return d;
      }));
      tip.hidden = false;
      const w = u.over.clientWidth;
      const x = u.cursor.left;
      tip.style.left = `${x > w / 2 ? x - tip.offsetWidth - 12 : x + 12}px`;
      tip.style.top = `${Math.max(0, u.cursor.top - 10)}px`;
    },
    attach(u) { u.over.append(tip); },
  };
}

// barChart draws one bar per label; the hover box says the label and its
// value (and the previous period's, when prev is given). It returns the
// uPlot instance.
export function barChart(el, labels, values, kind, seriesLabel, prev) {
  el.textContent = '';
  const xs = labels.map((_, i) => i);
  const box = hoverBox(el, (i) => {
    const lines = [labels[i], `${seriesLabel}: ${format(kind, values[i])}`];
    if (prev) lines.push(`previous period: ${format(kind, prev[i])}`);
    return lines;
  });
  const opts = {
    width: width(el),
    height: 320,
    legend: { show: false },
    cursor: { drag: { x: false, y: false }, points: { show: false }, y: false },
    scales: { x: { time: false, range: [-0.5, Math.max(labels.length, 1) - 0.5] }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.08 : 1] } },
    axes: [
      {
        splits: () => xs,
        values: (u, splits) => splits.map((i) => {
          const s = labels[i] ?? '';
          return s.length > 14 ? s.slice(0, 13) + '…' : s;
        }),
        rotate: labels.length > 8 ? -35 : 0,
        size: labels.length > 8 ? 70 : 40,
        grid: { show: false },
      },
      yAxis(kind),
    ],
    series: [
      {},
      { label: seriesLabel, fill: COLORS[0] + 'cc', stroke: COLORS[0], width: 0, paths: uPlot.paths.bars({ size: [0.7, 64] }), points: { show: false } },
    ],
    hooks: { setCursor: [box.hook] },
  };
  const u = new uPlot(opts, [xs, values], el);
  box.attach(u);
  return u;
}

// lineChart draws series [{label, points: [[ms, value], ...], dash}] on a
// time axis in time zone tz. A point at or after partialFrom (ms) is a
// bucket that has not ended: its segment is drawn dashed and the hover box
// says so, so that it does not read as a drop.
export function lineChart(el, series, kind, { tz = 'UTC', partialFrom = Infinity, partialNote = '', timeLabel = (t) => String(t), from, to } = {}) {
  el.textContent = '';
  const times = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const data = [times.map((t) => t / 1000)];
  const ys = series.map((s) => {
    const y = new Array(times.length).fill(null);
    for (const [t, v] of s.points) y[index.get(t)] = v;
    return y;
  });
  const uSeries = [{}];
  const legend = document.createElement('div');
  legend.className = 'legend';
  series.forEach((s, i) => {
    const color = s.color || COLORS[i % COLORS.length];
    // The complete buckets, then the partial ones (joined to the last
    // complete one) as a dashed line of the same color.
    const full = ys[i].map((v, j) => (times[j] < partialFrom ? v : null));
    const part = ys[i].map((v, j) => (times[j] >= partialFrom || (j + 1 < times.length && times[j + 1] >= partialFrom) ? v : null));
    data.push(full);
    uSeries.push({ label: s.label, stroke: color, width: 2, dash: s.dash, spanGaps: false, points: { show: times.length < 60 } });
    if (part.some((v, j) => v != null && times[j] >= partialFrom)) {
      data.push(part);
      uSeries.push({ label: `${s.label} (partial)`, stroke: color, width: 2, dash: [4, 4], spanGaps: false, points: { show: true, fill: '#fff' } });
    }
    const item = document.createElement('span');
    const sw = document.createElement('i');
    sw.style.background = color;
    if (s.dash) sw.className = 'dashed';
    item.append(sw, s.label);
    legend.append(item);
  });
  const box = hoverBox(el, (j) => {
    const lines = [timeLabel(times[j]) + (times[j] >= partialFrom ? ` (partial: ${partialNote})` : '')];
    series.forEach((s, i) => { if (ys[i][j] != null) lines.push(`${s.label}: ${format(kind, ys[i][j])}`); });
    return lines;
  });
  const opts = {
    width: width(el),
    height: 320,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), tz),
    legend: { show: false },
    cursor: { drag: { x: false, y: false } },
    // The x axis spans the range asked for, not only the buckets with calls.
    scales: { x: { time: true, range: from != null && times.length ? () => [Math.min(from, times[0]) / 1e3, Math.max(to, times[times.length - 1]) / 1e3] : undefined }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.08 : 1] } },
    axes: [{}, yAxis(kind)],
    series: uSeries,
    hooks: { setCursor: [box.hook] },
  };
  const u = new uPlot(opts, data, el);
  box.attach(u);
  if (series.length > 1 || series.some((s) => s.dash)) el.append(legend);
  if (times.length && times[times.length - 1] >= partialFrom) el.dataset.partial = String(times[times.length - 1]);
  else delete el.dataset.partial;
  return u;
}
