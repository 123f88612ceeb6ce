/**
 * Which build jobs a `bot: build` command asks for: one per (node type × repo target) that matches.
 *
 * Matching rule (pure, documented in the README): a pattern matches a value when it equals the value
 * or a trailing run of its `/`-separated components, and `*` matches within one component.
 * So `zen4`, `amd/zen4` and `x86_64/amd/zen4` match `x86_64/amd/zen4`, but `zen` or `en4` do not.
 * The EESSI bot used an unanchored regex search, where `zen2` also matched `zen20` and `.` matched
 * anything; anchoring at component boundaries keeps the short forms its docs use and drops the surprises.
 */
import type { CommandArgs, ExportVariable, TargetSpec } from './commands.js';
import type { SiteConfig } from '../config/config.js';
import { codeSpan } from './markdown.js';
import { expandTargetSet, TargetSetError } from './targetSets.js';

export interface BuildTarget {
  nodeType: string;
  repoId: string;
  os: string;
  /** The node's CPU (where the job runs). */
  onArch: string;
  onAccel?: string;
  /** What to build for: `software_subdir` and accelerator in job.cfg. */
  forArch: string;
  forAccel?: string;
  slurmParams: string[];
  /** The node type's `pbs_params` (qsub arguments), when it has any. */
  pbsParams?: string[];
}

/** What a build is for, as one string: jobs with the same key built the same thing (deploy, status). */
export function buildTargetKey(t: Pick<BuildTarget, 'forArch' | 'forAccel' | 'repoId'>): string {
  return `${t.forArch}|${t.forAccel ?? ''}|${t.repoId}`;
}

export function patternMatches(pattern: string, value: string): boolean {
  const pat = pattern.split('/');
  const val = value.split('/');
  if (pat.length > val.length || pat.some((p) => p === '')) return false;
  const tail = val.slice(val.length - pat.length);
  return pat.every((p, i) => componentMatches(p, tail[i]!));
}

