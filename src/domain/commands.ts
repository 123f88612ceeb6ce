/**
 * Parsing `bot:` commands from a PR comment. Pure functions, compatible with the EESSI bot's syntax:
 * one command per line, `^bot:[ ]?(.*)$` (case-sensitive), several commands per comment.
 *
 * Differences from the EESSI bot, on purpose: only lines a reader sees as plain text count (see
 * commandLines.ts, where parseBotCommands takes a comment apart; indented lines of a paragraph count, lines in code, quotes, lists or HTML comments
 * do not), `for:`/`on:` keys need at least 3 letters (the anchor let `a` set both keys), every command
 * takes `inst:`, and every mistake is reported with the correct syntax instead of being dropped silently.
 */

import { codeSpan } from './markdown.js';
import { patternMatches } from './targets.js';

/** A command line: `bot:`, at most one space, the command (the anchor's pattern). */
export const COMMAND_LINE_RE = /^bot:[ ]?(.*)$/;

/** Comments with more commands than this get only the first ones handled, and say so. */
export const MAX_COMMANDS_PER_COMMENT = 20;

export const COMMAND_SYNTAX = {
  help: 'bot: help [inst:<instance>]',
  show_config: 'bot: show_config [inst:<instance>]',
  status: 'bot: status [last_build] [inst:<instance>]',
  build:
    'bot: build [on:arch=<cpu>[,accel=<gpu>]] for:arch=<cpu>[,accel=<gpu>[+<gpu>...]]|for:set=<name> [repo:<repo_id>] [inst:<instance>] [exportvariable:NAME=value] [after:#<PR>] [--dry-run]',
  plan: 'bot: plan [on:arch=<cpu>[,accel=<gpu>]] for:arch=<cpu>[,accel=<gpu>]|for:set=<name> [repo:<repo_id>] [inst:<instance>] [exportvariable:NAME=value]',
  rebuild:
    'bot: rebuild failed [inst:<instance>]  or  bot: rebuild for:arch=<cpu>[,accel=<gpu>]|for:set=<name> [on:arch=<cpu>[,accel=<gpu>]] [repo:<repo_id>] [inst:<instance>]',
  cancel: 'bot: cancel [job:<job id>] [repo:<repo_id>] [arch:<cpu>] [accel:<gpu>] [inst:<instance>]',
  deploy: 'bot: deploy [inst:<instance>]',
  ping: 'bot: ping [inst:<instance>]',
} as const;

export type CommandName = keyof typeof COMMAND_SYNTAX;

/** Filter components, written as any prefix of at least 3 letters (`arch`, `repo`, `inst`, `accel`...). */
export const FILTER_COMPONENTS = [
  'accelerator',
  'architecture',
  'exportvariable',
  'instance',
  'job',
  'repository',
] as const;
export type FilterComponent = (typeof FILTER_COMPONENTS)[number];

export interface TargetSpec {
  architecture?: string;
  accelerator?: string;
  /** `for:set=<name>`: a named target set of site.yaml (`target_sets`), expanded by domain/targetSets.ts. */
  set?: string;
}

/** `bot: build ... --dry-run`: answer with the plan (as `bot: plan`) and submit nothing. */
export const DRY_RUN_FLAG = '--dry-run';

export interface ExportVariable {
  name: string;
  value: string;
}

export interface CommandArgs {
  /** Hardware to build on (`on:`), or the `for:` values for a native build. */
  on: TargetSpec;
  /** What to build for (`for:`); undefined when not given. */
  for?: TargetSpec;
  filters: Partial<Record<Exclude<FilterComponent, 'exportvariable'>, string>>;
  exportVariables: ExportVariable[];
  /** Tokens without a colon, e.g. `last_build`. */
  general: string[];
  /** `after:#N` (build, plan): the jobs wait until PR N of the same repository is deployed or closed. */
  after?: number;
}

export type ParsedCommand =
  | { ok: true; line: string; name: CommandName; args: CommandArgs; expanded: string }
  | { ok: false; line: string; name: string; error: string; syntax?: string };

export class CommandSyntaxError extends Error {}

const quote = (s: string) => codeSpan(s, 60);

