/**
 * Checking out a PR for its jobs, as GitHub's merge ref would: the PR head merged into the current base.
 *
 * - One bare mirror per repository (`jobdirs/mirrors/<owner>/<repo>.git`) and ONE fetch per event: the
 *   first job of a command fetches, merges (in the bare mirror, with `git merge-tree`) and records the
 *   SHAs in `event_<id>/checkout.json`; the other jobs of that event (all its `bot: build` lines and
 *   their targets) reuse that record, so they build the same merge.
 * - Each job's work tree (`<jobdir>/work`) becomes a cheap checkout of the merge commit: `git init` plus
 *   an alternates link to the mirror's objects, so no object is copied.
 * - Every attempt checks out into a fresh `work.partial/` and renames it into place, so an attempt killed
 *   half-way (a stale `index.lock`, half the files) never makes the next one fail.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { mkdirDurable, readJsonIfExists, writeFileAtomic } from '../store/fsutil.js';
import { authEnv, git, GitError } from './git.js';
import type { JobData } from '../store/job.js';
import { writeJobCfg, JobConfigError } from '../domain/jobConfig.js';
import { codeSpan } from '../domain/markdown.js';
import { crashPoint } from '../store/crashPoint.js';
import type { WorkDir } from '../stages/context.js';
import { finishWorkTree, startWorkTree, workTreeOf } from '../store/workTree.js';

export interface CheckoutShas {
  head_sha: string;
  base_sha: string;
  merge_sha: string;
}

export class CheckoutError extends Error {
  constructor(
    message: string,
    readonly step: 'fetch' | 'merge' | 'config',
    readonly detail: string,
    readonly tip: string,
  ) {
    super(message);
    this.name = 'CheckoutError';
  }

  renderComment(instance: string): string {
    const tail = this.detail.trim().split('\n').slice(-20).join('\n').replace(/```/g, "'''");
    return [
      `Preparing the job on instance ${codeSpan(instance)} failed at the ${this.step} step: ${this.message}`,
      '',
      '```',
      tail,
      '```',
      '',
      `Tip: ${this.tip}`,
    ].join('\n');
  }
}

/** Commit identity of the merge commits the bot makes; fixed, so the same inputs give the same merge SHA. */
const MERGE_ENV = {
  GIT_AUTHOR_NAME: 'hpc-build-bot',
  GIT_AUTHOR_EMAIL: 'hpcbot@localhost',
  GIT_COMMITTER_NAME: 'hpc-build-bot',
  GIT_COMMITTER_EMAIL: 'hpcbot@localhost',
  GIT_AUTHOR_DATE: '1970-01-01T00:00:00Z',
  GIT_COMMITTER_DATE: '1970-01-01T00:00:00Z',
};

/**
 * PRs are advanced concurrently, but two fetches into one bare mirror would fight over its locks; the
 * poller is a single process (locks/poller.lock), so a chain of promises per repository is enough.
 */
const mirrorQueues = new Map<string, Promise<unknown>>();
function oneAtATimePerRepo<T>(repo: string, fn: () => Promise<T>): Promise<T> {
  const next = (mirrorQueues.get(repo) ?? Promise.resolve()).then(fn, fn);
  const settled = next.catch(() => undefined);
  mirrorQueues.set(repo, settled);
  void settled.then(() => mirrorQueues.get(repo) === settled && mirrorQueues.delete(repo));
  return next;
}

export async function prepareJobCheckout(work: WorkDir<JobData>): Promise<CheckoutShas> {
  const eventDir = path.dirname(path.dirname(path.dirname(work.dir)));
  const record = path.join(eventDir, 'checkout.json');
  const shas =
    (await readJsonIfExists<CheckoutShas & { mirror: string }>(record)) ??
    (await oneAtATimePerRepo(`${work.state.data.pr.owner}/${work.state.data.pr.repo}`, () =>
      fetchAndMerge(work, record),
    ));
  const user = await work.deps.account.user();
  const partial = await startWorkTree(work.dir, user);
  await checkoutInto(partial, shas.mirror, shas.merge_sha);
  try {
    await writeJobCfg(
      partial,
      workTreeOf(work.dir),
      work.deps.config.build,
      work.state.data.target,
      work.state.data.exportVariables,
    );
  } catch (err) {
    if (err instanceof JobConfigError) {
      throw new CheckoutError(
        err.message,
        'config',
        '',
        'fix build.repos_cfg_dir or the node type in site.yaml',
      );
    }
    throw err;
  }
  await finishWorkTree(work.dir, partial, user);
  return { head_sha: shas.head_sha, base_sha: shas.base_sha, merge_sha: shas.merge_sha };
}

