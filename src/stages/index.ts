/**
 * Advancing one directory by its next stage. The poller calls `advanceDir` for each pending entry;
 * an operator does the same with `hpcbot poll --dir`.
 */
import path from 'node:path';
import { EVENT_FILE } from '../ingest/eventStore.js';
import { exists } from '../store/fsutil.js';
import type { JobData } from '../store/job.js';
import { FINAL_STAGES, newState, readState, type DirState } from '../store/state.js';
import type { JobObservation } from '../adapters/schedulers/types.js';
import { WorkDir, type StageDeps } from './context.js';
import { advanceEvent, type EventData } from './event.js';
import { advanceJob } from './job.js';

export class NotAWorkDirError extends Error {}

/** Read (or, for a fresh event, create) the state of `dir`. */
export async function loadWorkDir(
  dir: string,
  deps: StageDeps,
): Promise<WorkDir<EventData> | WorkDir<JobData>> {
  const state = await readState(dir);
  if (state) return new WorkDir(dir, state as DirState<never>, deps);
  if (await exists(path.join(dir, EVENT_FILE))) {
    const fresh = newState<EventData>(
      'event',
      'received',
      { event: '', action: null, generation: 0 },
      deps.now(),
    );
    return new WorkDir(dir, fresh, deps);
  }
  throw new NotAWorkDirError(`${dir} has neither ${EVENT_FILE} nor a state file`);
}

/**
 * Advance `work` by one stage. `observations` holds this tick's batched scheduler answers for jobs
 * (undefined when the scheduler could not be asked, so job states stay as they are).
 */
export async function advanceWorkDir(
  work: WorkDir<EventData> | WorkDir<JobData>,
  observations: Map<string, JobObservation> | undefined,
): Promise<void> {
  if (work.state.kind === 'event') {
    if (!FINAL_STAGES.has(work.state.stage)) await advanceEvent(work as WorkDir<EventData>);
  }
  // Jobs in a final stage only get their comment brought up to date.
  else await advanceJob(work as WorkDir<JobData>, observations);
}
