/**
 * A job's check run, or its commit status, rendered from the job's state like the job comment: the same
 * name for every build of a target, a status and conclusion from the stage and the results, the comment's
 * facts as the summary, and for a failed job the tail of its Slurm output as the text. That output is
 * written by PR code: it is scrubbed of the bot's secrets and fenced, so nothing in it is read as
 * markdown or HTML.
 */
import type {
  CheckRunAction,
  CheckRunBody,
  CheckRunConclusion,
  CheckRunStatus,
  CommitStatusBody,
} from '../adapters/github/index.js';
import type { JobData, ResultSummary } from '../store/job.js';
import { healthRowsOf } from './health.js';
import { cancelReasonText } from './jobComment.js';
import { renderLogTail, scrub, type LogTail } from './logTail.js';
import { codeSpan } from './markdown.js';
import { sanitizeDescription } from './resultFile.js';
import type { BuildTarget } from './targets.js';

/** GitHub's limit for each output field of a check run. */
export const MAX_OUTPUT_CHARS = 65_535;
/** GitHub's limit for a commit status description. */
const MAX_STATUS_DESCRIPTION = 140;

export interface JobView {
  stage: string;
  data: JobData;
}

/** `<repo_id> <for-arch>[ <accel>]`: what is built, the same for every rebuild of it. */
export function targetLabel(t: Pick<BuildTarget, 'repoId' | 'forArch' | 'forAccel'>): string {
  return [t.repoId, t.forArch, ...(t.forAccel ? [t.forAccel] : [])].join(' ');
}

export function checkRunName(instance: string, target: BuildTarget): string {
  return `hpcbot/${instance}: ${targetLabel(target)}`;
}

export function statusContext(instance: string, target: BuildTarget): string {
  return `hpcbot/${instance}/${targetLabel(target)}`;
}

export interface Outcome {
  status: CheckRunStatus;
  /** Set exactly when `status` is completed. */
  conclusion?: CheckRunConclusion;
  title: string;
}

/** Pure: how far the job got and how it ended, whether or not its head is still the PR's. */
export function jobOutcome({ stage, data }: JobView): Outcome {
  const asJob = data.job_id ? ` as job ${data.job_id}` : '';
  switch (stage) {
    case 'prepared':
    case 'submitting':
      return { status: 'queued', title: 'Waiting to be submitted' };
    case 'queued':
      return { status: 'queued', title: 'Waiting for a free slot (limits)' };
    case 'submitted':
      return { status: 'queued', title: `Submitted${asJob}` };
    case 'released':
      return { status: 'queued', title: `Queued${asJob}` };
    case 'running':
      return { status: 'in_progress', title: `Running${asJob}` };
    case 'finished':
      return finishedOutcome(data);
    case 'cancelled':
      return ended('cancelled', 'Cancelled');
    case 'lost':
      return ended('action_required', 'Lost: the scheduler no longer knows the job');
    default: // failed: the checkout failed, or the bot gave up after poller.max_attempts
      return ended('failure', 'The bot could not run the job');
  }
}

function ended(conclusion: CheckRunConclusion, title: string): Outcome {
  return { status: 'completed', conclusion, title };
}

/** Slurm's final state first; a job that ran to its end succeeded only if its result (and test) say so. */
function finishedOutcome(data: JobData): Outcome {
  const state = (data.scheduler_state ?? '').trim().split(/\s+/)[0] ?? '';
  if (state === 'TIMEOUT') return ended('timed_out', 'Timed out');
  if (state === 'NODE_FAIL') return ended('action_required', 'Node failure');
  if (state !== 'COMPLETED' && state !== 'FAILED')
    return ended('failure', `Ended as ${(state || 'unknown').slice(0, 40)}`);
  const result = data.result?.status ?? 'UNKNOWN';
  if (result === 'FAILURE') return ended('failure', 'Build failed');
  if (result !== 'SUCCESS') return ended('failure', 'Build result unknown');
  if (data.test?.status === 'FAILURE') return ended('failure', 'Tests failed');
  return ended('success', 'Build succeeded');
}

/** The run's buttons; a press comes back as `check_run.requested_action` (src/stages/checkRunActions.ts). */
export const CHECK_ACTIONS = {
  rebuild: { label: 'Rebuild', description: 'Build this target again at the PR head', identifier: 'rebuild' },
  cancel: { label: 'Cancel', description: 'Cancel this build job', identifier: 'cancel' },
} as const satisfies Record<string, CheckRunAction>;

/** Conclusions a Rebuild may fix (a superseded run is `neutral`: the new head gets runs of its own). */
const REBUILDABLE = new Set<CheckRunConclusion>(['failure', 'cancelled', 'timed_out', 'action_required']);

/** Pure: an active run can be cancelled; one that ended badly at the current head can be rebuilt. */
export function checkRunActions(status: CheckRunStatus, conclusion?: CheckRunConclusion): CheckRunAction[] {
  if (status !== 'completed') return [CHECK_ACTIONS.cancel];
  return conclusion && REBUILDABLE.has(conclusion) ? [CHECK_ACTIONS.rebuild] : [];
}

/** Pure: whether the check run shows the job's log tail (so whether the caller needs to read it). */
export function showsLogTail(outcome: Outcome): boolean {
  return (
    outcome.conclusion === 'failure' ||
    outcome.conclusion === 'timed_out' ||
    outcome.conclusion === 'action_required'
  );
}

