/**
 * Instance health on the PR: after a tick, the poller asks `sinfo` about the node types' partitions
 * (at most every PARTITIONS_EVERY_MS) and brings the health rows of active jobs up to date (see
 * domain/health.ts jobHealthRows): a waiting job whose partition is down or drained gets a row once;
 * while the scheduler has not answered for health.alert_after, every active job says so, and the row
 * goes once it answers. A changed job is published at once (its comment and check run), since a tick
 * leaves jobs alone while the scheduler is silent.
 */
import type { Config } from '../config/config.js';
import { healthRowsOf, isBlocking, jobHealthRows, partitionOf } from '../domain/health.js';
import type { BackendHealth, PartitionHealth } from '../store/heartbeat.js';
import { ACTIVE_JOB_STAGES, type JobData } from '../store/job.js';
import { readState } from '../store/state.js';
import { BackendUnavailableError } from '../adapters/schedulers/types.js';
import type { StageDeps, WorkDir } from './context.js';
import { loadWorkDir } from './index.js';
import { publishJob } from './job.js';

/** Node type → the partition its jobs go to (its slurm_params, else backend.slurm.sbatch_params). */
export function nodeTypePartitions(config: Config): Map<string, string> {
  const out = new Map<string, string>();
  const fallback = partitionOf(config.backend.slurm.sbatch_params);
  for (const [name, node] of Object.entries(config.build.node_types)) {
    const partition = partitionOf(node.slurm_params) ?? fallback;
    if (partition) out.set(name, partition);
  }
  return out;
}

/** Pure: the partitions' new states, each with the time it was first seen in that state. */
export function mergePartitions(
  previous: PartitionHealth[] | undefined,
  now: Array<{ partition: string; state: string }>,
  at: Date,
): PartitionHealth[] {
  return now.map((p) => {
    const before = previous?.find((x) => x.partition === p.partition && x.state === p.state);
    return { ...p, since: before?.since ?? at.toISOString() };
  });
}

/** Ask sinfo; its answer (or silence) counts as the scheduler's like squeue's. */
export async function refreshPartitions(deps: StageDeps, health: BackendHealth): Promise<BackendHealth> {
  const names = [...new Set(nodeTypePartitions(deps.config).values())];
  if (!deps.backend.partitionStates || names.length === 0) return health;
  const at = deps.now();
  try {
    const states = await deps.backend.partitionStates(names);
    const { unreachableSince: _gone, ...rest } = health;
    return { ...rest, lastOk: at.toISOString(), partitions: mergePartitions(health.partitions, states, at) };
  } catch (err) {
    if (!(err instanceof BackendUnavailableError)) throw err;
    return {
      ...health,
      lastError: { at: at.toISOString(), message: err.message },
      unreachableSince: health.unreachableSince ?? at.toISOString(),
    };
  }
}

/** Whether any active job may need a row added or removed. */
export function notesWanted(health: BackendHealth, alertAfter: number, now: Date): boolean {
  const alerting =
    health.unreachableSince !== undefined &&
    now.getTime() - Date.parse(health.unreachableSince) >= alertAfter * 1000;
  return alerting || (health.partitions ?? []).some(isBlocking);
}

/**
 * Bring every active job's health rows up to date and publish the jobs that changed. Returns how many
 * jobs carry a health row afterwards (so the caller knows whether to look again when all is well).
 */
export async function applyHealthNotes(deps: StageDeps, health: BackendHealth): Promise<number> {
  const partitions = nodeTypePartitions(deps.config);
  let flagged = 0;
  for (const dir of await deps.jobdirs.pending()) {
    const state = await readState<JobData>(dir).catch(() => undefined);
    if (state?.kind !== 'job' || !ACTIVE_JOB_STAGES.has(state.stage)) continue;
    const partition = partitions.get(state.data.target.nodeType);
    const rows = jobHealthRows(state.data.rows, {
      instance: deps.config.instance,
      stage: state.stage,
      partition: health.partitions?.find((p) => p.partition === partition),
      unreachableSince: health.unreachableSince,
      alertAfter: deps.config.health.alert_after,
      now: deps.now(),
    });
    if (healthRowsOf(rows).length > 0) flagged++;
    if (rows === state.data.rows) continue;
    const job = (await loadWorkDir(dir, deps)) as WorkDir<JobData>;
    await job.update((s) => ({ ...s, data: { ...s.data, rows } }));
    await publishJob(job).catch((err: unknown) =>
      deps.logger.warn({ dir, err: (err as Error).message }, 'cannot publish a health note yet'),
    );
  }
  return flagged;
}
