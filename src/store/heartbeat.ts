/**
 * What each process tells an operator about itself, on disk: `<jobdirs>/status/<process>.json`,
 * rewritten atomically. `hpcbot status` reads these files and nothing else of the processes.
 * A missing file means the process has never run against this jobdirs.
 */
import os from 'node:os';
import path from 'node:path';
import { mkdirDurable, readJsonIfExists, writeFileAtomic } from './fsutil.js';

export const STATUS_DIR = 'status';
export type ProcessName = 'server' | 'poller';

export interface ConfigHealth {
  source: string;
  /** sha256 of the site.yaml text in use. */
  digest: string;
  /** Since when the file on disk has been failing to validate (the last good one stays in use). */
  error?: { message: string; since: string };
}

export interface TickSummary {
  at: string;
  ms: number;
  /** What the tick did, e.g. { advanced: 3, submitted: 1 }. */
  report: Record<string, unknown>;
}

export interface BackendHealth {
  /** Last time the scheduler answered (squeue/sacct, or the local runner's records). */
  lastOk?: string;
  lastError?: { at: string; message: string };
  /** Since when the scheduler has not answered (cleared by its next answer). */
  unreachableSince?: string;
  /** `sinfo` state of each node type's partition, when last asked. */
  partitions?: PartitionHealth[];
}

export interface PartitionHealth {
  partition: string;
  /** up, down, drain, inactive, ... as sinfo prints it (lower case). */
  state: string;
  /** Since when it has been in this state, as first seen by this instance. */
  since: string;
}

/** The pull ingest (ingest.mode pull or both), from its last listing. */
export interface IngestHealth {
  mode: 'webhook' | 'pull' | 'both';
  lastPullAt?: string;
  lastPullError?: { at: string; message: string };
  /** Delivered at GitHub → stored, of the last delivery a pull stored (ms). */
  lagMs?: number;
  /** Deliveries the look-backs stored because the server never did (since this jobdirs began). */
  recovered?: number;
}

export interface Heartbeat {
  process: ProcessName;
  pid: number;
  host: string;
  startedAt: string;
  updatedAt: string;
  config?: ConfigHealth;
  lastTick?: TickSummary;
  backend?: BackendHealth;
  ingest?: IngestHealth;
  /** Anything else a process wants an operator to see (e.g. the server's URL). */
  extra?: Record<string, unknown>;
}

export function heartbeatPath(jobdirs: string, name: ProcessName): string {
  return path.join(jobdirs, STATUS_DIR, `${name}.json`);
}

/** Merge `update` into this process's heartbeat and stamp it with the current time. */
export async function writeHeartbeat(
  jobdirs: string,
  name: ProcessName,
  update: Partial<Omit<Heartbeat, 'process' | 'pid' | 'host' | 'updatedAt'>>,
  now = new Date(),
): Promise<Heartbeat> {
  const file = heartbeatPath(jobdirs, name);
  const previous = await readHeartbeat(jobdirs, name);
  const samePid = previous?.pid === process.pid;
  const next: Heartbeat = {
    // The scheduler's health outlives a restart (say, since when it has been unreachable).
    ...(samePid ? previous : previous?.backend ? { backend: previous.backend } : {}),
    ...update,
    process: name,
    pid: process.pid,
    host: os.hostname(),
    startedAt: update.startedAt ?? (samePid && previous ? previous.startedAt : now.toISOString()),
    updatedAt: now.toISOString(),
  };
  await mkdirDurable(path.dirname(file));
  await writeFileAtomic(file, JSON.stringify(next, null, 2) + '\n');
  return next;
}

export async function readHeartbeat(jobdirs: string, name: ProcessName): Promise<Heartbeat | undefined> {
  try {
    return await readJsonIfExists<Heartbeat>(heartbeatPath(jobdirs, name));
  } catch {
    return undefined; // unreadable counts as absent; status says "no heartbeat"
  }
}
