/**
 * The tail of a failed job's Slurm output, as the job comment and the check run show it: the last
 * `reporting.log_tail_lines` lines in a collapsed `<details>`. That output is written by PR code and may
 * hold anything, so it is made safe first: terminal control sequences removed, the bot's secret values
 * and anything shaped like a token replaced by `[secret]`, cut to its last 8 KB, backticks replaced by
 * `ˋ` (so the code fence cannot be closed from inside) and `bot:` at a line start shown as `bot∶` (so no
 * line reads as a command). One implementation for both surfaces.
 */
import { codeSpan } from './markdown.js';
import { escapeHtml } from './render.js';

/** At most this many bytes (UTF-8) of log are shown. */
export const MAX_LOG_TAIL_BYTES = 8 * 1024;

/** The end of the job's Slurm output as read from its work tree, or why it was not read. */
export type LogTail =
  /** `cutAtStart`: the read began inside the file, so its first line is partial. */
  | { file: string; text: string; cutAtStart: boolean }
  /** `unread` completes a sentence about the file ("does not exist"). */
  | { file: string; unread: string };

/** Token shapes that are never shown, whoever's they are. */
const TOKEN_PATTERNS: RegExp[] = [
  /\bgh[pousr]_[A-Za-z0-9]{20,}\b/g, // GitHub tokens
  /\bgithub_pat_[A-Za-z0-9_]{20,}\b/g,
  /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/g, // AWS access key ids
  /\bxox[abposr]-[A-Za-z0-9-]{10,}\b/g, // Slack
  /\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\b/g, // JWTs (App installation tokens' kin)
  /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)/g,
  /\b(Bearer|token)\s+[A-Za-z0-9._~+/-]{20,}=*/gi,
  /\b((?:aws_secret_access_key|secret|password|passwd|token)\s*[=:]\s*)\S+/gi,
];

/** Every occurrence of a known secret (longest first) and every token-shaped string replaced by `[secret]`. */
export function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of [...secrets].filter(Boolean).sort((a, b) => b.length - a.length))
    out = out.split(s).join('[secret]');
  for (const re of TOKEN_PATTERNS)
    out = out.replace(re, (_m, keep?: string) =>
      typeof keep === 'string' && /[=:]\s*$/.test(keep) ? `${keep}[secret]` : '[secret]',
    );
  return out;
}

/** Line breaks as `\n`; ANSI escape sequences and other control characters (but tabs) removed. */
function plainText(s: string): string {
  return s
    .replace(/\r\n?/g, '\n')
    .replace(/\x1b\[[0-?]*[ -/]*[@-~]/g, '') // eslint-disable-line no-control-regex
    .replace(/\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?/g, '') // eslint-disable-line no-control-regex
    .replace(/[\x00-\x08\x0b-\x1f\x7f]/g, ''); // eslint-disable-line no-control-regex
}

/** Pure: backticks and line-start `bot:` made harmless. */
function neutralize(text: string): string {
  return text.replace(/`/g, 'ˋ').replace(/^(\s*)bot:/gm, '$1bot∶');
}

/** Pure: the last `lines` lines of the tail, made safe, and whether the 8 KB cap cut it. */
export function safeLogLines(
  tail: { text: string; cutAtStart: boolean },
  lines: number,
  secrets: readonly string[],
): { body: string; capped: boolean } {
  let text = tail.text;
  if (tail.cutAtStart) {
    // The partial first line could hold the end of a secret whose start was not read: never show it.
    const newline = text.indexOf('\n');
    text = newline >= 0 ? text.slice(newline + 1) : text.slice(Math.max(0, ...secrets.map((s) => s.length)));
  }
  const all = neutralize(scrub(plainText(text), secrets)).split('\n');
  if (all.at(-1) === '') all.pop();
  let body = all.slice(-lines).join('\n');
  const bytes = Buffer.from(body, 'utf8');
  if (bytes.length <= MAX_LOG_TAIL_BYTES) return { body, capped: false };
  body = bytes
    .subarray(bytes.length - MAX_LOG_TAIL_BYTES)
    .toString('utf8')
    .replace(/^\uFFFD+/, '');
  // Start at a whole line when there is one to start at.
  const newline = body.indexOf('\n');
  if (newline >= 0 && newline < body.length - 1) body = body.slice(newline + 1);
  return { body, capped: true };
}

/** Pure: the collapsed block both surfaces show, or undefined when `lines` is 0 (log tails are off). */
export function renderLogTail(tail: LogTail, lines: number, secrets: readonly string[]): string | undefined {
  if (lines <= 0) return undefined;
  if ('unread' in tail) return `${codeSpan(tail.file)} ${tail.unread}: no log to show.`;
  const { body, capped } = safeLogLines(tail, lines, secrets);
  const cut = capped ? `, cut to its last ${MAX_LOG_TAIL_BYTES / 1024} KB` : '';
  return [
    '<details>',
    `<summary>Last ${lines} lines of <code>${escapeHtml(tail.file)}</code>${cut}</summary>`,
    '',
    '```',
    body,
    '```',
    '</details>',
  ].join('\n');
}
