// One archive: its manifest (artifacts with sizes and sha256, each downloadable), its
// verification record, and a "restore this" panel that writes a Restore spec to copy
// into git. The page changes nothing: the spec does, once it is in the specs folder.

import { blob, get, token } from '../api.js';
import { badge, bytes, esc, seconds, time } from '../format.js';
import { toYaml } from '../yaml.js';

/** A Restore's name from the archive's group: a DNS-1123 label of at most 63 characters. */
function restoreName(group, id) {
  const stamp = (id.match(/(\d{8}T\d{6}Z)$/)?.[1] ?? '').toLowerCase();
  const base = `restore-${group}`.toLowerCase().replace(/[^a-z0-9-]/g, '-');
  return `${base.slice(0, 62 - stamp.length)}-${stamp}`.replace(/-+$/, '').replace(/--+/g, '-');
}

/** The Restore spec the panel's choices describe. */
export function restoreSpec({ name, repository, archive, mode, stacks, volumes, replayDumps, recipeTo }) {
  const from = { archive };
  if (repository && repository !== 'default') from.repository = repository;
  const spec = { from };
  const targets = {};
  if (stacks.length) targets.stacks = stacks;
  if (volumes.length) targets.volumes = volumes;
  if (Object.keys(targets).length) spec.targets = targets;
  spec.mode = mode;
  if (replayDumps) spec.replayDumps = true;
  if (recipeTo) spec.recipeTo = recipeTo;
  return toYaml({ apiVersion: 'holdfast.dev/v1alpha1', kind: 'Restore', metadata: { name }, spec });
}

function checkboxes(kind, values) {
  if (!values?.length) return '';
  return `<fieldset><legend>${esc(kind)} (none ticked: everything)</legend>${values
    .map((v) => `<label><input type="checkbox" name="${esc(kind)}" value="${esc(v)}"> ${esc(v)}</label>`)
    .join('')}</fieldset>`;
}

export async function show(main, [repository, group, id]) {
  const base = `/api/v1/backups/${encodeURIComponent(repository)}/${encodeURIComponent(group)}/${encodeURIComponent(id)}`;
  const detail = await get(base);
  const entry = detail.entry ?? {};
  const manifest = detail.manifest ?? {};
  const verification = detail.verification;
  const artifacts = manifest.artifacts ?? [];
  const downloads = detail.downloads ?? [];
  const targets = manifest.targets ?? {};
  const hasDumps = artifacts.some((a) => a.kind === 'dump');
  const retention = detail.retention
    ? `<p>Retention: ${detail.retention.keep ? 'kept' : '<span class="late">forgotten</span>'} (${esc(detail.retention.reasons.join(', '))})</p>`
    : '';
  main.innerHTML = `
<nav class="crumbs"><a href="#/">Overview</a> › <a href="#/object/${encodeURIComponent(manifest.kind ?? 'BackupPolicy')}/${encodeURIComponent(group)}">${esc(group)}</a> › archive</nav>
<h1>${esc(id)} ${entry.health ? badge(entry.health, { Good: 'ok', Partial: 'warn' }[entry.health] ?? 'bad') : ''}</h1>
${(entry.problems ?? []).length ? `<ul class="errors">${entry.problems.map((p) => `<li>${esc(p)}</li>`).join('')}</ul>` : ''}
<dl class="facts">
<dt>Repository</dt><dd>${esc(repository)}</dd>
<dt>Taken</dt><dd>${time(manifest.startTime ?? entry.time)}</dd>
<dt>Host</dt><dd>${esc(manifest.host ?? entry.host ?? '')}</dd>
<dt>Phase</dt><dd>${esc(manifest.phase ?? '')}</dd>
<dt>Size</dt><dd>${esc(bytes(entry.bytes))}</dd>
<dt>Format</dt><dd>${esc(manifest.format ?? '')}${manifest.encryption ? ` · encrypted (${esc(manifest.encryption)})` : ''}</dd>
<dt>Downtime</dt><dd>${esc(seconds(Object.values(manifest.downtime ?? {}).reduce((a, b) => a + b, 0)))}</dd>
</dl>
${retention}
<h2>Artifacts</h2>
<div class="scroll"><table class="grid"><thead><tr><th>Path</th><th>Kind</th><th>Size</th><th class="hide-narrow">sha256</th><th></th></tr></thead><tbody>
${artifacts.map((a, i) => {
    const download = downloads[i] ?? {};
    const link = download.url
      ? `<a class="download" data-index="${i}" href="${esc(download.url)}" download>Download</a>`
      : `<span class="muted small">${esc(download.unavailable ?? '')}</span>`;
    return `<tr><td><code>${esc(a.path)}</code></td><td>${esc(a.kind)}</td><td>${esc(bytes(a.size))}</td>
<td class="hide-narrow"><code class="hash">${esc(a.sha256 || '(checked by restic)')}</code></td><td>${link}</td></tr>`;
  }).join('')}
</tbody></table></div>
<h2>Verification</h2>
${verification ? `<p>${verification.ok ? badge('verified', 'ok') : badge('failed', 'bad')} ${time(verification.time ?? verification.verifiedAt)}</p><pre class="yaml">${esc(toYaml(verification))}</pre>` : '<p class="muted">Never verified. <code>holdfast verify</code> reads every byte back.</p>'}
<h2>Restore this</h2>
<form id="restore" class="restore">
<label>Name <input name="name" value="${esc(restoreName(group, id))}" spellcheck="false"></label>
<label>Mode <select name="mode"><option>NewVolumes</option><option>InPlace</option></select></label>
${checkboxes('stacks', targets.stacks)}
${checkboxes('volumes', targets.volumes)}
${hasDumps ? '<label><input type="checkbox" name="replayDumps"> Replay the database dumps</label>' : ''}
<label>Write the recipe to <input name="recipeTo" placeholder="/srv/restore/${esc(group)} (optional)" spellcheck="false"></label>
</form>
<p class="muted">Nothing is restored from here: put this file in the specs repository, and holdfast runs it once.</p>
<pre id="restore-yaml" class="yaml" tabindex="0"></pre>
<button id="copy" type="button">Copy the YAML</button> <span id="copied" role="status"></span>`;
  const form = main.querySelector('#restore');
  const out = main.querySelector('#restore-yaml');
  const update = () => {
    const data = new FormData(form);
    out.textContent = restoreSpec({
      name: data.get('name'),
      repository,
      archive: id,
      mode: data.get('mode'),
      stacks: data.getAll('stacks'),
      volumes: data.getAll('volumes'),
      replayDumps: data.get('replayDumps') === 'on',
      recipeTo: (data.get('recipeTo') ?? '').trim(),
    });
  };
  form.addEventListener('input', update);
  form.addEventListener('change', update);
  update();
  main.querySelector('#copy').addEventListener('click', async () => {
    const status = main.querySelector('#copied');
    try {
      await navigator.clipboard.writeText(out.textContent);
      status.textContent = 'copied';
    } catch {
      const range = document.createRange();
      range.selectNodeContents(out);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      status.textContent = 'selected: press Ctrl+C';
    }
  });
  // With a token, a plain link cannot carry it: fetch the file, then hand it over.
  for (const link of main.querySelectorAll('a.download')) {
    link.addEventListener('click', async (event) => {
      if (!token()) return;
      event.preventDefault();
      const file = await blob(link.href);
      const url = URL.createObjectURL(file);
      const a = document.createElement('a');
      a.href = url;
      a.download = artifacts[link.dataset.index].path.split('/').pop();
      a.click();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    });
  }
}
