/**
 * The poller: a separate process that advances pending work. One tick:
 *   1. take the exclusive lock (jobdirs/locks/poller.lock);
 *   2. ask the scheduler about all active jobs at once (one squeue + one sacct call);
 *   3. advance each directory of the pending-work index by its next stage: job directories first, then
 *      events; a few pull requests side by side, the directories of one pull request in order;
 *   4. release the lock.
 * One broken directory never stops a tick: its error, attempt count and next retry time go into its
 * state file. Nothing in memory outlives a tick.
 */
import { watch } from 'node:fs';
import path from 'node:path';
import cron from 'node-cron';
import type { Logger } from 'pino';
import type { Config } from './config/config.js';
import { createBackend } from './adapters/schedulers/index.js';
import { JobAccount } from './adapters/jobUser.js';
import { workTreeOf } from './store/workTree.js';
import { BackendUnavailableError, type Backend, type JobObservation } from './adapters/schedulers/types.js';
import { createGitHub, type GitHubApi } from './adapters/github.js';
import type { JobData } from './store/job.js';
import { JobDirs } from './store/jobdirs.js';
import { acquireLock, LockBusyError, waitForLock } from './store/lock.js';
import {
  FINAL_STAGES,
  isDue,
  readState,
  recordFailure,
  transition,
  writeState,
  type DirState,
} from './store/state.js';
import { ReplyBudget, ReplyBudgetSpentError, type StageDeps, type WorkDir } from './stages/context.js';
import type { EventData } from './stages/event.js';
import { advanceWorkDir, loadWorkDir } from './stages/index.js';

export interface PollerCliOptions {
  once?: boolean;
  dir?: string;
  replay?: string;
}

export interface TickReport {
  advanced: number;
  failed: number;
  /** Left pending for a later tick: not due yet (retry time), or its reply is over the tick's budget. */
  skipped: number;
}

const OBSERVED_STAGES = new Set(['released', 'running']);

type AnyWork = WorkDir<EventData> | WorkDir<JobData>;

/**
 * One tick over `only` (operator runs) or over the whole pending-work index. Job directories
 * (tracking, submission) go first, events after them, so that no flood of comments delays a job.
 * Within each of the two, `poller.concurrency` pull requests advance side by side, and the
 * directories of one pull request one after another, in index order. A command that acts on a job
 * pending in the same tick (cancel, supersede) therefore reaches it one tick later. Once the tick has
 * posted `poller.max_replies_per_tick` replies, no further event starts; they wait for the next tick.
 */
export async function runTick(deps: StageDeps, only?: string[]): Promise<TickReport> {
  const { jobdirs, logger, now, config } = deps;
  const tick: StageDeps = {
    ...deps,
    backend: oneReleaseAtATime(deps.backend),
    github: teamChecksOncePerTick(deps.github),
    replies: new ReplyBudget(config.poller.max_replies_per_tick),
  };
  const report: TickReport = { advanced: 0, failed: 0, skipped: 0 };
  const dirs = only ?? (await jobdirs.pending());
  const works: AnyWork[] = [];
  for (const dir of dirs) {
    try {
      const work = await loadWorkDir(dir, tick);
      // Final directories are still visited once: a job's comment may need new rows (deploy, stale).
      if (!only && !isDue(work.state, now())) report.skipped++;
      else works.push(work);
    } catch (err) {
      report.failed++;
      logger.error({ dir, err: (err as Error).message }, 'cannot read this directory; it stays pending');
    }
  }

  const observations = await observeJobs(tick, works);
  const advance = async (work: AnyWork) => {
    if (work.state.kind === 'event' && tick.replies!.spent) report.skipped++;
    else await advanceOne(tick, work, observations, report);
  };
  const jobs = works.filter((w) => w.state.kind === 'job');
  const events = works.filter((w) => w.state.kind !== 'job');
  for (const group of [jobs, events])
    await inLanes(byPullRequest(jobdirs.root, group), config.poller.concurrency, advance);
  return report;
}

