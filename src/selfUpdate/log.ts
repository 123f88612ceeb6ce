/**
 * The self-update state, `<jobdirs>/status/self-update.json`: when the remote was last checked, the
 * last switch of the `current` release (and the poller's starts since, for the crash check), the
 * releases that failed their checks (not tried again), and the last updates and rollbacks, newest
 * last, for the status page. Only the poller and `hpcbot self-update` write it, under the poller lock;
 * rewritten atomically.
 */
import path from 'node:path';
import { STATUS_DIR } from '../store/heartbeat.js';
import { mkdirDurable, readJsonIfExists, writeFileAtomic } from '../store/fsutil.js';

const STATE_FILE = 'self-update.json';
const KEPT = 50;

export interface SelfUpdateEntry {
  at: string;
  action: 'updated' | 'rolled back' | 'refused';
  /** The releases switched from and to (commit SHAs). */
  from?: string;
  to?: string;
  /** Why (a rollback, a refused release). */
  reason?: string;
}

export interface SelfUpdateState {
  lastCheck?: string;
  switched?: { from?: string; to: string; at: string; starts: string[] };
  /** Releases that failed their checks, by SHA, with why. */
  refused: Record<string, string>;
  log: SelfUpdateEntry[];
}

export function selfUpdateStatePath(jobdirs: string): string {
  return path.join(jobdirs, STATUS_DIR, STATE_FILE);
}

export async function readSelfUpdateState(jobdirs: string): Promise<SelfUpdateState> {
  const empty: SelfUpdateState = { refused: {}, log: [] };
  try {
    return { ...empty, ...(await readJsonIfExists<SelfUpdateState>(selfUpdateStatePath(jobdirs))) };
  } catch {
    return empty;
  }
}

export async function readSelfUpdateLog(jobdirs: string): Promise<SelfUpdateEntry[]> {
  return (await readSelfUpdateState(jobdirs)).log;
}

export async function writeSelfUpdateState(jobdirs: string, state: SelfUpdateState): Promise<void> {
  await mkdirDurable(path.join(jobdirs, STATUS_DIR));
  const kept = { ...state, log: state.log.slice(-KEPT) };
  await writeFileAtomic(selfUpdateStatePath(jobdirs), JSON.stringify(kept, null, 2) + '\n');
}
