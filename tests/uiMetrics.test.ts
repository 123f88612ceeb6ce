/**
 * /metrics of the status page after a real job lifecycle ticked by the poller: the names and values
 * from the job dirs and from the poller's metrics file.
 */
import type { Server } from 'node:http';
import { locate } from '../src/cli/status.js';
import { addTick, LATENCY_BUCKETS, readPollerMetrics } from '../src/store/metrics.js';
import { exposition, histogramOf } from '../src/ui/metrics.js';
import { startUi } from '../src/ui/server.js';
import type { JobData } from '../src/store/job.js';
import { stateOf, type Harness } from './support/botHarness.js';
import { runLifecycle } from './support/uiLifecycle.js';

let h: Harness;
let ui: Server;
let ticks: number;
let scraped: string;
let startedAt: string | undefined;

/** `name{labels}` → value, from the text format. */
function samples(text: string): Map<string, number> {
  const found = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    found.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return found;
}

beforeAll(async () => {
  const before = Date.now() / 1000;
  let jobRel: string;
  ({ h, ticks, jobRel } = await runLifecycle('metrics'));
  startedAt = (await stateOf<JobData>(h.deps.jobdirs.resolve(jobRel))).data.started_at;
  ui = await startUi({
    located: await locate(h.config.source),
    host: '127.0.0.1',
    port: 0,
    logger: h.deps.logger,
  });
  const addr = ui.address();
  const res = await fetch(`http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
  scraped = await res.text();
  const m = samples(scraped);
  const lastSuccess = m.get('hpcbot_poller_last_success_timestamp_seconds')!;
  expect(lastSuccess).toBeGreaterThanOrEqual(before);
  expect(lastSuccess).toBeLessThanOrEqual(Date.now() / 1000);
}, 120_000);

afterAll(async () => {
  ui?.closeAllConnections();
  await new Promise((r) => (ui ? ui.close(r) : r(undefined)));
  await h?.stop();
});

test('job gauges, outcomes and wait histograms come from the job dirs', () => {
  const m = samples(scraped);
  expect(m.get('hpcbot_jobs{stage="finished",node_type="zen4",backend="local"}')).toBe(1);
  expect(m.get('hpcbot_jobs_finished{outcome="SUCCESS"}')).toBe(1);
  expect(m.get('hpcbot_job_command_to_submission_seconds_count')).toBe(1);
  expect(m.get('hpcbot_job_command_to_submission_seconds_bucket{le="+Inf"}')).toBe(1);
  // A job seen running has started_at; one that ended between two looks has none, and no wait.
  expect(m.get('hpcbot_job_submission_to_start_seconds_count')).toBe(startedAt ? 1 : 0);
  expect(m.get('hpcbot_parked_dirs')).toBe(0);
  expect(m.get('hpcbot_queue_entries')).toBe(0);
  expect(m.get('hpcbot_process_up{process="poller"}')).toBe(1);
  expect(m.get('hpcbot_process_up{process="server"}')).toBe(0);
  expect(scraped).toContain('# TYPE hpcbot_job_submission_to_start_seconds histogram\n');
});

test('tick and scheduler metrics add up across ticks in the metrics file', async () => {
  const m = samples(scraped);
  expect(m.get('hpcbot_poller_ticks_total')).toBe(ticks);
  expect(m.get('hpcbot_poller_tick_failures_total')).toBe(0);
  expect(m.get('hpcbot_poller_tick_duration_seconds_count')).toBe(ticks);
  expect(m.get('hpcbot_poller_tick_duration_seconds_sum')).toBeGreaterThan(0);
  // One submission and one release for the one job; observe on the ticks that had a job to look at.
  expect(m.get('hpcbot_scheduler_call_duration_seconds_count{call="submit"}')).toBe(1);
  expect(m.get('hpcbot_scheduler_call_duration_seconds_count{call="release"}')).toBe(1);
  expect(m.get('hpcbot_scheduler_call_duration_seconds_count{call="observe"}')).toBeGreaterThanOrEqual(1);
  expect(m.get('hpcbot_scheduler_call_failures_total{call="submit"}')).toBe(0);
  expect(m.get('hpcbot_scheduler_last_ok_timestamp_seconds')).toBeGreaterThan(0);
  const file = await readPollerMetrics(h.config.jobdirs);
  expect(file?.ticks.total).toBe(ticks);
});

test('GitHub calls are counted by route and status', () => {
  const m = samples(scraped);
  // One job comment created, then edited as the job moved on; the PR looked up.
  expect(
    m.get(
      'hpcbot_github_calls_total{route="POST /repos/{owner}/{repo}/issues/{issue_number}/comments",status="201"}',
    ),
  ).toBeGreaterThanOrEqual(1);
  expect(
    m.get(
      'hpcbot_github_calls_total{route="PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}",status="200"}',
    ),
  ).toBeGreaterThanOrEqual(1);
  expect(
    m.get('hpcbot_github_calls_total{route="GET /repos/{owner}/{repo}/pulls/{pull_number}",status="200"}'),
  ).toBeGreaterThanOrEqual(1);
  expect(scraped).toContain('# TYPE hpcbot_github_calls_total counter\n');
});

test('addTick counts failed ticks and failed calls, keeping the last success', () => {
  const ok = addTick(undefined, {
    at: '2026-01-01T00:00:00.000Z',
    seconds: 0.2,
    ok: true,
    schedulerCalls: [{ call: 'observe', seconds: 0.02, ok: true }],
  });
  const failed = addTick(ok, {
    at: '2026-01-01T00:01:00.000Z',
    seconds: 120,
    ok: false,
    schedulerCalls: [{ call: 'observe', seconds: 3, ok: false }],
  });
  expect(failed.ticks).toEqual({
    total: 2,
    failed: 1,
    lastAt: '2026-01-01T00:01:00.000Z',
    lastSuccessAt: '2026-01-01T00:00:00.000Z',
    duration: { counts: [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1], sum: 120.2 },
  });
  expect(failed.scheduler.observe).toEqual({
    calls: 2,
    failures: 1,
    latency: { counts: [0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0], sum: 3.02 },
  });
  expect(failed.ticks.duration.counts).toHaveLength(LATENCY_BUCKETS.length + 1);
});

test('the text format escapes label values and makes buckets cumulative', () => {
  const text = exposition([
    {
      name: 'x',
      help: 'h',
      type: 'gauge',
      samples: [{ labels: { stage: 'a"b\\c\nd' }, value: 1 }],
    },
  ]);
  expect(text).toBe('# HELP x h\n# TYPE x gauge\nx{stage="a\\"b\\\\c\\nd"} 1\n');
  expect(histogramOf([1, 10], [0.5, 5, 5, 50])).toEqual({ counts: [1, 2, 1], sum: 60.5 });
});
