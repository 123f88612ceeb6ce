/**
 * `limits:` (src/domain/limits.ts, the `queued` stage in src/stages/job.ts): the slot decision as a
 * table, then 20 real jobs over 3 PRs on the local backend with `limits.max_active_jobs: 4`: never more
 * than 4 active at once, and first come first served across the PRs.
 */
import { execFileSync } from 'node:child_process';
import { slotFor, type SlotJob } from '../src/domain/limits.js';
import { runTick } from '../src/poller.js';
import { ACTIVE_JOB_STAGES, type JobData } from '../src/store/job.js';
import type { DirState } from '../src/store/state.js';
import {
  INSTALLATION,
  nextDelivery,
  openPr,
  OWNER,
  REPO,
  REVIEWER,
  startHarness,
  stateOf,
  storeRaw,
  type Harness,
} from './support/botHarness.js';
import { payloads } from './support/payloads.js';
import { PASSING_BOT } from './support/prRepo.js';
import { killAll } from './support/spawn.js';

const job = (id: string, pr: string, since: string, active = false, gpu = false): SlotJob => ({
  id,
  pr,
  since,
  active,
  gpu,
});

describe('slotFor', () => {
  const jobs = [
    job('a1', 'A', '1', true),
    job('a2', 'A', '2', true),
    job('b1', 'B', '3'),
    job('a3', 'A', '4'),
    job('c1', 'C', '5', false, true),
    job('b2', 'B', '6'),
  ];
  test('max_active_jobs: first come first served across PRs, with the number waiting ahead', () => {
    const limits = { max_active_jobs: 3 };
    expect(slotFor(limits, jobs, 'b1')).toEqual({ free: true });
    expect(slotFor(limits, jobs, 'a3')).toEqual({ free: false, ahead: 0 });
    expect(slotFor(limits, jobs, 'c1')).toEqual({ free: false, ahead: 1 });
    expect(slotFor(limits, jobs, 'b2')).toEqual({ free: false, ahead: 2 });
  });

  test('a job held by its own PR limit does not hold up other PRs', () => {
    const limits = { max_active_jobs_per_pr: 2 };
    expect(slotFor(limits, jobs, 'a3')).toEqual({ free: false, ahead: 0 });
    expect(slotFor(limits, jobs, 'c1')).toEqual({ free: true });
    expect(slotFor(limits, jobs, 'b2')).toEqual({ free: true });
    expect(slotFor({ max_active_jobs_per_pr: 1 }, jobs, 'b2')).toEqual({ free: false, ahead: 1 });
  });

  test('max_active_gpu_jobs counts GPU jobs only; ties in time go by id', () => {
    const gpu = [
      job('g1', 'A', '1', true, true),
      job('g3', 'B', '2', false, true),
      job('g2', 'C', '2', false, true),
    ];
    expect(slotFor({ max_active_gpu_jobs: 2 }, gpu, 'g2')).toEqual({ free: true });
    expect(slotFor({ max_active_gpu_jobs: 2 }, gpu, 'g3')).toEqual({ free: false, ahead: 0 });
    expect(
      slotFor({ max_active_gpu_jobs: 2, max_active_jobs: 10 }, [...gpu, job('c', 'D', '3')], 'c'),
    ).toEqual({
      free: true,
    });
  });

  test('no limits: always free', () => {
    expect(slotFor({}, jobs, 'b2')).toEqual({ free: true });
  });
});

// ---- 20 jobs over 3 PRs ----------------------------------------------------------------------

const NODES = [
  ...['n2', 'n3', 'n4', 'n5', 'n6'].map((n) =>
    [`    ${n}:`, '      cpu_subdir: x86_64/amd/zen4', '      repo_targets: [eessi-test]'].join('\n'),
  ),
  ['    n7:', '      cpu_subdir: x86_64/intel/icelake', '      repo_targets: [eessi-test]'].join('\n'),
  'limits:',
  '  max_active_jobs: 4',
].join('\n');

const SLOW_BOT = {
  ...PASSING_BOT,
  'bot/build.sh': PASSING_BOT['bot/build.sh'].replace('#!/bin/bash', '#!/bin/bash\nsleep 0.5'),
};

let h: Harness | undefined;
afterEach(async () => {
  await killAll();
  await h?.stop();
  h = undefined;
});

async function storeCommentOn(harness: Harness, pr: number, body: string): Promise<void> {
  const p = payloads.commentOnPr();
  p.repository!.owner.login = OWNER;
  p.repository!.name = REPO;
  p.issue!.number = pr;
  p.installation = { id: INSTALLATION, node_id: `I_fake${INSTALLATION}` };
  (p.comment as { body: string; user: { login: string } }).body = body;
  (p.comment as { body: string; user: { login: string } }).user.login = REVIEWER;
  (p.sender as { login: string }).login = REVIEWER;
  await storeRaw(harness, 'issue_comment', p, nextDelivery());
}

const ACTIVE = new Set(['submitting', 'submitted', 'released', 'running']);

