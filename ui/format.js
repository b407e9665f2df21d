// Formatting for people: sizes, durations, and times in the browser's zone with UTC on
// hover. Everything that puts text into HTML goes through esc().

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text made safe to place in HTML, content or attribute. */
export function esc(value) {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

export function bytes(n) {
  if (n == null) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

export function seconds(s) {
  if (s == null) return '';
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

const LOCAL = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone;

function utc(date) {
  return `${date.toISOString().replace('T', ' ').replace(/\.\d+Z$/, '')} UTC`;
}

/** A <time> in the browser's zone, with the UTC time on hover. */
export function time(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return esc(iso);
  return `<time datetime="${esc(date.toISOString())}" title="${esc(utc(date))}">${esc(LOCAL.format(date))}</time>`;
}

const CLOCK = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });

/** A <time> of day with seconds in the browser's zone (log lines), UTC on hover. */
export function clock(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return esc(iso);
  return `<time datetime="${esc(date.toISOString())}" title="${esc(utc(date))}">${esc(CLOCK.format(date))}</time>`;
}

/** "3 h ago" / "in 20 min", with the local and UTC times on hover. */
export function ago(iso, now = Date.now()) {
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return esc(iso);
  const delta = (now - date.getTime()) / 1000;
  const text = delta >= 0 ? `${seconds(delta)} ago` : `in ${seconds(-delta)}`;
  return `<time datetime="${esc(date.toISOString())}" title="${esc(`${LOCAL.format(date)} (${ZONE}) · ${utc(date)}`)}">${esc(text)}</time>`;
}

export function duration(start, end) {
  if (!start || !end) return null;
  return (new Date(end) - new Date(start)) / 1000;
}

/** A phase or Ready state as a coloured badge. */
export function badge(text, tone) {
  return `<span class="badge ${esc(tone)}">${esc(text)}</span>`;
}

export function phaseTone(phase) {
  switch (phase) {
    case 'Succeeded': return 'ok';
    case 'PartiallyFailed': return 'warn';
    case 'Failed': return 'bad';
    case 'Running': return 'run';
    default: return 'muted';
  }
}
