/**
 * The life of one build job. The stages that wait on nothing outside run in one go (the poller chains
 * them: checkout, sbatch, release); the rest move when the scheduler's answer changes:
 *
 *   prepared ──checkout──▶ submitting ──sbatch──▶ submitted ──release──▶ released ──▶ running ──▶ finished
 *        │                     │                                                  └──▶ lost (missing N ticks)
 *        └──▶ failed (checkout)└──▶ cancelled (cancel before submission)
 *
 * Exactly-once submission: the unique submit id is in the state before sbatch is called, and so is
 * a count of sbatch attempts; a job with an earlier attempt asks the backend for that id first, so a
 * crash right after sbatch (before the job id was saved) finds the job instead of submitting a
 * second one. The job comment is not part of any stage: see publishJob.
 */
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { JobObservation } from '../adapters/schedulers/types.js';
import type { Config } from '../config/config.js';
import { mkdirDurable, writeFileAtomic } from '../store/fsutil.js';
import { ACTIVE_JOB_STAGES, addRow, type JobData, type JobRow } from '../store/job.js';
import { cpuModelOf, readNodeFiles, readResultFiles } from '../domain/resultFile.js';
import { readState, transition, writeState, type DirState } from '../store/state.js';
import {
  cancelledBeforeSubmissionText,
  renderJobComment,
  formatRowDate,
  finalState,
  infraFailure,
  jobTimeLimit,
} from '../domain/jobComment.js';
import { prepareJobCheckout, CheckoutError } from '../adapters/checkout.js';
import { crashPoint } from '../store/crashPoint.js';
import { batchSettings, instanceJobName, submitParams } from '../adapters/schedulers/index.js';
import { jobScriptPath } from '../adapters/jobScripts.js';
import { openWorkTree, sealWorkTree, workTreeOf } from '../store/workTree.js';
import type { PullRequestRef, StageDeps, WorkDir } from './context.js';
import { jobCommentLogTail, syncCheck } from './jobCheck.js';
import { hasLimits, slotFor, type SlotJob } from '../domain/limits.js';
import { deployRecordsDir, readDeployRecords } from '../store/deployRecords.js';
import { prClosure } from './cleanup.js';
import { syncSummaryComment } from './summaryComment.js';
import { jobFields } from '../log.js';

/** Where a job's `_bot_job<ID>.lscpu/.ulimits/.os` are kept, in the job dir (outside its work tree). */
export const NODE_DIR_NAME = 'node';

export const JOB_COMMENT_KEY = 'job';

type JobWork = WorkDir<JobData>;

export function prRefOfJob(data: JobData): PullRequestRef {
  return {
    repo: { owner: data.pr.owner, repo: data.pr.repo, installationId: data.pr.installation_id },
    number: data.pr.number,
  };
}

export async function advanceJob(
  work: JobWork,
  observations: Map<string, JobObservation> | undefined,
): Promise<void> {
  const data = work.state.data;
  if (
    data.cancel_requested &&
    (work.state.stage === 'prepared' ||
      work.state.stage === 'queued' ||
      (work.state.stage === 'submitting' && !data.job_id))
  ) {
    const found =
      work.state.stage === 'submitting' && data.submit_attempts !== 0
        ? await work.deps.backend.findBySubmitId(data.submit_id, workTreeOf(work.dir))
        : undefined;
    if (!found) {
      await finish(
        work,
        'cancelled',
        row(work, 'cancelled', 'cancelled', cancelledBeforeSubmissionText(data.cancel_requested)),
      );
      return;
    }
    await work.deps.backend.cancel(found, workTreeOf(work.dir));
    await work.update((s) => ({ ...s, data: { ...s.data, job_id: found } }));
  }
  switch (work.state.stage) {
    case 'prepared':
    case 'queued':
      return await checkout(work);
    case 'submitting':
      return await submit(work);
    case 'submitted':
      return await release(work);
    case 'released':
    case 'running':
      return await follow(work, observations);
    default:
    // Final stages only get their comment brought up to date (a stale note, deploy rows): publishJob.
  }
}

