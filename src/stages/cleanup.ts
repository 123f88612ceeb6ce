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
import { ACTIVE_JOB_STAGES, type JobData } from '../job.js';
import { codeSpan } from '../markdown.js';
import { readState, transition, writeState } from '../state.js';
import type { EventHandler } from './event.js';
import { cancelJob } from './job.js';
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
    for (const dir of await jobdirs.prJobDirs(owner, repo, ctx.pr.number)) {
      const state = await readState<JobData>(dir);
      if (state?.kind !== 'job' || !ACTIVE_JOB_STAGES.has(state.stage)) continue;
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

  let active = 0;
  for (const dir of await jobdirs.prJobDirs(owner, repo, ctx.pr.number)) {
    const state = await readState<JobData>(dir);
    if (state?.kind === 'job' && ACTIVE_JOB_STAGES.has(state.stage)) active++;
  }
  if (active > 0) return { wait: `${active} job(s) still active` };

  await moveToTrash(ctx.work.deps, owner, repo, ctx.pr.number, ctx.work.dir, async (movedEventDir) => {
    await writeState(
      movedEventDir,
      transition(ctx.work.state, 'done', ctx.work.deps.now(), 'moved to the trash'),
    );
  });
  return { finalized: true };
};

/** Move every month's pr_<N> dir; the one holding `eventDir` last, after `beforeLast` ran on its future path. */
async function moveToTrash(
  deps: StageDeps,
  owner: string,
  repo: string,
  pr: number,
  eventDir: string,
  finish: (movedEventDir: string) => Promise<void>,
): Promise<void> {
  const { jobdirs, now } = deps;
  const day = now().toISOString().slice(0, 10).replaceAll('-', '.');
  const months = (await fs.readdir(jobdirs.root)).filter((m) => /^\d{4}\.\d{2}$/.test(m)).sort();
  const sources = months
    .map((m) => ({ month: m, dir: jobdirs.prDir(m, owner, repo, pr) }))
    .sort(
      (a, b) => Number(eventDir.startsWith(a.dir + path.sep)) - Number(eventDir.startsWith(b.dir + path.sep)),
    );
  for (const { month, dir } of sources) {
    if (!(await exists(dir))) continue;
    const dest = path.join(trashDir(deps), owner, repo, day, month, `pr_${pr}`);
    const holdsEvent = eventDir.startsWith(dir + path.sep);
    if (holdsEvent) {
      // Record "done" first (inside the dir about to move), so the moved event is final wherever it is.
      await finish(eventDir);
    }
    await mkdirDurable(path.dirname(dest));
    await moveDir(dir, await freeName(dest));
    for (const pending of await jobdirs.pending()) {
      if (pending.startsWith(dir + path.sep)) await jobdirs.dequeue(pending);
    }
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
