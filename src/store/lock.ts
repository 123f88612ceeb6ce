/**
 * The poller's exclusive lock: a file created with link(2), holding pid, host and start time.
 * A lock whose process is gone (same host) or that is older than `staleMs` (any host) is stale and
 * may be broken, so a crashed poller never blocks the next one.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import { createFileExclusive, readJsonIfExists } from './fsutil.js';
import { pidAlive } from '../adapters/process.js';

export interface LockInfo {
  pid: number;
  host: string;
  started_at: string;
}

export class LockBusyError extends Error {
  constructor(readonly holder: LockInfo) {
    super(`another poller holds the lock (pid ${holder.pid} on ${holder.host} since ${holder.started_at})`);
    this.name = 'LockBusyError';
  }
}

export function isStale(info: LockInfo, now: Date, staleMs: number): boolean {
  if (info.host === os.hostname() && !pidAlive(info.pid)) return true;
  return now.getTime() - Date.parse(info.started_at) > staleMs;
}

export interface Lock {
  release(): Promise<void>;
}

export async function acquireLock(file: string, staleMs = 6 * 3600_000): Promise<Lock> {
  const mine: LockInfo = { pid: process.pid, host: os.hostname(), started_at: new Date().toISOString() };
  const content = JSON.stringify(mine) + '\n';
  for (let attempt = 0; attempt < 2; attempt++) {
    if (await createFileExclusive(file, content)) {
      return { release: async () => void (await fs.rm(file, { force: true })) };
    }
    const holder = await readJsonIfExists<LockInfo>(file).catch(() => undefined);
    if (!holder) continue; // released (or half-visible) meanwhile: try again
    if (!isStale(holder, new Date(), staleMs)) throw new LockBusyError(holder);
    // Move the stale lock aside only if it is still the one we judged stale.
    const again = await readJsonIfExists<LockInfo>(file).catch(() => undefined);
    if (again && again.pid === holder.pid && again.started_at === holder.started_at) {
      await fs.rename(file, `${file}.stale-${process.pid}`).catch(() => undefined);
      await fs.rm(`${file}.stale-${process.pid}`, { force: true });
    }
  }
  const holder = await readJsonIfExists<LockInfo>(file);
  throw new LockBusyError(holder ?? mine);
}

/** Wait for the lock, for manual runs that must not race the cron poller. */
export async function waitForLock(file: string, timeoutMs: number, staleMs?: number): Promise<Lock> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await acquireLock(file, staleMs);
    } catch (err) {
      if (!(err instanceof LockBusyError) || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}