function componentMatches(pattern: string, value: string): boolean {
  if (!pattern.includes('*')) return pattern === value;
  const re = new RegExp(`^${pattern.split('*').map(escapeRegExp).join('[^/]*')}$`);
  return re.test(value);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export type TargetSelection =
  { ok: true; targets: BuildTarget[]; exportVariables: ExportVariable[] } | { ok: false; reason: string };

/** Joins the accelerators of a multi-accelerator target: `nvidia/cc70+nvidia/cc90` is one job. */
export const MULTI_ACCEL_SEPARATOR = '+';

export function selectBuildTargets(
  args: CommandArgs,
  config: Pick<SiteConfig, 'instance' | 'build'> & { target_sets?: SiteConfig['target_sets'] },
): TargetSelection {
  const forSpec = args.for;
  if (forSpec?.set !== undefined) return selectSetTargets(args, forSpec.set, config);
  if (!forSpec?.architecture) return { ok: false, reason: 'no `for:` argument was given' };
  const notAllowed = args.exportVariables.filter(
    (e) => !config.build.allowed_exportvars.includes(`${e.name}=${e.value}`),
  );
  if (notAllowed.length > 0) {
    const allowed = config.build.allowed_exportvars;
    return {
      ok: false,
      reason:
        `export variable(s) ${notAllowed.map((e) => codeSpan(`${e.name}=${e.value}`)).join(', ')} not allowed here; ` +
        (allowed.length
          ? `allowed: ${allowed.map((a) => codeSpan(a)).join(', ')}`
          : 'this instance allows none'),
    };
  }
  const crossGlob = [
    forSpec.architecture !== args.on.architecture ? forSpec.architecture : undefined,
    forSpec.accelerator !== undefined && forSpec.accelerator !== args.on.accelerator
      ? forSpec.accelerator
      : undefined,
  ].find((v) => v?.includes('*'));
  if (crossGlob !== undefined) {
    return {
      ok: false,
      reason: `${codeSpan(crossGlob)}: \`for:\` needs exact values (no \`*\`) when \`on:\` names other hardware`,
    };
  }
  const multi = forSpec.accelerator?.includes(MULTI_ACCEL_SEPARATOR) ? forSpec.accelerator : undefined;
  if (multi?.includes('*')) {
    return {
      ok: false,
      reason: `${codeSpan(multi)}: a multi-accelerator target needs exact values (no \`*\`)`,
    };
  }
  const { filters } = args;
  if (filters.instance !== undefined && !patternMatches(filters.instance, config.instance)) {
    return { ok: true, targets: [], exportVariables: args.exportVariables };
  }
  const targets: BuildTarget[] = [];
  for (const [nodeType, node] of Object.entries(config.build.node_types)) {
    if (!nodeMatches(args.on, filters, node)) continue;
    // A multi-accelerator target is built where one of its accelerators is, or where accel_multi says so.
    if (multi !== undefined && !accelMatches(multi, node)) continue;
    const native = forSpec.architecture === args.on.architecture;
    // Likewise the accelerator: `for:...,accel=cc90` alone (or a glob) means the node's full accelerator.
    const nativeAccel =
      multi === undefined && forSpec.accelerator !== undefined && forSpec.accelerator === args.on.accelerator
        ? node.accel
        : undefined;
    const forAccel = nativeAccel ?? forSpec.accelerator;
    for (const repoId of node.repo_targets) {
      if (filters.repository !== undefined && !patternMatches(filters.repository, repoId)) continue;
      targets.push({
        nodeType,
        repoId,
        os: node.os,
        onArch: node.cpu_subdir,
        ...(node.accel ? { onAccel: node.accel } : {}),
        // A native build (for: alone, possibly a short form) builds for the node's full CPU path.
        forArch: native ? node.cpu_subdir : forSpec.architecture,
        ...(forAccel ? { forAccel } : {}),
        slurmParams: node.slurm_params,
        ...(node.pbs_params.length > 0 ? { pbsParams: node.pbs_params } : {}),
      });
    }
  }
  return { ok: true, targets, exportVariables: args.exportVariables };
}

/** The targets of every line of a target set, each (node type, target) once. */
function selectSetTargets(
  args: CommandArgs,
  name: string,
  config: Pick<SiteConfig, 'instance' | 'build'> & { target_sets?: SiteConfig['target_sets'] },
): TargetSelection {
  let lines;
  try {
    lines = expandTargetSet(config.target_sets ?? {}, name);
  } catch (err) {
    if (err instanceof TargetSetError) return { ok: false, reason: err.message };
    throw err;
  }
  const targets = new Map<string, BuildTarget>();
  for (const line of lines) {
    const selection = selectBuildTargets({ ...args, on: line.on, for: line.for }, config);
    if (!selection.ok)
      return { ok: false, reason: `set ${codeSpan(name)}, ${codeSpan(line.line)}: ${selection.reason}` };
    for (const t of selection.targets) targets.set(`${t.nodeType}|${buildTargetKey(t)}`, t);
  }
  return { ok: true, targets: [...targets.values()], exportVariables: args.exportVariables };
}

/**
 * A multi-accelerator pattern (`a+b`) matches a GPU node whose accelerator is one of its parts, or any
 * GPU node with `accel_multi: true`; a single pattern matches as everywhere else.
 */
function accelMatches(pattern: string, node: { accel?: string | undefined; accel_multi?: boolean }): boolean {
  if (node.accel === undefined) return false;
  if (patternMatches(pattern, node.accel)) return true;
  if (!pattern.includes(MULTI_ACCEL_SEPARATOR)) return false;
  return (
    node.accel_multi === true ||
    pattern.split(MULTI_ACCEL_SEPARATOR).some((part) => patternMatches(part, node.accel!))
  );
}

function nodeMatches(
  on: TargetSpec,
  filters: CommandArgs['filters'],
  node: { cpu_subdir: string; accel?: string | undefined; accel_multi?: boolean },
): boolean {
  const arch = [on.architecture, filters.architecture].filter((p): p is string => p !== undefined);
  const accel = [on.accelerator, filters.accelerator].filter((p): p is string => p !== undefined);
  if (!arch.every((p) => patternMatches(p, node.cpu_subdir))) return false;
  // GPU-node guard: a node with an accelerator is only used when an accelerator is asked for.
  if (node.accel === undefined) return accel.length === 0;
  return accel.length > 0 && accel.every((p) => accelMatches(p, node));
}

export function describeTargets(config: Pick<SiteConfig, 'build'>): string[] {
  return Object.entries(config.build.node_types).map(
    ([name, n]) =>
      `\`${name}\`: on:arch=${n.cpu_subdir}${n.accel ? `,accel=${n.accel}` : ''} (repositories: ${n.repo_targets.join(', ')})`,
  );
}
