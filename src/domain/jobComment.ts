/** The per-job PR comment, rendered from the job's state (never read back and patched). */
import type { Config } from '../config/config.js';
import type { JobData } from '../store/job.js';
import { codeSpan } from './markdown.js';
import type { ParsedResult } from './resultFile.js';

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** The EESSI bot's row date, `%b %d %X %Z %Y` in UTC, e.g. `Nov 24 23:33:36 UTC 2026`. */
export function formatRowDate(d: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  return `${MONTHS[d.getUTCMonth()]} ${pad(d.getUTCDate())} ${time} UTC ${d.getUTCFullYear()}`;
}

/** `logTail`: the failed job's log tail block (domain/logTail.ts), shown below the table. */
export function renderJobComment(data: JobData, relativeJobDir: string, logTail?: string): string {
  const t = data.target;
  const withAccel = (accel?: string) => (accel ? `&nbsp;and accelerator ${codeSpan(accel)}` : '');
  const lines = [
    `New job on instance ${codeSpan(data.instance)} for repository ${codeSpan(t.repoId)}`,
    `Building on: ${codeSpan(t.onArch)}${withAccel(t.onAccel)} (node type ${codeSpan(t.nodeType)})`,
    `Building for: ${codeSpan(t.forArch)}${withAccel(t.forAccel)}`,
    `Job dir: ${codeSpan(relativeJobDir, 400)}`,
  ];
  if (data.node_cpu_model) lines.push(`Node CPU: ${codeSpan(data.node_cpu_model)}`);
  if (data.head_sha) {
    lines.push(
      `Built from: ${codeSpan(data.head_sha.slice(0, 12))} merged into ${codeSpan((data.base_sha ?? '').slice(0, 12))}`,
    );
  }
  if (data.stale) {
    lines.push(
      `:warning: built from ${codeSpan((data.head_sha ?? '?').slice(0, 12))}, superseded by ${codeSpan(data.stale.superseded_by.slice(0, 12))}`,
    );
  }
  lines.push('', '|date|job status|comment|', '|----------|----------|------------------------|');
  for (const r of data.rows) lines.push(`|${r.at}|${r.status}|${r.comment}|`);
  if (logTail) lines.push('', logTail);
  return lines.join('\n');
}

/** A final row of the job comment (see `finalState`); `key` makes it idempotent. */
export interface FinalRow {
  key: string;
  status: string;
  comment: string;
}

/**
 * Pure: how a job that left the scheduler ended, as its stage and the final rows of its comment. A job
 * that ran to its end (COMPLETED, FAILED) shows its result and test files; one that was ended early
 * shows why (who or what cancelled it, the time limit it hit, ...) and its result files only if they
 * say something. `timeLimit` is the job's time limit when it is known.
 */
export function finalState(
  data: Pick<JobData, 'cancel_requested'>,
  obs: { state: string; exitCode?: string; reason?: string },
  results: { result: ParsedResult; test: ParsedResult },
  timeLimit?: string,
): { stage: 'finished' | 'cancelled'; rows: FinalRow[] } {
  // A final reason comes from the local backend only (a job that tampered with the runner's files).
  const said = obs.reason ? `; ${obs.reason}` : '';
  const scheduler = `<sub>(scheduler: ${codeSpan(`${obs.state}, exit code ${obs.exitCode ?? '?'}${said}`)})</sub>`;
  const state = obs.state.trim().split(/\s+/)[0] ?? '';
  const stage = state === 'CANCELLED' ? 'cancelled' : 'finished';
  // FINISHED: ended on its own, but the scheduler did not say how (PBS without an exit status).
  if (state === 'COMPLETED' || state === 'FAILED' || state === 'FINISHED') {
    return {
      stage,
      rows: [
        { key: 'finished', status: 'finished', comment: `${results.result.descriptionHtml} ${scheduler}` },
        { key: 'test', status: 'test result', comment: results.test.descriptionHtml },
      ],
    };
  }
  const { status, why } = endedEarly(state, data.cancel_requested, timeLimit);
  const says = (r: ParsedResult) => r.summary.status !== 'UNKNOWN' || r.summary.description !== '';
  const result = says(results.result) ? `<br/>${results.result.descriptionHtml}` : '';
  const rows: FinalRow[] = [{ key: 'finished', status, comment: `${why}${result} ${scheduler}` }];
  if (says(results.test))
    rows.push({ key: 'test', status: 'test result', comment: results.test.descriptionHtml });
  return { stage, rows };
}

function endedEarly(
  state: string,
  cancelRequested: string | undefined,
  timeLimit: string | undefined,
): { status: string; why: string } {
  switch (state) {
    case 'CANCELLED':
      return {
        status: 'cancelled',
        why: cancelRequested ? cancelReasonText(cancelRequested) : 'cancelled outside the bot',
      };
    case 'TIMEOUT':
      return {
        status: 'timed out',
        why: timeLimit
          ? `the job hit its time limit of ${codeSpan(timeLimit)}`
          : 'the job hit its time limit',
      };
    case 'OUT_OF_MEMORY':
      return { status: 'out of memory', why: 'the job ran out of memory' };
    case 'NODE_FAIL':
      return { status: 'node failure', why: 'a node the job ran on failed' };
    default:
      return { status: 'ended', why: `the scheduler ended the job as ${codeSpan(state || '?')}` };
  }
}