export function parseBotCommand(line: string): ParsedCommand {
  const tokens = line.split(/\s+/).filter(Boolean);
  const name = tokens[0] ?? '';
  // Own keys only: `toString`, `constructor` or `__proto__` are not commands.
  if (!Object.hasOwn(COMMAND_SYNTAX, name)) {
    return {
      ok: false,
      line,
      name,
      error: `unknown command ${quote(name)}`,
      syntax: `one of: ${Object.values(COMMAND_SYNTAX)
        .map((s) => `\`${s}\``)
        .join(', ')}`,
    };
  }
  const cmd = name as CommandName;
  try {
    const args = parseArgs(tokens.slice(1));
    validateForCommand(cmd, args);
    return { ok: true, line, name: cmd, args, expanded: expandCommand(cmd, args) };
  } catch (err) {
    if (!(err instanceof CommandSyntaxError)) throw err;
    return { ok: false, line, name: cmd, error: err.message, syntax: COMMAND_SYNTAX[cmd] };
  }
}

function parseArgs(tokens: string[]): CommandArgs {
  const args: CommandArgs = { on: {}, filters: {}, exportVariables: [], general: [] };
  let onGiven = false;
  for (const token of tokens) {
    const colon = token.indexOf(':');
    if (colon < 0) {
      args.general.push(token);
      continue;
    }
    const key = token.slice(0, colon);
    const value = token.slice(colon + 1);
    if (key === 'on') {
      args.on = { ...args.on, ...parseTargetSpec('on', value) };
      onGiven = true;
    } else if (key === 'for') {
      args.for = parseTargetSpec('for', value);
    } else {
      addFilter(args, key, value, token);
    }
  }
  if (!onGiven && args.for) args.on = { ...args.for };
  return args;
}

function parseTargetSpec(which: 'on' | 'for', value: string): TargetSpec {
  const spec: TargetSpec = {};
  if (value === '') throw new CommandSyntaxError(`\`${which}:\` needs at least \`arch=<cpu>\``);
  for (const item of value.split(',')) {
    // Split at the first `=` only: `accel=nvidia=cc90` is the EESSI spelling of `accel=nvidia/cc90`.
    const eq = item.indexOf('=');
    if (eq <= 0 || eq === item.length - 1) {
      throw new CommandSyntaxError(`\`${which}:\` item ${quote(item)} is not of the form key=value`);
    }
    if (which === 'for' && item.slice(0, eq) === 'set') {
      spec.set = item.slice(eq + 1);
      continue;
    }
    const key = expandPrefix(item.slice(0, eq), ['architecture', 'accelerator'] as const, `${which}:`);
    spec[key] = normalizeTarget(key, item.slice(eq + 1));
  }
  if (spec.set !== undefined && (spec.architecture !== undefined || spec.accelerator !== undefined)) {
    throw new CommandSyntaxError('`for:set=<name>` takes no other items: the set says what to build for');
  }
  if (spec.accelerator?.split('+').some((a) => a === '')) {
    throw new CommandSyntaxError(
      `accelerator ${quote(spec.accelerator)}: join several accelerators with \`+\`, e.g. \`nvidia/cc70+nvidia/cc90\``,
    );
  }
  return spec;
}

function addFilter(args: CommandArgs, key: string, value: string, token: string): void {
  if (value === '' || value.includes(':')) {
    throw new CommandSyntaxError(`filter ${quote(token)} must be \`component:pattern\` with one colon`);
  }
  if (key === 'after') {
    const pr = /^#?([1-9][0-9]{0,9})$/.exec(value);
    if (!pr)
      throw new CommandSyntaxError(`\`after:\` needs a PR number, e.g. \`after:#1234\`, got ${quote(value)}`);
    args.after = Number(pr[1]);
    return;
  }
  const component = expandPrefix(FILTER_ALIASES[key] ?? key, FILTER_COMPONENTS, 'filter');
  if (component === 'exportvariable') {
    const eq = value.indexOf('=');
    if (eq <= 0 || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(value.slice(0, eq))) {
      throw new CommandSyntaxError(`\`exportvariable:\` needs NAME=value, got ${quote(value)}`);
    }
    args.exportVariables.push({ name: value.slice(0, eq), value: value.slice(eq + 1) });
    return;
  }
  args.filters[component] = normalizeTarget(component, value);
}

/** Spellings seen in EESSI PRs that are no prefix of their component (`bot:cancel jobid:192194`). */
const FILTER_ALIASES: Record<string, FilterComponent> = { jobid: 'job' };

/** The short names the docs use, for error messages. */
const SHORT_NAMES: Record<string, string> = {
  accelerator: 'accel',
  architecture: 'arch',
  exportvariable: 'exportvariable',
  instance: 'inst',
  job: 'job',
  repository: 'repo',
};

