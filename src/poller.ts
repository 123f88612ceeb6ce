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
import { LiveConfig, POLLER_RESTART_ONLY, type LiveConfigOptions } from './config/liveConfig.js';
import { readHeartbeat, writeHeartbeat, type BackendHealth } from './store/heartbeat.js';
import { measuredBackend, recordTick, type TickSample } from './store/metrics.js';
import { EXIT_RESTART, followRelease, noteStart, selfUpdateIfDue } from './selfUpdate/release.js';
import { createBackend } from './adapters/schedulers/index.js';
import { JobAccount } from './adapters/jobUser.js';
import { workTreeOf } from './store/workTree.js';
import { BackendUnavailableError, type Backend, type JobObservation } from './adapters/schedulers/types.js';
import { createGitHub, type GitHubApi } from './adapters/github/index.js';
import type { GitHubCall } from './adapters/github/client.js';
import { createDeliveries } from './adapters/github/deliveries.js';
import { startPullLoop } from './ingest/pull.js';
import { applyHealthNotes, notesWanted, refreshPartitions } from './stages/healthNotes.js';
import type { JobData } from './store/job.js';
import { JobDirs } from './store/jobdirs.js';
import { acquireLock, LockBusyError, waitForLock } from './store/lock.js';
import {
  observationKey,
  readPendingIndex,
  stateSignature,
  summarize,
  writePendingIndex,
  type IndexEntry,
  type PendingIndex,
} from './store/pendingIndex.js';
import {
  FINAL_STAGES,
  readState,
  recordFailure,
  transition,
  writeState,
  type DirState,
} from './store/state.js';
import { ReplyBudget, ReplyBudgetSpentError, type StageDeps, type WorkDir } from './stages/context.js';
import type { EventData } from './stages/event.js';
import { advanceWorkDir, loadWorkDir } from './stages/index.js';
import { publishJob, readSlotJobs } from './stages/job.js';
import { prOfDir } from './log.js';

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
  /** Waiting or running jobs whose scheduler answer had not changed: not even read. */
  unchanged: number;
  /** Jobs submitted in the last few minutes and not yet final: the poller looks again soon. */
  young: number;
}

const OBSERVED_STAGES = new Set(['released', 'running']);

type AnyWork = WorkDir<EventData> | WorkDir<JobData>;

/**
 * One tick over `only` (operator runs) or over the whole pending-work index. Job directories
 * (tracking, submission) go first, then jobs to check out (at most CHECKOUT_CONCURRENCY pull requests
 * at once), then the job comments of the jobs advanced, events last, so that no flood of comments or
 * checkouts delays a job or what the PR is told about it.
 * Within each group, `poller.concurrency` pull requests advance side by side, and the
 * directories of one pull request one after another, in index order. A command that acts on a job
 * pending in the same tick (cancel, supersede) therefore reaches it one tick later. Once the tick has
 * posted `poller.max_replies_per_tick` replies, no further event starts; they wait for the next tick.
 *
 * A tick costs what changed: the tick cache (src/store/pendingIndex.ts) says which directories are
 * as they were at the end of the last tick; a running job whose scheduler answer is the same as
 * last time is not even read.
 */
