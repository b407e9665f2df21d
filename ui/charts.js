// Charts: a sparkline as inline SVG for the overview's rows (cheap enough for 1,000 of
// them), and the 30-day history of an object drawn with uPlot, loaded only on the pages
// that show it.

import { bytes, esc, seconds } from './format.js';

/** A small line of `values` (oldest first), or nothing when there are fewer than two. */
export function sparkline(values, label) {
  const points = values.filter((v) => v != null && Number.isFinite(v));
  if (points.length < 2) return '';
  const w = 64;
  const h = 16;
  const max = Math.max(...points);
  const min = Math.min(...points);
  const span = max - min || 1;
  const step = w / (points.length - 1);
  const path = points
    .map((v, i) => `${(i * step).toFixed(1)},${(h - 1 - ((v - min) / span) * (h - 2)).toFixed(1)}`)
    .join(' ');
  return `<svg class="spark" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img" aria-label="${esc(label)}"><polyline points="${path}"/></svg>`;
}

function palette() {
  const style = getComputedStyle(document.documentElement);
  return {
    text: style.getPropertyValue('--fg').trim() || '#222',
    grid: style.getPropertyValue('--line').trim() || '#ddd',
    a: style.getPropertyValue('--accent').trim() || '#2a6fdb',
    b: style.getPropertyValue('--warn').trim() || '#b7791f',
    c: style.getPropertyValue('--bad').trim() || '#c53030',
  };
}

/**
 * Draws runs (each with startTime, durationSeconds, storedBytes, downtimeSeconds) of the
 * last 30 days into `element`: duration and downtime against seconds on the left, bytes
 * on the right.
 */
export async function history(element, runs) {
  const now = Date.now() / 1000;
  const since = now - 30 * 86400;
  const rows = runs
    .map((r) => [new Date(r.startTime).getTime() / 1000, r.durationSeconds, r.downtimeSeconds, r.storedBytes])
    .filter((r) => r[0] >= since)
    .sort((a, b) => a[0] - b[0]);
  if (rows.length === 0) {
    element.innerHTML = '<p class="muted">No runs in the last 30 days.</p>';
    return null;
  }
  const { default: uPlot } = await import('./vendor/uplot/uPlot.esm.js');
  const colors = palette();
  const axis = { stroke: colors.text, grid: { stroke: colors.grid, width: 1 }, ticks: { stroke: colors.grid } };
  const data = [0, 1, 2, 3].map((i) => rows.map((r) => r[i]));
  const width = Math.max(280, element.clientWidth || 600);
  element.innerHTML = '';
  return new uPlot({
    width,
    height: 220,
    // Always the whole 30 days, however few runs: a lone run does not stretch the axis.
    scales: { x: { time: true, range: [since, now] } },
    series: [
      {},
      { label: 'duration', scale: 's', stroke: colors.a, width: 2, value: (u, v) => seconds(v) },
      { label: 'downtime', scale: 's', stroke: colors.c, width: 2, value: (u, v) => seconds(v) },
      { label: 'stored', scale: 'b', stroke: colors.b, width: 2, value: (u, v) => bytes(v) },
    ],
    axes: [
      axis,
      { ...axis, scale: 's', values: (u, vals) => vals.map((v) => seconds(v)) },
      { ...axis, scale: 'b', side: 1, size: 70, values: (u, vals) => vals.map((v) => bytes(v)) },
    ],
  }, data, element);
}