async function checkout(work: JobWork): Promise<void> {
  for (const rel of work.state.data.wait_for ?? []) {
    const other = await readState<JobData>(work.deps.jobdirs.resolve(rel));
    if (other && ACTIVE_JOB_STAGES.has(other.stage)) return; // queued behind an active job: next tick
  }
  if (await waitForPr(work)) return;
  if (await waitForSlot(work)) return;
  try {
    const shas = await prepareJobCheckout(work);
    await work.update((s) =>
      transition(
        { ...s, data: { ...s.data, ...shas, submit_attempts: 0 } },
        'submitting',
        work.deps.now(),
        `merge ${shas.merge_sha}`,
      ),
    );
  } catch (err) {
    if (!(err instanceof CheckoutError)) throw err;
    // A merge conflict or an unreachable repository will not heal by retrying: report and stop.
    await work.postComment(
      prRefOfJob(work.state.data),
      'checkout-failed',
      err.renderComment(work.deps.config.instance),
      'minimal',
    );
    await work.update((s) =>
      transition(
        { ...s, last_error: { message: err.message, at: work.deps.now().toISOString() } },
        'failed',
        work.deps.now(),
        err.message,
      ),
    );
    work.deps.logger.info(
      { ...jobFields(work.state.data), outcome: 'failed', err: err.message },
      'job finished: its checkout failed',
    );
    await work.deps.jobdirs.dequeue(work.dir);
  }
}

async function submit(work: JobWork): Promise<void> {
  const { backend, config } = work.deps;
  const data = work.state.data;
  // Only a job whose earlier sbatch may have gone through (a crash before its id was saved) needs
  // a look-up first; a first submission goes straight to sbatch.
  let jobId =
    data.job_id ??
    (data.submit_attempts !== 0
      ? await backend.findBySubmitId(data.submit_id, workTreeOf(work.dir))
      : undefined);
  if (!jobId) {
    await openWorkTree(work.dir, await work.deps.account.user());
    await work.update((s) => ({
      ...s,
      data: { ...s.data, submit_attempts: (s.data.submit_attempts ?? 0) + 1 },
    }));
    const submitted = await backend.submit({
      workTree: workTreeOf(work.dir),
      script: jobScriptPath(work.deps.config),
      jobName: instanceJobName(work.deps.config),
      submitId: data.submit_id,
      params: submitParams(config, data.target),
    });
    crashPoint('after-submit');
    jobId = submitted.jobId;
  }
  const id = jobId;
  const note = submitsHeld(config)
    ? `job id ${code(id)} awaits release by job manager`
    : `job id ${code(id)} will be eligible to start in about ${batchSettings(config).delay_begin_seconds} seconds`;
  await work.update((s) =>
    transition(
      {
        ...s,
        data: {
          ...s.data,
          job_id: id,
          submitted_at: work.deps.now().toISOString(),
          rows: addRow(s.data.rows, row(work, attemptKey(s.data, 'submitted'), 'submitted', note)),
        },
      },
      'submitted',
      work.deps.now(),
      `job ${id}`,
    ),
  );
  work.deps.logger.info(jobFields(work.state.data), 'job submitted');
}

async function release(work: JobWork): Promise<void> {
  const { backend, config } = work.deps;
  const jobId = work.state.data.job_id!;
  const holdRelease = submitsHeld(config);
  if (work.state.data.cancel_requested) {
    // Cancelled while held: never release it (scontrol would fail on the ended job); the scheduler's
    // final CANCELLED state is picked up like any other.
    await work.update((s) => transition(s, 'released', work.deps.now(), 'not released: cancel requested'));
    return;
  }
  if (holdRelease && !(await backend.release(jobId, workTreeOf(work.dir)))) return; // local backend at max_parallel: next tick
  const text = !holdRelease
    ? 'job awaits its begin time'
    : config.backend.kind === 'local'
      ? 'job was started by the local backend'
      : `job awaits launch by ${config.backend.kind === 'pbs' ? 'PBS' : 'Slurm'} scheduler`;
  await work.update((s) =>
    transition(
      {
        ...s,
        data: {
          ...s.data,
          rows: addRow(s.data.rows, row(work, attemptKey(s.data, 'released'), 'released', text)),
        },
      },
      'released',
      work.deps.now(),
    ),
  );
}

