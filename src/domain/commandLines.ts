/**
 * Which lines of a PR comment are `bot:` commands. The comment is parsed as GitHub renders it
 * (CommonMark with GitHub's extensions, by marked's lexer) so that only what a reader sees as plain
 * text counts: a command hidden in an HTML comment, shown as an example in a code block, or quoted
 * from someone else is never run.
 */
import { Lexer, Tokenizer, type Token } from 'marked';
import { COMMAND_LINE_RE, isForInstance, MAX_COMMANDS_PER_COMMENT, parseBotCommand } from './commands.js';

/** CommonMark's line endings (marked turns them all into `\n`). */
const LINE_END = /\r\n|\r|\n/;

/**
 * Markdown parsers take time or stack out of proportion with deeply nested block quotes and lists
 * (cmark, commonmark.js and micromark slow down; marked overflows its stack on one line of 20,000
 * `>`), so a comment where a line may reach more than MAX_NESTING of them is refused before it is
 * parsed (see nestingBound). Nobody nests that deep.
 */
export const MAX_NESTING = 32;
const CONTAINER_PREFIX = /^(?:[ \t]*(?:>|[-+*](?=[ \t])|\d{1,9}[.)](?=[ \t])))*[ \t]*/;

/**
 * Emphasis and strikethrough are not parsed: they hide no text, and code spans, HTML and links, which
 * can, take precedence over them. marked's emphasis is slow on hostile input (`*a _` repeated 15,000
 * times takes 20 s) and overflows the stack on long delimiter runs.
 */
class VisibleTextTokenizer extends Tokenizer {
  override emStrong(): undefined {
    return undefined;
  }
  override del(): undefined {
    return undefined;
  }
}

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
  const source = markdown.startsWith('\ufeff') ? markdown.slice(1) : markdown;
  const depth = nestingBound(source);
  if (depth > MAX_NESTING) {
    throw new UnreadableCommentError(
      `the comment nests block quotes or lists up to ${depth} deep (at most ${MAX_NESTING} are read)`,
    );
  }
  const lexer = new Lexer({ gfm: true, tokenizer: new VisibleTextTokenizer() });
  const lines: string[] = [];
  for (const block of lexer.lex(source)) {
    if (block.type !== 'paragraph') continue;
    // The inline tokens' raw texts make up the paragraph's text; find where each of its lines starts.
    const text: Span[] = [];
    let at = 0;
    for (const token of block.tokens ?? []) {
      if (token.type === 'text') text.push({ start: at, end: at + token.raw.length });
      at += token.raw.length;
    }
    const paragraph = (block.tokens ?? []).map((t: Token) => t.raw).join('');
    let start = 0;
    for (const line of paragraph.split('\n')) {
      const trimmed = line.trim();
      const first = start + line.indexOf(trimmed);
      if (text.some((t) => t.start <= first && first < t.end)) lines.push(trimmed);
      start += line.length + 1;
    }
  }
  return lines;
}

interface Span {
  start: number;
  end: number;
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
    let indentation = 0;
    let markers = 0;
    let afterMarker = false;
    for (const ch of CONTAINER_PREFIX.exec(line)![0]) {
      // The space after a marker is part of the marker.
      if (ch === ' ' && !afterMarker) indentation++;
      else if (ch === '\t') indentation += 4 - (indentation % 4);
      else if ('>-+*.)'.includes(ch)) markers++;
      afterMarker = '>-+*.)'.includes(ch);
    }
    open = Math.max(open, markers + Math.min(open, Math.floor(indentation / 2)));
  }
  return open;
}

/**
 * The commands of a comment for `instance` (all of them when it is undefined), at most `limit`, how many
 * more there were, and how many were left out because their `inst:` names other instances.
 */
export function parseBotCommands(body: string, instance?: string, limit = MAX_COMMANDS_PER_COMMENT) {
  const parsed = commandLines(body).map(parseBotCommand);
  const mine = parsed.filter((c) => instance === undefined || isForInstance(c, instance));
  return {
    commands: mine.slice(0, limit),
    dropped: Math.max(0, mine.length - limit),
    forOtherInstances: parsed.length - mine.length,
  };
}
