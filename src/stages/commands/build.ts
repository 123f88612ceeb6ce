/** `bot: build ...`: check permission, select targets, prepare one job directory per target. */
import { codeSpan } from '../../domain/markdown.js';
import { hasPermission } from '../../domain/permissions.js';
import { DRY_RUN_FLAG } from '../../domain/commands.js';
import { createBuildRun, type PreparedJob } from '../buildRun.js';
import { describeClosure, prClosure } from '../cleanup.js';
import { renderPlan, selectOrExplain } from './plan.js';
import type { CommandHandler } from './types.js';

export const build: CommandHandler = async (ctx) => {
  if (ctx.args.general.includes(DRY_RUN_FLAG)) return await renderPlan(ctx);
  const { config, github, jobdirs } = ctx.work.deps;
  if (!(await hasPermission(github, ctx.pr.repo, ctx.sender, config.permissions.build))) {
    return `account ${codeSpan(ctx.sender)} has NO permission to submit build jobs`;
  }
  const closure = await prClosure(ctx.work.deps, ctx.pr);
  if (closure) return `no jobs were submitted: ${describeClosure(closure)}`;
  const selection = selectOrExplain(ctx.args, config, 'no jobs were submitted');
  if ('reply' in selection) return selection.reply;
  const jobs = await createBuildRun(
    ctx.work,
    ctx.key,
    ctx.pr,
    selection.targets,
    selection.exportVariables,
    ctx.sender,
    ctx.args.after,
  );
  return jobs.map((job) => describePreparedJob(job, (d) => jobdirs.relative(d))).join('\n');
};

export function describePreparedJob(job: PreparedJob, rel: (dir: string) => string): string {
  const t = job.target;
  const what =
    `job for ${codeSpan(t.repoId)} on node type ${codeSpan(t.nodeType)} ` +
    `(for ${codeSpan(t.forArch + (t.forAccel ? `, ${t.forAccel}` : ''))})`;
  const overlap = job.overlap
    ? `; ${job.overlap.action} the active job in ${codeSpan(rel(job.overlap.dir))}`
    : '';
  if (!job.dir) return `- no ${what} was prepared${overlap} (build.on_overlap: refuse)`;
  return `- ${what} prepared in ${codeSpan(rel(job.dir))}${overlap}; its progress is reported in a comment of its own`;
}