/** Advance one directory by its next stage and record the outcome; never throws. */
async function advanceOne(
  deps: StageDeps,
  work: AnyWork,
  observations: Map<string, JobObservation> | undefined,
  report: TickReport,
): Promise<void> {
  const { jobdirs, logger, now } = deps;
  try {
    // A directory advanced earlier in this tick may have written this one's state (a cancel, a stale
    // mark after a new push): continue from the file, never from the copy loaded above.
    const current = await readState(work.dir);
    if (current) work.state = current as never;
    await advanceWorkDir(work, observations);
    if (FINAL_STAGES.has(work.state.stage) && work.state.next_retry_at) {
      const { next_retry_at: _n, ...rest } = work.state;
      work.state = { ...rest, attempts: 0 } as never;
      await writeState(work.dir, work.state as DirState<unknown>);
    }
    report.advanced++;
  } catch (err) {
    if (err instanceof ReplyBudgetSpentError) {
      report.skipped++;
      logger.info({ dir: work.dir }, 'its reply waits for the next tick (poller.max_replies_per_tick)');
      return;
    }
    report.failed++;
    const message = (err as Error).message;
    const failed = recordFailure(
      work.state as DirState<unknown>,
      message,
      now(),
      deps.config.poller.max_attempts,
    );
    work.state = failed as never;
    await writeState(work.dir, failed).catch(() => undefined);
    logger.error(
      {
        dir: work.dir,
        stage: failed.stage,
        attempts: failed.attempts,
        next_retry_at: failed.next_retry_at,
        err: message,
      },
      'advancing failed',
    );
  }
  if (FINAL_STAGES.has(work.state.stage) && !work.state.next_retry_at) {
    await jobdirs.dequeue(work.dir).catch((err: unknown) => {
      logger.error({ dir: work.dir, err: (err as Error).message }, 'cannot drop it from the index');
    });
  }
}

/** Pure: `works` grouped by pull request (`<owner>/<repo>/pr_<N>`, whatever the month), each in order. */
export function byPullRequest<W extends { dir: string }>(root: string, works: W[]): W[][] {
  const lanes = new Map<string, W[]>();
  for (const work of works) {
    const parts = path.relative(root, work.dir).split(path.sep);
    const key = parts.length >= 4 ? parts.slice(1, 4).join('/') : work.dir;
    const lane = lanes.get(key);
    if (lane) lane.push(work);
    else lanes.set(key, [work]);
  }
  return [...lanes.values()];
}

/** Run at most `limit` lanes at once; the items of a lane one after another. `advance` must not throw. */
async function inLanes<T>(lanes: T[][], limit: number, advance: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < lanes.length) {
      for (const item of lanes[next++]!) await advance(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, lanes.length) }, worker));
}

/**
 * Lanes run side by side, but releases go one at a time: the local backend counts its running jobs
 * before it starts one, and two releases at once would both find room under max_parallel.
 */
function oneReleaseAtATime(backend: Backend): Backend {
  let previous: Promise<unknown> = Promise.resolve();
  return {
    kind: backend.kind,
    submit: (...args) => backend.submit(...args),
    findBySubmitId: (...args) => backend.findBySubmitId(...args),
    release: (...args) => {
      const released = previous.then(() => backend.release(...args));
      previous = released.catch(() => undefined);
      return released;
    },
    observe: (...args) => backend.observe(...args),
    cancel: (...args) => backend.cancel(...args),
  };
}

/**
 * Team membership is asked once per tick and login, so that a flood of comments costs one API call,
 * not one per comment. A failed answer is not kept.
 */
function teamChecksOncePerTick(github: GitHubApi): GitHubApi {
  const answers = new Map<string, Promise<boolean>>();
  return {
    ...github,
    isTeamMember(repo, org, teamSlug, login) {
      const key = JSON.stringify([repo.owner, org, teamSlug, login].map((s) => s.toLowerCase()));
      let answer = answers.get(key);
      if (!answer) {
        answer = github.isTeamMember(repo, org, teamSlug, login);
        answers.set(key, answer);
        answer.catch(() => answers.delete(key));
      }
      return answer;
    },
  };
}

