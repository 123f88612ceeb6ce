/**
 * A job's check run on its head commit (a commit status with a personal token), brought up to date from
 * the job's state by publishJob. The run is created once: the intent is saved before the POST and the id
 * after, and a retry that finds an intent without an id looks the run up (name and external_id) instead
 * of creating a second. It is written only when its rendered body changed (the sha256 of what was last
 * sent is kept): one write per state change. GitHub refusing for good (an App without the checks
 * permission, say) is logged and not tried again until the job changes: a check run never holds up a
 * job, let alone parks it.
 */
import { createHash } from 'node:crypto';
import { GitHubError, type CheckRunBody, type RepoRef } from '../adapters/github/index.js';
import { secretEnvNames, type Config } from '../config/config.js';
import {
  jobOutcome,
  renderCheckRun,
  renderCommitStatus,
  showsLogTail,
  type JobView,
} from '../domain/checkRun.js';
import { renderLogTail, type LogTail } from '../domain/logTail.js';
import { jobFields } from '../log.js';
import { crashPoint } from '../store/crashPoint.js';
import type { CheckRecord, JobData } from '../store/job.js';
import { openJobFile, readEndOf } from '../store/jobFile.js';
import { workTreeOf } from '../store/workTree.js';
import type { WorkDir } from './context.js';
import { evaluateDeployGate } from './deployGate.js';

type JobWork = WorkDir<JobData>;

/** Bytes read from the end of the Slurm output: more than the 8 KB shown, so secrets cut there are whole. */
const LOG_TAIL_BYTES = 128 * 1024;

export async function syncCheck(work: JobWork): Promise<void> {
  await writeJobCheck(work);
  await syncDeployGate(work);
}

async function writeJobCheck(work: JobWork): Promise<void> {
  const { config, github, logger } = work.deps;
  const data = work.state.data;
  const sha = data.head_sha;
  if (!config.reporting.checks || !sha) return;
  const repo: RepoRef = { owner: data.pr.owner, repo: data.pr.repo, installationId: data.pr.installation_id };
  const job: JobView = { stage: work.state.stage, data };
  const currentHead = !data.stale;
  const surface = github.checkSurface();
  const known = data.check?.surface === surface ? data.check : undefined;
  const body =
    surface === 'statuses'
      ? renderCommitStatus(job, { currentHead })
      : renderCheckRun(job, {
          externalId: work.deps.jobdirs.relative(work.dir),
          currentHead,
          ...(config.reporting.log_tail_lines > 0 && showsLogTail(jobOutcome(job)) && data.job_id
            ? {
                logTail: await readLogTail(work.dir, data.job_id),
                logTailLines: config.reporting.log_tail_lines,
              }
            : {}),
          secrets: secretValues(config),
        });
  const digest = sha256(body);
  if (known?.sent === digest) return;
  try {
    if ('context' in body) {
      await github.createCommitStatus(repo, sha, body);
      await save(work, { surface, sent: digest });
    } else await writeCheckRun(work, repo, sha, body, digest, known);
  } catch (err) {
    if (!(err instanceof GitHubError) || err.transient) throw err;
    logger.warn(
      { ...jobFields(data), err: err.message },
      `GitHub refused the job's ${surface === 'checks' ? 'check run' : 'commit status'}; it is tried again when the job changes`,
    );
    const record = work.state.data.check?.surface === surface ? work.state.data.check : { surface };
    await save(work, { ...record, sent: digest });
  }
}

async function writeCheckRun(
  work: JobWork,
  repo: RepoRef,
  sha: string,
  run: CheckRunBody,
  digest: string,
  known: CheckRecord | undefined,
): Promise<void> {
  const { github } = work.deps;
  let id = known?.id;
  if (id === undefined && known?.intent_at) {
    id = await github.findCheckRun(repo, sha, run.name, run.external_id);
    if (id !== undefined) {
      work.deps.logger.info({ dir: work.dir, id }, 'found the check run a crashed attempt created');
      // What the crashed attempt sent may be what is due now: then there is nothing to write.
      const upToDate = known.creating === digest;
      await save(work, { ...known, id, ...(upToDate ? { sent: digest } : {}) });
      if (upToDate) return;
    }
  }
  if (id === undefined) {
    const intent: CheckRecord = {
      surface: 'checks',
      intent_at: work.deps.now().toISOString(),
      creating: digest,
    };
    await save(work, intent);
    const created = await github.createCheckRun(repo, sha, run);
    crashPoint('after-check-created');
    await save(work, { ...intent, id: created.id, sent: digest });
    return;
  }
  await github.updateCheckRun(repo, id, run);
  await save(work, { ...known, surface: 'checks', id, sent: digest });
}

/**
 * Once the job's run has completed (or changed after that, e.g. superseded by a push), the deploy gate is
 * evaluated again at the PR's head: the job's head, or the one that superseded it. The run's digest is
 * recorded after, so a crash in between evaluates it again rather than never.
 */
async function syncDeployGate(work: JobWork): Promise<void> {
  const data = work.state.data;
  const check = data.check;
  const head = data.stale?.superseded_by ?? data.head_sha;
  if (!head || check?.surface !== 'checks' || check.sent === undefined || check.gated === check.sent) return;
  if (work.deps.config.deploy.require.length === 0) return;
  if (jobOutcome({ stage: work.state.stage, data }).status !== 'completed') return;
  const repo: RepoRef = { owner: data.pr.owner, repo: data.pr.repo, installationId: data.pr.installation_id };
  try {
    await evaluateDeployGate(work.deps, repo, head);
  } catch (err) {
    if (!(err instanceof GitHubError) || err.transient) throw err;
    work.deps.logger.warn(
      { ...jobFields(data), err: err.message },
      'GitHub refused the deploy gate; it is evaluated again when a job completes',
    );
  }
  await save(work, { ...check, gated: check.sent });
}

function save(work: JobWork, check: CheckRecord): Promise<void> {
  return work.update((s) => ({ ...s, data: { ...s.data, check } }));
}

function sha256(body: unknown): string {
  return createHash('sha256').update(JSON.stringify(body)).digest('hex');
}

/** The log tail a failed job's comment shows (see domain/logTail.ts), or undefined. */
export async function jobCommentLogTail(work: JobWork): Promise<string | undefined> {
  const { config } = work.deps;
  const data = work.state.data;
  const lines = config.reporting.log_tail_lines;
  if (lines <= 0 || !data.job_id || !showsLogTail(jobOutcome({ stage: work.state.stage, data })))
    return undefined;
  return renderLogTail(await readLogTail(work.dir, data.job_id), lines, secretValues(config));
}

/** The values of the bot's secret env vars: never shown in a check run. */
export function secretValues(config: Config, env: NodeJS.ProcessEnv = process.env): string[] {
  return secretEnvNames(config)
    .map((name) => env[name]?.trim() ?? '')
    .filter((v) => v !== '');
}

/** The end of `slurm-<id>.out` in the job's work tree, read through a checked handle (the job wrote it). */
async function readLogTail(jobDir: string, jobId: string): Promise<LogTail> {
  const file = `slurm-${jobId}.out`;
  const opened = await openJobFile(workTreeOf(jobDir), file);
  if (!opened.ok) return { file, unread: opened.reason };
  const { text, cut } = await readEndOf(opened, LOG_TAIL_BYTES);
  return { file, text, cutAtStart: cut };
}
