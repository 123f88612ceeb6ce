/**
 * The Slurm backend: sbatch, squeue, sacct, scontrol and scancel, each through execFile.
 *
 * - A job's working directory is its job dir's work tree, and no two jobs share one; so `WorkDir` (in squeue and
 *   sacct) identifies our job after a crash, and `--comment=<submit id>` makes it visible to humans.
 * - Tracking: one `squeue --user=<job owner> --name=<job name>` call for everything waiting or running, then one `sacct`
 *   call for the jobs that have left the queue. Final states come only from sacct.
 * - Any failure of squeue or sacct raises BackendUnavailableError, so that tick changes no job state.
 * - With `backend.run_as`, sbatch, scontrol release and scancel run through sudo as the job user, so the
 *   job runs as that user; squeue and sacct run as the bot.
 */
import os from 'node:os';
import type { JobAccount } from '../jobUser.js';
import { CommandError, run } from '../process.js';
import {
  BackendUnavailableError,
  type Backend,
  type JobObservation,
  type PartitionState,
  type SubmitRequest,
} from './types.js';

export interface SlurmSettings {
  handover: 'hold_release' | 'delayed_begin';
  default_time: string;
  delay_begin_seconds: number;
  /** Shared by all jobs of this instance. */
  jobName: string;
  /** sbatch's environment, which the job inherits, when it runs as the bot (see jobEnvironment). */
  env: NodeJS.ProcessEnv;
  account: JobAccount;
}

const ACTIVE_STATES = new Set([
  'PENDING',
  'RUNNING',
  'CONFIGURING',
  'COMPLETING',
  'SUSPENDED',
  'REQUEUED',
  'RESIZING',
]);

/** sbatch arguments (pure): site/node params, handover, default time, name, comment, working dir. */
export function sbatchArgs(req: SubmitRequest, s: SlurmSettings): string[] {
  const params = req.params.filter((p) => p !== '--hold');
  const hasTime = params.some((p) => p === '-t' || p.startsWith('--time') || /^-t\S/.test(p));
  return [
    '--parsable',
    ...(s.handover === 'hold_release' ? ['--hold'] : [`--begin=now+${s.delay_begin_seconds}`]),
    ...(hasTime ? [] : [`--time=${s.default_time}`]),
    ...params,
    `--job-name=${s.jobName}`,
    `--comment=hpcbot:${req.submitId}`,
    `--chdir=${req.workTree}`,
    req.script,
  ];
}

/**
 * Pure: `sinfo --format=%R|%a|%T` lines (partition, availability, node state; a partition has a line per
 * node state) → one state per partition: its availability when not `up` (down, drain, inact), else
 * `drained` or `down` when every node is, else `up`.
 */
