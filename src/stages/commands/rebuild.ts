/**
 * `bot: rebuild failed` and `bot: rebuild for:... [on:...] [repo:...]`: build targets of this PR again
 * with their original job's parameters (node type, repo, export variables), as a new run of this event.
 * `failed` takes every target whose latest job at the PR's head ended badly (failed, timed out, lost,
 * node failure, cancelled through the bot); `for:` takes the matching targets whatever their state. A
 * target that is still active follows build.on_overlap, as for `bot: build`. The check run's Rebuild
 * button goes through `rebuildJobs` too.
 */
import path from 'node:path';
import type { Config } from '../../config/config.js';
import { jobOutcome } from '../../domain/checkRun.js';
import type { CommandArgs, TargetSpec } from '../../domain/commands.js';
import { codeSpan } from '../../domain/markdown.js';
import { hasPermission } from '../../domain/permissions.js';
import { expandTargetSet, TargetSetError } from '../../domain/targetSets.js';
import { buildTargetKey, patternMatches, type BuildTarget } from '../../domain/targets.js';
import { ACTIVE_JOB_STAGES, type JobData } from '../../store/job.js';
import type { DirState } from '../../store/state.js';
import { createBuildRun, type PreparedJob } from '../buildRun.js';
import { describeClosure, prClosure } from '../cleanup.js';
import type { PullRequestRef, WorkDir } from '../context.js';
import type { EventData } from '../event.js';
import { prJobs, type PrJob } from '../job.js';
import { describePreparedJob } from './build.js';
import { describeTarget } from './plan.js';
import type { CommandHandler } from './types.js';

export interface Skipped {
  target: BuildTarget;
  why: string;
}

export type RebuildOutcome = { closed: string } | { prepared: PreparedJob[]; skipped: Skipped[] };

/** Pure: why the site no longer builds this job's target, if it does not. */
export function unavailable(
  job: Pick<JobData, 'target' | 'exportVariables'>,
  config: Pick<Config, 'build'>,
): string | undefined {
  const nodes = config.build.node_types;
  const node = Object.hasOwn(nodes, job.target.nodeType) ? nodes[job.target.nodeType] : undefined;
  if (!node?.repo_targets.includes(job.target.repoId))
    return `node type ${job.target.nodeType} no longer builds ${job.target.repoId}`;
  const refused = job.exportVariables.find(
    (e) => !config.build.allowed_exportvars.includes(`${e.name}=${e.value}`),
  );
  return refused ? `export variable ${refused.name}=${refused.value} is no longer allowed` : undefined;
}

/**
 * Prepare each job's target again at the PR's head. Jobs with different export variables go into
 * runs of their own (keys `key`, `key:1`, ...), in a stable order, so a retry fills in the same runs.
 */
export async function rebuildJobs(
  work: WorkDir<EventData>,
  key: string,
  pr: PullRequestRef,
  jobs: JobData[],
): Promise<RebuildOutcome> {
  const closure = await prClosure(work.deps, pr);
  if (closure) return { closed: describeClosure(closure) };
  const skipped: Skipped[] = [];
  const groups = new Map<string, JobData[]>();
  for (const job of jobs) {
    const gone = unavailable(job, work.deps.config);
    if (gone) {
      skipped.push({ target: job.target, why: gone });
      continue;
    }
    const vars = JSON.stringify(job.exportVariables);
    groups.set(vars, [...(groups.get(vars) ?? []), job]);
  }
  const prepared: PreparedJob[] = [];
  for (const [i, group] of [...groups.values()].entries()) {
    const runKey = i === 0 ? key : `${key}:${i}`;
    const targets = group.map((j) => j.target);
    prepared.push(...(await createBuildRun(work, runKey, pr, targets, group[0]!.exportVariables)));
  }
  return { prepared, skipped };
}

/** Pure: the newest job of each (node type, target), by when it was prepared (then by directory). */
export function latestPerTarget(jobs: PrJob[]): PrJob[] {
  const newest = new Map<string, PrJob>();
  for (const job of jobs) {
    const k = `${job.state.data.target.nodeType}|${buildTargetKey(job.state.data.target)}`;
    const prev = newest.get(k);
    if (
      !prev ||
      preparedAt(job.state) > preparedAt(prev.state) ||
      (preparedAt(job.state) === preparedAt(prev.state) && job.dir > prev.dir)
    )
      newest.set(k, job);
  }
  return [...newest.values()];
}

function preparedAt(state: DirState<unknown>): string {
  return state.history[0]?.at ?? '';
}

/**
 * Pure: why `rebuild failed` rebuilds this (latest) job, or undefined when it does not. A job
 * cancelled outside the bot (scancel by hand) is left alone: someone meant it.
 */
export function failedBecause(job: { stage: string; data: JobData }): string | undefined {
  const outcome = jobOutcome(job);
  if (outcome.status !== 'completed') return undefined;
  if (outcome.conclusion === 'cancelled') return job.data.cancel_requested ? 'cancelled' : undefined;
  return outcome.conclusion === 'success' ? undefined : outcome.title;
}

