/**
 * `bot: status [last_build]`: the target matrix of the PR head, read from its check runs (every instance's
 * with `reporting.status_responder`, else this instance's own), then this instance's jobs, built from its
 * job directories, never by scraping comments.
 */
import path from 'node:path';
import type { Config } from '../../config/config.js';
import type { JobData } from '../../store/job.js';
import { endedEarlyReason } from '../../domain/jobComment.js';
import { codeSpan } from '../../domain/markdown.js';
import { renderInstanceHealth } from '../../domain/health.js';
import { renderTargetMatrix } from '../../domain/targetMatrix.js';
import { buildTargetKey } from '../../domain/targets.js';
import type { DirState } from '../../store/state.js';
import { describeClosure, prClosure } from '../cleanup.js';
import { readFleet, readsChecks } from '../deployGate.js';
import { prJobs } from '../job.js';
import { instanceHealthInput } from './ping.js';
import type { CommandContext, CommandHandler } from './types.js';

/**
 * With `reporting.status_responder` naming another instance, this one leaves a plain `bot: status` to
 * it; a status with `inst:` is answered by the instances it names, as any command.
 */
export function leavesStatusToOthers(
  config: Pick<Config, 'instance' | 'reporting'>,
  instFilter?: string,
): boolean {
  const responder = config.reporting.status_responder;
  return instFilter === undefined && responder !== undefined && responder !== config.instance;
}

export const status: CommandHandler = async (ctx) => {
  const sections = [await matrixSection(ctx), ...(await healthLines(ctx)), await jobsSection(ctx)];
  return sections.filter((s) => s !== '').join('\n\n');
};

/** This instance's health: last tick, ingest mode and lag, the scheduler and its partitions. */
async function healthLines(ctx: CommandContext): Promise<string[]> {
  return [renderInstanceHealth(await instanceHealthInput(ctx.work.deps)).join('\n')];
}

/** The matrix: one paginated list of the head commit's check runs (plus the PR, for its head). */
async function matrixSection(ctx: CommandContext): Promise<string> {
  const { config, github } = ctx.work.deps;
  if (!readsChecks(ctx.work.deps)) return '';
  const head = (await github.getPullRequest(ctx.pr.repo, ctx.pr.number)).headSha;
  const fleet = await readFleet(ctx.work.deps, ctx.pr.repo, head);
  const fleetWide = config.reporting.status_responder !== undefined;
  const runs = fleetWide ? fleet.runs : fleet.runs.filter((r) => r.instance === config.instance);
  const matrix = renderTargetMatrix(runs, { headSha: head, complete: fleet.complete });
  return (
    matrix ||
    `no check runs of ${fleetWide ? 'any instance' : `instance ${codeSpan(config.instance)}`} on the PR head ${codeSpan(head.slice(0, 12))} yet`
  );
}

async function jobsSection(ctx: CommandContext): Promise<string> {
  const { jobdirs, config } = ctx.work.deps;
  const jobs = await prJobs(ctx.work.deps, ctx.pr);
  const selected = ctx.args.general.includes('last_build') ? lastPerTarget(jobs) : jobs;
  const closure = await prClosure(ctx.work.deps, ctx.pr);
  const closed = closure
    ? `${describeClosure(closure)}: no new jobs start, and its job directories go to the trash.\n\n`
    : '';
  if (selected.length === 0)
    return `${closed}no build jobs of instance ${codeSpan(config.instance)} for this PR yet`;
  return (
    closed +
    renderStatusTable(
      selected.map(({ dir, state }) => ({ dir: jobdirs.relative(dir), state })),
      config.instance,
    )
  );
}

/** The newest job per (for-arch, accelerator, repo), by directory order (run and event names sort by time). */
function lastPerTarget<T extends { dir: string; state: DirState<JobData> }>(jobs: T[]): T[] {
  const newest = new Map<string, T>();
  for (const job of jobs) {
    const key = buildTargetKey(job.state.data.target);
    const prev = newest.get(key);
    if (!prev || firstTime(job.state) >= firstTime(prev.state)) newest.set(key, job);
  }
  return [...newest.values()];
}

function firstTime(state: DirState<unknown>): string {
  return state.history[0]?.at ?? '';
}

export function renderStatusTable(
  jobs: Array<{ dir: string; state: DirState<JobData> }>,
  instance: string,
): string {
  const lines = [
    `This is the status of all the \`bot: build\` jobs of instance ${codeSpan(instance)} for this PR:`,
    '',
    '|on|for|repo|result|date|status|job dir|',
    '|---|---|---|---|---|---|---|',
  ];
  for (const { dir, state } of jobs) {
    const d = state.data;
    const t = d.target;
    const on = `${t.onArch}${t.onAccel ? `, ${t.onAccel}` : ''}`;
    const forTarget = `${t.forArch}${t.forAccel ? `, ${t.forAccel}` : ''}`;
    const result = d.result ? resultEmoji(d.result.status) : '';
    const stale = d.stale ? ` (stale: superseded by ${d.stale.superseded_by.slice(0, 10)})` : '';
    const early = endedEarlyReason(state.stage, d);
    const why = early ? ` (${early})` : '';
    const date = state.history[state.history.length - 1]?.at ?? '';
    lines.push(
      `|${codeSpan(on)}|${codeSpan(forTarget)}|${codeSpan(t.repoId)}|${result}|${date}|${state.stage}${why}${stale}|${codeSpan(path.normalize(dir))}|`,
    );
  }
  return lines.join('\n');
}

export function resultEmoji(status: string): string {
  if (status === 'SUCCESS') return ':grin: SUCCESS';
  if (status === 'FAILURE') return ':cry: FAILURE';
  return ':shrug: UNKNOWN';
}
