/**
 * The poller: a separate process that advances pending work. One tick:
 *   1. take the exclusive lock (jobdirs/locks/poller.lock);
 *   2. ask the scheduler about all active jobs at once (one squeue + one sacct call);
 *   3. advance each directory of the pending-work index by its next stage;
 *   4. release the lock.
 * One broken directory never stops a tick: its error, attempt count and next retry time go into its
 * state file. Nothing in memory outlives a tick.
 */
import { watch } from 'node:fs';
import path from 'node:path';
import cron from 'node-cron';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { createBackend } from './backends/index.js';
import { BackendUnavailableError, type JobObservation } from './backends/types.js';
import { createGitHub } from './github.js';
import type { JobData } from './job.js';
import { JobDirs } from './jobdirs.js';
import { acquireLock, LockBusyError, waitForLock } from './lock.js';
import {
  FINAL_STAGES,
  isDue,
  readState,
  recordFailure,
  transition,
  writeState,
  type DirState,
} from './state.js';
import type { StageDeps, WorkDir } from './stages/context.js';
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
  skipped: number;
}

const OBSERVED_STAGES = new Set(['released', 'running']);

/** One tick over `only` (operator runs) or over the whole pending-work index. */
export async function runTick(deps: StageDeps, only?: string[]): Promise<TickReport> {
  const { jobdirs, logger, now } = deps;
  const report: TickReport = { advanced: 0, failed: 0, skipped: 0 };
  const dirs = only ?? (await jobdirs.pending());
  const works: Array<WorkDir<EventData> | WorkDir<JobData>> = [];
  for (const dir of dirs) {
    try {
      const work = await loadWorkDir(dir, deps);
      // Final directories are still visited once: a job's comment may need new rows (deploy, stale).
      if (!only && !isDue(work.state, now())) report.skipped++;
      else works.push(work);
    } catch (err) {
      report.failed++;
      logger.error({ dir, err: (err as Error).message }, 'cannot read this directory; it stays pending');
    }
  }

  const observations = await observeJobs(deps, works);
  for (const work of works) {
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
    if (FINAL_STAGES.has(work.state.stage) && !work.state.next_retry_at) await jobdirs.dequeue(work.dir);
  }
  return report;
}

/** One batched question to the scheduler for every job that is waiting or running. */
async function observeJobs(
  deps: StageDeps,
  works: Array<WorkDir<EventData> | WorkDir<JobData>>,
): Promise<Map<string, JobObservation> | undefined> {
  const jobs = works
    .filter((w): w is WorkDir<JobData> => w.state.kind === 'job' && OBSERVED_STAGES.has(w.state.stage))
    .filter((w) => w.state.data.job_id !== undefined)
    .map((w) => ({ jobId: w.state.data.job_id!, jobDir: w.dir }));
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
  return {
    config,
    logger,
    jobdirs,
    github: createGitHub(config, logger),
    backend: createBackend(config, logger, jobdirs),
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
