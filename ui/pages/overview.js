// The overview: every object in one table, freshness judged like the HoldfastBackupLate
// alert, spec errors on top, and the archives per repository. It follows the event
// stream: a status change or a finished run reads the overview again, progress updates
// the running row in place.

import { get } from '../api.js';
import { ago, badge, bytes, esc, phaseTone, seconds } from '../format.js';
import { sparkline } from '../charts.js';

let timer = null;
let unsubscribe = null;
let filter = '';
let first = true;
/** Runs started since the page opened and not yet finished, by `kind/name`: a run shows
 * as running at once, before the next published status says so. */
const running = new Map();

function state(row) {
  if (row.lastRun?.phase === 'Running') return 'run';
  if (row.ready === 'False' || row.late) return 'bad';
  if (row.lastRun?.phase === 'PartiallyFailed') return 'warn';
  if (row.ready === 'True') return 'ok';
  return 'unknown';
}

function readiness(row) {
  if (row.suspended) return badge('Suspended', 'muted');
  if (row.ready === 'True') return badge('Ready', 'ok');
  if (row.ready === 'False') {
    return `${badge('Stalled', 'bad')} <span class="reason" title="${esc(row.message)}">${esc(row.reason)}</span>`;
  }
  return `${badge('Unknown', 'muted')} <span class="reason">${esc(row.reason)}</span>`;
}

function freshness(row) {
  const since = row.lastSuccess ? ago(row.lastSuccess) : '<span class="muted">never</span>';
  const every = row.intervalSeconds ? `<span class="muted"> / every ${esc(seconds(row.intervalSeconds))}</span>` : '';
  return `<span class="${row.late ? 'late' : ''}">${since}${row.late ? ' · late' : ''}</span>${every}`;
}

function lastRun(row) {
  const run = row.lastRun;
  if (!run) return '<span class="muted">no run yet</span>';
  const parts = [`<a href="#/run/${encodeURIComponent(run.id)}">${badge(run.phase, phaseTone(run.phase))}</a>`];
  if (run.phase === 'Running') {
    parts.push(`<span class="progress" data-run="${esc(run.id)}">running</span>`);
  } else {
    const d = run.startTime && run.completionTime ? (new Date(run.completionTime) - new Date(run.startTime)) / 1000 : null;
    if (d != null) parts.push(esc(seconds(d)));
    if (run.storedBytes != null) parts.push(esc(bytes(run.storedBytes)));
    if (run.downtimeSeconds) parts.push(`<span title="downtime">⏸ ${esc(seconds(run.downtimeSeconds))}</span>`);
  }
  return parts.join(' ');
}

function trend(row) {
  const runs = row.trend.slice().reverse();
  return sparkline(runs.map((p) => p.durationSeconds), `duration of the last ${runs.length} runs`)
    + sparkline(runs.map((p) => p.storedBytes), `bytes of the last ${runs.length} runs`);
}

function archives(row) {
  const a = row.archives;
  if (!a) return '';
  const corrupt = a.corrupt?.length ? ` ${badge(`${a.corrupt.length} corrupt`, 'bad')}` : '';
  return `${esc(a.count)} · ${esc(bytes(a.bytes))}${corrupt}`;
}

/** The row with a run the event stream reported started and not finished. */
function withRunning(row) {
  const started = running.get(`${row.kind}/${row.name}`);
  if (!started || row.lastRun?.id === started.runId && row.lastRun.phase !== 'Running') return row;
  return { ...row, lastRun: { id: started.runId, phase: 'Running', startTime: started.time } };
}

function rowHtml(row) {
  const href = `#/object/${encodeURIComponent(row.kind)}/${encodeURIComponent(row.name)}`;
  return `<tr id="row-${esc(row.kind)}-${esc(row.name)}" data-state="${state(row)}" data-name="${esc(row.name.toLowerCase())}">
<td><a href="${href}">${esc(row.name)}</a><div class="muted small">${esc(row.kind)}</div></td>
<td>${readiness(row)}</td>
<td>${row.kind === 'BackupPolicy' || row.kind === 'Archive' ? freshness(row) : ''}</td>
<td class="hide-narrow">${row.nextRun ? ago(row.nextRun) : ''}</td>
<td>${lastRun(row)}</td>
<td class="hide-narrow">${trend(row)}</td>
<td class="hide-narrow">${archives(row)}</td>
</tr>`;
}

function hostsTable(hosts) {
  if (!hosts?.length) return '';
  const tone = { ok: 'ok', failing: 'bad', stale: 'bad' };
  return `<h2>Hosts</h2><div class="scroll"><table class="grid" id="hosts"><thead><tr><th>Host</th><th>Status</th><th>Last seen</th><th>Objects</th><th>Failing</th><th class="hide-narrow">Next run</th></tr></thead><tbody>${hosts
    .map((h) => `<tr data-state="${h.status === 'ok' ? 'ok' : 'bad'}"><td>${esc(h.host)}<div class="muted small">${esc(h.summary?.version ?? '')}</div></td><td>${badge(h.status, tone[h.status] ?? 'muted')}</td><td>${ago(h.summary?.writtenAt)}</td><td>${esc(h.objects)}</td><td>${h.failing ? badge(h.failing, 'bad') : '0'}</td><td class="hide-narrow">${h.nextRun ? ago(h.nextRun) : ''}</td></tr>`)
    .join('')}</tbody></table></div>`;
}