export async function runTick(deps: StageDeps, only?: string[]): Promise<TickReport> {
  const { jobdirs, logger, now, config } = deps;
  const tick: StageDeps = {
    ...deps,
    backend: oneReleaseAtATime(deps.backend),
    github: teamChecksOncePerTick(deps.github),
    replies: new ReplyBudget(config.poller.max_replies_per_tick),
  };
  const report: TickReport = { advanced: 0, failed: 0, skipped: 0, unchanged: 0, young: 0 };
  const cache = only ? new Map<string, IndexEntry>() : await readPendingIndex(jobdirs.root);
  const entries = only
    ? only.map((dir) => ({ name: path.basename(jobdirs.queueEntryPath(dir)), dir }))
    : await jobdirs.pendingEntries(cache);
  const pending = entries.map((e) => lookInCache(jobdirs, e, cache.get(e.name)));
  await inParallel(
    pending.filter((p) => !p.entry.kind && !p.failed),
    LOAD_CONCURRENCY,
    (p) => load(tick, p),
  );

  const nextCache: PendingIndex = new Map();
  const due: Pending[] = [];
  for (const p of pending) {
    if (p.failed) {
      report.failed++;
      logger.error({ dir: p.dir, err: p.failed }, 'cannot read this directory; it stays pending');
    } else if (!only && p.entry.nextRetryAt && Date.parse(p.entry.nextRetryAt) > now().getTime()) {
      report.skipped++;
      nextCache.set(p.name, p.entry);
    } else due.push(p);
  }
  const observations = await observeJobs(tick, due);
  const changed = due.filter((p) => {
    if (only || !unchanged(p.entry, observations)) return true;
    report.unchanged++;
    nextCache.set(p.name, p.entry);
    return false;
  });

  // Stage the jobs first, then tell the PRs about them, then the events: no comment, paced by
  // GitHub's limits, ever holds up a submission, and no reply holds up a job comment.
  const toPublish: Pending[] = [];
  const advance = async (p: Pending) => {
    if (p.entry.kind !== 'job' && tick.replies!.spent) {
      report.skipped++;
      return;
    }
    if (!p.work) await load(tick, p);
    const work = p.work;
    if (!work) {
      report.failed++;
      logger.error({ dir: p.dir, err: p.failed }, 'cannot read this directory; it stays pending');
      return;
    }
    const ok =
      work.state.kind === 'job'
        ? await advanceJobChain(tick, work as WorkDir<JobData>, observations, report)
        : await attempt(tick, work, report, () => advanceWorkDir(work, observations));
    if (ok && work.state.kind === 'job') toPublish.push(p);
    else await settle(tick, p, ok, observations, nextCache);
  };
  const publish = async (p: Pending) => {
    const work = p.work as WorkDir<JobData>;
    const ok = await attempt(tick, work, report, () => publishJob(work), false);
    await settle(tick, p, ok, observations, nextCache);
  };
  const lanes = (group: Pending[]) => byPullRequest(jobdirs.root, group);
  // Tracking and submission first; then checkouts (a fetch, a merge, thousands of files), a few at a
  // time, so they never hold up another PR's jobs. Jobs waiting for a slot (`limits:`) are among the
  // latter and decide on one picture of the jobs, taken once tracking is done.
  const jobs = changed.filter((p) => p.entry.kind === 'job');
  const toCheckOut = (p: Pending) => p.entry.stage === 'prepared' || p.entry.stage === 'queued';
  await inLanes(lanes(jobs.filter((p) => !toCheckOut(p))), config.poller.concurrency, advance);
  tick.slotJobs = once(() => readSlotJobs(tick));
  await inLanes(lanes(jobs.filter(toCheckOut)), CHECKOUT_CONCURRENCY, advance);
  delete tick.slotJobs; // events (cancels) change the picture
  // What the PRs are told about their jobs, before any reply: replies are paced (one new comment per
  // 3 s) and may take up to `max_replies_per_tick` of those, which job updates must not wait behind.
  await inLanes(lanes(toPublish), config.poller.concurrency, publish);
  await inLanes(lanes(changed.filter((p) => p.entry.kind !== 'job')), config.poller.concurrency, advance);
  report.young = countYoung(nextCache.values(), now());
  const cacheChanged = nextCache.size !== cache.size || [...nextCache].some(([k, v]) => cache.get(k) !== v);
  if (!only && cacheChanged) {
    // The cache is an optimisation: failing to write it costs the next tick some reads, nothing else.
    await writePendingIndex(jobdirs.root, nextCache).catch((err: unknown) =>
      logger.warn({ err: (err as Error).message }, 'cannot write the tick cache'),
    );
  }
  return report;
}

/** Pull requests whose jobs are being checked out at once (each lane fetches once, then checks out). */
const CHECKOUT_CONCURRENCY = 2;

/** State files are read this many at a time when the tick cache does not know them. */
const LOAD_CONCURRENCY = 16;