async function follow(work: JobWork, observations: Map<string, JobObservation> | undefined): Promise<void> {
  if (!observations) return; // the scheduler could not be asked this tick: change nothing
  const { config } = work.deps;
  const jobId = work.state.data.job_id!;
  const obs = observations.get(jobId);
  if (!obs) {
    const missing = (work.state.data.missing_ticks ?? 0) + 1;
    if (missing < batchSettings(config).missing_ticks_before_lost) {
      await work.update((s) => ({ ...s, data: { ...s.data, missing_ticks: missing } }));
      return;
    }
    if (await retryInfraFailure(work, 'the job was lost')) return;
    await finish(
      work,
      'lost',
      row(
        work,
        'lost',
        'lost',
        `job ${code(jobId)} vanished from the scheduler (not in squeue nor sacct for ${missing} polls)`,
      ),
    );
    return;
  }
  if (work.state.data.missing_ticks)
    await work.update((s) => ({ ...s, data: { ...s.data, missing_ticks: 0 } }));
  if (!obs.final) {
    if (obs.state === 'RUNNING' && work.state.stage !== 'running') {
      await work.update((s) =>
        transition(
          {
            ...s,
            data: {
              ...s.data,
              started_at: work.deps.now().toISOString(),
              rows: addRow(
                s.data.rows,
                row(work, attemptKey(s.data, 'running'), 'running', `job ${code(jobId)} is running`),
              ),
            },
          },
          'running',
          work.deps.now(),
        ),
      );
      work.deps.logger.info(jobFields(work.state.data), 'job started');
    }
    return;
  }
  await sealWorkTree(work.dir); // nothing the job left behind may change what is read next
  const results = await readResultFiles(work.dir, jobId);
  const outputWritten = await fs.lstat(path.join(workTreeOf(work.dir), `slurm-${jobId}.out`)).then(
    () => true,
    () => false,
  );
  const infra = infraFailure(obs.state, results, outputWritten);
  if (infra && (await retryInfraFailure(work, infra))) return;
  const node = await readNodeFiles(work.dir, jobId);
  // Copied out of the work tree into the bot's own record of the job, where nothing from the job can change them.
  if (Object.keys(node).length > 0) await mkdirDurable(path.join(work.dir, NODE_DIR_NAME));
  for (const [kind, text] of Object.entries(node))
    await writeFileAtomic(path.join(work.dir, NODE_DIR_NAME, `_bot_job${jobId}.${kind}`), text);
  const cpuModel = cpuModelOf(node.lscpu);
  const final = finalState(work.state.data, obs, results, jobTimeLimit(work.deps.config, work.state.data));
  const rows = final.rows.map((r) => row(work, r.key, r.status, r.comment));
  const stage = final.stage;
  await work.update((s) => ({
    ...s,
    data: {
      ...s.data,
      scheduler_state: obs.state,
      ...(obs.exitCode ? { exit_code: obs.exitCode } : {}),
      ...(cpuModel ? { node_cpu_model: cpuModel } : {}),
      result: results.result.summary,
      test: results.test.summary,
      finished_at: work.deps.now().toISOString(),
    },
  }));
  await finish(work, stage, ...rows);
}

/** `after:#N`: true while PR N of the same repository has neither a deploy nor a close (one row says so). */
async function waitForPr(work: JobWork): Promise<boolean> {
  const n = work.state.data.after_pr;
  if (n === undefined) return false;
  const { pr } = work.state.data;
  const records = await readDeployRecords(deployRecordsDir(work.deps.jobdirs.root, pr.owner, pr.repo, n));
  if (records.some((r) => r.record.status === 'uploaded')) return false;
  if (await prClosure(work.deps, { repo: prRefOfJob(work.state.data).repo, number: n })) return false;
  if (work.state.data.rows.some((r) => r.key === 'after')) return true;
  const waiting = row(work, 'after', 'queued', `waiting for PR #${n} to be deployed or closed`);
  await work.update((s) => ({ ...s, data: { ...s.data, rows: addRow(s.data.rows, waiting) } }));
  return true;
}

/** `limits:`: this instance's jobs that hold a slot or wait for one, as their state files say now. */
export async function readSlotJobs(deps: Pick<StageDeps, 'config' | 'jobdirs'>): Promise<SlotJob[]> {
  const { config, jobdirs } = deps;
  const jobs: SlotJob[] = [];
  for (const dir of await jobdirs.pending()) {
    const s = await readState<JobData>(dir).catch(() => undefined);
    if (s?.kind !== 'job' || s.data.instance !== config.instance || !ACTIVE_JOB_STAGES.has(s.stage)) continue;
    const d = s.data;
    jobs.push({
      id: jobdirs.relative(dir),
      pr: `${d.pr.owner}/${d.pr.repo}#${d.pr.number}`,
      gpu: d.target.onAccel !== undefined,
      since: s.history[0]?.at ?? '',
      active: s.stage !== 'prepared' && s.stage !== 'queued',
    });
  }
  return jobs;
}

