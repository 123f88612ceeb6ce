/** `bot: cancel [job:ID] [repo:..] [arch:..] [accel:..]`: cancel this PR's active jobs on this instance. */
import { ACTIVE_JOB_STAGES } from '../../store/job.js';
import { codeSpan } from '../../domain/markdown.js';
import { hasPermission } from '../../domain/permissions.js';
import { patternMatches } from '../../domain/targets.js';
import { cancelJob, prJobs } from '../job.js';
import type { CommandHandler } from './types.js';

export const cancel: CommandHandler = async (ctx) => {
  const { config, github, jobdirs } = ctx.work.deps;
  if (!(await hasPermission(github, ctx.pr.repo, ctx.sender, config.permissions.build))) {
    return `account ${codeSpan(ctx.sender)} has NO permission to cancel build jobs`;
  }
  const f = ctx.args.filters;
  const cancelled: string[] = [];
  for (const { dir, state } of await prJobs(ctx.work.deps, ctx.pr)) {
    if (!ACTIVE_JOB_STAGES.has(state.stage)) continue;
    const t = state.data.target;
    if (f.job !== undefined && state.data.job_id !== f.job) continue;
    if (f.repository !== undefined && !patternMatches(f.repository, t.repoId)) continue;
    if (f.architecture !== undefined && !patternMatches(f.architecture, t.forArch)) continue;
    if (f.accelerator !== undefined && !(t.forAccel && patternMatches(f.accelerator, t.forAccel))) continue;
    await cancelJob(ctx.work.deps, dir, `cancelled by ${ctx.sender}`);
    cancelled.push(
      `- ${state.data.job_id ? `job ${codeSpan(state.data.job_id)}` : 'unsubmitted job'} in ${codeSpan(jobdirs.relative(dir))}`,
    );
  }
  return cancelled.length
    ? ['cancelled:', ...cancelled].join('\n')
    : 'no active jobs matched, nothing was cancelled';
};
