/**
 * The status page's HTML, rendered on the server from plain template literals. Every interpolated
 * value goes through `escapeHtml` unless it is already markup made by `html`, so a PR title, branch
 * name or result description can never become markup. No script: the page reloads itself (meta
 * refresh) and the Content-Security-Policy forbids scripts altogether.
 */
import { age } from '../cli/status.js';
import type { Liveness } from '../cli/status.js';
import type { SelfUpdateEntry } from '../selfUpdate/log.js';
import type { BackendHealth } from '../store/heartbeat.js';
import type { Shown, JobBrief, JobDetail, Overview } from './model.js';

/** Markup made by `html`; anything else interpolated into `html` is escaped. */
export class Html {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

/** The one escaping function: text to HTML text or attribute value (always quoted with "). */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

type Part = Html | string | number | boolean | undefined | null | Part[];

function part(value: Part): string {
  if (value === undefined || value === null || value === false) return '';
  if (value instanceof Html) return value.value;
  if (Array.isArray(value)) return value.map(part).join('');
  return escapeHtml(String(value));
}

export function html(strings: TemplateStringsArray, ...values: Part[]): Html {
  let out = strings[0] ?? '';
  values.forEach((v, i) => (out += part(v) + (strings[i + 1] ?? '')));
  return new Html(out);
}

export const REFRESH_SECONDS = 10;

function page(title: string, body: Html, refresh = true): string {
  return `<!doctype html>\n${
    html`<html lang="en">
      <head>
        <meta charset="utf-8" />
        ${refresh ? html`<meta http-equiv="refresh" content="${REFRESH_SECONDS}" />` : ''}
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>${title}</title>
        <link rel="icon" href="data:," />
        <link rel="stylesheet" href="style.css" />
      </head>
      <body>
        ${body}
      </body>
    </html>`.value
  }\n`;
}

export function jobLink(dir: string, text: Part): Html {
  return html`<a href="job?dir=${encodeURIComponent(dir)}">${text}</a>`;
}

const LIVENESS_CLASS: Record<Liveness, string> = {
  alive: 'ok',
  stale: 'bad',
  stopped: 'bad',
  'never ran': 'warn',
  'other host': 'warn',
};

/** Pure: the CSS class of a job's stage or outcome. */
export function stageClass(job: Pick<JobBrief, 'stage' | 'outcome'>): string {
  if (job.outcome === 'SUCCESS') return 'ok';
  if (job.outcome === 'FAILURE' || job.stage === 'failed' || job.stage === 'lost') return 'bad';
  if (job.stage === 'running') return 'run';
  if (job.stage === 'finished' || job.stage === 'cancelled') return 'warn';
  return 'wait';
}

function table(headers: string[], rows: Html[], empty = 'none'): Html {
  if (rows.length === 0) return html`<p class="none">${empty}</p>`;
  return html`<table>
    <thead>
      <tr>
        ${headers.map((h) => html`<th>${h}</th>`)}
      </tr>
    </thead>
    <tbody>
      ${rows}
    </tbody>
  </table>`;
}

function selfUpdateRows(entries: SelfUpdateEntry[], now: Date): Html {
  return table(
    ['when', 'what', 'from', 'to', 'why'],
    entries.map(
      (e) =>
        html`<tr>
          <td title="${e.at}">${age(e.at, now)} ago</td>
          <td>${e.action}</td>
          <td class="mono">${e.from?.slice(0, 12)}</td>
          <td class="mono">${e.to?.slice(0, 12)}</td>
          <td>${e.reason}</td>
        </tr>`,
    ),
  );
}

/** Pure: red once the scheduler's last answer was an error, grey before any answer. */
export function schedulerClass(b: BackendHealth | undefined): string {
  if (b?.lastError && (!b.lastOk || b.lastError.at > b.lastOk)) return 'bad';
  return b?.lastOk ? 'ok' : 'wait';
}

export function renderOverview(o: Overview, now: Date): string {
  const s = o.status;
  const processes = (['server', 'poller'] as const).map((name) => {
    const p = s.processes[name];
    return html`<tr>
      <th>${name}</th>
      <td class="${LIVENESS_CLASS[p.liveness]}">${p.liveness}</td>
      <td>
        ${p.pid !== undefined ? `pid ${p.pid}` : ''}${p.updatedAt ? `, heartbeat ${age(p.updatedAt, now)} ago` : ''}
      </td>
    </tr>`;
  });
  const t = s.lastTick;
  const b = s.backend;
  const config =
    s.config.valid === false
      ? html`<td class="bad">INVALID: ${s.config.problem}</td>`
      : html`<td>
          ${!s.config.valid ? '' : 'valid, '}${s.config.inUse ? 'in use' : 'not in use by a running process'}
        </td>`;
  const health = html`<table class="health">
    <tbody>
      ${processes}
      <tr>
        <th>last tick</th>
        <td>${t ? `${age(t.at, now)} ago` : 'none'}</td>
        <td>${t ? `${t.ms} ms` : ''}</td>
      </tr>
      <tr>
        <th>scheduler</th>
        <td class="${schedulerClass(b)}">
          ${b?.lastOk ? `answered ${age(b.lastOk, now)} ago` : 'no answer recorded'}
        </td>
        <td>${b?.lastError ? `last error ${age(b.lastError.at, now)} ago: ${b.lastError.message}` : ''}</td>
      </tr>
      <tr>
        <th>queue</th>
        <td>${s.queue} pending</td>
        <td></td>
      </tr>
      <tr>
        <th>config</th>
        ${config}
        <td class="mono">${s.config.source}</td>
      </tr>
    </tbody>
  </table>`;

  const matrix = table(
    ['pull request', 'title', ...o.targets],
    o.prs.map(
      (pr) =>
        html`<tr>
          <th class="mono">${pr.pr}</th>
          <td class="title">${pr.title ?? ''}</td>
          ${o.targets.map((target) => {
            const job = pr.cells[target];
            return job
              ? html`<td class="cell ${stageClass(job)}">${jobLink(job.dir, job.outcome ?? job.stage)}</td>`
              : html`<td class="cell">·</td>`;
          })}
        </tr>`,
    ),
    'no pull request has jobs',
  );
  const jobRow = (j: JobBrief, when: string | undefined) =>
    html`<tr>
      <td class="mono">${jobLink(j.dir, j.pr)}</td>
      <td class="mono">${j.target}</td>
      <td class="${stageClass(j)}">${j.outcome ?? j.stage}</td>
      <td title="${when ?? ''}">${age(when, now)}</td>
      <td>${j.error ?? ''}</td>
    </tr>`;
  const active = table(
    ['job', 'target', 'stage', 'age', 'error'],
    o.active.map((j) => jobRow(j, j.created)),
  );
  const finished = table(
    ['job', 'target', 'outcome', 'ended', 'error'],
    o.finished.map((j) => jobRow(j, j.finishedAt ?? j.since)),
  );
  const parked = table(
    ['directory', 'kind', 'stage', 'when', 'error'],
    s.parked.map(
      (d) =>
        html`<tr>
          <td class="mono">${d.kind === 'job' ? jobLink(d.dir, d.dir) : d.dir}</td>
          <td>${d.kind}</td>
          <td class="bad">${d.stage}</td>
          <td>${age(d.error?.at, now)} ago</td>
          <td>${d.error?.message ?? ''}</td>
        </tr>`,
    ),
  );
  const deliveries = table(
    ['received', 'delivery', 'about', 'event', 'stage'],
    s.deliveries.map(
      (d) =>
        html`<tr>
          <td title="${d.at}">${age(d.at, now)} ago</td>
          <td class="mono">${d.id}</td>
          <td class="mono">${d.pr ?? d.dir}</td>
          <td>${d.event ? `${d.event}${d.action ? `.${d.action}` : ''}` : ''}</td>
          <td>${d.stage ?? 'not taken up yet'}</td>
        </tr>`,
    ),
  );
  const deploys = table(
    ['when', 'pull request', 'target', 'status', 'artefacts'],
    o.deploys.map(
      (d) =>
        html`<tr>
          <td title="${d.at}">${age(d.at, now)} ago</td>
          <td class="mono">${jobLink(d.jobDir, d.pr)}</td>
          <td class="mono">${d.target}</td>
          <td class="${d.status === 'uploaded' ? 'ok' : 'wait'}">${d.status}</td>
          <td>${d.uploaded} uploaded${d.refused ? `, ${d.refused} not` : ''}</td>
        </tr>`,
    ),
  );
  const body = html`<header>
      <h1>hpcbot <span class="mono">${s.instance}</span></h1>
      <p class="muted">
        ${now.toISOString()} · refreshes every ${REFRESH_SECONDS} s · <a href="metrics">metrics</a>
      </p>
    </header>
    <main>
      <section id="health">
        <h2>Health</h2>
        ${health}
      </section>
      <section id="prs">
        <h2>Pull requests</h2>
        ${matrix}
      </section>
      <section id="active">
        <h2>Active jobs (${o.active.length})</h2>
        ${active}
      </section>
      <section id="finished">
        <h2>Recently finished</h2>
        ${finished}
      </section>
      <section id="parked">
        <h2>Parked failures (${s.parked.length})</h2>
        ${parked}
      </section>
      <section id="deliveries">
        <h2>Recent deliveries</h2>
        ${deliveries}
      </section>
      <section id="deploys">
        <h2>Deploys</h2>
        ${deploys}
      </section>
      <section id="self-update">
        <h2>Self-update</h2>
        ${selfUpdateRows(o.selfUpdates, now)}
      </section>
    </main>`;
  return page(`hpcbot ${s.instance}`, body);
}

function shown(title: string, file: Shown | undefined, id: string): Html {
  if (!file)
    return html`<section id="${id}">
      <h2>${title}</h2>
      <p class="none">not yet</p>
    </section>`;
  if ('problem' in file)
    return html`<section id="${id}">
      <h2>${title}</h2>
      <p class="none">${file.problem}</p>
    </section>`;
  return html`<section id="${id}">
    <h2>${title}${file.truncated ? ' (cut)' : ''}</h2>
    <pre>${file.text}</pre>
  </section>`;
}

export function renderJobDetail(j: JobDetail, now: Date): string {
  const d = j.state.data;
  const pr = `${d.pr.owner}/${d.pr.repo}#${d.pr.number}`;
  const facts: Array<[string, Part]> = [
    ['pull request', pr],
    ['title', j.title],
    [
      'target',
      `${d.target.nodeType}/${d.target.repoId} (for ${d.target.forArch}${d.target.forAccel ? ` ${d.target.forAccel}` : ''})`,
    ],
    ['stage', j.state.stage],
    ['backend', d.backend],
    ['job id', d.job_id],
    ['head', d.head_sha],
    ['merge', d.merge_sha],
    ['submitted', d.submitted_at],
    ['started', d.started_at],
    ['finished', d.finished_at],
    ['result', d.result && `${d.result.status}: ${d.result.description}`],
    ['error', j.state.last_error && `${j.state.last_error.message} (${age(j.state.last_error.at, now)} ago)`],
    ['directory', j.dir],
  ];
  const body = html`<header>
      <h1>
        <a href="./">hpcbot</a> · job <span class="mono">${pr}</span> ${d.target.nodeType}/${d.target.repoId}
      </h1>
    </header>
    <main>
      <section id="facts">
        <h2>Job</h2>
        <table class="facts">
          <tbody>
            ${facts
              .filter(([, v]) => v !== undefined && v !== '')
              .map(
                ([k, v]) =>
                  html`<tr>
                    <th>${k}</th>
                    <td class="mono">${v}</td>
                  </tr>`,
              )}
          </tbody>
        </table>
      </section>
      <section id="history">
        <h2>State history</h2>
        ${table(
          ['at', 'stage', 'note'],
          j.history.map(
            (h) =>
              html`<tr>
                <td class="mono">${h.at}</td>
                <td>${h.stage}</td>
                <td>${h.note ?? ''}</td>
              </tr>`,
          ),
        )}
      </section>
      <section id="rows">
        <h2>Comment rows</h2>
        ${table(
          ['date', 'status', 'comment'],
          d.rows.map(
            (r) =>
              html`<tr>
                <td class="mono">${r.at}</td>
                <td>${r.status}</td>
                <td>${r.comment}</td>
              </tr>`,
          ),
        )}
      </section>
      <section id="comment">
        <h2>Comment as posted</h2>
        ${d.comment_body ? html`<pre>${d.comment_body}</pre>` : html`<p class="none">not posted yet</p>`}
      </section>
      ${shown('Result file', j.resultFile, 'result')} ${shown('Log tail', j.logTail, 'log')}
      <section id="provenance">
        <h2>Provenance</h2>
        ${
          j.provenance.length === 0
            ? html`<p class="none">none</p>`
            : j.provenance.map(
                (p) =>
                  html`<h3 class="mono">${p.name}</h3>
                    <pre>${p.text}</pre>`,
              )
        }
      </section>
    </main>`;
  return page(`hpcbot job ${pr} ${d.target.nodeType}/${d.target.repoId}`, body);
}

export function renderNotFound(what: string): string {
  return page(
    'not found',
    html`<main>
      <h1>Not found</h1>
      <p>${what}</p>
      <p><a href="./">overview</a></p>
    </main>`,
    false,
  );
}
