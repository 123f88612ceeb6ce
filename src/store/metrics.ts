/**
 * The poller's metrics file, `<jobdirs>/status/metrics.json`: what only the poller sees (its ticks and
 * its scheduler calls), added up across ticks and processes. The poller keeps nothing in memory: after
 * each tick it reads the file, adds the tick's sample and writes it back atomically (under the poller
 * lock, so there is one writer). The status page serves it, with what it reads from the job dirs, as
 * /metrics (src/ui/metrics.ts).
 */
import path from 'node:path';
import type { GitHubCall } from '../adapters/github/client.js';
import type { Backend } from '../adapters/schedulers/types.js';
import { mkdirDurable, readJsonIfExists, writeFileAtomic } from './fsutil.js';
import { STATUS_DIR } from './heartbeat.js';

export const METRICS_FILE = 'metrics.json';

/** Upper bounds in seconds, for tick durations and scheduler calls. */
export const LATENCY_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export interface HistogramData {
  /** Observations per bucket of LATENCY_BUCKETS, plus one for +Inf (not cumulative). */
  counts: number[];
  sum: number;
}

export interface PollerMetrics {
  /** When counting started (the file was created); counters only grow from there. */
  since: string;
  ticks: {
    total: number;
    failed: number;
    lastAt?: string;
    lastSuccessAt?: string;
    duration: HistogramData;
  };
  /** By call: submit, release, observe, cancel, findBySubmitId. */
  scheduler: Record<string, { calls: number; failures: number; latency: HistogramData }>;
  github?: {
    /** Calls by `<route> <status>`. */
    calls: Record<string, number>;
    /** From the last answer that had it. */
    rateLimitRemaining?: number;
  };
}

export interface TickSample {
  at: string;
  seconds: number;
  ok: boolean;
  schedulerCalls: Array<{ call: string; seconds: number; ok: boolean }>;
  githubCalls?: GitHubCall[];
}

export function metricsPath(jobdirs: string): string {
  return path.join(jobdirs, STATUS_DIR, METRICS_FILE);
}

const emptyHistogram = (): HistogramData => ({ counts: LATENCY_BUCKETS.map(() => 0).concat(0), sum: 0 });

/** Pure. */
export function observe(h: HistogramData, seconds: number): HistogramData {
  const i = LATENCY_BUCKETS.findIndex((bound) => seconds <= bound);
  const counts = [...h.counts];
  counts[i === -1 ? LATENCY_BUCKETS.length : i]! += 1;
  return { counts, sum: h.sum + seconds };
}

/** Pure: `previous` (or nothing yet) with one tick added. */
export function addTick(previous: PollerMetrics | undefined, sample: TickSample): PollerMetrics {
  const m: PollerMetrics = previous ?? {
    since: sample.at,
    ticks: { total: 0, failed: 0, duration: emptyHistogram() },
    scheduler: {},
  };
  const scheduler = { ...m.scheduler };
  for (const c of sample.schedulerCalls) {
    const prev = scheduler[c.call] ?? { calls: 0, failures: 0, latency: emptyHistogram() };
    scheduler[c.call] = {
      calls: prev.calls + 1,
      failures: prev.failures + (c.ok ? 0 : 1),
      latency: observe(prev.latency, c.seconds),
    };
  }
  const calls = { ...m.github?.calls };
  let rateLimitRemaining = m.github?.rateLimitRemaining;
  for (const c of sample.githubCalls ?? []) {
    const key = `${c.route} ${c.status}`;
    calls[key] = (calls[key] ?? 0) + 1;
    if (c.rateLimitRemaining !== undefined) rateLimitRemaining = c.rateLimitRemaining;
  }
  return {
    since: m.since,
    ticks: {
      total: m.ticks.total + 1,
      failed: m.ticks.failed + (sample.ok ? 0 : 1),
      lastAt: sample.at,
      lastSuccessAt: sample.ok ? sample.at : m.ticks.lastSuccessAt,
      duration: observe(m.ticks.duration, sample.seconds),
    },
    scheduler,
    github: { calls, ...(rateLimitRemaining !== undefined && { rateLimitRemaining }) },
  };
}

export async function readPollerMetrics(jobdirs: string): Promise<PollerMetrics | undefined> {
  try {
    return await readJsonIfExists<PollerMetrics>(metricsPath(jobdirs));
  } catch {
    return undefined; // unreadable: counting starts over
  }
}

export async function recordTick(jobdirs: string, sample: TickSample): Promise<void> {
  const next = addTick(await readPollerMetrics(jobdirs), sample);
  await mkdirDurable(path.join(jobdirs, STATUS_DIR));
  await writeFileAtomic(metricsPath(jobdirs), JSON.stringify(next) + '\n');
}

/** `backend` with each call's latency and failure noted in `calls` (the tick's sample). */
export function measuredBackend(backend: Backend, calls: TickSample['schedulerCalls']): Backend {
  const timed =
    <A extends unknown[], R>(call: string, fn: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      const started = performance.now();
      let ok = false;
      try {
        const result = await fn(...args);
        ok = true;
        return result;
      } finally {
        calls.push({ call, seconds: (performance.now() - started) / 1000, ok });
      }
    };
  return {
    ...backend,
    kind: backend.kind,
    submit: timed('submit', backend.submit.bind(backend)),
    findBySubmitId: timed('findBySubmitId', backend.findBySubmitId.bind(backend)),
    release: timed('release', backend.release.bind(backend)),
    observe: timed('observe', backend.observe.bind(backend)),
    cancel: timed('cancel', backend.cancel.bind(backend)),
  };
}
