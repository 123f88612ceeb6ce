/**
 * The target matrix of a PR: every instance's job check runs on the head commit (named
 * `hpcbot/<instance>: <repo_id> <for-arch>[ <accel>]`, see checkRun.ts), as one table per repository with
 * CPU targets as rows and accelerators as columns. Each cell holds the state of each run of that target,
 * linked to the run. Pure: the caller lists the runs (one paginated call) and posts the text.
 */
import type { ListedCheckRun } from '../adapters/github/index.js';
import type { JobData } from '../store/job.js';
import { jobOutcome } from './checkRun.js';
import { codeSpan } from './markdown.js';
import { buildTargetKey } from './targets.js';

/** A job's check run, with the target read back from its name. */
export interface FleetRun {
  instance: string;
  repoId: string;
  forArch: string;
  forAccel?: string;
  status: ListedCheckRun['status'];
  conclusion: ListedCheckRun['conclusion'];
  htmlUrl?: string;
  title?: string;
}

/**
 * The inverse of checkRunName. Only names made of characters that mean nothing in markdown count: a run
 * that another App named is shown in a table cell.
 */
const RUN_NAME = /^hpcbot\/([A-Za-z0-9_-]{1,32}): ([\w.+-]+) ([\w./+-]+)(?: ([\w./+-]+))?$/;

/**
 * Pure: the runs that are job check runs of the bot (other names, the deploy gate included, are not).
 * With `appId` (github.app_id), runs written by other Apps do not count: anybody with a token that may
 * write checks (a workflow, say) could name a run `hpcbot/...`. The instances of a fleet share one App.
 */
export function fleetRuns(runs: readonly ListedCheckRun[], appId?: number): FleetRun[] {
  const out: FleetRun[] = [];
  for (const r of runs) {
    if (appId !== undefined && r.appId !== undefined && r.appId !== appId) continue;
    const m = RUN_NAME.exec(r.name);
    if (!m) continue;
    out.push({
      instance: m[1]!,
      repoId: m[2]!,
      forArch: m[3]!,
      ...(m[4] ? { forAccel: m[4] } : {}),
      status: r.status,
      conclusion: r.conclusion,
      ...(r.htmlUrl ? { htmlUrl: r.htmlUrl } : {}),
      ...(r.title ? { title: r.title } : {}),
    });
  }
  return out;
}

/** What a cell is: one build target, whoever builds it. */
export function cellKey(r: Pick<FleetRun, 'repoId' | 'forArch' | 'forAccel'>): string {
  return `${r.repoId}|${r.forArch}|${r.forAccel ?? ''}`;
}

/** `<repo_id> <for-arch>[ <accel>]`, as in the run names. */
export function cellLabel(r: Pick<FleetRun, 'repoId' | 'forArch' | 'forAccel'>): string {
  return [r.repoId, r.forArch, ...(r.forAccel ? [r.forAccel] : [])].join(' ');
}

export type RunState =
  'queued' | 'running' | 'success' | 'failure' | 'cancelled' | 'timed_out' | 'action_required' | 'superseded';

export function runState(r: Pick<FleetRun, 'status' | 'conclusion'>): RunState {
  if (r.status === 'queued') return 'queued';
  if (r.status === 'in_progress') return 'running';
  switch (r.conclusion) {
    case 'success':
    case 'cancelled':
    case 'timed_out':
    case 'action_required':
      return r.conclusion;
    case 'neutral':
    case 'stale':
    case 'skipped':
      return 'superseded';
    default:
      return 'failure';
  }
}

export const STATE_EMOJI: Record<RunState, string> = {
  queued: ':hourglass:',
  running: ':arrows_counterclockwise:',
  success: ':white_check_mark:',
  failure: ':x:',
  cancelled: ':no_entry_sign:',
  timed_out: ':alarm_clock:',
  action_required: ':warning:',
  superseded: ':white_circle:',
};

const NO_ACCEL = 'none';

export interface MatrixOptions {
  headSha: string;
  /** False when the commit had more check runs than were read. */
  complete: boolean;
}

