/**
 * Deploy (the `bot:deploy` label or `bot: deploy`): sign and upload the artefacts of this PR's
 * successful jobs on this instance.
 *
 * - Refused while a build of the PR is active; artefacts built from an older head are not uploaded.
 * - `deploy.policy`: `all` (every successful job), `latest` (per build target, the newest job), `once`
 *   (never a target twice; recorded in `jobdirs/uploads/<owner>/<repo>/pr_<N>/`, see
 *   src/store/deployRecords.ts; `hpcbot deploy forget` removes a record), or `none`.
 * - The upload log entry is created as an intent before the upload, so a re-run after a crash
 *   finishes that upload instead of starting another target's; uploads themselves are idempotent.
 * - A re-run of the same deploy (after a crash) reports what it had already uploaded as uploaded.
 * - Artefacts are read from the job's work tree only as plain files (no links); see deployArtefact.
 * - Every artefact gets an `uploaded` or `not uploaded` row in its job's comment.
 */
import path from 'node:path';
import { createFileExclusive, mkdirDurable, readJsonIfExists, writeFileAtomic } from '../store/fsutil.js';
import {
  deployRecordFile,
  deployRecordsDir,
  type DeployOutcome as Outcome,
  type DeployRecord,
} from '../store/deployRecords.js';
import { ACTIVE_JOB_STAGES, addRow, type JobData } from '../store/job.js';
import { formatRowDate } from '../domain/jobComment.js';
import { codeSpan } from '../domain/markdown.js';
import { hasPermission } from '../domain/permissions.js';
import { readState, writeState, type DirState } from '../store/state.js';
import { createUploader, deployArtefact } from '../adapters/uploaders/index.js';
import { workTreeOf } from '../store/workTree.js';
import { buildTargetKey } from '../domain/targets.js';
import type { EventContext } from './event.js';
import { prJobs, type PrJob } from './job.js';
import { gateRefusal } from './deployGate.js';
import { jobFields } from '../log.js';
import { secretValues } from './jobCheck.js';

/**
 * `<jobdir>/deploy/`: what deploy writes for a job (signatures, provenance, metadata). It is in the job
 * dir, which only the bot writes, not in the work tree the build (PR code) wrote.
 */
const DEPLOY_DIR_NAME = 'deploy';

const targetKey = (d: JobData) => buildTargetKey(d.target);

/**
 * Pure: which successful jobs the policy selects. `all`: every one; `latest` and `once`: the newest per
 * build target (for `once`, the upload log then refuses a target that was deployed before).
 */
export function selectJobs<T extends { state: DirState<JobData> }>(
  jobs: T[],
  policy: 'all' | 'latest' | 'once',
): T[] {
  if (policy === 'all') return jobs;
  const newest = new Map<string, T>();
  for (const job of jobs) {
    const key = targetKey(job.state.data);
    const prev = newest.get(key);
    if (!prev || (job.state.data.finished_at ?? '') > (prev.state.data.finished_at ?? ''))
      newest.set(key, job);
  }
  return jobs.filter((j) => newest.get(targetKey(j.state.data)) === j);
}

export async function startDeploy(ctx: EventContext, sender: string): Promise<string> {
  const { config, github, jobdirs } = ctx.work.deps;
  if (!(await hasPermission(github, ctx.pr.repo, sender, config.permissions.deploy))) {
    return `account ${codeSpan(sender)} has NO permission to deploy`;
  }
  const policy = config.deploy.policy;
  if (policy === 'none')
    return `deploy.policy is \`none\` on instance ${codeSpan(config.instance)}: nothing is deployed`;

  const jobs = await prJobs(ctx.work.deps, ctx.pr);
  const active = jobs.filter((j) => ACTIVE_JOB_STAGES.has(j.state.stage));
  if (active.length > 0) {
    return `deploy refused: ${active.length} build job(s) of this PR are still active; deploy again when they have finished`;
  }
  const successful = jobs.filter(
    (j) => j.state.stage === 'finished' && j.state.data.result?.status === 'SUCCESS',
  );
  if (successful.length === 0)
    return 'deploy: this PR has no successful build jobs on this instance, nothing to upload';
  const head = (await github.getPullRequest(ctx.pr.repo, ctx.pr.number)).headSha;
  const gate = await gateRefusal(ctx.work.deps, ctx.pr.repo, head);
  if (gate) return gate;

  const lines: string[] = [];
  const stale = successful.filter((j) => j.state.data.head_sha !== head);
  for (const job of stale) {
    const built = (job.state.data.head_sha ?? '?').slice(0, 12);
    const reason = `built from ${built}, but the PR head is now ${head.slice(0, 12)}; rebuild first`;
    await addDeployRows(
      ctx,
      job,
      job.state.data.result!.artefacts.map((a) => ({ artefact: a, uploaded: false, text: reason })),
    );
    ctx.work.deps.logger.info(
      { ...jobFields(job.state.data), artefacts: job.state.data.result!.artefacts, detail: reason },
      'artefacts not deployed',
    );
    lines.push(`- ${codeSpan(jobdirs.relative(job.dir))}: not deployed, ${reason}`);
  }
  const current = selectJobs(
    successful.filter((j) => j.state.data.head_sha === head),
    policy,
  );
  const uploader = await createUploader(config);
  for (const job of current) {
    const outcomes = await deployJob(ctx, job, policy, uploader);
    await addDeployRows(ctx, job, outcomes);
    for (const o of outcomes) {
      ctx.work.deps.logger.info(
        { ...jobFields(job.state.data), artefact: o.artefact, detail: o.text },
        o.uploaded ? 'artefact deployed' : 'artefact not deployed',
      );
      lines.push(`- ${codeSpan(o.artefact)}: ${o.uploaded ? 'uploaded' : 'not uploaded'} (${o.text})`);
    }
  }
  return [`deploy with policy \`${policy}\` on instance ${codeSpan(config.instance)}:`, ...lines].join('\n');
}

