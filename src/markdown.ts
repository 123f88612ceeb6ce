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

/** Cut a body to GitHub's limit, with a visible note; `tail` (e.g. the marker) is always kept. */
export function fitComment(body: string, tail = ''): string {
  const full = tail ? `${body}\n${tail}` : body;
  if (full.length <= MAX_COMMENT_CHARS) return full;
  const note = `\n\n… (cut: this comment exceeded GitHub's limit of ${MAX_COMMENT_CHARS} characters)\n`;
  const keep = MAX_COMMENT_CHARS - note.length - tail.length - 1;
  return `${body.slice(0, keep)}${note}${tail}`;
}
