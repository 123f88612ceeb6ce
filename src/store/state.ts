/**
 * The state file (`state.json`) of an event or job directory: the only memory the poller has.
 * Written atomically after every step; the in-memory copy never outlives a tick.
 */
import path from 'node:path';
import { readJsonIfExists, writeFileAtomic } from './fsutil.js';

export const STATE_FILE = 'state.json';

export interface Transition {
  stage: string;
  at: string;
  note?: string;
}

export interface CommentRecord {
  /** Set once GitHub (or the dry-run store) has answered; absent means "intent recorded, result unknown". */
  id?: number;
  intent_at: string;
}

export interface DirState<Data = Record<string, unknown>> {
  kind: 'event' | 'job';
  stage: string;
  history: Transition[];
  attempts: number;
  last_error?: { message: string; at: string };
  next_retry_at?: string;
  /** Comments this directory created, by key; the key is also the hidden marker's key. */
  comments: Record<string, CommentRecord>;
  data: Data;
}

/** Stages after which a directory leaves the pending-work index. */
export const FINAL_STAGES = new Set(['done', 'failed', 'ignored', 'cancelled', 'finished', 'lost']);

export function newState<Data>(kind: DirState['kind'], stage: string, data: Data, now: Date): DirState<Data> {
  return { kind, stage, history: [{ stage, at: now.toISOString() }], attempts: 0, comments: {}, data };
}

export async function readState<Data = Record<string, unknown>>(
  dir: string,
): Promise<DirState<Data> | undefined> {
  return readJsonIfExists<DirState<Data>>(path.join(dir, STATE_FILE));
}

export async function writeState(dir: string, state: DirState<unknown>): Promise<void> {
  await writeFileAtomic(path.join(dir, STATE_FILE), JSON.stringify(state, null, 2) + '\n');
}

/** Pure: move to `stage`, clearing the error bookkeeping of the previous stage. */
export function transition<D>(state: DirState<D>, stage: string, now: Date, note?: string): DirState<D> {
  const entry: Transition = { stage, at: now.toISOString(), ...(note ? { note } : {}) };
  const { last_error: _e, next_retry_at: _n, ...rest } = state;
  return { ...rest, stage, attempts: 0, history: [...state.history, entry] };
}

/** Backoff for a failed attempt: 10 s, 20 s, 40 s ... capped at 10 minutes. */
export function retryDelayMs(attempts: number): number {
  return Math.min(10_000 * 2 ** Math.max(0, attempts - 1), 600_000);
}

/** Pure: record a failed attempt; after `maxAttempts` the directory is parked as `failed`. */
export function recordFailure<D>(
  state: DirState<D>,
  message: string,
  now: Date,
  maxAttempts: number,
): DirState<D> {
  const attempts = state.attempts + 1;
  const last_error = { message, at: now.toISOString() };
  if (FINAL_STAGES.has(state.stage)) {
    // Finished work keeps its stage; only the follow-up (a comment edit) is retried, a few times.
    const { next_retry_at: _n, ...rest } = state;
    if (attempts >= maxAttempts) return { ...rest, attempts, last_error };
    return {
      ...rest,
      attempts,
      last_error,
      next_retry_at: new Date(now.getTime() + retryDelayMs(attempts)).toISOString(),
    };
  }
  if (attempts >= maxAttempts) {
    return {
      ...transition(state, 'failed', now, `gave up after ${attempts} attempts`),
      attempts,
      last_error,
    };
  }
  return {
    ...state,
    attempts,
    last_error,
    next_retry_at: new Date(now.getTime() + retryDelayMs(attempts)).toISOString(),
  };
}

export function isDue(state: DirState<unknown>, now: Date): boolean {
  return !state.next_retry_at || Date.parse(state.next_retry_at) <= now.getTime();
}
