// One run: what it did (phase, times, bytes, downtime, errors), its phases on a timeline
// once its archive's manifest has them, and its log, followed live while it runs.

import { get, stream } from '../api.js';
import { badge, bytes, clock, esc, phaseTone, seconds, time } from '../format.js';

let unsubscribe = null;

/** A line of a run's log (holdfast's text format, or JSON), its time in the browser's zone. */
function logLine(raw) {
  let v;
  try {
    v = JSON.parse(raw);
  } catch {
    const m = raw.match(/^(\d{4}-\d\d-\d\dT[\d:.]+Z)\s+([A-Z]+)\s+(.*)$/s);
    if (!m) return `<li>${esc(raw)}</li>`;
    const level = m[2].toLowerCase();
    return `<li class="level-${esc(level)}">${clock(m[1])} <span class="lvl">${esc(level)}</span> ${esc(m[3])}</li>`;
  }
  const skip = new Set(['timestamp', 'level', 'message', 'target', 'run', 'policy', 'kind']);
  const fields = Object.entries(v)
    .filter(([k]) => !skip.has(k))
    .map(([k, x]) => `<span class="field">${esc(k)}=${esc(typeof x === 'string' ? x : JSON.stringify(x))}</span>`)
    .join(' ');
  const level = String(v.level ?? '').toLowerCase();
  return `<li class="level-${esc(level)}">${v.timestamp ? clock(v.timestamp) : ''} <span class="lvl">${esc(level)}</span> ${esc(v.message ?? '')} ${fields}</li>`;
}

/** The phases of a backup in the order they happen; others follow by name. */
const ORDER = ['wait', 'resolve', 'preHooks', 'dumps', 'stop', 'archive', 'restart', 'postHooks', 'recipe'];

function timeline(timings) {
  const rank = (name) => (ORDER.includes(name) ? ORDER.indexOf(name) : ORDER.length);
  const parts = Object.entries(timings ?? {})
    .filter(([, s]) => s > 0)
    .sort(([a], [b]) => rank(a) - rank(b) || a.localeCompare(b));
  const total = parts.reduce((sum, [, s]) => sum + s, 0);
  if (!total) return '';
  return `<h2>Phases</h2><div class="timeline" role="list">${parts
    .map(([name, s]) => `<div role="listitem" class="phase" data-grow="${(s / total).toFixed(4)}" title="${esc(name)}: ${esc(seconds(s))}"><span>${esc(name)} ${esc(seconds(s))}</span></div>`)
    .join('')}</div>`;
}

export async function show(main, [id], { events, fail }) {
  const run = await get(`/api/v1/runs/${encodeURIComponent(id)}`);
  const repository = run.repository ?? 'default';
  let manifest = null;
  if (run.archiveId && run.phase !== 'Running' && run.kind !== 'Restore') {
    try {
      const detail = await get(`/api/v1/backups/${encodeURIComponent(repository)}/${encodeURIComponent(run.name)}/${encodeURIComponent(run.archiveId)}`);
      manifest = detail.manifest;
    } catch {
      // The archive may be gone (retention): the run's own facts still stand.
    }
  }
  const end = run.completionTime;
  const d = end ? (new Date(end) - new Date(run.startTime)) / 1000 : null;
  const archive = run.archiveId
    ? `<a href="#/backup/${encodeURIComponent(repository)}/${encodeURIComponent(run.name)}/${encodeURIComponent(run.archiveId)}">${esc(run.archiveId)}</a>`
    : '';
  const facts = [
    ['Object', `<a href="#/object/${encodeURIComponent(run.kind)}/${encodeURIComponent(run.name)}">${esc(run.kind)}/${esc(run.name)}</a>`],
    ['Started', time(run.startTime)],
    ['Ended', end ? time(end) : '<span id="elapsed">running</span>'],
    ['Duration', esc(seconds(d))],
    ['Read', esc(bytes(run.sourceBytes))],
    ['Stored', esc(bytes(run.storedBytes))],
    ['Downtime', run.downtimeSeconds ? esc(seconds(run.downtimeSeconds)) : ''],
    ['Archive', archive],
    ['Repository', esc(repository)],
  ].filter(([, v]) => v);
  main.innerHTML = `
<nav class="crumbs"><a href="#/">Overview</a> › <a href="#/object/${encodeURIComponent(run.kind)}/${encodeURIComponent(run.name)}">${esc(run.name)}</a> › run</nav>
<h1>Run ${esc(run.id)} <span id="phase">${badge(run.phase, phaseTone(run.phase))}</span></h1>
${run.error ? `<p class="error" role="alert">${esc(run.error)}</p>` : ''}
${(run.warnings ?? []).length ? `<ul class="warnings">${run.warnings.map((w) => `<li>${esc(w)}</li>`).join('')}</ul>` : ''}
<dl class="facts">${facts.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join('')}</dl>
<p id="progress" class="muted" aria-live="polite"></p>
${manifest ? timeline(manifest.timings) : ''}
<h2>Log</h2>
<ol id="log" class="log" aria-live="polite"></ol>`;
  // Widths through the CSSOM: the Content-Security-Policy allows no inline styles.
  for (const el of main.querySelectorAll('.phase[data-grow]')) el.style.flexGrow = el.dataset.grow;
  const log = main.querySelector('#log');
  const controller = new AbortController();
  let timer = null;
  const progress = (event) => {
    if (event.detail.runId !== run.id) return;
    const p = main.querySelector('#progress');
    p.textContent = `${event.detail.item ? `${event.detail.item} · ` : ''}${bytes(event.detail.sourceBytes)} read`;
  };
  events.addEventListener('runProgress', progress);
  unsubscribe = () => {
    controller.abort();
    events.removeEventListener('runProgress', progress);
    clearInterval(timer);
  };
  if (run.phase === 'Running') {
    const started = new Date(run.startTime);
    timer = setInterval(() => {
      const el = main.querySelector('#elapsed');
      if (el) el.textContent = `running for ${seconds((Date.now() - started) / 1000)}`;
    }, 1000);
    stream(`/api/v1/runs/${encodeURIComponent(id)}/log/follow`, (name, data) => {
      if (name === 'line') {
        const line = JSON.parse(data);
        log.insertAdjacentHTML('beforeend', logLine(line.text));
      } else if (name === 'end') {
        // The run ended: read it again for its outcome, phases and archive.
        setTimeout(() => show(main, [id], { events, fail }).catch(fail), 200);
        if (unsubscribe) unsubscribe();
      }
    }, controller.signal).catch((error) => {
      if (error.name !== 'AbortError') fail(error);
    });
  } else {
    const whole = await get(`/api/v1/runs/${encodeURIComponent(id)}/log`);
    log.innerHTML = whole.lines.map(logLine).join('') || '<li class="muted">No log lines.</li>';
  }
}

export function leave() {
  if (unsubscribe) unsubscribe();
  unsubscribe = null;
}
