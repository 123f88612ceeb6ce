/**
 * `hpcbot gc --older-than 30d [--dry-run]`: empties old trash and old event history, and prints what it
 * removes and how many bytes that frees. Only finished work goes: an event directory is removed when it,
 * and every job under it, reached a final stage before the cutoff and nothing of it is pending.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Config } from './config.js';
import { JobDirs } from './jobdirs.js';
import { FINAL_STAGES, readState } from './state.js';

export function parseAge(text: string): number {
  const m = /^(\d+)([dhm])$/.exec(text.trim());
  if (!m)
    throw new Error(`--older-than takes a number with d, h or m, e.g. 30d; got ${JSON.stringify(text)}`);
  const unit = { d: 86_400_000, h: 3_600_000, m: 60_000 }[m[2] as 'd' | 'h' | 'm'];
  return Number(m[1]) * unit;
}

export interface GcItem {
  path: string;
  bytes: number;
}

async function du(p: string): Promise<number> {
  const st = await fs.lstat(p).catch(() => undefined);
  if (!st) return 0;
  if (!st.isDirectory()) return st.size;
  let total = 0;
  for (const name of await fs.readdir(p)) total += await du(path.join(p, name));
  return total;
}

async function dirs(p: string): Promise<string[]> {
  const entries = await fs.readdir(p, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isDirectory()).map((e) => path.join(p, e.name));
}

/** Last recorded transition of a finished directory, or undefined if it is not finished. */
async function finishedAt(dir: string): Promise<number | undefined> {
  const state = await readState(dir);
  if (!state || !FINAL_STAGES.has(state.stage)) return undefined;
  return Date.parse(state.history[state.history.length - 1]?.at ?? '');
}

async function eventIsOld(
  jobdirs: JobDirs,
  eventDir: string,
  cutoff: number,
  pending: Set<string>,
): Promise<boolean> {
  const done = await finishedAt(eventDir);
  if (done === undefined || !(done < cutoff) || pending.has(eventDir)) return false;
  for (const run of (await dirs(eventDir)).filter((d) => /run_\d+$/.test(d))) {
    for (const node of await dirs(run)) {
      for (const job of await dirs(node)) {
        const jobDone = await finishedAt(job);
        if (jobDone === undefined || !(jobDone < cutoff) || pending.has(job)) return false;
      }
    }
  }
  return true;
}

export async function collectGarbage(config: Config, olderThanMs: number, dryRun: boolean, now = new Date()) {
  const jobdirs = new JobDirs(config.jobdirs);
  const cutoff = now.getTime() - olderThanMs;
  const removed: GcItem[] = [];
  const take = async (p: string) => {
    removed.push({ path: p, bytes: await du(p) });
    if (!dryRun) await fs.rm(p, { recursive: true, force: true });
  };

  // Trash: <trash>/<owner>/<repo>/<YYYY.MM.DD>, judged by the day it was moved there.
  const trash = config.cleanup.trash_dir ?? path.join(jobdirs.root, 'trash');
  for (const owner of await dirs(trash)) {
    for (const repo of await dirs(owner)) {
      for (const day of await dirs(repo)) {
        const date = Date.parse(path.basename(day).replaceAll('.', '-') + 'T00:00:00Z');
        if (date < cutoff) await take(day);
      }
    }
  }

  // Event history: <month>/<owner>/<repo>/(pr_N|_repo)/event_*.
  const pending = new Set(await jobdirs.pending());
  for (const month of (await dirs(jobdirs.root)).filter((d) => /\/\d{4}\.\d{2}$/.test(d))) {
    for (const owner of await dirs(month)) {
      for (const repo of await dirs(owner)) {
        for (const scope of await dirs(repo)) {
          for (const event of (await dirs(scope)).filter((d) => path.basename(d).startsWith('event_'))) {
            if (await eventIsOld(jobdirs, event, cutoff, pending)) await take(event);
          }
        }
      }
    }
  }
  return { removed, bytes: removed.reduce((n, r) => n + r.bytes, 0) };
}
