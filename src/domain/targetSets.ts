/**
 * Named target sets (`target_sets:` in site.yaml): a set is a list of `[on:...] for:...` lines, or
 * `for:set=<name>` lines naming other sets. `bot: build for:set=all-gpu` builds every line of the set.
 * Pure functions: the schema checks the sets with `targetSetProblems` (unknown names, cycles, bad lines),
 * commands and `deploy.require` expand a name with `expandTargetSet`.
 */
import { expandCommand, parseBotCommand, type TargetSpec } from './commands.js';
import { codeSpan } from './markdown.js';

export type TargetSets = Readonly<Record<string, readonly string[]>>;

/** One build line of a set, after expansion. */
export interface TargetSetLine {
  /** The line as written in site.yaml. */
  line: string;
  on: TargetSpec;
  for: TargetSpec;
}

export class TargetSetError extends Error {}

export interface TargetSetProblem {
  /** Below `target_sets`: the set name and the index of the line. */
  path: [string, number] | [string];
  message: string;
}

/** A line of a set as a build's `on:`/`for:`, or why it is not one. */
function parseLine(line: string): { on: TargetSpec; for: TargetSpec } | { error: string } {
  const cmd = parseBotCommand(`build ${line}`);
  if (!cmd.ok) return { error: cmd.error };
  const { args } = cmd;
  if (Object.keys(args.filters).length > 0 || args.exportVariables.length > 0 || args.general.length > 0)
    return { error: 'a target set line has only `on:` and `for:`, e.g. `for:arch=x86_64/amd/zen4`' };
  return { on: args.on, for: args.for! };
}

/** Pure: every problem of the sets: lines that do not parse, names of sets that do not exist, cycles. */
export function targetSetProblems(sets: TargetSets): TargetSetProblem[] {
  const problems: TargetSetProblem[] = [];
  for (const [name, lines] of Object.entries(sets)) {
    lines.forEach((line, i) => {
      const parsed = parseLine(line);
      if ('error' in parsed) problems.push({ path: [name, i], message: parsed.error });
      else if (parsed.for.set !== undefined && !Object.hasOwn(sets, parsed.for.set))
        problems.push({
          path: [name, i],
          message: `names the unknown set "${parsed.for.set}"; sets are: ${Object.keys(sets).join(', ')}`,
        });
    });
  }
  if (problems.length > 0) return problems;
  for (const name of Object.keys(sets)) {
    try {
      expandTargetSet(sets, name);
    } catch (err) {
      if (!(err instanceof TargetSetError)) throw err;
      problems.push({ path: [name], message: err.message });
    }
  }
  return problems;
}

/**
 * Pure: the build lines of set `name`, nested sets expanded in order, each distinct line once.
 * Throws TargetSetError for an unknown name or a cycle.
 */
export function expandTargetSet(sets: TargetSets, name: string): TargetSetLine[] {
  const out = new Map<string, TargetSetLine>();
  const visit = (set: string, path: string[]) => {
    if (!Object.hasOwn(sets, set)) {
      const known = Object.keys(sets);
      throw new TargetSetError(
        `unknown target set "${set}"; ${known.length ? `known sets: ${known.join(', ')}` : 'this instance has no target_sets'}`,
      );
    }
    if (path.includes(set)) throw new TargetSetError(`cycle of target sets: ${[...path, set].join(' → ')}`);
    for (const line of sets[set]!) {
      const parsed = parseLine(line);
      if ('error' in parsed) throw new TargetSetError(`set "${set}", line "${line}": ${parsed.error}`);
      if (parsed.for.set !== undefined) visit(parsed.for.set, [...path, set]);
      else {
        const key = JSON.stringify([parsed.on, parsed.for]);
        if (!out.has(key)) out.set(key, { line, ...parsed });
      }
    }
  };
  visit(name, []);
  return [...out.values()];
}

/** For `bot: help`: each set's name and what it holds as written. */
export function describeTargetSets(sets: TargetSets): string[] {
  return Object.entries(sets).map(
    ([name, lines]) => `\`for:set=${name}\`: ${lines.map((l) => codeSpan(l)).join(', ')}`,
  );
}

/** For `bot: show_config`: each set with its nested sets expanded, as the build lines it stands for. */
export function renderTargetSetsExpanded(sets: TargetSets): string[] {
  return Object.keys(sets).flatMap((name) => [
    `- target set ${codeSpan(name)}:`,
    ...expandTargetSet(sets, name).map(
      (l) =>
        `  - ${codeSpan(expandCommand('build', { on: l.on, for: l.for, filters: {}, exportVariables: [], general: [] }).slice('build '.length))}`,
    ),
  ]);
}
