/**
 * Rendering the bot's comments. Pure functions from data to markdown, compatible in look with the
 * EESSI bot (a `<details>` block per reply, `|date|job status|comment|` tables per job).
 */
import type { Config } from '../config/config.js';
import { COMMAND_SYNTAX } from './commands.js';
import { codeSpan } from './markdown.js';

export interface CommandOutcome {
  /** The line as received (after `bot:`). */
  line: string;
  /** Canonical form, when it parsed. */
  expanded?: string;
  /** Markdown result; may span lines. */
  result: string;
}

export function renderCommandReply(
  instance: string,
  sender: string,
  outcomes: CommandOutcome[],
  dropped = 0,
): string {
  const received = outcomes.map((o) => {
    const expanded = o.expanded !== undefined ? `\n  - expanded format: ${codeSpan(o.expanded)}` : '';
    return `- received bot command ${codeSpan(o.line)} from ${codeSpan(sender)}${expanded}`;
  });
  const results = outcomes.map(
    (o) => `- handling command ${codeSpan(o.line)} resulted in:\n${indent(o.result)}`,
  );
  const droppedNote =
    dropped > 0
      ? [`- ${dropped} more command line(s) were ignored: at most ${outcomes.length} are handled per comment`]
      : [];
  return [
    '<details>',
    `<summary>Updates by the bot instance <code>${escapeHtml(instance)}</code> <em>(click for details)</em></summary>`,
    '',
    ...received,
    ...droppedNote,
    '',
    ...results,
    '',
    '</details>',
  ].join('\n');
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function renderHelp(): string {
  return [
    'How to send commands to the bot:',
    '- commands go into a new PR comment (edits are ignored), one command per line, each line starting with `bot:`',
    '- several commands may be given in one comment',
    '- the commands are:',
    ...Object.values(COMMAND_SYNTAX).map((s) => `  - ${codeSpan(s)}`),
    '- filters: `arch:`, `accel:`, `repo:`, `inst:` match the whole value or its last `/`-separated parts (`zen4` matches `x86_64/amd/zen4`, `zen` does not); `*` matches within one part; `arch` may use `-` for `/`',
    '- example: `bot: build for:arch=x86_64/amd/zen4`, or to cross-compile',
    '  `bot: build on:arch=x86_64/amd/zen4 for:arch=x86_64/amd/zen4,accel=nvidia/cc90`',
  ].join('\n');
}

export function renderConfig(config: Config): string {
  const nodes = Object.entries(config.build.node_types);
  if (nodes.length === 0) return `Instance ${codeSpan(config.instance)} has no build node types configured.`;
  return [
    `Instance ${codeSpan(config.instance)} is configured to build on:`,
    ...nodes.map(
      ([name, n]) =>
        `- node type ${codeSpan(name)}: OS ${codeSpan(n.os)}, CPU architecture ${codeSpan(n.cpu_subdir)}, ` +
        `repositories ${n.repo_targets.map((r) => codeSpan(r)).join(', ')}` +
        (n.accel ? `, accelerator ${codeSpan(n.accel)}` : ''),
    ),
  ].join('\n');
}

export function renderSyntaxError(error: string, syntax?: string): string {
  return syntax
    ? `${error}\n\ncorrect syntax: ${syntax.startsWith('one of') ? syntax : codeSpan(syntax)}`
    : error;
}
