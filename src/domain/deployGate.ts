/**
 * The deploy gate: `deploy.require` names the cells (build targets) that must have succeeded at the PR's
 * head, built by any instance, before `bot: deploy` uploads anything. Pure: requirements are parsed here,
 * matched against the head commit's job check runs (targetMatrix.ts), and the decision is rendered as the
 * `hpcbot/deploy-gate` check run and as the reason a deploy is refused.
 */
import type { CheckRunBody } from '../adapters/github/index.js';
import { fitOutput } from './checkRun.js';
import { parseBotCommand } from './commands.js';
import { codeSpan } from './markdown.js';
import { cellKey, cellLabel, runState, STATE_EMOJI, type FleetRun, type RunState } from './targetMatrix.js';
import { patternMatches } from './targets.js';
import { expandTargetSet, type TargetSets } from './targetSets.js';

export const GATE_RUN_NAME = 'hpcbot/deploy-gate';
export const ALL_REQUESTED = 'all-requested';

/** One entry of `deploy.require`; a `set` stands for the targets of a named target set. */
export type Requirement =
  | { kind: 'all-requested' }
  | { kind: 'target'; text: string; forArch: string; forAccel?: string; repoId?: string }
  | { kind: 'set'; text: string; set: string; repoId?: string };

/** A requirement the gate decides on: target sets already expanded. */
export type CellRequirement = Exclude<Requirement, { kind: 'set' }>;

export const REQUIREMENT_SYNTAX = `\`${ALL_REQUESTED}\`, \`for:arch=<cpu>[,accel=<gpu>] [repo:<repo_id>]\` or \`for:set=<target set> [repo:<repo_id>]\``;

/**
 * Pure: `all-requested`, or a target pattern written as in `bot: build`
 * (`for:arch=x86_64/amd/zen4,accel=nvidia/cc90 repo:eessi.io-2023.06-software`). Architecture, accelerator
 * and repo are patterns as in `bot: build` (a trailing run of components, `*` within one); without
 * `accel=` the pattern names the CPU-only build, without `repo:` any repository. `for:set=<name>`
 * names a target set (expanded by `expandRequirements`; the schema checks that the set exists).
 */
export function parseRequirement(
  text: string,
): { ok: true; requirement: Requirement } | { ok: false; error: string } {
  const trimmed = text.trim();
  if (trimmed === ALL_REQUESTED) return { ok: true, requirement: { kind: 'all-requested' } };
  const cmd = parseBotCommand(`build ${trimmed}`);
  if (!cmd.ok) return { ok: false, error: `${cmd.error}; write ${REQUIREMENT_SYNTAX}` };
  const { args } = cmd;
  const others = Object.keys(args.filters).filter((k) => k !== 'repository');
  if (/(?:^|\s)on:/.test(trimmed))
    return { ok: false, error: `\`on:\` means nothing here; write ${REQUIREMENT_SYNTAX}` };
  if (others.length > 0 || args.exportVariables.length > 0)
    return { ok: false, error: `only \`for:\` and \`repo:\` are allowed; write ${REQUIREMENT_SYNTAX}` };
  if (args.for?.set !== undefined) {
    const repo = args.filters.repository ? { repoId: args.filters.repository } : {};
    return { ok: true, requirement: { kind: 'set', text: trimmed, set: args.for.set, ...repo } };
  }
  if (args.for?.architecture === undefined)
    return { ok: false, error: `\`for:\` needs \`arch=\` or \`set=\`; write ${REQUIREMENT_SYNTAX}` };
  return {
    ok: true,
    requirement: {
      kind: 'target',
      text: trimmed,
      forArch: args.for.architecture,
      ...(args.for.accelerator ? { forAccel: args.for.accelerator } : {}),
      ...(args.filters.repository ? { repoId: args.filters.repository } : {}),
    },
  };
}

/** Pure: a set requirement as the target requirements of its set's lines (nested sets expanded). */
export function expandRequirement(req: Requirement, sets: TargetSets): CellRequirement[] {
  if (req.kind !== 'set') return [req];
  return expandTargetSet(sets, req.set).map((line) => {
    const repo = req.repoId ? { repoId: req.repoId } : {};
    const accel = line.for.accelerator ? { forAccel: line.for.accelerator } : {};
    const accelText = line.for.accelerator ? `,accel=${line.for.accelerator}` : '';
    const text = `for:arch=${line.for.architecture}${accelText}${req.repoId ? ` repo:${req.repoId}` : ''}`;
    return { kind: 'target' as const, text, forArch: line.for.architecture!, ...accel, ...repo };
  });
}

export function requirementMatches(req: Extract<Requirement, { kind: 'target' }>, run: FleetRun): boolean {
  return (
    patternMatches(req.forArch, run.forArch) &&
    (req.forAccel === undefined
      ? run.forAccel === undefined
      : run.forAccel !== undefined && patternMatches(req.forAccel, run.forAccel)) &&
    (req.repoId === undefined || patternMatches(req.repoId, run.repoId))
  );
}

