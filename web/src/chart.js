// Charts through uPlot: a bar chart of groups and a line chart of series.
import uPlot from 'uplot';
import { format } from './api.js';

const COLORS = ['#2f6fed', '#12b76a', '#f79009', '#7a5af8', '#ee46bc', '#06aed4', '#c4320a', '#667085'];

function width(el) {
  return Math.max(320, Math.floor(el.getBoundingClientRect().width) - 4);
}

// barChart draws one bar per label. It returns the uPlot instance.
export function barChart(el, labels, values, kind, seriesLabel) {
  el.textContent = '';
  const xs = labels.map((_, i) => i);
  const opts = {
    width: width(el),
    height: 320,
    legend: { show: false },
    cursor: { drag: { x: false, y: false }, points: { show: false } },
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
      { values: (u, splits) => splits.map((v) => format(kind === 'pct' ? 'pct' : kind, v)), size: 80 },
    ],
    series: [
      {},
      { label: seriesLabel, fill: COLORS[0] + 'cc', stroke: COLORS[0], width: 0, paths: uPlot.paths.bars({ size: [0.7, 64] }), points: { show: false } },
    ],
  };
  return new uPlot(opts, [xs, values], el);
}

// lineChart draws series [{label, points: [[ms, value], ...]}] on a time
// axis.
export function lineChart(el, series, kind) {
  el.textContent = '';
  const times = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const data = [times.map((t) => t / 1000)];
  for (const s of series) {
    const ys = new Array(times.length).fill(null);
    for (const [t, v] of s.points) ys[index.get(t)] = v;
    data.push(ys);
  }
  const opts = {
    width: width(el),
    height: 320,
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.08 : 1] } },
    axes: [{}, { values: (u, splits) => splits.map((v) => format(kind, v)), size: 80 }],
    series: [{}, ...series.map((s, i) => ({
      label: s.label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: false,
      points: { show: times.length < 60 }, value: (u, v) => format(kind, v),
    }))],
  };
  return new uPlot(opts, data, el);
}
