/** Small pure helpers for the markdown the bot posts. Everything user-provided goes through `codeSpan`. */

/** GitHub's limit for an issue comment body. */
export const MAX_COMMENT_CHARS = 65536;

/** An inline code span that stays one span whatever backticks `s` contains; newlines become spaces. */
export function codeSpan(s: string, maxChars = 200): string {
  let text = s.replace(/[\r\n]+/g, ' ');
  if (text.length > maxChars) text = `${text.slice(0, maxChars)}…`;
  const longestRun = Math.max(0, ...(text.match(/`+/g) ?? []).map((r) => r.length));
  const fence = '`'.repeat(longestRun + 1);
  const pad = longestRun > 0 || text.startsWith(' ') || text.endsWith(' ') ? ' ' : '';
  return `${fence}${pad}${text}${pad}${fence}`;
}

/** The hidden marker that makes a bot comment findable after a crash. */
export function commentMarker(instance: string, key: string): string {
  return `<!-- hpcbot:${instance}:${key} -->`;
}

/**
 * Make sure no line of a bot comment parses as a `bot:` command, so the bot never talks to itself:
 * a line starting with `bot:` gets its colon as an HTML entity (rendered the same).
 */
export function neutralizeCommands(body: string): string {
  return body.replace(/^(\s*)bot:/gm, '$1bot&#58;');
}

/** Room left for closing what a cut leaves open (a code fence, a few `<details>` blocks). */
const CLOSERS_RESERVE = 100;

/**
 * Cut a body to GitHub's limit, with a visible note; `tail` (e.g. the marker) is always kept. An open
 * code fence and open `<details>` blocks are closed before the note, so the note shows as text, outside
 * any collapsed block; a surrogate pair is never split.
 */
export function fitComment(body: string, tail = ''): string {
  const full = tail ? `${body}\n${tail}` : body;
  if (full.length <= MAX_COMMENT_CHARS) return full;
  const note = `\n\n… (cut: this comment exceeded GitHub's limit of ${MAX_COMMENT_CHARS} characters)\n`;
  let kept = body.slice(0, Math.max(0, MAX_COMMENT_CHARS - note.length - tail.length - CLOSERS_RESERVE));
  if (/[\ud800-\udbff]$/.test(kept)) kept = kept.slice(0, -1);
  let closers = '';
  if ((kept.match(/^ {0,3}```/gm) ?? []).length % 2 === 1) closers += '\n```';
  const openDetails = (kept.match(/<details>/g) ?? []).length - (kept.match(/<\/details>/g) ?? []).length;
  closers += '\n</details>'.repeat(Math.min(Math.max(openDetails, 0), 8));
  return `${kept}${closers}${note}${tail}`;
}
