/** The per-job PR comment, rendered from the job's state (never read back and patched). */
import type { JobData } from './job.js';
import { codeSpan } from './markdown.js';

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** The EESSI bot's row date, `%b %d %X %Z %Y` in UTC, e.g. `Nov 24 23:33:36 UTC 2026`. */
export function formatRowDate(d: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  return `${MONTHS[d.getUTCMonth()]} ${pad(d.getUTCDate())} ${time} UTC ${d.getUTCFullYear()}`;
}

export function renderJobComment(data: JobData, relativeJobDir: string): string {
  const t = data.target;
  const withAccel = (accel?: string) => (accel ? `&nbsp;and accelerator ${codeSpan(accel)}` : '');
  const lines = [
    `New job on instance ${codeSpan(data.instance)} for repository ${codeSpan(t.repoId)}`,
    `Building on: ${codeSpan(t.onArch)}${withAccel(t.onAccel)} (node type ${codeSpan(t.nodeType)})`,
    `Building for: ${codeSpan(t.forArch)}${withAccel(t.forAccel)}`,
    `Job dir: ${codeSpan(relativeJobDir, 400)}`,
  ];
  if (data.head_sha) {
    lines.push(
      `Built from: ${codeSpan(data.head_sha.slice(0, 12))} merged into ${codeSpan((data.base_sha ?? '').slice(0, 12))}`,
    );
  }
  if (data.stale) {
    lines.push(
      `:warning: built from ${codeSpan((data.head_sha ?? '?').slice(0, 12))}, superseded by ${codeSpan(data.stale.superseded_by.slice(0, 12))}`,
    );
  }
  lines.push('', '|date|job status|comment|', '|----------|----------|------------------------|');
  for (const r of data.rows) lines.push(`|${r.at}|${r.status}|${r.comment}|`);
  return lines.join('\n');
}
