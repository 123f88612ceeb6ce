/**
 * A cache that lets a tick cost what changed: `<jobdirs>/index/pending.json` holds, per entry of the
 * pending-work queue, the directory it names, the signature of its state.json when last seen (inode,
 * mtime, size: every atomic write makes a new inode), a summary of that state, and the last
 * scheduler answer the directory fully took in.
 *
 * The directories stay the truth. The poller writes this file at the end of a tick, after every
 * directory it names was written, so a crash can only leave it behind the directories, never ahead:
 * a directory whose state.json signature differs is read again, and one that is missing from the file
 * is read like on the first tick. Deleting the file is always safe.
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import type { JobObservation } from '../adapters/schedulers/types.js';
import { readJsonIfExists, writeFileAtomic, mkdirDurable } from './fsutil.js';
import { STATE_FILE, type DirState } from './state.js';

export const INDEX_FILE = path.join('index', 'pending.json');
const VERSION = 1;

export interface IndexEntry {
  /** The directory, relative to jobdirs (the queue entry's content, which never changes). */
  rel: string;
  /** state.json's signature when this entry was written; absent if it had none. */
  sig?: string;
  kind?: DirState['kind'];
  stage?: string;
  jobId?: string;
  nextRetryAt?: string;
  /** When the job was submitted (jobs only): young jobs are observed more often. */
  submittedAt?: string;
  /** The scheduler answer (observationKey) this job took in completely; absent: visit it next time. */
  observed?: string;
}

export type PendingIndex = Map<string, IndexEntry>;

interface IndexFile {
  version: number;
  entries: Record<string, IndexEntry>;
}

export function indexPath(root: string): string {
  return path.join(root, INDEX_FILE);
}

/** The cached index, or an empty one when it is missing, unreadable or of another version. */
export async function readPendingIndex(root: string): Promise<PendingIndex> {
  try {
    const file = await readJsonIfExists<IndexFile>(indexPath(root));
    if (file?.version !== VERSION || typeof file.entries !== 'object' || file.entries === null)
      return new Map();
    return new Map(Object.entries(file.entries));
  } catch {
    return new Map();
  }
}

export async function writePendingIndex(root: string, index: PendingIndex): Promise<void> {
  const file = indexPath(root);
  await mkdirDurable(path.dirname(file));
  const body: IndexFile = { version: VERSION, entries: Object.fromEntries(index) };
  await writeFileAtomic(file, JSON.stringify(body));
}

/**
 * state.json's signature, or undefined when there is none (a fresh event). Synchronous on purpose:
 * a tick stats every pending directory before anything else, and 10,000 stat(2) calls take a few
 * milliseconds in a loop but far longer through the thread pool.
 */
export function stateSignature(dir: string): string | undefined {
  const st = statSync(path.join(dir, STATE_FILE), { throwIfNoEntry: false });
  return st ? `${st.ino}:${st.mtimeMs}:${st.size}` : undefined;
}

/** Pure: the parts of a scheduler answer that can change what a job directory records. */
export function observationKey(obs: JobObservation | undefined): string | undefined {
  if (!obs) return undefined;
  return JSON.stringify([obs.state, obs.final, obs.exitCode ?? '', obs.held ?? false]);
}

/** Pure: the summary of a state that the next tick needs without reading it. */
export function summarize(
  rel: string,
  sig: string | undefined,
  state: DirState<unknown> | undefined,
  observed?: string,
): IndexEntry {
  const data = (state?.data ?? {}) as { job_id?: unknown; submitted_at?: unknown };
  return {
    rel,
    ...(sig ? { sig } : {}),
    ...(state ? { kind: state.kind, stage: state.stage } : {}),
    ...(typeof data.job_id === 'string' ? { jobId: data.job_id } : {}),
    ...(state?.next_retry_at ? { nextRetryAt: state.next_retry_at } : {}),
    ...(typeof data.submitted_at === 'string' ? { submittedAt: data.submitted_at } : {}),
    ...(observed ? { observed } : {}),
  };
}
