/**
 * Cleanup when a PR is closed or merged:
 *   1. cancel this PR's active jobs on this instance;
 *   2. post a comment saying "merged" or "closed", correctly (subject to chatlevel);
 *   3. once no job is active and no other directory of the PR is pending, move the PR's event
 *      directories (every month) one by one into `<trash_dir>/<owner>/<repo>/<YYYY.MM.DD>/<YYYY.MM>/pr_<N>/`.
 * Events of the PR that are still pending when it closes stay in place until they are answered;
 * meanwhile they see the close event on disk (`prClosure`), so a build is refused and a status says
 * the PR is closed. A close followed by a later reopen or close of the same PR does nothing.
 * Each step is safe to repeat after a crash.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { readEventFile } from '../ingest/eventStore.js';
import { exists, fsyncDir, isTempName, mkdirDurable } from '../store/fsutil.js';
import { ACTIVE_JOB_STAGES } from '../store/job.js';
import { codeSpan } from '../domain/markdown.js';
import { FINAL_STAGES, readState, transition } from '../store/state.js';
import type { EventHandler } from './event.js';
import { cancelJob, prJobs } from './job.js';
import type { PullRequestRef, StageDeps } from './context.js';
import { prName } from '../log.js';

export function trashDir(deps: StageDeps): string {
  return deps.config.cleanup.trash_dir ?? path.join(deps.jobdirs.root, 'trash');
}

/** A `pull_request.closed` or `.reopened` event of a PR, as stored. */
export interface OpenCloseEvent {
  action: 'closed' | 'reopened';
  delivery: string;
  received_at: string;
  merged: boolean;
}

/** Pure: whether `a` was received after `b` (delivery ids break ties). */
export function receivedAfter(a: OpenCloseEvent, b: OpenCloseEvent): boolean {
  return a.received_at === b.received_at ? a.delivery > b.delivery : a.received_at > b.received_at;
}

/** Pure: the PR's close that is still in force (received after every reopen), if any. */
export function closureOf(events: OpenCloseEvent[]): OpenCloseEvent | undefined {
  const latest = events.reduce<OpenCloseEvent | undefined>(
    (last, e) => (!last || receivedAfter(e, last) ? e : last),
    undefined,
  );
  return latest?.action === 'closed' ? latest : undefined;
}

/** Pure: the PR's state in a reply, e.g. "the PR was merged". */
export function describeClosure(closure: OpenCloseEvent): string {
  return closure.merged ? 'the PR was merged' : 'the PR is closed';
}

/** The close of the PR stored in jobdirs and not undone by a later reopen, if any. */
export async function prClosure(deps: StageDeps, pr: PullRequestRef): Promise<OpenCloseEvent | undefined> {
  return closureOf(await openCloseEvents(deps, pr));
}

async function openCloseEvents(deps: StageDeps, pr: PullRequestRef): Promise<OpenCloseEvent[]> {
  const found: OpenCloseEvent[] = [];
  for (const dir of await prEventDirs(deps, pr)) {
    const ev = await readEventFile(dir).catch(() => undefined);
    if (ev?.event !== 'pull_request' || (ev.action !== 'closed' && ev.action !== 'reopened')) continue;
    const merged = (ev.payload as { pull_request?: { merged?: boolean | null } }).pull_request?.merged;
    found.push({
      action: ev.action,
      delivery: ev.delivery,
      received_at: ev.received_at,
      merged: merged === true,
    });
  }
  return found;
}

/** Every event directory of the PR in jobdirs (all months), oldest month first. */
async function prEventDirs(deps: StageDeps, pr: PullRequestRef): Promise<string[]> {
  const dirs: string[] = [];
  for (const prDir of await monthlyPrDirs(deps, pr)) {
    const names = await fs.readdir(prDir).catch(() => [] as string[]);
    for (const name of names.sort()) {
      if (name.startsWith('event_') && !isTempName(name)) dirs.push(path.join(prDir, name));
    }
  }
  return dirs;
}