/**
 * `limits:`: true while the job must wait for a free slot; it then waits in `queued`, with a row that
 * says how many wait before it (written again only when that number changes). The poller takes the
 * jobs' states once per tick, after all tracking (deps.slotJobs): every waiting job then decides on
 * the same picture, so first come first served holds even with pull requests advanced side by side.
 * (A waiting job that gets a slot counts as holding it in that picture, before and after it moves.)
 */
async function waitForSlot(work: JobWork): Promise<boolean> {
  const { config, jobdirs } = work.deps;
  if (!hasLimits(config.limits)) return false;
  const jobs = await (work.deps.slotJobs ?? (() => readSlotJobs(work.deps)))();
  const slot = slotFor(config.limits, jobs, jobdirs.relative(work.dir));
  if (slot.free) return false;
  const comment = `waiting for a free slot (${slot.ahead} ahead)`;
  const shown = work.state.data.rows.find((r) => r.key === 'queued');
  if (work.state.stage === 'queued' && shown?.comment === comment) return true;
  const queuedRow = row(work, 'queued', 'queued', comment);
  await work.update((s) => {
    const rows = shown
      ? s.data.rows.map((r) => (r.key === 'queued' ? queuedRow : r))
      : addRow(s.data.rows, queuedRow);
    const data = { ...s.data, rows };
    return s.stage === 'queued'
      ? { ...s, data }
      : transition({ ...s, data }, 'queued', work.deps.now(), comment);
  });
  return true;
}

/**
 * Resubmit a job that the infrastructure failed, up to build.infra_retries times: back to `submitting`
 * with a fresh submit id (saved before sbatch, so exactly-once holds for the new submission too).
 */
async function retryInfraFailure(work: JobWork, what: string): Promise<boolean> {
  const max = work.deps.config.build.infra_retries;
  const done = work.state.data.infra_retries ?? 0;
  if (done >= max || work.state.data.cancel_requested) return false;
  const n = done + 1;
  const failedId = work.state.data.job_id!;
  await work.update((s) => {
    const data: JobData = {
      ...s.data,
      infra_retries: n,
      infra_failed_job_ids: [...(s.data.infra_failed_job_ids ?? []), failedId],
      submit_id: randomUUID(),
      submit_attempts: 0,
      rows: addRow(
        s.data.rows,
        row(work, `infra-retry-${n}`, 'resubmitted', `resubmitted after ${what} (${n} of ${max})`),
      ),
    };
    delete data.job_id;
    delete data.missing_ticks;
    delete data.metadata_written_for; // the new job gets its own _bot_job<ID>.metadata
    return transition(
      { ...s, data },
      'submitting',
      work.deps.now(),
      `job ${failedId}: ${what}, resubmitting`,
    );
  });
  work.deps.logger.info(
    { ...jobFields(work.state.data), failed_job: failedId, why: what },
    'job resubmitted',
  );
  return true;
}

/** Row keys of a resubmitted job's later rows, so that they are added again (rows are added once per key). */
function attemptKey(data: JobData, key: string): string {
  return data.infra_retries ? `${key}-${data.infra_retries}` : key;
}

async function finish(work: JobWork, stage: string, ...rows: JobRow[]): Promise<void> {
  await sealWorkTree(work.dir);
  await work.update((s) => {
    let all = s.data.rows;
    for (const r of rows) all = addRow(all, r);
    return transition({ ...s, data: { ...s.data, rows: all } }, stage, work.deps.now());
  });
  work.deps.logger.info(
    {
      ...jobFields(work.state.data),
      outcome: stage,
      ...(work.state.data.result ? { result: work.state.data.result.status } : {}),
    },
    'job finished',
  );
}

/**
 * What the PR (the job comment, the check run) and the job's metadata files say about the job, brought
 * up to date. The poller calls this after the tick's stage work, so that no comment (paced by GitHub's
 * limits) ever holds up a submission; it renders the state as it is by then.
 */