async function fetchAndMerge(
  work: WorkDir<JobData>,
  record: string,
): Promise<CheckoutShas & { mirror: string }> {
  const { github, jobdirs } = work.deps;
  const { pr } = work.state.data;
  const repoRef = { owner: pr.owner, repo: pr.repo, installationId: pr.installation_id };
  const info = await github.getPullRequest(repoRef, pr.number);
  if (info.baseRef.startsWith('-'))
    throw new CheckoutError('odd base branch name', 'fetch', info.baseRef, 'rename the base branch');
  const mirror = path.join(jobdirs.mirrorsDir, pr.owner, `${pr.repo}.git`);
  await mkdirDurable(path.dirname(mirror));
  await git(['init', '--quiet', '--bare', mirror]);

  const baseRef = `refs/hpcbot/base/${pr.number}`;
  const headRef = `refs/hpcbot/pull/${pr.number}/head`;
  try {
    await git(
      [
        '-C',
        mirror,
        'fetch',
        '--quiet',
        '--no-tags',
        '--force',
        '--',
        github.cloneUrl(pr.owner, pr.repo),
        `+refs/heads/${info.baseRef}:${baseRef}`,
        `+refs/pull/${pr.number}/head:${headRef}`,
      ],
      { env: authEnv(await github.gitCredentials(repoRef)) },
    );
  } catch (err) {
    if (!(err instanceof GitError)) throw err;
    throw new CheckoutError(
      `could not fetch PR #${pr.number} and its base branch`,
      'fetch',
      err.stderr,
      'check that the repository is reachable and that the bot may read it; then re-run the command',
    );
  }
  const head = (await git(['-C', mirror, 'rev-parse', `${headRef}^{commit}`])).trim();
  const base = (await git(['-C', mirror, 'rev-parse', `${baseRef}^{commit}`])).trim();
  let tree: string;
  try {
    tree = (await git(['-C', mirror, 'merge-tree', '--write-tree', '--messages', base, head]))
      .split('\n')[0]!
      .trim();
  } catch (err) {
    if (!(err instanceof GitError)) throw err;
    throw new CheckoutError(
      `PR head ${head.slice(0, 12)} does not merge cleanly into ${info.baseRef} (${base.slice(0, 12)})`,
      'merge',
      err.stdout || err.stderr,
      `merge or rebase ${info.baseRef} into the PR branch and push; then re-run the command`,
    );
  }
  const message = `Merge ${head} into ${base}`;
  const merge = (
    await git(['-C', mirror, 'commit-tree', tree, '-p', base, '-p', head, '-m', message], { env: MERGE_ENV })
  ).trim();
  // Keep the merge reachable so that gc in the mirror never removes what job checkouts borrow.
  await git(['-C', mirror, 'update-ref', `refs/hpcbot/merge/${merge}`, merge]);
  const shas = { head_sha: head, base_sha: base, merge_sha: merge, mirror };
  await writeFileAtomic(record, JSON.stringify(shas, null, 2) + '\n');
  return shas;
}

/** A failure here (disk full, a path this file system refuses) is retried by the poller with backoff. */
async function checkoutInto(tree: string, mirror: string, merge: string): Promise<void> {
  await git(['init', '--quiet', tree]);
  const alternates = path.join(tree, '.git', 'objects', 'info', 'alternates');
  await fs.writeFile(alternates, path.join(mirror, 'objects') + '\n');
  crashPoint('checkout-begun');
  await git(['-C', tree, 'checkout', '--quiet', '--detach', merge]);
}
