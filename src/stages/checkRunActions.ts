/**
 * `check_run.requested_action` and `check_run.rerequested`: the buttons of a job's check run. Rebuild
 * (and GitHub's own "Re-run") prepares that job's target again, as `bot: build` for that one target
 * would; Cancel cancels the job. The run names its job by `external_id` (the job dir relative to
 * jobdirs); the payload is hostile, so the job is used only if the dir is a job dir of this PR and
 * instance whose check run is the very run pressed. The PR hears from the bot only when the sender is
 * refused (once an hour at most, as for commands).
 */
import path from 'node:path';
import { checkRunName, targetLabel } from '../domain/checkRun.js';
import { codeSpan } from '../domain/markdown.js';
import { hasPermission, type Permission } from '../domain/permissions.js';
import { prName } from '../log.js';
import { ACTIVE_JOB_STAGES, type JobData } from '../store/job.js';
import { readState, type DirState } from '../store/state.js';
import { rebuildJobs } from './commands/rebuild.js';
import type { PullRequestRef } from './context.js';
import { claimDenialReply } from './denials.js';
import type { EventContext, EventHandler } from './event.js';
import { cancelJob, prRefOfJob } from './job.js';

type Press = 'rebuild' | 'cancel';

interface CheckRunPayload {
  requested_action?: { identifier?: unknown };
  check_run?: { id?: unknown; name?: unknown; external_id?: unknown };
  repository?: { name?: unknown; owner?: { login?: unknown } };
  sender?: { login?: unknown };
}

/** A job dir relative to jobdirs: month, owner, repo, pr_N, event, run, node type, repo id. */
const JOB_DIR_RE = /^\d{4}\.\d{2}\/[^/]+\/[^/]+\/pr_\d+\/event_[^/]+\/run_\d+\/[^/]+\/[^/]+$/;

/** Pure: which button was pressed; GitHub's "Re-run" of a run is a Rebuild. */
export function pressOf(action: string | null, identifier: unknown): Press | undefined {
  if (action === 'rerequested') return 'rebuild';
  if (action !== 'requested_action') return undefined;
  return identifier === 'rebuild' || identifier === 'cancel' ? identifier : undefined;
}

const NEEDS: Record<Press, { permission: Permission; what: string }> = {
  rebuild: { permission: 'build', what: 'submit build jobs' },
  cancel: { permission: 'command', what: 'cancel build jobs' },
};

export const handleCheckRunAction: EventHandler = async (ctx) => {
  const { config, github, logger } = ctx.work.deps;
  const p = ctx.event.payload as CheckRunPayload;
  const press = pressOf(ctx.event.action, p.requested_action?.identifier);
  if (!press) return { ignored: 'not a button of the bot (rebuild, cancel) nor a re-run' };
  const found = await pressedJob(ctx, p);
  if ('ignored' in found) return found;
  const { dir, state } = found;
  const pr = prRefOfJob(state.data);
  const sender = typeof p.sender?.login === 'string' ? p.sender.login : '';
  const need = NEEDS[press];
  const label = targetLabel(state.data.target);
  if (!(await hasPermission(github, pr.repo, sender, config.permissions[need.permission]))) {
    const denial = await claimDenialReply(ctx.work, pr, sender);
    if (!denial.claimed)
      return { ignored: `${sender} may not ${need.what} and was told so at ${denial.told.at}` };
    logger.info({ pr: prName(pr), sender, press, target: label }, `${press} refused: no permission`);
    await ctx.work.postComment(
      pr,
      `${ctx.gen}:reply`,
      `account ${codeSpan(sender)} has NO permission to ${need.what} (${press} of ${codeSpan(label)}) on bot instance ${codeSpan(config.instance)}`,
      'basic',
    );
    return;
  }
  logger.info(
    { pr: prName(pr), sender, press, target: label, job: ctx.work.deps.jobdirs.relative(dir) },
    'check run button',
  );
  return press === 'cancel' ? await cancel(ctx, dir, state, sender) : await rebuild(ctx, pr, state.data);
};

/** The job the pressed run reports, or why the press is not for this instance. */
async function pressedJob(
  ctx: EventContext,
  p: CheckRunPayload,
): Promise<{ dir: string; state: DirState<JobData> } | { ignored: string }> {
  const { config, jobdirs } = ctx.work.deps;
  const run = p.check_run ?? {};
  if (typeof run.name !== 'string' || !run.name.startsWith(`hpcbot/${config.instance}: `))
    return { ignored: 'a check run of another instance or app' };
  const rel = run.external_id;
  if (typeof rel !== 'string' || !JOB_DIR_RE.test(rel) || rel.split('/').some((c) => c === '..' || c === '.'))
    return {
      ignored: `the check run's external_id is not a job dir: ${JSON.stringify(String(rel).slice(0, 200))}`,
    };
  const dir = jobdirs.resolve(rel);
  const state = await readState<JobData>(dir).catch(() => undefined);
  if (state?.kind !== 'job') return { ignored: `no job in ${rel}` };
  const d = state.data;
  const scope = path.basename(path.dirname(ctx.work.dir));
  const sameRepo = d.pr.owner === p.repository?.owner?.login && d.pr.repo === p.repository?.name;
  if (!sameRepo || scope !== `pr_${d.pr.number}`) return { ignored: `the job in ${rel} is of another PR` };
  if (d.instance !== config.instance || run.name !== checkRunName(config.instance, d.target))
    return { ignored: `the job in ${rel} is not the target of this check run` };
  if (d.check?.id === undefined || d.check.id !== run.id)
    return { ignored: `check run ${String(run.id)} is not the one the job in ${rel} reports` };
  return { dir, state };
}

async function cancel(
  ctx: EventContext,
  dir: string,
  state: DirState<JobData>,
  sender: string,
): Promise<{ ignored: string } | void> {
  if (!ACTIVE_JOB_STAGES.has(state.stage)) return { ignored: `the job has ended (${state.stage})` };
  await cancelJob(ctx.work.deps, dir, `cancelled by ${sender}`);
}

/** The job's target again, exactly (node type, repo, export variables), at the PR's head: a new run. */
async function rebuild(
  ctx: EventContext,
  pr: PullRequestRef,
  job: JobData,
): Promise<{ ignored: string } | void> {
  const outcome = await rebuildJobs(ctx.work, `${ctx.gen}:rebuild`, pr, [job]);
  if ('closed' in outcome) return { ignored: `no rebuild: ${outcome.closed}` };
  const gone = outcome.skipped[0];
  if (gone) return { ignored: `no rebuild: ${gone.why}` };
}
