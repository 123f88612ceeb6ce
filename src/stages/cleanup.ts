/**
 * Cleanup when a PR is closed or merged:
 *   1. cancel this PR's active jobs on this instance;
 *   2. post a comment saying "merged" or "closed", correctly (subject to chatlevel);
 *   3. once no job is active any more, move the PR's directories (every month) into
 *      `<trash_dir>/<owner>/<repo>/<YYYY.MM.DD>/<YYYY.MM>/pr_<N>` and drop them from the pending index.
 * Each step is safe to repeat after a crash.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { exists, mkdirDurable } from '../fsutil.js';
import { ACTIVE_JOB_STAGES } from '../job.js';
import { codeSpan } from '../markdown.js';
import { transition, writeState } from '../state.js';
import type { EventHandler } from './event.js';
import { cancelJob, prJobs } from './job.js';
import type { StageDeps } from './context.js';

export function trashDir(deps: StageDeps): string {
  return deps.config.cleanup.trash_dir ?? path.join(deps.jobdirs.root, 'trash');
}

export const handleClosed: EventHandler = async (ctx) => {
  const { jobdirs } = ctx.work.deps;
  const { owner, repo } = ctx.pr.repo;
  const merged =
    (ctx.event.payload as { pull_request: { merged?: boolean | null } }).pull_request.merged === true;

  let cancelled = ctx.work.state.data.cleanup_cancelled as string[] | undefined;
  if (!cancelled) {
    cancelled = [];
    for (const { dir, state } of await prJobs(ctx.work.deps, ctx.pr)) {
      if (!ACTIVE_JOB_STAGES.has(state.stage)) continue;
      await cancelJob(ctx.work.deps, dir, merged ? 'PR merged' : 'PR closed');
      cancelled.push(jobdirs.relative(dir));
    }
    const list = cancelled;
    await ctx.work.update((s) => ({ ...s, data: { ...s.data, cleanup_cancelled: list } }));
  }
  const what = merged ? 'PR merged' : 'PR closed without merging';
  const body = cancelled.length
    ? `${what}: cancelled ${cancelled.length} active job(s) of instance ${codeSpan(ctx.work.deps.config.instance)}: ${cancelled.map((d) => codeSpan(d)).join(', ')}. Job directories go to the trash.`
    : `${what}: no active jobs of instance ${codeSpan(ctx.work.deps.config.instance)}; job directories go to the trash.`;
  // Cancelling jobs is an action people should hear about; "nothing to cancel" is chatter.
  await ctx.work.postComment(ctx.pr, `${ctx.gen}:closed`, body, cancelled.length ? 'basic' : 'chatty');

  const active = (await prJobs(ctx.work.deps, ctx.pr)).filter((j) =>
    ACTIVE_JOB_STAGES.has(j.state.stage),
  ).length;
  if (active > 0) return { wait: `${active} job(s) still active` };

  // Other months first; then record "done" inside the dir about to move, and move the event's own month.
  const { deps } = ctx.work;
  const day = deps.now().toISOString().slice(0, 10).replaceAll('-', '.');
  const prDirs = await monthlyPrDirs(deps, owner, repo, ctx.pr.number);
  const own = prDirs.filter((p) => ctx.work.dir.startsWith(p.dir + path.sep));
  for (const p of prDirs.filter((x) => !own.includes(x))) await moveToTrash(deps, p, owner, repo, day);
  await writeState(ctx.work.dir, transition(ctx.work.state, 'done', deps.now(), 'moved to the trash'));
  for (const p of own) await moveToTrash(deps, p, owner, repo, day);
  return { finalized: true };
};

async function monthlyPrDirs(deps: StageDeps, owner: string, repo: string, pr: number) {
  const months = (await fs.readdir(deps.jobdirs.root)).filter((m) => /^\d{4}\.\d{2}$/.test(m)).sort();
  const dirs = months.map((month) => ({ month, pr, dir: deps.jobdirs.prDir(month, owner, repo, pr) }));
  const present = await Promise.all(dirs.map((d) => exists(d.dir)));
  return dirs.filter((_, i) => present[i]);
}

/** `<trash_dir>/<owner>/<repo>/<day>/<month>/pr_<N>`, and the moved dir's entries leave the pending index. */
async function moveToTrash(
  deps: StageDeps,
  from: { month: string; pr: number; dir: string },
  owner: string,
  repo: string,
  day: string,
): Promise<void> {
  const dest = path.join(trashDir(deps), owner, repo, day, from.month, `pr_${from.pr}`);
  await mkdirDurable(path.dirname(dest));
  await moveDir(from.dir, await freeName(dest));
  for (const pending of await deps.jobdirs.pending()) {
    if (pending.startsWith(from.dir + path.sep)) await deps.jobdirs.dequeue(pending);
  }
}

async function freeName(dest: string): Promise<string> {
  let candidate = dest;
  for (let i = 1; await exists(candidate); i++) candidate = `${dest}.${i}`;
  return candidate;
}

async function moveDir(from: string, to: string): Promise<void> {
  try {
    await fs.rename(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    await fs.cp(from, to, { recursive: true, preserveTimestamps: true });
    await fs.rm(from, { recursive: true, force: true });
  }
}
