/**
 * `hpcbot gc --older-than 30d [--dry-run]`: prunes what would otherwise grow forever, and prints per
 * category how many entries and bytes it frees (or would free). It never removes anything of an open PR
 * nor of a job or event that is not final. The categories:
 *
 *   trash         days in the trash (closed PRs) older than the cutoff; of a day that holds unfinished
 *                 work or a PR that was reopened (open again), only the other PRs' dirs
 *   repo-events   `_repo` event dirs that are final, not pending and older than the cutoff
 *   deliveries    delivery-id claims older than the cutoff and than GitHub's redelivery window
 *   mirrors       mirrors of repositories without an open PR, not fetched since the cutoff
 *   local-jobs    the local backend's records of final jobs, or of jobs whose dir went to the trash before
 *                 the cutoff (the newest record stays: ids count up from it)
 *
 * An open PR is decided from what is on disk, nothing else: a PR is open when it has PR dirs under
 * `<jobdirs>/<YYYY.MM>/` (the trash does not count) and either one of its events or jobs there is not
 * final, or its latest `pull_request` `closed`/`reopened` event is not a `closed` one (no such event:
 * open). Event dirs of PRs (open or not) are not removed here; closing a PR moves them to the trash.
 *
 * A real run takes the poller's lock, so no tick runs meanwhile; the server may still store events, and
 * a mirror removed just before a new PR's first build is simply fetched again.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { loadConfig, type Config } from '../config/config.js';
import { readEventFile } from '../ingest/eventStore.js';
import { isTempName, mkdirDurable, readJsonIfExists } from '../store/fsutil.js';
import { JobDirs } from '../store/jobdirs.js';
import { waitForLock } from '../store/lock.js';
import { FINAL_STAGES, readState } from '../store/state.js';
import { UsageError } from './errors.js';

/** GitHub lets a delivery be redelivered for 3 days; a claim older than that can never be needed again. */
export const REDELIVERY_WINDOW_MS = 3 * 86_400_000;

export function parseAge(text: string): number {
  const m = /^(\d+)([dhm])$/.exec(text.trim());
  if (!m)
    throw new UsageError(`--older-than takes a number with d, h or m, e.g. 30d; got ${JSON.stringify(text)}`);
  const unit = { d: 86_400_000, h: 3_600_000, m: 60_000 }[m[2] as 'd' | 'h' | 'm'];
  return Number(m[1]) * unit;
}

export const GC_CATEGORIES = ['trash', 'repo-events', 'deliveries', 'mirrors', 'local-jobs'] as const;
export type GcCategory = (typeof GC_CATEGORIES)[number];

export interface GcItem {
  category: GcCategory;
  path: string;
  bytes: number;
}

export interface GcResult {
  removed: GcItem[];
  bytes: number;
  byCategory: Record<GcCategory, { count: number; bytes: number }>;
}

async function du(p: string): Promise<number> {
  const st = await fs.lstat(p).catch(() => undefined);
  if (!st) return 0;
  if (!st.isDirectory()) return st.size;
  let total = 0;
  for (const name of await fs.readdir(p)) total += await du(path.join(p, name));
  return total;
}

