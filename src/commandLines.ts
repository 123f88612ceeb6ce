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
 * micromark's time grows steeply with the nesting of block quotes and lists on one line (20,000 `>`
 * take 15 s) and with long emphasis delimiter runs (30,000 `*` on each side: 6 minutes). Nobody nests
 * 100 deep, so such a comment is refused before parsing; and emphasis is not parsed at all, because it
 * hides no text (code spans, HTML and links, which can, take precedence over it anyway).
 */
export const MAX_NESTING = 100;
const CONTAINER_MARKERS = /^(?:[ \t]*(?:>|[-+*](?=[ \t])|\d{1,9}[.)](?=[ \t])))*/;
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
  for (const line of source.split(LINE_END)) {
    const markers = CONTAINER_MARKERS.exec(line)![0].replace(/[\s\d.)]/g, '').length;
    if (markers > MAX_NESTING) {
      throw new UnreadableCommentError(
        `the comment nests block quotes or lists ${markers} deep on one line (at most ${MAX_NESTING} are read)`,
      );
    }
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