export function parsePartitionStates(out: string): PartitionState[] {
  const byName = new Map<string, { avail: string; nodes: string[] }>();
  for (const line of out.split('\n')) {
    const [name, avail, nodeState] = line.trim().split('|');
    if (!name || !avail) continue;
    const entry = byName.get(name) ?? { avail: avail.toLowerCase(), nodes: [] };
    if (nodeState) entry.nodes.push(nodeState.toLowerCase().replace(/[*~#!%$@^-]+$/, ''));
    byName.set(name, entry);
  }
  return [...byName].map(([partition, { avail, nodes }]) => {
    if (avail !== 'up') return { partition, state: avail };
    if (nodes.length > 0 && nodes.every((n) => n.startsWith('drain'))) return { partition, state: 'drained' };
    if (nodes.length > 0 && nodes.every((n) => n.startsWith('down') || n.startsWith('drain')))
      return { partition, state: 'down' };
    return { partition, state: 'up' };
  });
}

/** `CANCELLED by 0` → `CANCELLED`. */
export function baseState(state: string): string {
  return state.trim().split(/\s+/)[0] ?? '';
}

export class SlurmBackend implements Backend {
  readonly kind = 'slurm' as const;

  constructor(private readonly settings: SlurmSettings) {}

  /** Who owns our jobs in Slurm: the job user with `backend.run_as`, else the bot's own user. */
  private get jobOwner(): string {
    return this.settings.account.name ?? os.userInfo().username;
  }

  async submit(req: SubmitRequest): Promise<{ jobId: string }> {
    const [command, args] = this.settings.account.argv('sbatch', sbatchArgs(req, this.settings));
    const out = await run(command, args, {
      cwd: req.workTree,
      env: { ...this.settings.env, HOME: req.workTree },
    });
    const jobId = out.trim().split(';')[0] ?? '';
    if (!/^\d+$/.test(jobId))
      throw new Error(`sbatch printed no job id: ${JSON.stringify(out.slice(0, 200))}`);
    return { jobId };
  }

  async findBySubmitId(_submitId: string, workTree: string): Promise<string | undefined> {
    // Only after a submission that may have gone through, and only our jobs: the job user's, by name.
    // squeue -t all still shows jobs that just finished (for MinJobAge); sacct knows older ones (it
    // lags a few seconds behind for brand-new pending jobs, which squeue covers).
    const queued = await this.query('squeue', [
      '--noheader',
      '-t',
      'all',
      `--user=${this.jobOwner}`,
      `--name=${this.settings.jobName}`,
      '-o',
      '%i|%Z',
    ]);
    for (const line of queued.split('\n')) {
      const [id, dir] = line.split('|');
      if (id && dir === workTree) return id.trim();
    }
    const accounted = await this.query('sacct', [
      '--noheader',
      '--parsable2',
      '-X',
      `--user=${this.jobOwner}`,
      `--name=${this.settings.jobName}`,
      '-S',
      'now-7days',
      '-o',
      'JobID,WorkDir',
    ]);
    for (const line of accounted.split('\n')) {
      const [id, dir] = line.split('|');
      if (id && dir === workTree) return id.trim();
    }
    return undefined;
  }

  async release(jobId: string): Promise<boolean> {
    await run(...this.settings.account.argv('scontrol', ['release', jobId]));
    return true;
  }

  async observe(jobs: Array<{ jobId: string }>): Promise<Map<string, JobObservation>> {
    const wanted = new Set(jobs.map((j) => j.jobId));
    const seen = new Map<string, JobObservation>();
    const queue = await this.query('squeue', [
      '--noheader',
      `--user=${this.jobOwner}`,
      `--name=${this.settings.jobName}`,
      '-o',
      '%i|%T|%r',
    ]);
    for (const line of queue.split('\n')) {
      const [id, state, reason] = line.split('|').map((s) => s.trim());
      if (!id || !state || !wanted.has(id) || !ACTIVE_STATES.has(state)) continue;
      const held = /^JobHeld/.test(reason ?? '');
      seen.set(id, { jobId: id, state, final: false, ...(reason ? { reason } : {}), held });
    }
    const gone = [...wanted].filter((id) => !seen.has(id));
    if (gone.length === 0) return seen;
    const acct = await this.query('sacct', [
      '--noheader',
      '--parsable2',
      '-X',
      '-j',
      gone.join(','),
      '-o',
      'JobID,State,ExitCode',
    ]);
    for (const line of acct.split('\n')) {
      const [id, rawState, exitCode] = line.split('|');
      if (!id || !rawState || !wanted.has(id) || seen.has(id)) continue;
      const state = baseState(rawState);
      const final = !ACTIVE_STATES.has(state);
      seen.set(id, { jobId: id, state, final, ...(exitCode ? { exitCode } : {}) });
    }
    return seen;
  }

  async cancel(jobId: string): Promise<void> {
    await run(...this.settings.account.argv('scancel', [jobId]));
  }

  /** `sinfo` for the given partitions (all, if none given): one call. */
  async partitionStates(partitions: string[]): Promise<PartitionState[]> {
    const out = await this.query('sinfo', [
      '--noheader',
      '--format=%R|%a|%T',
      ...(partitions.length > 0 ? [`--partition=${partitions.join(',')}`] : []),
    ]);
    return parsePartitionStates(out);
  }

  private async query(command: string, args: string[]): Promise<string> {
    try {
      return await run(command, args, { timeoutMs: 30_000 });
    } catch (err) {
      if (err instanceof CommandError) throw new BackendUnavailableError(err.message);
      throw new BackendUnavailableError(`${command}: ${(err as Error).message}`);
    }
  }
}