async function dirs(p: string): Promise<string[]> {
  const entries = await fs.readdir(p, { withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => e.isDirectory() && !isTempName(e.name))
    .map((e) => path.join(p, e.name))
    .sort();
}

const eventDirsOf = async (scopeDir: string) =>
  (await dirs(scopeDir)).filter((d) => path.basename(d).startsWith('event_'));

/** When a directory reached its final stage; undefined while it has none (or no state at all). */
async function finishedAt(dir: string): Promise<number | undefined> {
  const state = await readState(dir);
  if (!state || !FINAL_STAGES.has(state.stage)) return undefined;
  return Date.parse(state.history[state.history.length - 1]?.at ?? '');
}

/** When an event and every job under it were all final (the latest of them), or undefined if one is not. */
async function settledAt(eventDir: string): Promise<number | undefined> {
  let latest = await finishedAt(eventDir);
  if (latest === undefined) return undefined;
  for (const run of (await dirs(eventDir)).filter((d) => /^run_\d+$/.test(path.basename(d)))) {
    for (const node of await dirs(run)) {
      for (const job of await dirs(node)) {
        const done = await finishedAt(job);
        if (done === undefined) return undefined;
        latest = Math.max(latest, done);
      }
    }
  }
  return latest;
}

/** The open-PR rule of the header, for the PR dirs (across months) of one PR. */
export async function prIsOpen(prDirs: string[]): Promise<boolean> {
  let last: { at: string; closed: boolean } | undefined;
  for (const prDir of prDirs) {
    for (const ev of await eventDirsOf(prDir)) {
      if ((await settledAt(ev)) === undefined) return true;
      const stored = await readEventFile(ev).catch(() => undefined);
      if (stored?.event !== 'pull_request' || !['closed', 'reopened'].includes(stored.action ?? '')) continue;
      if (!last || stored.received_at > last.at)
        last = { at: stored.received_at, closed: stored.action === 'closed' };
    }
  }
  return !last?.closed;
}

/** `owner/repo#pr_<N>` of every open PR (the rule of the header). */
async function openPrs(jobdirs: JobDirs): Promise<Set<string>> {
  const prs = new Map<string, string[]>(); // owner/repo#pr_N -> its PR dirs in every month
  for (const month of (await dirs(jobdirs.root)).filter((d) => /^\d{4}\.\d{2}$/.test(path.basename(d)))) {
    for (const owner of await dirs(month)) {
      for (const repo of await dirs(owner)) {
        for (const pr of (await dirs(repo)).filter((d) => /^pr_\d+$/.test(path.basename(d)))) {
          const key = prKey(path.basename(owner), path.basename(repo), path.basename(pr));
          prs.set(key, [...(prs.get(key) ?? []), pr]);
        }
      }
    }
  }
  const open = new Set<string>();
  for (const [key, prDirs] of prs) if (await prIsOpen(prDirs)) open.add(key);
  return open;
}

/** `owner/repo#pr_<N>`; a PR dir in the trash may carry a suffix (`pr_<N>.<k>`), which is dropped. */
function prKey(owner: string, repo: string, prDir: string): string {
  return `${owner}/${repo}#${prDir.replace(/^(pr_\d+)\..*$/, '$1')}`;
}

const repoOf = (key: string) => key.slice(0, key.indexOf('#'));

/**
 * What of a trash day may go: the whole day, or else the PR dirs in it (`<day>/<YYYY.MM>/pr_<N>[.k]`)
 * that hold no event or job that is not final and whose PR is not open again (reopened after its
 * close: its trash is kept while it is open).
 */
async function trashDayRemovable(
  day: string,
  owner: string,
  repo: string,
  open: Set<string>,
): Promise<string[] | 'all'> {
  const removable: string[] = [];
  let all = true;
  for (const month of await dirs(day)) {
    for (const pr of await dirs(month)) {
      let settled = !open.has(prKey(owner, repo, path.basename(pr)));
      for (const ev of settled ? await eventDirsOf(pr) : [])
        if ((await settledAt(ev)) === undefined) settled = false;
      if (settled) removable.push(pr);
      else all = false;
    }
  }
  return all ? 'all' : removable;
}

async function mtimeOf(p: string): Promise<number | undefined> {
  return (await fs.lstat(p).catch(() => undefined))?.mtimeMs;
}

/**
 * A local job whose record may go: its job is final, or its job dir has left (with its PR, to the
 * trash, which only happens when no job of the PR is active) and the record is older than the cutoff.
 */
async function localJobGone(jobDir: string, record: string, cutoff: number): Promise<boolean> {
  if ((await mtimeOf(jobDir)) === undefined) return ((await mtimeOf(record)) ?? cutoff) < cutoff;
  return (await finishedAt(jobDir)) !== undefined;
}

/** The local backend's record of a job: which job dir it belongs to (older records name the job dir). */
interface LocalJobRecord {
  job_dir?: string;
  work_tree?: string;
}

export async function collectGarbage(
  config: Config,
  olderThanMs: number,
  dryRun: boolean,
  now = new Date(),
): Promise<GcResult> {
  const jobdirs = new JobDirs(config.jobdirs);
  const cutoff = now.getTime() - olderThanMs;
  const removed: GcItem[] = [];
  const take = async (category: GcCategory, p: string) => {
    removed.push({ category, path: p, bytes: await du(p) });
    if (!dryRun) await fs.rm(p, { recursive: true, force: true });
  };
  let lock;
  if (!dryRun) {
    await mkdirDurable(jobdirs.locksDir);
    lock = await waitForLock(path.join(jobdirs.locksDir, 'poller.lock'), 120_000);
  }
  try {
    const open = await openPrs(jobdirs);
    // Trash: <trash>/<owner>/<repo>/<YYYY.MM.DD>, judged by the day it was moved there.
    const trash = config.cleanup.trash_dir ?? path.join(jobdirs.root, 'trash');
    for (const owner of await dirs(trash)) {
      for (const repo of await dirs(owner)) {
        for (const day of await dirs(repo)) {
          const date = Date.parse(path.basename(day).replaceAll('.', '-') + 'T00:00:00Z');
          if (!(date < cutoff)) continue;
          const removable = await trashDayRemovable(day, path.basename(owner), path.basename(repo), open);
          if (removable === 'all') await take('trash', day);
          else for (const pr of removable) await take('trash', pr);
        }
      }
    }

    // Repository-level events: <month>/<owner>/<repo>/_repo/event_*.
    const pending = new Set(await jobdirs.pending());
    for (const month of (await dirs(jobdirs.root)).filter((d) => /^\d{4}\.\d{2}$/.test(path.basename(d)))) {
      for (const owner of await dirs(month)) {
        for (const repo of await dirs(owner)) {
          for (const event of await eventDirsOf(path.join(repo, '_repo'))) {
            const done = await settledAt(event);
            if (done !== undefined && done < cutoff && !pending.has(event)) await take('repo-events', event);
          }
        }
      }
    }

    // Delivery claims, by the time they were made.
    const claimCutoff = Math.min(cutoff, now.getTime() - REDELIVERY_WINDOW_MS);
    for (const name of await fs.readdir(jobdirs.deliveriesDir).catch(() => [] as string[])) {
      if (isTempName(name)) continue;
      const claim = path.join(jobdirs.deliveriesDir, name);
      const made = await mtimeOf(claim);
      if (made !== undefined && made < claimCutoff) await take('deliveries', claim);
    }

    // Mirrors of repositories without an open PR, last fetched (FETCH_HEAD) before the cutoff. Only
    // open PRs' jobs check out from a mirror (a PR with unfinished work counts as open). Job trees
    // borrow the mirror's objects (alternates), so a final job tree of a removed mirror keeps its files
    // but not its git history; nothing the bot does reads that history after the job.
    const openRepos = new Set([...open].map(repoOf));
    for (const owner of await dirs(jobdirs.mirrorsDir)) {
      for (const mirror of (await dirs(owner)).filter((d) => d.endsWith('.git'))) {
        const repo = `${path.basename(owner)}/${path.basename(mirror, '.git')}`;
        const used = (await mtimeOf(path.join(mirror, 'FETCH_HEAD'))) ?? (await mtimeOf(mirror));
        if (!openRepos.has(repo) && used !== undefined && used < cutoff) await take('mirrors', mirror);
      }
    }

    // Local backend records of final jobs; the highest id stays, since the next id is one more.
    const localJobs = path.join(jobdirs.root, 'local-jobs');
    const ids = (await fs.readdir(localJobs).catch(() => [] as string[]))
      .map((n) => /^(\d+)\.json$/.exec(n)?.[1])
      .filter((id): id is string => id !== undefined)
      .sort((a, b) => Number(a) - Number(b));
    for (const id of ids.slice(0, -1)) {
      const record = path.join(localJobs, `${id}.json`);
      const rec = await readJsonIfExists<LocalJobRecord>(record).catch(() => undefined);
      const jobDir = rec?.job_dir ?? (rec?.work_tree ? path.dirname(rec.work_tree) : undefined);
      if (!jobDir || !(await localJobGone(jobDir, record, cutoff))) continue;
      await take('local-jobs', record);
      const exit = path.join(localJobs, `${id}.exit`);
      if ((await mtimeOf(exit)) !== undefined) await take('local-jobs', exit);
    }
  } finally {
    await lock?.release();
  }

  const byCategory = Object.fromEntries(
    GC_CATEGORIES.map((c) => [c, { count: 0, bytes: 0 }]),
  ) as GcResult['byCategory'];
  for (const r of removed) {
    byCategory[r.category].count++;
    byCategory[r.category].bytes += r.bytes;
  }
  return { removed, bytes: removed.reduce((n, r) => n + r.bytes, 0), byCategory };
}

/** Directories are listed one by one; small files (claims, records) only counted. */
const LISTED: ReadonlySet<GcCategory> = new Set(['trash', 'repo-events', 'mirrors']);

/** What `hpcbot gc` prints. Pure. */
export function formatGcReport(result: GcResult, dryRun: boolean): string {
  const lines = result.removed
    .filter((r) => LISTED.has(r.category))
    .map((r) => `${dryRun ? 'would remove' : 'removed'} ${r.path} (${r.bytes} bytes)`);
  for (const c of GC_CATEGORIES) {
    const { count, bytes } = result.byCategory[c];
    lines.push(`${c}: ${count} entr${count === 1 ? 'y' : 'ies'}, ${bytes} bytes`);
  }
  lines.push(
    `${dryRun ? 'would free' : 'freed'} ${result.bytes} bytes in ${result.removed.length} entr${result.removed.length === 1 ? 'y' : 'ies'}`,
  );
  return lines.join('\n') + '\n';
}

export async function gcCommand(opts: {
  config: string;
  olderThan: string;
  dryRun?: boolean;
}): Promise<void> {
  const age = parseAge(opts.olderThan);
  const dryRun = opts.dryRun === true;
  const result = await collectGarbage(loadConfig(opts.config), age, dryRun);
  process.stdout.write(formatGcReport(result, dryRun));
}