export async function publishJob(work: JobWork): Promise<void> {
  const perJob = work.deps.config.reporting.comments === 'per_job';
  if (perJob && work.state.data.rows.length > 0) await syncComment(work);
  if (work.deps.config.reporting.comments === 'summary') await syncSummaryComment(work);
  await syncCheck(work);
  const { job_id: jobId, metadata_written_for: writtenFor } = work.state.data;
  const commentId = String(work.state.comments[JOB_COMMENT_KEY]?.id ?? '');
  // Written while the job is active; the work tree of a final job is sealed and stays as it was.
  if (jobId !== undefined && ACTIVE_JOB_STAGES.has(work.state.stage) && writtenFor !== commentId) {
    await writeMetadataFiles(work);
    await work.update((s) => ({ ...s, data: { ...s.data, metadata_written_for: commentId } }));
  }
}

/** Post the job comment if it is not there yet, or edit it when its rendered body changed. */
async function syncComment(work: JobWork): Promise<void> {
  const pr = prRefOfJob(work.state.data);
  const body = renderJobComment(
    work.state.data,
    work.deps.jobdirs.relative(work.dir),
    await jobCommentLogTail(work),
  );
  if (work.state.comments[JOB_COMMENT_KEY]?.id === undefined) {
    const id = await work.postComment(pr, JOB_COMMENT_KEY, body, 'minimal');
    if (id !== undefined) await work.update((s) => ({ ...s, data: { ...s.data, comment_body: body } }));
    return;
  }
  if (work.state.data.comment_body === body) return;
  await work.editComment(pr, JOB_COMMENT_KEY, body);
  await work.update((s) => ({ ...s, data: { ...s.data, comment_body: body } }));
}

export interface PrJob {
  dir: string;
  state: DirState<JobData>;
}

/** Every job directory of the PR (all months, events and runs) with its state; other dirs are skipped. */
export async function prJobs(deps: StageDeps, pr: PullRequestRef): Promise<PrJob[]> {
  const jobs: PrJob[] = [];
  for (const dir of await deps.jobdirs.prJobDirs(pr.repo.owner, pr.repo.repo, pr.number)) {
    const state = await readState<JobData>(dir);
    if (state?.kind === 'job') jobs.push({ dir, state });
  }
  return jobs;
}

/** Cancel a job from a command, a new push or cleanup. Active jobs end as `cancelled` once the scheduler says so. */
export async function cancelJob(deps: StageDeps, dir: string, reason: string): Promise<void> {
  const state = await readState<JobData>(dir);
  if (!state || state.kind !== 'job') return;
  await writeState(dir, { ...state, data: { ...state.data, cancel_requested: reason } });
  if (state.data.job_id) await deps.backend.cancel(state.data.job_id, workTreeOf(dir));
  await deps.jobdirs.enqueue(dir);
}

/** Jobs start held and the bot releases them: always on the local backend, on Slurm with hold_release. */
function submitsHeld(config: Config): boolean {
  return config.backend.kind === 'local' || batchSettings(config).handover === 'hold_release';
}

function row(work: JobWork, key: string, status: string, comment: string): JobRow {
  return { key, at: formatRowDate(work.deps.now()), status, comment };
}

function code(s: string): string {
  return `\`${s.replace(/`/g, '')}\``;
}

/** `_bot_job<ID>.metadata` as the EESSI bot writes it, plus our richer `job.json`. */
async function writeMetadataFiles(work: JobWork): Promise<void> {
  const d = work.state.data;
  const commentId = work.state.comments[JOB_COMMENT_KEY]?.id ?? '';
  const owner = d.job_owner ? `job_owner = ${d.job_owner}\n` : '';
  const ini = `[PR]\nrepo = ${d.pr.owner}/${d.pr.repo}\npr_number = ${d.pr.number}\npr_comment_id = ${commentId}\n${owner}`;
  // In the work tree, where the EESSI job scripts look for it; the bot never reads it back.
  await writeFileAtomic(path.join(workTreeOf(work.dir), `_bot_job${d.job_id}.metadata`), ini);
  const meta = {
    pr: d.pr,
    instance: d.instance,
    node_type: d.target.nodeType,
    repo_id: d.target.repoId,
    job_owner: d.job_owner ?? null,
    head_sha: d.head_sha,
    base_sha: d.base_sha,
    merge_sha: d.merge_sha,
    backend: d.backend,
    config_digest: d.config_digest ?? null,
    job_id: d.job_id,
    comment_id: commentId || null,
  };
  await writeFileAtomic(path.join(work.dir, 'job.json'), JSON.stringify(meta, null, 2) + '\n');
}