interface Pending {
  name: string;
  dir: string;
  entry: IndexEntry;
  /** Loaded when the cache could not vouch for it (or when it is advanced). */
  work?: AnyWork;
  failed?: string;
}

/** The cached summary of a queue entry if its state.json is unchanged; otherwise it must be loaded. */
function lookInCache(
  jobdirs: JobDirs,
  { name, dir }: { name: string; dir: string },
  cached: IndexEntry | undefined,
): Pending {
  const rel = cached?.rel ?? jobdirs.relative(dir);
  try {
    const sig = stateSignature(dir);
    if (cached?.kind && sig !== undefined && cached.sig === sig) return { name, dir, entry: cached };
    return { name, dir, entry: { rel, ...(sig ? { sig } : {}) } };
  } catch (err) {
    return { name, dir, entry: { rel }, failed: (err as Error).message };
  }
}

/** Read the directory's state (or start a fresh event's) and summarise it. */
async function load(deps: StageDeps, p: Pending): Promise<void> {
  try {
    p.work = await loadWorkDir(p.dir, deps);
    p.entry = summarize(p.entry.rel, p.entry.sig, p.work.state as DirState<unknown>);
  } catch (err) {
    p.failed = (err as Error).message;
  }
}

/**
 * Pure: a waiting or running job whose scheduler answer equals the one it already took in has
 * nothing to do. With no answer at all (the scheduler is down) no such job changes either.
 */
function unchanged(entry: IndexEntry, observations: Map<string, JobObservation> | undefined): boolean {
  if (entry.kind !== 'job' || !entry.stage || !OBSERVED_STAGES.has(entry.stage) || !entry.jobId) return false;
  if (!observations) return true;
  return entry.observed !== undefined && entry.observed === observationKey(observations.get(entry.jobId));
}

/** `fn`'s first result, shared by every later call. */
function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let result: Promise<T> | undefined;
  return () => (result ??= fn());
}

/** Call `fn` on every item, at most `limit` calls in flight. */
async function inParallel<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/**
 * Run one step on `work` (a stage, or publishing a job) from its state file, and record a failure
 * in it; never throws. False: it failed or must wait for the next tick.
 */