test('20 jobs over 3 PRs with max_active_jobs 4: never more than 4 active, first come first served', async () => {
  h = await startHarness(NODES, 'backend:\n  kind: local\n  local:\n    max_parallel: 8\n');
  const repo = openPr(h, SLOW_BOT);
  for (const pr of [8, 9]) {
    execFileSync('git', ['--git-dir', repo.bare, 'update-ref', `refs/pull/${pr}/head`, repo.headSha]);
    h.fake.addPullRequest(OWNER, REPO, {
      number: pr,
      headSha: repo.headSha,
      baseSha: repo.baseSha,
      baseRef: 'main',
    });
  }
  await storeCommentOn(h, 7, 'bot: build for:arch=zen4\nbot: build for:arch=icelake'); // 7 jobs
  await storeCommentOn(h, 8, 'bot: build for:arch=zen4\nbot: build for:arch=icelake'); // 7 jobs
  await storeCommentOn(h, 9, 'bot: build for:arch=zen4'); // 6 jobs

  const all = async () => {
    const dirs = (await Promise.all([7, 8, 9].map((n) => h!.deps.jobdirs.prJobDirs(OWNER, REPO, n)))).flat();
    return Promise.all(dirs.map(async (dir) => ({ dir, state: await stateOf<JobData>(dir) })));
  };
  const activatedAt = new Map<string, number>(); // the tick after which the job was first seen active
  let maxActive = 0;
  let sawQueuedRow = false;
  for (let tick = 1; ; tick++) {
    await runTick(h.deps);
    const jobs = await all();
    const active = jobs.filter((j) => ACTIVE.has(j.state.stage));
    maxActive = Math.max(maxActive, active.length);
    for (const j of jobs)
      if (!activatedAt.has(j.dir) && !['prepared', 'queued'].includes(j.state.stage))
        activatedAt.set(j.dir, tick);
    sawQueuedRow ||= jobs.some((j) =>
      /^waiting for a free slot \(\d+ ahead\)$/.test(j.state.data.rows[0]?.comment ?? ''),
    );
    if (jobs.length === 20 && jobs.every((j) => !ACTIVE_JOB_STAGES.has(j.state.stage))) break;
    if (tick > 400)
      throw new Error(`not done after ${tick} ticks: ${jobs.map((j) => j.state.stage).join(',')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const jobs = await all();
  expect(jobs).toHaveLength(20);
  expect(jobs.every((j) => j.state.stage === 'finished' && j.state.data.result?.status === 'SUCCESS')).toBe(
    true,
  );
  expect(maxActive).toBeLessThanOrEqual(4);
  expect(sawQueuedRow).toBe(true);

  // From the jobs' own histories: at no moment were more than 4 between `submitting` and their end.
  const at = (s: DirState<JobData>, stage: string) =>
    Date.parse(s.history.find((e) => e.stage === stage)!.at);
  const edges = jobs.flatMap((j) => [
    { t: at(j.state, 'submitting'), d: 1 },
    { t: at(j.state, 'finished'), d: -1 },
  ]);
  edges.sort((a, b) => a.t - b.t || a.d - b.d);
  let running = 0;
  let peak = 0;
  for (const e of edges) peak = Math.max(peak, (running += e.d));
  expect(peak).toBeLessThanOrEqual(4);

  // First come first served: a job prepared earlier never became active in a later tick.
  const byPrepared = [...jobs].sort((a, b) =>
    a.state.history[0]!.at === b.state.history[0]!.at
      ? a.dir < b.dir
        ? -1
        : 1
      : a.state.history[0]!.at < b.state.history[0]!.at
        ? -1
        : 1,
  );
  const ticks = byPrepared.map((j) => activatedAt.get(j.dir)!);
  expect(ticks).toEqual([...ticks].sort((a, b) => a - b));
  // All three PRs were served, and not one PR after the other only.
  expect(new Set(byPrepared.slice(0, 8).map((j) => j.state.data.pr.number)).size).toBeGreaterThan(1);
}, 300_000);

test('after:#8: the jobs wait until PR 8 is closed (or deployed), with one row that says so', async () => {
  h = await startHarness();
  openPr(h, PASSING_BOT);
  await storeCommentOn(h, 7, 'bot: build for:arch=zen4 after:#8');
  const dirOf = async () => (await h!.deps.jobdirs.prJobDirs(OWNER, REPO, 7))[0];
  for (let i = 0; i < 4; i++) {
    await runTick(h.deps);
    await new Promise((r) => setTimeout(r, 100));
  }
  const waiting = await stateOf<JobData>((await dirOf())!);
  expect(waiting.stage).toBe('prepared');
  expect(waiting.data.after_pr).toBe(8);
  expect(waiting.data.rows.map((r) => r.comment)).toEqual(['waiting for PR #8 to be deployed or closed']);

  const close = payloads.prClosed();
  close.repository!.owner.login = OWNER;
  close.repository!.name = REPO;
  (close.pull_request as { number: number }).number = 8;
  close.installation = { id: INSTALLATION, node_id: `I_fake${INSTALLATION}` };
  await storeRaw(h, 'pull_request', close, nextDelivery());
  for (let tick = 0; ; tick++) {
    await runTick(h.deps);
    if ((await stateOf<JobData>((await dirOf())!)).stage === 'finished') break;
    if (tick > 200) throw new Error('the job did not run after PR 8 was closed');
    await new Promise((r) => setTimeout(r, 200));
  }
  const done = await stateOf<JobData>((await dirOf())!);
  expect(done.data.result?.status).toBe('SUCCESS');
  expect(done.data.rows.filter((r) => r.key === 'after')).toHaveLength(1);
}, 120_000);
