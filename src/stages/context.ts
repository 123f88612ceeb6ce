/**
 * What a stage gets: the injected adapters (`StageDeps`) and the directory it advances (`WorkDir`).
 * WorkDir owns the state file and the one kind of GitHub write we do (comments), so that every
 * effect is recorded as an intent before and a result after, and a retry never repeats it.
 */
import path from 'node:path';
import type { Logger } from 'pino';
import type { Chatlevel, Config } from '../config/config.js';
import { CHATLEVELS } from '../config/config.js';
import type { GitHubApi, RepoRef } from '../adapters/github/index.js';
import type { JobDirs } from '../store/jobdirs.js';
import type { Backend } from '../adapters/schedulers/types.js';
import type { JobAccount } from '../adapters/jobUser.js';
import { commentMarker, fitComment, neutralizeCommands } from '../domain/markdown.js';
import { writeState, type DirState } from '../store/state.js';
import { crashPoint } from '../store/crashPoint.js';
import type { SlotJob } from '../domain/limits.js';

export interface StageDeps {
  config: Config;
  logger: Logger;
  github: GitHubApi;
  jobdirs: JobDirs;
  backend: Backend;
  /** `backend.run_as`: who runs the jobs. */
  account: JobAccount;
  now: () => Date;
  /** The tick's allowance of replies (comments posted by event directories); none means no limit. */
  replies?: ReplyBudget;
  /**
   * `limits:` — the jobs that hold or wait for a slot, read once per tick (see waitForSlot); without
   * it every waiting job reads them all again.
   */
  slotJobs?: () => Promise<SlotJob[]>;
}

/** This tick has posted all the replies it may; the directory stays pending and its reply goes out later. */
export class ReplyBudgetSpentError extends Error {
  override readonly name = 'ReplyBudgetSpentError';
}

/**
 * How many replies one tick may still post (`poller.max_replies_per_tick`), so that no flood of
 * comments can hold a tick for long. A job's own comment is job tracking and never counts.
 */
export class ReplyBudget {
  constructor(private left: number) {}

  get spent(): boolean {
    return this.left <= 0;
  }

  take(): void {
    if (this.spent) throw new ReplyBudgetSpentError('the replies of this tick are spent');
    this.left--;
  }
}

export interface PullRequestRef {
  repo: RepoRef;
  number: number;
}

/** incognito 0 < minimal 1 < basic 2 < chatty 3: a comment is posted if configured ≥ required. */
export function chatAllows(configured: Chatlevel, required: Chatlevel): boolean {
  return CHATLEVELS.indexOf(configured) >= CHATLEVELS.indexOf(required);
}

export class WorkDir<Data = Record<string, unknown>> {
  constructor(
    readonly dir: string,
    public state: DirState<Data>,
    readonly deps: StageDeps,
  ) {}

  async save(): Promise<void> {
    await writeState(this.dir, this.state as DirState<unknown>);
  }

  async update(fn: (state: DirState<Data>) => DirState<Data>): Promise<void> {
    this.state = fn(this.state);
    await this.save();
  }

  /** Unique for this directory within the instance: the path from `event_<delivery>` on. */
  markerKey(key: string): string {
    const parts = this.dir.split(path.sep);
    const from = parts.findIndex((p) => p.startsWith('event_'));
    return `${parts.slice(from < 0 ? -1 : from).join('/')}#${key}`;
  }

  /**
   * Post a comment once. The intent is saved before the call; if a crash lost the answer, the hidden
   * marker finds the comment instead of posting a second one. Returns the id, or undefined when the
   * chatlevel does not allow the comment. A reply over the tick's budget throws ReplyBudgetSpentError
   * before anything is recorded or posted.
   */
  async postComment(
    pr: PullRequestRef,
    key: string,
    body: string,
    required: Chatlevel,
  ): Promise<number | undefined> {
    const { config, github, logger } = this.deps;
    const known = this.state.comments[key];
    if (known?.id !== undefined) return known.id;
    if (!known && !chatAllows(config.chatlevel, required)) return undefined;
    const marker = commentMarker(config.instance, this.markerKey(key));
    if (known) {
      const author = config.github.bot_login;
      const found = await github.findComment(pr.repo, pr.number, marker, author ? { author } : {});
      if (found) {
        logger.info({ dir: this.dir, key, id: found.id }, 'found the comment a crashed attempt posted');
        return await this.recordCommentId(key, found.id);
      }
    }
    if (this.state.kind === 'event') this.deps.replies?.take();
    if (!known) {
      this.state = {
        ...this.state,
        comments: { ...this.state.comments, [key]: { intent_at: this.deps.now().toISOString() } },
      };
      await this.save();
    }
    const created = await github.createComment(pr.repo, pr.number, renderBody(body, marker));
    crashPoint('after-comment-created');
    return await this.recordCommentId(key, created.id);
  }

  /** Replace the body of a comment this directory posted (edits ignore chatlevel, as in the EESSI bot). */
  async editComment(pr: PullRequestRef, key: string, body: string): Promise<void> {
    const id = this.state.comments[key]?.id;
    if (id === undefined) throw new Error(`no comment "${key}" was posted from ${this.dir}`);
    await this.deps.github.updateComment(
      pr.repo,
      id,
      renderBody(body, commentMarker(this.deps.config.instance, this.markerKey(key))),
    );
  }

  private async recordCommentId(key: string, id: number): Promise<number> {
    const record = { ...this.state.comments[key]!, id };
    this.state = { ...this.state, comments: { ...this.state.comments, [key]: record } };
    await this.save();
    return id;
  }
}

function renderBody(body: string, marker: string): string {
  return fitComment(neutralizeCommands(body), marker);
}
