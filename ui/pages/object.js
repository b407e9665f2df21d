// One object: its state, a 30-day chart of its runs, the run history, its archives with
// why retention keeps each and what it forgets next, and its spec and status as YAML.

import { COLLECTIONS, get } from '../api.js';
import { ago, badge, bytes, esc, phaseTone, seconds, time } from '../format.js';
import { history } from '../charts.js';
import { toYaml } from '../yaml.js';

let unsubscribe = null;

function runRow(run) {
  const d = run.completionTime ? (new Date(run.completionTime) - new Date(run.startTime)) / 1000 : null;
  return `<tr>
<td><a href="#/run/${encodeURIComponent(run.id)}">${time(run.startTime)}</a></td>
<td>${badge(run.phase, phaseTone(run.phase))}${run.dryRun ? ' <span class="muted">dry run</span>' : ''}</td>
<td>${esc(seconds(d))}</td>
<td>${esc(bytes(run.storedBytes))}</td>
<td class="hide-narrow">${run.downtimeSeconds ? esc(seconds(run.downtimeSeconds)) : ''}</td>
<td class="hide-narrow small">${esc(run.error ?? '')}</td>
</tr>`;
}

function healthTone(health) {
  return { Good: 'ok', Partial: 'warn', Corrupt: 'bad', Missing: 'bad' }[health] ?? 'muted';
}

function archiveRow(entry, forget) {
  const href = `#/backup/${encodeURIComponent(entry.repository)}/${encodeURIComponent(entry.group)}/${encodeURIComponent(entry.id)}`;
  let why = '';
  if (forget.has(entry.id)) {
    why = `<span class="late">forgotten after the next run: ${esc(forget.get(entry.id))}</span>`;
  } else if (entry.retention) {
    why = entry.retention.keep
      ? esc(entry.retention.reasons.join(', '))
      : `<span class="late">${esc(entry.retention.reasons.join(', '))}</span>`;
  }
  return `<tr>
<td><a href="${href}">${esc(entry.id)}</a><div class="muted small">${esc(entry.repository)}</div></td>
<td>${time(entry.time)}</td>
<td>${badge(entry.health, healthTone(entry.health))}${entry.problems?.length ? `<div class="small">${esc(entry.problems.join('; '))}</div>` : ''}</td>
<td>${esc(bytes(entry.bytes))}</td>
<td class="hide-narrow">${entry.verified ? ago(entry.verified) : '<span class="muted">never</span>'}</td>
<td>${why}</td>
</tr>`;
}

async function load(main, kind, name) {
  const collection = COLLECTIONS[kind];
  if (!collection) throw new Error(`no kind ${kind}`);
  const backupKinds = kind === 'BackupPolicy' || kind === 'Archive';
  const runsKinds = backupKinds || kind === 'Restore' || kind === 'ContainerSchedule';
  const [object, runs, backups] = await Promise.all([
    get(`/api/v1/${collection}/${encodeURIComponent(name)}`),
    runsKinds ? get(`/api/v1/runs?kind=${kind}&policy=${encodeURIComponent(name)}&limit=500`) : { items: [] },
    backupKinds ? get(`/api/v1/backups?name=${encodeURIComponent(name)}`) : { items: [] },
  ]);
  const status = object.status ?? {};
  const ready = (status.conditions ?? []).find((c) => c.type === 'Ready');
  const state = ready?.status === 'True' ? badge('Ready', 'ok')
    : ready?.status === 'False' ? badge('Stalled', 'bad') : badge('Unknown', 'muted');
  const forget = new Map((status.retention?.forgetNext ?? []).map((f) => [f.id, f.reason]));
  const spec = { apiVersion: object.apiVersion, kind: object.kind, metadata: object.metadata, spec: object.spec };
  const entries = backups.items.slice().reverse();
  const facts = [
    ['Spec file', esc(object.file ?? '')],
    ['Last success', status.lastSuccessfulTime ? ago(status.lastSuccessfulTime) : 'never'],
    ['Next run', status.nextScheduleTime ? ago(status.nextScheduleTime) : ''],
  ].filter(([, v]) => v);
  main.innerHTML = `
<nav class="crumbs"><a href="#/">Overview</a> › ${esc(kind)}</nav>
<h1>${esc(name)} ${state}</h1>
${ready?.reason ? `<p><strong>${esc(ready.reason)}</strong> ${esc(ready.message ?? '')}</p>` : ''}
${(status.errors ?? []).length ? `<section class="errors" role="alert"><ul>${status.errors.map((e) => `<li><code>${esc(e)}</code></li>`).join('')}</ul></section>` : ''}
<dl class="facts">${facts.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join('')}</dl>
${runsKinds ? `<h2>Last 30 days</h2><div id="chart" class="chart"></div>
<h2>Runs</h2><div class="scroll"><table class="grid"><thead><tr><th>Started</th><th>Phase</th><th>Duration</th><th>Stored</th><th class="hide-narrow">Downtime</th><th class="hide-narrow">Error</th></tr></thead>
<tbody>${runs.items.map(runRow).join('') || '<tr><td colspan="6" class="muted">No runs yet.</td></tr>'}</tbody></table></div>` : ''}
${backupKinds ? `<h2>Archives</h2><div class="scroll"><table class="grid"><thead><tr><th>Archive</th><th>Taken</th><th>Health</th><th>Size</th><th class="hide-narrow">Verified</th><th>Retention</th></tr></thead>
<tbody>${entries.map((e) => archiveRow(e, forget)).join('') || '<tr><td colspan="6" class="muted">No archives.</td></tr>'}</tbody></table></div>` : ''}
<div class="columns">
<section><h2>Spec</h2><pre class="yaml">${esc(toYaml(spec))}</pre></section>
<section><h2>Status</h2><pre class="yaml">${esc(toYaml(status))}</pre></section>
</div>`;
  if (runsKinds) {
    const points = runs.items.filter((r) => !r.dryRun && r.completionTime).map((r) => ({
      startTime: r.startTime,
      durationSeconds: (new Date(r.completionTime) - new Date(r.startTime)) / 1000,
      downtimeSeconds: r.downtimeSeconds,
      storedBytes: r.storedBytes,
    }));
    await history(main.querySelector('#chart'), points);
  }
}

export async function show(main, [kind, name], { events, fail }) {
  await load(main, kind, name);
  let timer = null;
  const mine = (event) => {
    if (event.detail.name !== name || event.detail.kind !== kind) return;
    clearTimeout(timer);
    timer = setTimeout(() => load(main, kind, name).catch(fail), 150);
  };
  const names = ['statusChanged', 'runStarted', 'runFinished'];
  for (const n of names) events.addEventListener(n, mine);
  unsubscribe = () => {
    for (const n of names) events.removeEventListener(n, mine);
    clearTimeout(timer);
  };
}

export function leave() {
  if (unsubscribe) unsubscribe();
  unsubscribe = null;
}
