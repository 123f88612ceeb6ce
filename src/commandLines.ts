/**
 * Which lines of a PR comment are `bot:` commands. The comment is parsed as CommonMark (micromark,
 * through mdast-util-from-markdown) so that only what a reader sees as plain text counts: a command
 * hidden in an HTML comment, shown as an example in a code block, or quoted from someone else is
 * never run.
 */
import { fromMarkdown } from 'mdast-util-from-markdown';

export const COMMAND_LINE_RE = /^bot:[ ]?(.*)$/;

/** CommonMark's line endings. */
const LINE_END = /\r\n|\r|\n/g;

/**
 * micromark's time grows steeply with the number of block quotes and lists a line continues or opens
 * (one line of 20,000 `>` takes 15 s; cmark and commonmark.js share the problem) and with long
 * emphasis delimiter runs (30,000 `*` on each side: 6 minutes). Nobody nests that deep, so a comment
 * where a line may reach more than MAX_NESTING containers is refused before it is parsed (see
 * nestingBound). Emphasis is not parsed at all: it hides no text, and code spans, HTML and links,
 * which can, take precedence over it.
 */
export const MAX_NESTING = 32;
const CONTAINER_PREFIX = /^(?:[ \t]*(?:>|[-+*](?=[ \t])|\d{1,9}[.)](?=[ \t])))*[ \t]*/;
const NO_EMPHASIS = { disable: { null: ['attention'] } };

export class UnreadableCommentError extends Error {}

/** The text after `bot:` of each command line of `markdown`, in order; bare `bot:` lines are left out. */
export function commandLines(markdown: string): string[] {
  return plainParagraphLines(markdown).flatMap((line) => {
    const rest = COMMAND_LINE_RE.exec(line)?.[1]?.trim();
    return rest ? [rest] : [];
  });
}

/**
 * The lines of top-level paragraphs that begin as plain text, trimmed and exactly as written (character
 * references are not decoded, so `bot&#58; help` stays `bot&#58; help`). Never returned: lines of code
 * blocks, headings, block quotes, list items, HTML blocks and link definitions, and paragraph lines
 * that begin inside a code span, inline HTML (a comment) or a link.
 */
function plainParagraphLines(markdown: string): string[] {
  // micromark drops a leading byte order mark and counts offsets without it.
  const source = markdown.startsWith('\ufeff') ? markdown.slice(1) : markdown;
  const depth = nestingBound(source);
  if (depth > MAX_NESTING) {
    throw new UnreadableCommentError(
      `the comment nests block quotes or lists up to ${depth} deep (at most ${MAX_NESTING} are read)`,
    );
  }
  const lines: string[] = [];
  for (const block of fromMarkdown(source, { extensions: [NO_EMPHASIS] }).children) {
    if (block.type !== 'paragraph') continue;
    const text = block.children.filter((c) => c.type === 'text').map(offsets);
    for (const line of linesOf(source, offsets(block))) {
      const trimmed = line.text.trim();
      const first = line.start + line.text.indexOf(trimmed);
      if (text.some((t) => t.start <= first && first < t.end)) lines.push(trimmed);
    }
  }
  return lines;
}

interface Span {
  start: number;
  end: number;
}

function offsets(node: { position?: { start: { offset?: number }; end: { offset?: number } } }): Span {
  const start = node.position?.start.offset;
  const end = node.position?.end.offset;
  if (start === undefined || end === undefined) throw new Error('markdown node without a position');
  return { start, end };
}

function linesOf(source: string, span: Span): Array<{ start: number; text: string }> {
  const lines: Array<{ start: number; text: string }> = [];
  let start = span.start;
  for (const m of source.slice(span.start, span.end).matchAll(LINE_END)) {
    const end = span.start + m.index;
    lines.push({ start, text: source.slice(start, end) });
    start = end + m[0].length;
  }
  lines.push({ start, text: source.slice(start, span.end) });
  return lines;
}

/**
 * An upper bound of the containers (block quotes, list items) any one line continues or opens. A line
 * opens at most one per marker (`>`, `-`, `1.`...) in front of its text and continues an open list item
 * only with at least 2 columns of indentation each (a block quote needs its `>`), so it reaches at
 * most `markers + min(open, indentation / 2)`; `open`, the containers earlier lines may have left
 * open, is at most the largest such number so far.
 */
export function nestingBound(source: string): number {
  let open = 0;
  for (const line of source.split(LINE_END)) {
    const prefix = CONTAINER_PREFIX.exec(line)![0];
    let columns = 0;
    let markers = 0;
    for (const ch of prefix) {
      if (ch === ' ') columns++;
      else if (ch === '\t') columns += 4 - (columns % 4);
      else if (!/[\d.)]/.test(ch)) markers++;
    }
    open = Math.max(open, markers + Math.min(open, Math.floor(columns / 2)));
  }
  return open;
}