/** Pure: the matrix as markdown; an empty string when no run names a target. */
export function renderTargetMatrix(runs: readonly FleetRun[], opts: MatrixOptions): string {
  if (runs.length === 0) return '';
  const repos = [...new Set(runs.map((r) => r.repoId))].sort();
  const instances = new Set(runs.map((r) => r.instance));
  const lines = [
    `Target matrix of ${codeSpan(opts.headSha.slice(0, 12))} from the check runs of ${instances.size} instance(s): ${[
      ...instances,
    ]
      .sort()
      .map((i) => codeSpan(i))
      .join(', ')}`,
  ];
  for (const repo of repos) {
    const mine = runs.filter((r) => r.repoId === repo);
    const accels = [...new Set(mine.map((r) => r.forAccel ?? NO_ACCEL))].sort(byAccel);
    const archs = [...new Set(mine.map((r) => r.forArch))].sort();
    lines.push('', `${codeSpan(repo)}:`, '', `|CPU target|${accels.map((a) => codeSpan(a)).join('|')}|`);
    lines.push(`|---|${accels.map(() => ':---:').join('|')}|`);
    for (const arch of archs) {
      const cells = accels.map((accel) =>
        mine
          .filter((r) => r.forArch === arch && (r.forAccel ?? NO_ACCEL) === accel)
          .sort((a, b) => a.instance.localeCompare(b.instance))
          .map((r) => renderEntry(r, instances.size > 1))
          .join(' '),
      );
      lines.push(`|${codeSpan(arch)}|${cells.join('|')}|`);
    }
  }
  lines.push('', legend());
  if (!opts.complete)
    lines.push(
      '',
      ':warning: the commit has more check runs than the bot reads: some targets may be missing.',
    );
  return lines.join('\n');
}

/** The state emoji (and the instance, when several build), linked to the run when it has a page. */
function renderEntry(r: FleetRun, showInstance: boolean): string {
  const text = `${STATE_EMOJI[runState(r)]}${showInstance ? ` ${r.instance}` : ''}`;
  return r.htmlUrl && /^https:\/\/[^\s()]+$/.test(r.htmlUrl) ? `[${text}](${r.htmlUrl})` : text;
}

function legend(): string {
  return Object.entries(STATE_EMOJI)
    .map(([state, emoji]) => `${emoji} ${state.replace('_', ' ')}`)
    .join(' · ');
}

/** `none` first, then by name. */
function byAccel(a: string, b: string): number {
  if (a === NO_ACCEL || b === NO_ACCEL) return a === NO_ACCEL ? (b === NO_ACCEL ? 0 : -1) : 1;
  return a.localeCompare(b);
}

/** A job of this instance as the summary comment sees it; `createdAt` orders rebuilds of one target. */
export interface SummaryJob {
  stage: string;
  data: JobData;
  createdAt: string;
}

/**
 * Pure: `reporting.comments: summary`, one comment per PR and instance: this instance's part of the
 * matrix, from its own jobs (the newest per target, of those not superseded by a push).
 */
export function renderSummaryComment(instance: string, jobs: readonly SummaryJob[]): string {
  const newest = new Map<string, SummaryJob>();
  for (const job of jobs) {
    if (job.data.stale || !job.data.head_sha) continue;
    const key = buildTargetKey(job.data.target);
    const prev = newest.get(key);
    if (!prev || job.createdAt >= prev.createdAt) newest.set(key, job);
  }
  const current = [...newest.values()];
  const heading = `Build jobs of instance ${codeSpan(instance)} for this PR (this comment is kept up to date):`;
  if (current.length === 0) return `${heading}\n\nno build jobs at the PR's head yet`;
  const head = current.reduce((a, b) => (b.createdAt > a.createdAt ? b : a)).data.head_sha!;
  const runs: FleetRun[] = current
    .filter((j) => j.data.head_sha === head)
    .map(({ stage, data }) => {
      const o = jobOutcome({ stage, data });
      return {
        instance,
        repoId: data.target.repoId,
        forArch: data.target.forArch,
        ...(data.target.forAccel ? { forAccel: data.target.forAccel } : {}),
        status: o.status,
        conclusion: o.conclusion ?? null,
        title: o.title,
      };
    });
  return `${heading}\n\n${renderTargetMatrix(runs, { headSha: head, complete: true })}`;
}