function render(main, data, hosts) {
  const errors = data.errors.length
    ? `<section class="errors" role="alert"><h2>${data.errors.length} spec error${data.errors.length > 1 ? 's' : ''}: these objects do not run</h2><ul>${data.errors.map((e) => `<li><code>${esc(e)}</code></li>`).join('')}</ul></section>`
    : '';
  const bad = data.objects.filter((r) => state(withRunning(r)) === 'bad').length;
  const summary = `${data.objects.length} objects · ${bad ? `<span class="late">${bad} need attention</span>` : 'all fresh'}`;
  const repos = data.repositories.length
    ? `<h2>Archives</h2><div class="scroll"><table class="grid"><thead><tr><th>Repository</th><th>Group</th><th>Archives</th><th>Size</th><th>Corrupt</th></tr></thead><tbody>${data.repositories.map((r) => `<tr><td>${esc(r.repository)}</td><td>${esc(r.group)}</td><td>${esc(r.count)}</td><td>${esc(bytes(r.bytes))}</td><td>${r.corrupt ? badge(r.corrupt, 'bad') : '0'}</td></tr>`).join('')}</tbody></table></div>`
    : '';
  main.innerHTML = `${errors}
<div class="bar"><h1>Overview</h1><p class="muted">${summary}</p>
<label class="filter">Filter <input id="filter" type="search" value="${esc(filter)}" placeholder="name (press /)" autocomplete="off"></label></div>
<div class="scroll"><table class="grid objects"><thead><tr><th>Name</th><th>State</th><th>Last success</th><th class="hide-narrow">Next run</th><th>Last run</th><th class="hide-narrow">Trend</th><th class="hide-narrow">Archives</th></tr></thead>
<tbody>${data.objects.map((r) => rowHtml(withRunning(r))).join('')}</tbody></table></div>
${repos}
${hostsTable(hosts)}`;
  const input = main.querySelector('#filter');
  input.addEventListener('input', () => {
    filter = input.value;
    applyFilter(main);
  });
  applyFilter(main);
}

function applyFilter(main) {
  const needle = filter.trim().toLowerCase();
  for (const tr of main.querySelectorAll('tbody tr[data-name]')) {
    tr.hidden = needle !== '' && !tr.dataset.name.includes(needle);
  }
}

function onKey(event) {
  if (event.key === '/' && document.activeElement?.tagName !== 'INPUT') {
    event.preventDefault();
    document.getElementById('filter')?.focus();
  }
}

export async function show(main, args, { events, fail, early }) {
  let prefetched = early;
  const load = async () => {
    // The fleet's hosts, from the summaries in the repository: shown when there are some,
    // never in the way of the overview.
    const hosts = get('/api/v1/hosts').then((h) => h.hosts, () => []);
    const data = await (prefetched ?? get('/api/v1/overview'));
    prefetched = null;
    if (first) performance.mark('holdfast:overview-fetched');
    const focused = document.activeElement?.id === 'filter';
    render(main, data, await hosts);
    if (focused) main.querySelector('#filter').focus();
    if (first) {
      first = false;
      performance.mark('holdfast:overview-rendered');
    }
  };
  await load();
  const refresh = () => {
    clearTimeout(timer);
    timer = setTimeout(() => load().catch(fail), 100);
  };
  const progress = (event) => {
    const d = event.detail;
    const cell = main.querySelector(`.progress[data-run="${CSS.escape(d.runId)}"]`);
    if (cell) cell.textContent = `running${d.item ? ` · ${d.item}` : ''} · ${bytes(d.sourceBytes)} read`;
  };
  const track = (event) => {
    const d = event.detail;
    const key = `${d.kind}/${d.name}`;
    if (event.type === 'runStarted') running.set(key, d);
    else if (running.get(key)?.runId === d.runId) running.delete(key);
  };
  const names = ['statusChanged', 'runStarted', 'runFinished', 'reconnected'];
  for (const name of ['runStarted', 'runFinished']) events.addEventListener(name, track);
  for (const name of names) events.addEventListener(name, refresh);
  events.addEventListener('runProgress', progress);
  document.addEventListener('keydown', onKey);
  unsubscribe = () => {
    for (const name of names) events.removeEventListener(name, refresh);
    for (const name of ['runStarted', 'runFinished']) events.removeEventListener(name, track);
    events.removeEventListener('runProgress', progress);
    document.removeEventListener('keydown', onKey);
    clearTimeout(timer);
  };
}

export function leave() {
  if (unsubscribe) unsubscribe();
  unsubscribe = null;
}