export type CellVerdict =
  /** A requirement no run at the head matches. */
  | { state: 'missing'; requirement: string }
  | { state: 'success' | 'pending' | 'failed'; cell: string; runs: FleetRun[] };

export interface GateDecision {
  green: boolean;
  verdicts: CellVerdict[];
  headSha: string;
  /** False when the commit had more check runs than were read: a missing cell may be among them. */
  complete: boolean;
}

/**
 * Pure: green when every required cell has a successful run (from any instance). A pattern that
 * matches several cells (a `*`) requires each of them that was built, and at least one.
 */
export function decideGate(
  requirements: readonly CellRequirement[],
  runs: readonly FleetRun[],
  opts: { headSha: string; complete: boolean },
): GateDecision {
  const verdicts: CellVerdict[] = [];
  const seen = new Set<string>();
  const addCells = (matched: FleetRun[]) => {
    const byCell = new Map<string, FleetRun[]>();
    for (const r of matched) byCell.set(cellKey(r), [...(byCell.get(cellKey(r)) ?? []), r]);
    for (const [key, cellRuns] of [...byCell].sort(([a], [b]) => a.localeCompare(b))) {
      if (seen.has(key)) continue;
      seen.add(key);
      verdicts.push({ state: cellState(cellRuns), cell: cellLabel(cellRuns[0]!), runs: cellRuns });
    }
  };
  for (const req of requirements) {
    const matched = req.kind === 'all-requested' ? [...runs] : runs.filter((r) => requirementMatches(req, r));
    if (matched.length === 0)
      verdicts.push({
        state: 'missing',
        requirement: req.kind === 'all-requested' ? ALL_REQUESTED : req.text,
      });
    else addCells(matched);
  }
  return {
    green: requirements.length > 0 && verdicts.every((v) => v.state === 'success'),
    verdicts,
    headSha: opts.headSha,
    complete: opts.complete,
  };
}

/** Any instance's success makes the cell; else it waits while one still runs; else it failed. */
function cellState(runs: FleetRun[]): 'success' | 'pending' | 'failed' {
  const states = runs.map(runState);
  if (states.includes('success')) return 'success';
  if (states.some((s) => s === 'queued' || s === 'running')) return 'pending';
  return 'failed';
}

/** Pure: one line per cell that is not green (all of them when `all`), for the gate run and deploy replies. */
export function describeVerdicts(decision: GateDecision, all = false): string[] {
  const lines: string[] = [];
  for (const v of decision.verdicts) {
    if (v.state === 'missing') {
      lines.push(`- :grey_question: ${codeSpan(v.requirement)}: no build at this commit`);
      continue;
    }
    if (v.state === 'success' && !all) continue;
    const runs = v.runs
      .map((r) => {
        const state: RunState = runState(r);
        const link = r.htmlUrl && /^https:\/\/[^\s()]+$/.test(r.htmlUrl) ? `](${r.htmlUrl})` : undefined;
        const text = `${STATE_EMOJI[state]} ${state.replace('_', ' ')} on ${r.instance}`;
        return link ? `[${text}${link}` : text;
      })
      .join(', ');
    lines.push(`- ${codeSpan(v.cell)}: ${v.state === 'success' ? 'built' : v.state} (${runs})`);
  }
  if (!decision.complete)
    lines.push('- :warning: the commit has more check runs than the bot reads: cells may be missing');
  return lines;
}

/** Pure: the `hpcbot/deploy-gate` check run of a decision. */
export function renderGateRun(decision: GateDecision, requirements: readonly string[]): CheckRunBody {
  const required = requirements.map((r) => `- ${codeSpan(r)}`).join('\n');
  const notReady = decision.verdicts.filter((v) => v.state !== 'success').length;
  return {
    name: GATE_RUN_NAME,
    external_id: decision.headSha,
    status: 'completed',
    conclusion: decision.green ? 'success' : 'failure',
    output: {
      title: decision.green
        ? 'Every required target was built at this commit'
        : `${notReady} required target(s) not built at this commit`,
      summary: fitOutput(
        [
          `\`deploy.require\`:\n${required}`,
          '',
          decision.green ? 'Built:' : 'Not ready:',
          ...describeVerdicts(decision, decision.green),
        ].join('\n'),
      ),
    },
    actions: [],
  };
}

/** Pure: why `bot: deploy` is refused, cell by cell. */
export function renderGateRefusal(decision: GateDecision, instance: string): string {
  return [
    `deploy refused on instance ${codeSpan(instance)}: the deploy gate (${codeSpan(GATE_RUN_NAME)}) is red at ${codeSpan(decision.headSha.slice(0, 12))}; not every target that \`deploy.require\` names was built successfully at this commit:`,
    ...describeVerdicts(decision),
  ].join('\n');
}
