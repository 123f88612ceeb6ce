/**
 * `bot: cancel [job:ID] [repo:..] [arch:..] [accel:..]`: cancel this PR's active jobs on this instance.
 * With permissions.cancel_own_jobs, someone without build permission may cancel the jobs they asked for.
 */
import { ACTIVE_JOB_STAGES } from '../../store/job.js';
import { codeSpan } from '../../domain/markdown.js';
import { hasPermission } from '../../domain/permissions.js';
import { patternMatches } from '../../domain/targets.js';
import { cancelJob, prJobs } from '../job.js';
import type { CommandHandler } from './types.js';

const CANCELLED_HEADER = 'cancelled:';

/** Whether a reply of `cancel` says that it cancelled a job. */
export function cancelledAny(result: string): boolean {
  return result.startsWith(`${CANCELLED_HEADER}\n`);
}

export const cancel: CommandHandler = async (ctx) => {
  const { config, github, jobdirs } = ctx.work.deps;
  const mayCancelAny = await hasPermission(github, ctx.pr.repo, ctx.sender, config.permissions.build);
  if (!mayCancelAny && !config.permissions.cancel_own_jobs) {
    return `account ${codeSpan(ctx.sender)} has NO permission to cancel build jobs`;
  }
  const sender = ctx.sender.toLowerCase();
  const f = ctx.args.filters;
  const cancelled: string[] = [];
  for (const { dir, state } of await prJobs(ctx.work.deps, ctx.pr)) {
    if (!ACTIVE_JOB_STAGES.has(state.stage)) continue;
    const t = state.data.target;
    if (f.job !== undefined && state.data.job_id !== f.job) continue;
    if (!mayCancelAny && state.data.job_owner?.toLowerCase() !== sender) continue;
    if (f.repository !== undefined && !patternMatches(f.repository, t.repoId)) continue;
    if (f.architecture !== undefined && !patternMatches(f.architecture, t.forArch)) continue;
    if (f.accelerator !== undefined && !(t.forAccel && patternMatches(f.accelerator, t.forAccel))) continue;
    await cancelJob(ctx.work.deps, dir, `cancelled by ${ctx.sender}`);
    cancelled.push(
      `- ${state.data.job_id ? `job ${codeSpan(state.data.job_id)}` : 'unsubmitted job'} in ${codeSpan(jobdirs.relative(dir))}`,
    );
  }
  if (cancelled.length) return [CANCELLED_HEADER, ...cancelled].join('\n');
  return mayCancelAny
    ? 'no active jobs matched, nothing was cancelled'
    : `no active jobs of ${codeSpan(ctx.sender)} matched, nothing was cancelled (without build permission, only your own jobs can be cancelled)`;
};