/** Resolve `arch` to `architecture` etc.: a prefix of at least 3 letters that names one choice. */
function expandPrefix<T extends string>(key: string, choices: readonly T[], what: string): T {
  const matches = key.length >= 3 ? choices.filter((c) => c.startsWith(key)) : [];
  if (matches.length !== 1) {
    throw new CommandSyntaxError(
      `unknown ${what} key ${quote(key)}; use one of ${choices.map((c) => `\`${SHORT_NAMES[c] ?? c}\``).join(', ')} (or another prefix of at least 3 letters)`,
    );
  }
  return matches[0]!;
}

/** The EESSI equivalences: `-` means `/` in architectures, `=` means `/` in accelerators. */
export function normalizeTarget(component: string, value: string): string {
  if (component === 'architecture') return value.replaceAll('-', '/');
  if (component === 'accelerator') return value.replaceAll('=', '/');
  return value;
}

/** `inst:` is accepted by every command; it decides which instances answer (see isForInstance). */
function validateForCommand(cmd: CommandName, args: CommandArgs): void {
  if (args.after !== undefined && cmd !== 'build' && cmd !== 'plan')
    throw new CommandSyntaxError('only `build` and `plan` take `after:`');
  const hasTargets = args.for !== undefined || Object.keys(args.on).length > 0;
  const hasFilters =
    Object.keys(args.filters).some((k) => k !== 'instance') || args.exportVariables.length > 0;
  switch (cmd) {
    case 'build':
    case 'plan': {
      if (!args.for) {
        throw new CommandSyntaxError(
          'no `for:` argument was given, so no build jobs are submitted; say what to build for, e.g. `for:arch=x86_64/amd/zen4`',
        );
      }
      validateForSpec(args);
      const extra = args.general.filter((g) => !(cmd === 'build' && g === DRY_RUN_FLAG));
      if (extra.length > 0) throw unexpected(extra);
      return;
    }
    case 'rebuild': {
      const failed = args.general.length === 1 && args.general[0] === 'failed';
      if (args.exportVariables.length > 0 || args.filters.job !== undefined)
        throw new CommandSyntaxError(
          '`rebuild` reuses the export variables of the original jobs; it takes only `for:`, `on:`, `repo:` and `inst:`',
        );
      if (failed && (args.for || args.filters.repository !== undefined))
        throw new CommandSyntaxError('`rebuild failed` takes no other arguments but `inst:`');
      if (failed) return;
      if (args.general.length > 0) throw unexpected(args.general);
      if (!args.for)
        throw new CommandSyntaxError('say what to rebuild: `failed`, or the targets with `for:`');
      if (args.filters.architecture !== undefined || args.filters.accelerator !== undefined)
        throw new CommandSyntaxError('`rebuild` selects targets with `for:` and `on:`, not `arch:`/`accel:`');
      validateForSpec(args);
      return;
    }
    case 'status':
      if (hasTargets || hasFilters) throw new CommandSyntaxError('`status` takes no filters but `inst:`');
      if (args.general.some((g) => g !== 'last_build'))
        throw unexpected(args.general.filter((g) => g !== 'last_build'));
      return;
    case 'cancel':
      if (hasTargets || args.exportVariables.length > 0) {
        throw new CommandSyntaxError(
          '`cancel` takes only `job:`, `repo:`, `arch:`, `accel:` and `inst:` filters',
        );
      }
      if (args.general.length > 0) throw unexpected(args.general);
      return;
    default:
      if (hasTargets || hasFilters || args.general.length > 0) {
        throw new CommandSyntaxError(`\`${cmd}\` takes no arguments but \`inst:\``);
      }
  }
}

function validateForSpec(args: CommandArgs): void {
  if (args.for?.set !== undefined) {
    if (args.on.set === undefined)
      throw new CommandSyntaxError(
        '`for:set=<name>` takes no `on:`: each line of the set says where to build',
      );
    return;
  }
  if (!args.for?.architecture) throw new CommandSyntaxError('`for:` needs `arch=<cpu>`');
}

/** A command with `inst:<pattern>` is for the instances whose name matches; the others stay silent. */
export function isForInstance(cmd: ParsedCommand, instance: string): boolean {
  const pattern = cmd.ok ? cmd.args.filters.instance : undefined;
  return pattern === undefined || patternMatches(pattern, instance);
}

/**
 * `labels.default_build_command`: a `build` command, with or without its `bot:` prefix. Used both by
 * `config check` and by the `bot:build` label (for configurations loaded before the check existed).
 */
export function parseLabelBuildCommand(text: string): ParsedCommand {
  const trimmed = text.trim();
  const cmd = parseBotCommand(COMMAND_LINE_RE.exec(trimmed)?.[1]?.trim() ?? trimmed);
  if (!cmd.ok || cmd.name === 'build') return cmd;
  return {
    ok: false,
    line: cmd.line,
    name: cmd.name,
    error: `${quote(cmd.name)} is not a build command`,
    syntax: COMMAND_SYNTAX.build,
  };
}

function unexpected(tokens: string[]): CommandSyntaxError {
  return new CommandSyntaxError(`unexpected argument ${quote(tokens[0] ?? '')}`);
}

/** The canonical form shown in replies, e.g. `build for:architecture=x86_64/amd/zen4 repository:eessi`. */
export function expandCommand(cmd: CommandName, args: CommandArgs): string {
  const parts: string[] = [cmd];
  const spec = (s: TargetSpec) =>
    Object.entries(s)
      .map(([k, v]) => `${k}=${v}`)
      .join(',');
  if (args.for) {
    if (spec(args.on) !== spec(args.for)) parts.push(`on:${spec(args.on)}`);
    parts.push(`for:${spec(args.for)}`);
  }
  for (const [k, v] of Object.entries(args.filters)) parts.push(`${k}:${v}`);
  for (const e of args.exportVariables) parts.push(`exportvariable:${e.name}=${e.value}`);
  if (args.after !== undefined) parts.push(`after:#${args.after}`);
  parts.push(...args.general);
  return parts.join(' ');
}