export interface CheckRunOptions {
  /** The job dir relative to jobdirs: the run's external_id. */
  externalId: string;
  /** False once a newer push superseded the job's head: the run then completes as neutral. */
  currentHead: boolean;
  logTail?: LogTail;
  /** `reporting.log_tail_lines`: how many lines of `logTail` to show (0: none). */
  logTailLines?: number;
  /** Values that must never be shown (the bot's secrets). */
  secrets?: readonly string[];
}

/** Pure: the job's check run. */
export function renderCheckRun(job: JobView, opts: CheckRunOptions): CheckRunBody {
  const { data } = job;
  const outcome = jobOutcome(job);
  const conclusion = outcome.conclusion && (opts.currentHead ? outcome.conclusion : 'neutral');
  const secrets = opts.secrets ?? [];
  const text =
    opts.logTail && showsLogTail(outcome)
      ? renderLogTail(opts.logTail, opts.logTailLines ?? 0, secrets)
      : undefined;
  return {
    name: checkRunName(data.instance, data.target),
    external_id: opts.externalId,
    status: outcome.status,
    ...(conclusion ? { conclusion } : {}),
    ...(data.started_at ? { started_at: isoSeconds(data.started_at) } : {}),
    ...(conclusion && data.finished_at ? { completed_at: isoSeconds(data.finished_at) } : {}),
    output: {
      title: fitOutput(opts.currentHead ? outcome.title : `${outcome.title} (superseded)`),
      summary: fitOutput(scrub(renderSummary(job, opts.externalId), secrets)),
      ...(text !== undefined ? { text } : {}),
    },
    actions: checkRunActions(outcome.status, conclusion),
  };
}

/** Pure: the job's commit status, for a personal token (no check runs): a superseded job keeps its state. */
export function renderCommitStatus(job: JobView, opts: { currentHead: boolean }): CommitStatusBody {
  const o = jobOutcome(job);
  const state =
    o.status !== 'completed'
      ? 'pending'
      : o.conclusion === 'success'
        ? 'success'
        : o.conclusion === 'failure' || o.conclusion === 'timed_out'
          ? 'failure'
          : 'error';
  let description = `${opts.currentHead ? '' : 'superseded: '}${o.title} on ${job.data.target.nodeType}`;
  if (description.length > MAX_STATUS_DESCRIPTION)
    description = `${description.slice(0, MAX_STATUS_DESCRIPTION - 1)}…`;
  return { context: statusContext(job.data.instance, job.data.target), state, description };
}

/** The job comment's facts, as a list. */
function renderSummary({ stage, data }: JobView, relativeJobDir: string): string {
  const t = data.target;
  const accel = (a?: string) => (a ? ` and accelerator ${codeSpan(a)}` : '');
  const lines = [
    `- Instance ${codeSpan(data.instance)}, repository ${codeSpan(t.repoId)}`,
    `- Building on: ${codeSpan(t.onArch)}${accel(t.onAccel)} (node type ${codeSpan(t.nodeType)})`,
    `- Building for: ${codeSpan(t.forArch)}${accel(t.forAccel)}`,
    `- Job dir: ${codeSpan(relativeJobDir, 400)}`,
  ];
  if (data.head_sha)
    lines.push(
      `- Built from: ${codeSpan(data.head_sha.slice(0, 12))} merged into ${codeSpan((data.base_sha ?? '').slice(0, 12))}`,
    );
  if (data.job_id) lines.push(`- Job: ${codeSpan(data.job_id)} (${data.backend}), stage ${codeSpan(stage)}`);
  if (data.scheduler_state)
    lines.push(`- Scheduler: ${codeSpan(`${data.scheduler_state}, exit code ${data.exit_code ?? '?'}`)}`);
  if (data.cancel_requested) lines.push(`- Cancel: ${cancelReasonText(data.cancel_requested)}`);
  if (data.result) lines.push(`- Result: ${describe(data.result)}`);
  if (data.test) lines.push(`- Test result: ${describe(data.test)}`);
  const artefacts = data.result?.artefacts ?? [];
  if (artefacts.length > 0) lines.push('- Artefacts:', ...artefacts.map((a) => `  - ${codeSpan(a, 400)}`));
  if (data.stale)
    lines.push(
      '',
      `:warning: built from ${codeSpan((data.head_sha ?? '?').slice(0, 12))}, superseded by ${codeSpan(data.stale.superseded_by.slice(0, 12))}`,
    );
  for (const row of healthRowsOf(data.rows)) lines.push('', `:warning: ${row.comment}`);
  return lines.join('\n');
}

function describe(r: Pick<ResultSummary, 'status' | 'description'>): string {
  return r.description ? sanitizeDescription(r.description) : `${r.status} (no description)`;
}

/** Pure: `text` cut to GitHub's limit for an output field, with a note that says so. */
export function fitOutput(text: string, max = MAX_OUTPUT_CHARS): string {
  if (text.length <= max) return text;
  const note = `\n\n… (cut: GitHub takes at most ${max} characters here)`;
  let kept = text.slice(0, max - note.length);
  if (/[\ud800-\udbff]$/.test(kept)) kept = kept.slice(0, -1);
  return kept + note;
}

/** GitHub's timestamp format, `YYYY-MM-DDTHH:MM:SSZ`. */
function isoSeconds(iso: string): string {
  return iso.replace(/\.\d+Z$/, 'Z');
}