async function deployJob(
  ctx: EventContext,
  job: PrJob,
  policy: 'all' | 'latest' | 'once',
  uploader: Awaited<ReturnType<typeof createUploader>>,
): Promise<Outcome[]> {
  const { config, jobdirs, now } = ctx.work.deps;
  const d = job.state.data;
  const logDir = deployRecordsDir(jobdirs.root, d.pr.owner, d.pr.repo, d.pr.number);
  const logFile = deployRecordFile(logDir, targetKey(d));
  const rel = jobdirs.relative(job.dir);
  await mkdirDurable(logDir);
  const intent: DeployRecord = {
    target: targetKey(d),
    job_dir: rel,
    deploy: `${jobdirs.relative(ctx.work.dir)}#${ctx.gen}`,
    status: 'uploading',
    at: now().toISOString(),
  };
  if (!(await createFileExclusive(logFile, JSON.stringify(intent) + '\n'))) {
    const logged = await readJsonIfExists<DeployRecord>(logFile);
    // This very deploy uploaded the job before it was interrupted (at a later job): its own success.
    if (ownUpload(logged, intent)) return logged.outcomes;
    if (policy === 'once' && logged?.status === 'uploaded') {
      const text = `this target was deployed before, from ${logged.job_dir} (deploy.policy once)`;
      return d.result!.artefacts.map((artefact) => ({ artefact, uploaded: false, text }));
    }
    // An interrupted upload (status uploading) is finished now; other policies record this upload.
    await writeFileAtomic(logFile, JSON.stringify(intent) + '\n');
  }
  const outcomes: Outcome[] = [];
  const log =
    config.deploy.upload_logs && d.job_id
      ? { name: `slurm-${d.job_id}.out`, secrets: secretValues(config) }
      : undefined;
  for (const artefact of d.result!.artefacts) {
    // The name comes from a PR-controlled script; deployArtefact takes only a plain file in the work tree.
    const result = await deployArtefact(config, uploader, {
      name: artefact,
      workTree: workTreeOf(job.dir),
      outDir: path.join(job.dir, DEPLOY_DIR_NAME),
      job: d,
      repoId: d.target.repoId,
      ...(log ? { log } : {}),
      ...(job.state.comments.job?.id !== undefined ? { prCommentId: job.state.comments.job.id } : {}),
    });
    const logNote = result.logProblem ? `; log not uploaded: ${result.logProblem}` : '';
    outcomes.push(
      result.uploaded
        ? { artefact, uploaded: true, text: `${result.signing} to ${result.url}${logNote}` }
        : { artefact, uploaded: false, text: result.reason },
    );
  }
  if (outcomes.every((o) => o.uploaded)) {
    await writeFileAtomic(
      logFile,
      JSON.stringify({ ...intent, status: 'uploaded', at: now().toISOString(), outcomes }) + '\n',
    );
  }
  return outcomes;
}

/** Pure: the log entry records that the deploy of `intent` already uploaded this same job. */
function ownUpload(
  logged: DeployRecord | undefined,
  intent: DeployRecord,
): logged is DeployRecord & { outcomes: Outcome[] } {
  return (
    logged?.status === 'uploaded' &&
    logged.deploy === intent.deploy &&
    logged.job_dir === intent.job_dir &&
    Array.isArray(logged.outcomes)
  );
}

/** One row per artefact in the job's comment; keyed by this deploy event, so a retry adds none twice. */
async function addDeployRows(ctx: EventContext, job: PrJob, outcomes: Outcome[]): Promise<void> {
  const fresh = await readState<JobData>(job.dir);
  if (!fresh) return;
  let rows = fresh.data.rows;
  const at = formatRowDate(ctx.work.deps.now());
  for (const o of outcomes) {
    const comment = o.uploaded
      ? `transfer of ${codeSpan(o.artefact)} succeeded: ${codeSpan(o.text, 300)}`
      : `transfer of ${codeSpan(o.artefact)} not done: ${codeSpan(o.text, 300)}`;
    rows = addRow(rows, {
      key: `deploy:${path.basename(ctx.work.dir)}:${ctx.gen}:${o.artefact}`,
      at,
      status: o.uploaded ? 'uploaded' : 'not uploaded',
      comment,
    });
  }
  await writeState(job.dir, { ...fresh, data: { ...fresh.data, rows } });
  await ctx.work.deps.jobdirs.enqueue(job.dir); // its comment is re-rendered on the next tick
}