/** Pure: does a `rebuild for:` selection name this target? Unset parts match anything but a GPU guard. */
export function targetSelected(t: BuildTarget, on: TargetSpec, forSpec: TargetSpec, repo?: string): boolean {
  if (repo !== undefined && !patternMatches(repo, t.repoId)) return false;
  if (forSpec.architecture !== undefined && !patternMatches(forSpec.architecture, t.forArch)) return false;
  // As for `bot: build`: a GPU target is only named with an accelerator.
  if ((forSpec.accelerator === undefined) !== (t.forAccel === undefined)) return false;
  if (forSpec.accelerator !== undefined && !patternMatches(forSpec.accelerator, t.forAccel!)) return false;
  const onGiven = JSON.stringify(on) !== JSON.stringify(forSpec);
  if (onGiven && on.architecture !== undefined && !patternMatches(on.architecture, t.onArch)) return false;
  if (onGiven && on.accelerator !== undefined && !(t.onAccel && patternMatches(on.accelerator, t.onAccel)))
    return false;
  return true;
}

/** The `on:`/`for:` pairs of a `rebuild for:` command: one, or the lines of a target set. */
function selections(args: CommandArgs, config: Config): Array<{ on: TargetSpec; for: TargetSpec }> {
  if (args.for?.set === undefined) return [{ on: args.on, for: args.for ?? {} }];
  return expandTargetSet(config.target_sets, args.for.set);
}

export const rebuild: CommandHandler = async (ctx) => {
  const { config, github, jobdirs } = ctx.work.deps;
  if (!(await hasPermission(github, ctx.pr.repo, ctx.sender, config.permissions.build))) {
    return `account ${codeSpan(ctx.sender)} has NO permission to submit build jobs`;
  }
  const failed = ctx.args.general.includes('failed');
  let pairs: Array<{ on: TargetSpec; for: TargetSpec }> = [];
  if (!failed) {
    try {
      pairs = selections(ctx.args, config);
    } catch (err) {
      if (!(err instanceof TargetSetError)) throw err;
      return `nothing was rebuilt: ${err.message}`;
    }
  }
  // Jobs this command prepared (before a crash, say) are not what it rebuilds.
  const own = ctx.work.dir + path.sep;
  const latest = latestPerTarget(
    (await prJobs(ctx.work.deps, ctx.pr)).filter(
      (j) => !j.dir.startsWith(own) && j.state.data.instance === config.instance,
    ),
  );
  const chosen: JobData[] = [];
  const skipped: Skipped[] = [];
  for (const { dir, state } of latest) {
    const t = state.data.target;
    if (!failed) {
      if (pairs.some((p) => targetSelected(t, p.on, p.for, ctx.args.filters.repository)))
        chosen.push(state.data);
      continue;
    }
    const where = codeSpan(jobdirs.relative(dir), 400);
    if (state.data.stale) {
      skipped.push({ target: t, why: `its latest job (${where}) was built from an earlier head` });
    } else if (ACTIVE_JOB_STAGES.has(state.stage)) {
      skipped.push({ target: t, why: `its latest job (${where}) is still active (${state.stage})` });
    } else {
      const why = failedBecause(state);
      if (why) chosen.push(state.data);
      else skipped.push({ target: t, why: `its latest job (${where}) ${notFailed(state)}` });
    }
  }
  if (chosen.length === 0 && skipped.length === 0)
    return failed
      ? `nothing was rebuilt: instance ${codeSpan(config.instance)} has no jobs for this PR yet`
      : `nothing was rebuilt: no job of instance ${codeSpan(config.instance)} for this PR matches`;
  const outcome = await rebuildJobs(ctx.work, ctx.key, ctx.pr, chosen);
  if ('closed' in outcome) return `nothing was rebuilt: ${outcome.closed}`;
  return renderRebuildReply(outcome.prepared, [...outcome.skipped, ...skipped], (d) => jobdirs.relative(d));
};

function notFailed(state: { stage: string; data: JobData }): string {
  const outcome = jobOutcome(state);
  if (outcome.conclusion === 'success') return 'succeeded';
  if (outcome.conclusion === 'cancelled') return 'was cancelled outside the bot';
  return `ended as ${outcome.title}`;
}

export function renderRebuildReply(
  prepared: PreparedJob[],
  skipped: Skipped[],
  rel: (dir: string) => string,
): string {
  const lines: string[] = [];
  if (prepared.length > 0) lines.push('resubmitted:', ...prepared.map((j) => describePreparedJob(j, rel)));
  else lines.push('nothing was resubmitted');
  if (skipped.length > 0)
    lines.push(
      'skipped:',
      ...skipped.map(
        (s) =>
          `- ${describeTarget(s.target)} for ${codeSpan(s.target.repoId)} on node type ${codeSpan(s.target.nodeType)}: ${s.why}`,
      ),
    );
  return lines.join('\n');
}
