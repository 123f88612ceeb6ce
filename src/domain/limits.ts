/**
 * `limits:` in site.yaml: how many jobs of this instance may be active (handed to the scheduler) at
 * once, in all, per PR and on GPU nodes. Jobs over a limit wait in the `queued` stage, first come first
 * served across PRs. Pure: the poller's job stage gives the jobs it sees, this says whether one may go.
 */

export interface Limits {
  max_active_jobs?: number | undefined;
  max_active_jobs_per_pr?: number | undefined;
  max_active_gpu_jobs?: number | undefined;
}

export interface SlotJob {
  /** Unique and stable: the job dir relative to jobdirs (breaks ties between equal `since`). */
  id: string;
  /** `owner/repo#N`. */
  pr: string;
  /** Runs on a GPU node type (counts against max_active_gpu_jobs). */
  gpu: boolean;
  /** When the job was prepared: the queue order. */
  since: string;
  /** Handed to the scheduler (submitting, submitted, released, running); otherwise waiting for a slot. */
  active: boolean;
}

export type Slot = { free: true } | { free: false; ahead: number };

export function hasLimits(l: Limits): boolean {
  return (
    l.max_active_jobs !== undefined ||
    l.max_active_jobs_per_pr !== undefined ||
    l.max_active_gpu_jobs !== undefined
  );
}

/**
 * Pure: whether job `id` may become active now. The waiting jobs are taken in order (prepared first,
 * then by id); each that fits every limit is given a slot, in turn. A job that does not fit waits, and
 * `ahead` counts the waiting jobs before it that got no slot either. A job held only by its own PR's
 * limit does not hold up other PRs' jobs.
 */
export function slotFor(limits: Limits, jobs: readonly SlotJob[], id: string): Slot {
  let total = 0;
  let gpu = 0;
  const perPr = new Map<string, number>();
  const take = (j: SlotJob) => {
    total++;
    if (j.gpu) gpu++;
    perPr.set(j.pr, (perPr.get(j.pr) ?? 0) + 1);
  };
  for (const j of jobs) if (j.active) take(j);
  const waiting = jobs
    .filter((j) => !j.active)
    .sort((a, b) => (a.since === b.since ? (a.id < b.id ? -1 : 1) : a.since < b.since ? -1 : 1));
  let ahead = 0;
  for (const j of waiting) {
    const fits =
      total < (limits.max_active_jobs ?? Infinity) &&
      (perPr.get(j.pr) ?? 0) < (limits.max_active_jobs_per_pr ?? Infinity) &&
      (!j.gpu || gpu < (limits.max_active_gpu_jobs ?? Infinity));
    if (j.id === id) return fits ? { free: true } : { free: false, ahead };
    if (fits) take(j);
    else ahead++;
  }
  return { free: true }; // not among the jobs seen: nothing to hold it back with
}