export const handleClosed: EventHandler = async (ctx) => {
  const { deps } = ctx.work;
  const self: OpenCloseEvent = {
    action: 'closed',
    delivery: ctx.event.delivery,
    received_at: ctx.event.received_at,
    merged: (ctx.event.payload as { pull_request: { merged?: boolean | null } }).pull_request.merged === true,
  };
  const later = (await openCloseEvents(deps, ctx.pr)).find((e) => receivedAfter(e, self));
  if (later) {
    const why =
      later.action === 'reopened' ? 'the PR was reopened since' : 'a later close of the PR does the cleanup';
    return { ignored: `${why} (event_${later.delivery})` };
  }

  let cancelled = ctx.work.state.data.cleanup_cancelled as string[] | undefined;
  if (!cancelled) {
    cancelled = [];
    for (const { dir, state } of await prJobs(deps, ctx.pr)) {
      if (!ACTIVE_JOB_STAGES.has(state.stage)) continue;
      await cancelJob(deps, dir, self.merged ? 'PR merged' : 'PR closed');
      cancelled.push(deps.jobdirs.relative(dir));
    }
    const list = cancelled;
    await ctx.work.update((s) => ({ ...s, data: { ...s.data, cleanup_cancelled: list } }));
  }
  const what = self.merged ? 'PR merged' : 'PR closed without merging';
  const body = cancelled.length
    ? `${what}: cancelled ${cancelled.length} active job(s) of instance ${codeSpan(deps.config.instance)}: ${cancelled.map((d) => codeSpan(d)).join(', ')}. Job directories go to the trash.`
    : `${what}: no active jobs of instance ${codeSpan(deps.config.instance)}; job directories go to the trash.`;
  // Cancelling jobs is an action people should hear about; "nothing to cancel" is chatter.
  await ctx.work.postComment(ctx.pr, `${ctx.gen}:closed`, body, cancelled.length ? 'basic' : 'chatty');

  const active = (await prJobs(deps, ctx.pr)).filter((j) => ACTIVE_JOB_STAGES.has(j.state.stage)).length;
  if (active > 0) return { wait: `${active} job(s) still active` };

  // Nothing pending is moved away: an event still to be answered, or a job comment still to be edited.
  const events = (await prEventDirs(deps, ctx.pr)).filter((d) => d !== ctx.work.dir);
  const prDirs = await monthlyPrDirs(deps, ctx.pr);
  const queued = (await deps.jobdirs.pending()).filter(
    (d) => d !== ctx.work.dir && prDirs.some((p) => d.startsWith(p + path.sep)),
  );
  const unanswered = [];
  for (const dir of events) {
    const state = await readState(dir);
    if (!state || !FINAL_STAGES.has(state.stage)) unanswered.push(dir);
  }
  const pending = new Set([...queued, ...unanswered]).size;
  if (pending > 0) return { wait: `${pending} other event or job dir(s) of the PR still pending` };

  // The day is kept, so a move interrupted at midnight ends in one trash dir.
  let day = ctx.work.state.data.trash_day as string | undefined;
  if (!day) {
    const today = deps.now().toISOString().slice(0, 10).replaceAll('-', '.');
    await ctx.work.update((s) => ({ ...s, data: { ...s.data, trash_day: today } }));
    day = today;
  }
  // The directories listed above are answered and stay so; one that arrived since is not among them.
  for (const dir of events) await moveToTrash(deps, dir, day, ctx.pr);
  // Own dir last: "done" is recorded and the index entry dropped before it moves, so a crash in
  // between leaves a finished event in place, never an index entry pointing at nothing.
  await ctx.work.update((s) => transition(s, 'done', deps.now(), 'moved to the trash'));
  await deps.jobdirs.dequeue(ctx.work.dir);
  await moveToTrash(deps, ctx.work.dir, day, ctx.pr);
  for (const prDir of prDirs) await removeIfEmpty(prDir);
  deps.logger.info(
    { pr: prName(ctx.pr), events: events.length + 1, trash: path.join(trashDir(deps), day) },
    self.merged
      ? 'PR merged: its directories went to the trash'
      : 'PR closed: its directories went to the trash',
  );
  return { finalized: true };
};

/** The PR's `pr_<N>` dirs in jobdirs, oldest month first. */
async function monthlyPrDirs(deps: StageDeps, pr: PullRequestRef): Promise<string[]> {
  const months = (await fs.readdir(deps.jobdirs.root)).filter((m) => /^\d{4}\.\d{2}$/.test(m)).sort();
  const dirs = months.map((month) => deps.jobdirs.prDir(month, pr.repo.owner, pr.repo.repo, pr.number));
  const present = await Promise.all(dirs.map((d) => exists(d)));
  return dirs.filter((_, i) => present[i]);
}

/** `<month>/<owner>/<repo>/pr_<N>/event_<id>` → `<trash_dir>/<owner>/<repo>/<day>/<month>/pr_<N>/event_<id>`. */
async function moveToTrash(
  deps: StageDeps,
  eventDir: string,
  day: string,
  pr: PullRequestRef,
): Promise<void> {
  const month = deps.jobdirs.relative(eventDir).split(path.sep)[0]!;
  const dest = path.join(
    trashDir(deps),
    pr.repo.owner,
    pr.repo.repo,
    day,
    month,
    `pr_${pr.number}`,
    path.basename(eventDir),
  );
  await mkdirDurable(path.dirname(dest));
  try {
    await fs.rename(eventDir, dest);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    await fs.cp(eventDir, dest, { recursive: true, preserveTimestamps: true });
    await fs.rm(eventDir, { recursive: true, force: true });
  }
  await fsyncDir(path.dirname(eventDir));
  await fsyncDir(path.dirname(dest));
}

/** rmdir, unless an event arrived meanwhile (or it is gone already). */
async function removeIfEmpty(dir: string): Promise<void> {
  try {
    await fs.rmdir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'ENOENT') throw err;
  }
}