/** One batched question to the scheduler for every job that is waiting or running. */
async function observeJobs(
  deps: StageDeps,
  works: Array<WorkDir<EventData> | WorkDir<JobData>>,
): Promise<Map<string, JobObservation> | undefined> {
  const jobs = works
    .filter((w): w is WorkDir<JobData> => w.state.kind === 'job' && OBSERVED_STAGES.has(w.state.stage))
    .filter((w) => w.state.data.job_id !== undefined)
    .map((w) => ({ jobId: w.state.data.job_id!, workTree: workTreeOf(w.dir) }));
  if (jobs.length === 0) return new Map();
  try {
    return await deps.backend.observe(jobs);
  } catch (err) {
    if (!(err instanceof BackendUnavailableError)) throw err;
    deps.logger.warn({ err: err.message }, 'the scheduler did not answer; no job changes state this tick');
    return undefined;
  }
}

/** `--replay`: start a finished event over as a new generation; earlier runs and their jobs stay as they are. */
export async function replayEvent(deps: StageDeps, dir: string): Promise<void> {
  const state = await readState<EventData>(dir);
  if (!state || state.kind !== 'event')
    throw new Error(`${dir} is not an event directory that has been processed`);
  if (!FINAL_STAGES.has(state.stage))
    throw new Error(`${dir} is still at stage ${state.stage}; replay it once it is done`);
  const generation = state.data.generation + 1;
  const next = transition(
    { ...state, data: { ...state.data, generation } },
    'received',
    deps.now(),
    `replay ${generation}`,
  );
  await writeState(dir, next);
  await deps.jobdirs.enqueue(dir);
}

export function createDeps(config: Config, logger: Logger): StageDeps {
  const jobdirs = new JobDirs(config.jobdirs);
  const account = new JobAccount(config.backend.run_as);
  return {
    config,
    logger,
    jobdirs,
    github: createGitHub(config, logger),
    backend: createBackend(config, logger, jobdirs, account),
    account,
    now: () => new Date(),
  };
}

export async function runPollerCommand(
  config: Config,
  logger: Logger,
  opts: PollerCliOptions,
): Promise<number> {
  const deps = createDeps(config, logger);
  await deps.jobdirs.ensureBaseDirs();
  const lockFile = path.join(deps.jobdirs.locksDir, 'poller.lock');

  if (opts.replay || opts.dir || opts.once) {
    const lock = await waitForLock(lockFile, 120_000);
    try {
      let only: string[] | undefined;
      if (opts.replay) {
        const dir = path.resolve(opts.replay);
        await replayEvent(deps, dir);
        only = [dir];
      } else if (opts.dir) {
        only = [path.resolve(opts.dir)];
      }
      const report = await runTick(deps, only);
      logger.info(report, 'tick done');
      return report.failed > 0 ? 1 : 0;
    } finally {
      await lock.release();
    }
  }

  // Long-running: cron ticks plus a wake-up when the server adds to the pending-work index.
  let running = false;
  let again = false;
  const tick = async () => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        let lock;
        try {
          lock = await acquireLock(lockFile);
        } catch (err) {
          if (err instanceof LockBusyError) logger.info(err.message + '; skipping this tick');
          else throw err;
          return;
        }
        try {
          const report = await runTick(deps);
          if (report.advanced || report.failed) logger.info(report, 'tick done');
        } finally {
          await lock.release();
        }
      } while (again);
    } catch (err) {
      logger.error({ err: (err as Error).message }, 'tick failed');
    } finally {
      running = false;
    }
  };
  let debounce: NodeJS.Timeout | undefined;
  const watcher = watch(deps.jobdirs.queueDir, () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => void tick(), 200);
  });
  const task = cron.schedule(config.poller.schedule, () => void tick());
  logger.info(`poller started: schedule "${config.poller.schedule}", watching ${deps.jobdirs.queueDir}`);
  await tick();
  await new Promise<void>((resolve) => {
    const stop = () => {
      watcher.close();
      void task.stop();
      resolve();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  return 0;
}
