/**
 * "No permission" replies go out at most once per commenter and PR per hour: anyone may comment, and a
 * flood of commands from someone without permission must not become a flood of replies. Who was told
 * when lives in `jobdirs/denials/<owner>/<repo>/pr_<N>.json` (login → {at, event}), as the poller keeps
 * nothing in memory. Directories of one PR are advanced one at a time, so nothing else writes the file
 * while it is read and rewritten.
 */
import path from 'node:path';
import { mkdirDurable, readJsonIfExists, writeFileAtomic } from '../store/fsutil.js';
import { isValidOwner, isValidRepoName } from '../store/jobdirs.js';
import type { PullRequestRef, WorkDir } from './context.js';

export const DENIAL_REPLY_INTERVAL_MS = 3600_000;

export interface Denial {
  at: string;
  /** The event directory (relative to jobdirs) whose reply told them. */
  event: string;
}

type Denials = Record<string, Denial>;

/** Pure: whether `denial` still keeps other events quiet at `now`. An unreadable time keeps no one quiet. */
export function isRecent(denial: Denial, now: Date): boolean {
  const elapsed = now.getTime() - Date.parse(denial.at);
  return elapsed < DENIAL_REPLY_INTERVAL_MS;
}

/** Pure: may `event` tell `login` again? Not when another event did within the hour. */
export function mayTell(last: Denial | undefined, event: string, now: Date): boolean {
  return !last || last.event === event || !isRecent(last, now);
}

export function denialsFile(jobdirsRoot: string, pr: PullRequestRef): string {
  const { owner, repo } = pr.repo;
  if (!isValidOwner(owner) || !isValidRepoName(repo) || !Number.isSafeInteger(pr.number) || pr.number <= 0)
    throw new Error(`not a pull request: ${JSON.stringify(`${owner}/${repo}#${pr.number}`)}`);
  return path.join(jobdirsRoot, 'denials', owner, repo, `pr_${pr.number}.json`);
}

/**
 * Claim the "no permission" reply of this event to `login`, or return the earlier one that makes it
 * unnecessary. The claim is written before the reply is posted: if the reply is then deferred or
 * lost in a crash, this same event finishes it, and no other event of the hour posts a second one.
 */
export async function claimDenialReply(
  work: WorkDir,
  pr: PullRequestRef,
  login: string,
): Promise<{ claimed: true } | { claimed: false; told: Denial }> {
  const { jobdirs, now } = work.deps;
  const file = denialsFile(jobdirs.root, pr);
  const event = jobdirs.relative(work.dir);
  const who = login.toLowerCase();
  const all = (await readJsonIfExists<Denials>(file)) ?? {};
  const last = Object.hasOwn(all, who) ? all[who] : undefined;
  if (!mayTell(last, event, now())) return { claimed: false, told: last! };
  if (last?.event === event) return { claimed: true };
  const kept = Object.entries(all).filter(([, d]) => isRecent(d, now()));
  const next: Denials = Object.fromEntries([...kept, [who, { at: now().toISOString(), event }]]);
  await mkdirDurable(path.dirname(file));
  await writeFileAtomic(file, JSON.stringify(next, null, 2) + '\n');
  return { claimed: true };
}