/** Scheduler states that say the machine failed the job, not the build. */
const INFRA_STATES = new Set(['NODE_FAIL', 'BOOT_FAIL', 'PREEMPTED']);

/**
 * Pure: the infrastructure failure a resubmission may fix (build.infra_retries), or undefined. A job that
 * ended as FAILED without ever writing its output file failed before the job script started. A result
 * file that says FAILURE is a build failure, and is never retried.
 */
export function infraFailure(
  state: string,
  results: { result: ParsedResult },
  outputWritten: boolean,
): string | undefined {
  if (results.result.summary.status === 'FAILURE') return undefined;
  const s = state.trim().split(/\s+/)[0] ?? '';
  if (INFRA_STATES.has(s)) return s;
  if (s === 'FAILED' && !outputWritten) return 'a failure before the job script started';
  return undefined;
}

/**
 * Pure: the cancel reasons the bot records (`cancelJob`), in words: "cancelled by <login>" (`bot:
 * cancel`), "superseded by <job dir>" (a new build of the same target), "superseded by <commit>" (a new
 * push), "PR merged" and "PR closed" (cleanup). Anything else is shown as it is.
 */
export function cancelReasonText(reason: string): string {
  const by = /^cancelled by (\S+)$/.exec(reason);
  if (by) return `cancelled by ${codeSpan(by[1]!)} (${codeSpan('bot: cancel')})`;
  const superseded = /^superseded by (\S+)$/.exec(reason);
  if (superseded) {
    const what = superseded[1]!;
    return /^[0-9a-f]{7,40}$/.test(what)
      ? `cancelled: superseded by the new push ${codeSpan(what)}`
      : `cancelled: superseded by the job in ${codeSpan(what, 400)}`;
  }
  if (reason === 'PR merged') return 'cancelled because the PR was merged';
  if (reason === 'PR closed') return 'cancelled because the PR was closed';
  return `cancelled: ${codeSpan(reason)}`;
}

/**
 * Pure: the row comment of a job cancelled before it was submitted, worded as every other
 * cancellation (cancelReasonText), e.g. "cancelled before submission: superseded by the job in ...".
 */
export function cancelledBeforeSubmissionText(reason: string): string {
  return cancelReasonText(reason).replace(/^cancelled/, 'cancelled before submission');
}

/** Pure: a cancel reason (cancelReasonText's) in a few words, for the `bot: status` table. */
function shortCancelReason(reason: string): string {
  const by = /^cancelled by (\S+)$/.exec(reason);
  if (by) return `by ${codeSpan(by[1]!)}`;
  const superseded = /^superseded by (\S+)$/.exec(reason);
  if (superseded) {
    const what = superseded[1]!;
    return /^[0-9a-f]{7,40}$/.test(what)
      ? `superseded by the push ${codeSpan(what.slice(0, 10))}`
      : `superseded by ${codeSpan(what, 120)}`;
  }
  if (reason === 'PR merged') return 'the PR was merged';
  if (reason === 'PR closed') return 'the PR was closed';
  return codeSpan(reason, 80);
}

/**
 * Pure: why a job ended early, in a few words for the `bot: status` table: who or what cancelled it
 * ("by `alice`", "superseded by ...", "the PR was closed"), or how the scheduler ended it ("timed
 * out", "out of memory", "node failure"). Undefined for a job that is not final or ran to its end.
 */
export function endedEarlyReason(
  stage: string,
  data: Pick<JobData, 'cancel_requested' | 'scheduler_state'>,
): string | undefined {
  if (stage === 'cancelled')
    return data.cancel_requested ? shortCancelReason(data.cancel_requested) : 'outside the bot';
  if (stage !== 'finished' || !data.scheduler_state) return undefined;
  const state = data.scheduler_state.trim().split(/\s+/)[0] ?? '';
  if (['COMPLETED', 'FAILED', 'FINISHED', 'CANCELLED'].includes(state)) return undefined;
  return endedEarly(state, undefined, undefined).status;
}

/** `--time=T`, `--time T`, `-t T` or `-tT`: the last one wins, as in sbatch. */
function timeOption(params: string[]): string | undefined {
  let found: string | undefined;
  params.forEach((p, i) => {
    const m = /^(?:--time=|-t)(.+)$/.exec(p);
    if (m) found = m[1];
    else if ((p === '--time' || p === '-t') && params[i + 1] !== undefined) found = params[i + 1];
  });
  return found;
}

/** Pure: the time limit a job was submitted with, when the backend has one (Slurm: params or default_time). */
export function jobTimeLimit(config: Config, data: Pick<JobData, 'target'>): string | undefined {
  if (config.backend.kind === 'pbs') {
    const p = config.backend.pbs;
    const given = [...p.qsub_params, ...(data.target.pbsParams ?? [])].join(' ');
    return /(?:^|[\s,])walltime=([0-9:]+)/.exec(given)?.[1] ?? p.default_walltime;
  }
  if (config.backend.kind !== 'slurm') return undefined;
  const s = config.backend.slurm;
  return timeOption([...s.sbatch_params, ...data.target.slurmParams]) ?? s.default_time;
}