async function attempt(
  deps: StageDeps,
  work: AnyWork,
  report: TickReport,
  step: () => Promise<void>,
  countAsAdvanced = true,
): Promise<boolean> {
  const { jobdirs, logger, now } = deps;
  try {
    // A directory advanced earlier in this tick may have written this one's state (a cancel, a stale
    // mark after a new push): continue from the file, never from the copy loaded above.
    const current = await readState(work.dir);
    if (current) work.state = current as never;
    await step();
    if (countAsAdvanced) report.advanced++;
    return true;
  } catch (err) {
    if (err instanceof ReplyBudgetSpentError) {
      report.skipped++;
      logger.debug({ dir: work.dir }, 'its reply waits for the next tick (poller.max_replies_per_tick)');
      return false;
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
    logger[failed.next_retry_at ? 'warn' : 'error'](
      {
        pr: prOfDir(jobdirs.root, work.dir),
        dir: jobdirs.relative(work.dir),
        stage: failed.stage,
        attempts: failed.attempts,
        next_retry_at: failed.next_retry_at,
        err: message,
      },
      failed.next_retry_at
        ? 'advancing failed; it is retried later'
        : `parked as ${failed.stage} after ${failed.attempts} failed attempts (poller.max_attempts)`,
    );
    return false;
  }
}

/** Stages that wait on nothing outside: checkout, sbatch and release happen in one go. */
const CHAINED_STAGES = new Set(['submitting', 'submitted']);

async function advanceJobChain(
  deps: StageDeps,
  work: WorkDir<JobData>,
  observations: Map<string, JobObservation> | undefined,
  report: TickReport,
): Promise<boolean> {
  for (;;) {
    const stage = work.state.stage;
    const ok = await attempt(deps, work, report, () => advanceWorkDir(work, observations));
    if (!ok || work.state.stage === stage || !CHAINED_STAGES.has(work.state.stage)) return ok;
  }
}

/** After the tick's steps on a directory: drop it from the queue once final, else note it in the tick cache. */
async function settle(
  deps: StageDeps,
  p: Pending,
  ok: boolean,
  observations: Map<string, JobObservation> | undefined,
  nextCache: PendingIndex,
): Promise<void> {
  const { jobdirs, logger } = deps;
  const work = p.work!;
  if (ok && FINAL_STAGES.has(work.state.stage) && work.state.next_retry_at) {
    const { next_retry_at: _n, ...rest } = work.state;
    work.state = { ...rest, attempts: 0 } as never;
    await writeState(work.dir, work.state as DirState<unknown>).catch(() => undefined);
  }
  if (FINAL_STAGES.has(work.state.stage) && !work.state.next_retry_at) {
    await jobdirs.dequeue(work.dir).catch((err: unknown) => {
      logger.error({ dir: work.dir, err: (err as Error).message }, 'cannot drop it from the index');
    });
    return;
  }
  const jobId = work.state.kind === 'job' ? (work.state.data as JobData).job_id : undefined;
  const applied = ok && jobId && observations ? observationKey(observations.get(jobId)) : undefined;
  let sig: string | undefined;
  try {
    sig = stateSignature(p.dir);
  } catch {
    sig = undefined; // read again next tick
  }
  nextCache.set(p.name, summarize(p.entry.rel, sig, work.state as DirState<unknown>, applied));
}

/** Jobs submitted this recently are observed every YOUNG_JOB_TICK_MS, not only on the schedule. */
export const YOUNG_JOB_MS = 5 * 60_000;
const YOUNG_JOB_TICK_MS = 1000;
const HEARTBEAT_MS = 30_000;
/** sinfo is asked at most this often (it is one call, but ticks come every second while jobs are young). */
const PARTITIONS_EVERY_MS = 15_000;

/** Pure: how many pending jobs are young (submitted in the last YOUNG_JOB_MS, not yet final). */
export function countYoung(entries: Iterable<IndexEntry>, now: Date): number {
  let young = 0;
  for (const e of entries) {
    if (e.kind !== 'job' || !e.submittedAt || (e.stage && FINAL_STAGES.has(e.stage))) continue;
    if (now.getTime() - Date.parse(e.submittedAt) < YOUNG_JOB_MS) young++;
  }
  return young;
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
  await inParallel(lanes, limit, async (lane) => {
    for (const item of lane) await advance(item);
  });
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
  due: Pending[],
): Promise<Map<string, JobObservation> | undefined> {
  const jobs = due
    .filter(
      (p) => p.entry.kind === 'job' && p.entry.stage && OBSERVED_STAGES.has(p.entry.stage) && p.entry.jobId,
    )
    .map((p) => ({ jobId: p.entry.jobId!, workTree: workTreeOf(p.dir) }));
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

export function createDeps(
  config: Config,
  logger: Logger,
  onGitHubCall?: (call: GitHubCall) => void,
): StageDeps {
  const jobdirs = new JobDirs(config.jobdirs);
  const account = new JobAccount(config.backend.run_as);
  return {
    config,
    logger,
    jobdirs,
    github: createGitHub(config, logger, process.env, onGitHubCall && { onResponse: onGitHubCall }),
    backend: createBackend(config, logger, jobdirs, account),
    account,
    now: () => new Date(),
  };
}

/**
 * The poller across ticks: site.yaml is read again before each tick (when it changed; see LiveConfig),
 * the adapters are rebuilt for a new config, and after each tick the heartbeat is written
 * (`status/poller.json`: the config in use, the tick's report, the scheduler's last answer).
 */
export class LivePoller {
  readonly live: LiveConfig;
  private current: StageDeps;
  /** The scheduler's health during a tick; read from the heartbeat, which keeps it across restarts. */
  private backendHealth: BackendHealth = {};
  /** When sinfo was last asked; whether active jobs may carry health rows (unknown after a start). */
  private partitionsAskedAt = 0;
  private notesMayBeOut = true;
  /** The GitHub calls of the tick in progress, for the metrics file. */
  private readonly githubCalls: GitHubCall[] = [];

  constructor(
    config: Config,
    opts: Pick<LiveConfigOptions, 'logger' | 'env' | 'warnings'> & {
      makeDeps: (config: Config, onGitHubCall: (call: GitHubCall) => void) => StageDeps;
    },
  ) {
    const onGitHubCall = (call: GitHubCall) => void this.githubCalls.push(call);
    this.current = opts.makeDeps(config, onGitHubCall);
    this.live = new LiveConfig(config, {
      logger: opts.logger,
      env: opts.env,
      warnings: opts.warnings,
      restartOnly: POLLER_RESTART_ONLY,
      // Adapters that cannot be built from the new file (say, an unset token variable) reject it.
      accept: async (next) => void (this.current = opts.makeDeps(next, onGitHubCall)),
    });
  }

  /** The deps for the next tick, after reading site.yaml again. */
  async deps(): Promise<StageDeps> {
    await this.live.refresh();
    return this.current;
  }

  async tick(only?: string[]): Promise<TickReport> {
    const deps = await this.deps();
    const at = deps.now();
    const started = performance.now();
    this.backendHealth = (await readHeartbeat(deps.jobdirs.root, 'poller'))?.backend ?? {};
    const schedulerCalls: TickSample['schedulerCalls'] = [];
    const backend = measuredBackend(this.noteAnswers(deps.backend, deps.now), schedulerCalls);
    let report: TickReport | undefined;
    try {
      report = await runTick({ ...deps, backend }, only);
    } finally {
      const sample = { at: deps.now().toISOString(), seconds: (performance.now() - started) / 1000 };
      const githubCalls = this.githubCalls.splice(0);
      await recordTick(deps.jobdirs.root, {
        ...sample,
        ok: report !== undefined,
        schedulerCalls,
        githubCalls,
      }).catch((err: unknown) =>
        deps.logger.warn({ err: (err as Error).message }, 'cannot write the metrics file'),
      );
    }
    if (!only) await this.noteHealth(deps);
    await writeHeartbeat(deps.jobdirs.root, 'poller', {
      config: this.live.health,
      lastTick: { at: at.toISOString(), ms: Math.round(performance.now() - started), report: { ...report } },
      backend: this.backendHealth,
    }).catch((err: unknown) =>
      deps.logger.warn({ err: (err as Error).message }, 'cannot write the heartbeat'),
    );
    return report;
  }

  /**
   * Partition states (sinfo, at most every PARTITIONS_EVERY_MS) and the health rows of active jobs
   * (src/stages/healthNotes.ts). Never fails a tick.
   */
  private async noteHealth(deps: StageDeps): Promise<void> {
    try {
      if (Date.now() - this.partitionsAskedAt >= PARTITIONS_EVERY_MS) {
        this.partitionsAskedAt = Date.now();
        this.backendHealth = await refreshPartitions(deps, this.backendHealth);
      }
      if (this.notesMayBeOut || notesWanted(this.backendHealth, deps.config.health.alert_after, deps.now())) {
        const flagged = await applyHealthNotes(deps, this.backendHealth);
        this.notesMayBeOut = flagged > 0;
      }
    } catch (err) {
      deps.logger.warn({ err: (err as Error).message }, 'cannot bring the health notes of jobs up to date');
    }
  }

  /** `backend`, with each answer of the scheduler (or its silence) noted for the heartbeat. */
  private noteAnswers(backend: Backend, now: () => Date): Backend {
    return {
      kind: backend.kind,
      submit: (...args) => backend.submit(...args),
      findBySubmitId: (...args) => backend.findBySubmitId(...args),
      release: (...args) => backend.release(...args),
      cancel: (...args) => backend.cancel(...args),
      observe: async (...args) => {
        try {
          const seen = await backend.observe(...args);
          const { unreachableSince: _back, ...health } = this.backendHealth;
          this.backendHealth = { ...health, lastOk: now().toISOString() };
          return seen;
        } catch (err) {
          const lastError = { at: now().toISOString(), message: (err as Error).message };
          const unreachableSince = this.backendHealth.unreachableSince ?? lastError.at;
          this.backendHealth = { ...this.backendHealth, lastError, unreachableSince };
          throw err;
        }
      },
    };
  }
}

export async function runPollerCommand(
  config: Config,
  logger: Logger,
  opts: PollerCliOptions,
  warnings: string[] = [],
): Promise<number> {
  const poller = new LivePoller(config, {
    logger,
    warnings,
    makeDeps: (c, onGitHubCall) => createDeps(c, logger, onGitHubCall),
  });
  // jobdirs and the schedule are bound here for the life of the process (POLLER_RESTART_ONLY).
  const jobdirs = new JobDirs(config.jobdirs);
  await jobdirs.ensureBaseDirs();
  const lockFile = path.join(jobdirs.locksDir, 'poller.lock');

  if (opts.replay || opts.dir || opts.once) {
    const lock = await waitForLock(lockFile, 120_000);
    try {
      let only: string[] | undefined;
      if (opts.replay) {
        const dir = path.resolve(opts.replay);
        await replayEvent(await poller.deps(), dir);
        only = [dir];
      } else if (opts.dir) {
        only = [path.resolve(opts.dir)];
      }
      const report = await poller.tick(only);
      logger.info(report, 'tick done');
      return report.failed > 0 ? 1 : 0;
    } finally {
      await lock.release();
    }
  }

  // A release that keeps crashing after a self-update is switched back here (src/selfUpdate/).
  let exitCode = 0;
  const restart = () => {
    exitCode = EXIT_RESTART;
    process.kill(process.pid, 'SIGTERM');
  };
  if (config.self_update) {
    const lock = await waitForLock(lockFile, 120_000);
    const rolledBack = await noteStart(config).finally(() => lock.release());
    if (rolledBack) return EXIT_RESTART;
  }
  const unfollow = config.self_update ? followRelease(config.self_update, restart) : () => {};

  // Long-running: cron ticks, a wake-up when the server adds to the pending-work index, and a look
  // every second while jobs are young (just submitted, about to start or end).
  let running = false;
  let again = false;
  let soon: NodeJS.Timeout | undefined;
  const tick = async () => {
    clearTimeout(soon);
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
          const started = Date.now();
          const report = await poller.tick();
          // What the tick did is in its own lines (job submitted, command received ...); failures stand out.
          logger[report.failed ? 'info' : 'debug'](report, 'tick done');
          if (await selfUpdateIfDue(poller.live.config, logger)) restart();
          if (report.young > 0) {
            clearTimeout(soon);
            soon = setTimeout(() => void tick(), Math.max(0, YOUNG_JOB_TICK_MS - (Date.now() - started)));
          }
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
  const watcher = watch(jobdirs.queueDir, () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => void tick(), 50);
  });
  const task = cron.schedule(config.poller.schedule, () => void tick());
  // ingest.mode pull/both: deliveries come from GitHub's list, stored like the server stores them.
  const stopPulling = startPullLoop({
    jobdirs,
    logger,
    config: () => poller.live.config,
    makeDeliveries: (c) => createDeliveries(c, logger),
    onHealth: (ingest) => writeHeartbeat(jobdirs.root, 'poller', { ingest }).then(() => undefined),
  });
  logger.info(`poller started: schedule "${config.poller.schedule}", watching ${jobdirs.queueDir}`);
  // SIGHUP asks for a tick now, which reads site.yaml again (and must not end the process).
  const onHangup = () => void tick();
  process.on('SIGHUP', onHangup);
  // Between ticks of a slow schedule, `hpcbot status` still sees a live poller.
  const heartbeat = setInterval(() => {
    writeHeartbeat(jobdirs.root, 'poller', {}).catch((err: unknown) =>
      logger.warn({ err: (err as Error).message }, 'cannot write the heartbeat'),
    );
  }, HEARTBEAT_MS);
  const stopped = new Promise<void>((resolve) => {
    const stop = () => {
      watcher.close();
      clearTimeout(soon);
      clearInterval(heartbeat);
      process.off('SIGHUP', onHangup);
      unfollow();
      void task.stop();
      void stopPulling().then(resolve);
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  await tick();
  await stopped;
  return exitCode;
}
