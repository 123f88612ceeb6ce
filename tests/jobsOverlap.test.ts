/** Overlapping builds (build.on_overlap) and new pushes (build.on_new_push), on the local backend. */
import type { JobData } from '../src/store/job.js';
import { PASSING_BOT } from './support/prRepo.js';
import { payloads } from './support/payloads.js';
import {
  INSTALLATION,
  jobDirsOf,
  openPr,
  OWNER,
  PR,
  REPO,
  startHarness,
  stageOf,
  stateOf,
  storeComment,
  storeRaw,
  tickUntil,
  type Harness,
} from './support/botHarness.js';

const SLEEPY = { ...PASSING_BOT, 'bot/build.sh': '#!/bin/bash\nsleep 60\n' };
let h: Harness;
afterEach(async () => {
  for (const dir of h ? await jobDirsOf(h) : []) {
    const s = await stateOf<JobData>(dir);
    if (s.data.job_id && ['released', 'running'].includes(s.stage))
      await h.deps.backend.cancel(s.data.job_id, dir);
  }
  await h?.stop();
});

async function setUp(yaml = '') {
  h = await startHarness(yaml);
  const repo = openPr(h, SLEEPY);
  return repo;
}

const stages = async () => Promise.all((await jobDirsOf(h)).map(async (d) => (await stageOf(d)) ?? '?'));

function lastReply(): string {
  const replies = h.fake.commentsOf(OWNER, REPO, PR).filter((c) => c.body.startsWith('<details>'));
  return replies[replies.length - 1]!.body;
}

test('supersede (default): a second build for the same target cancels the active job', async () => {
  await setUp();
  await storeComment(h, 'bot: build for:arch=zen4');
  await tickUntil(h, async () => (await stages()).join() === 'running');
  await storeComment(h, 'bot: build for:arch=zen4');
  await tickUntil(h, async () => (await stages()).join() === 'cancelled,running');
  const [oldDir, newDir] = await jobDirsOf(h);
  expect((await stateOf<JobData>(oldDir!)).data.cancel_requested).toMatch(
    /^superseded by .*run_000\/zen4\/eessi-test$/,
  );
  expect(lastReply()).toContain('superseded the active job in');
  expect((await stateOf<JobData>(newDir!)).data.wait_for).toBeUndefined();
});

test('refuse: a second build for an active target prepares no job and says why', async () => {
  await setUp('  on_overlap: refuse');
  await storeComment(h, 'bot: build for:arch=zen4');
  await tickUntil(h, async () => (await stages()).join() === 'running');
  await storeComment(h, 'bot: build for:arch=zen4');
  await tickUntil(
    h,
    async () => h.fake.commentsOf(OWNER, REPO, PR).filter((c) => c.body.startsWith('<details>')).length === 2,
  );
  expect(await stages()).toEqual(['running']);
  expect(lastReply()).toMatch(
    /no job for `eessi-test` on node type `zen4` .* was prepared; refused because of the active job in `.*run_000\/zen4\/eessi-test` \(build.on_overlap: refuse\)/,
  );
});

test('queue: the second job waits in `prepared` until the first one ends', async () => {
  await setUp('  on_overlap: queue');
  await storeComment(h, 'bot: build for:arch=zen4');
  await tickUntil(h, async () => (await stages()).join() === 'running');
  await storeComment(h, 'bot: build for:arch=zen4');
  await tickUntil(h, async () => (await jobDirsOf(h)).length === 2);
  for (let i = 0; i < 3; i++) await tickUntil(h, async () => true);
  expect(await stages()).toEqual(['running', 'prepared']);
  const [first, second] = await jobDirsOf(h);
  expect((await stateOf<JobData>(second!)).data.wait_for).toEqual([h.deps.jobdirs.relative(first!)]);
  await h.deps.backend.cancel((await stateOf<JobData>(first!)).data.job_id!, first!);
  await tickUntil(h, async () => (await stages())[1] === 'running');
  expect(await stages()).toEqual(['cancelled', 'running']);
});

test('a new push cancels active jobs of the old head and marks them stale in their comment', async () => {
  await setUp();
  await storeComment(h, 'bot: build for:arch=zen4');
  await tickUntil(h, async () => (await stages()).join() === 'running');
  const p = payloads.prSynchronize();
  p.repository!.owner.login = OWNER;
  p.repository!.name = REPO;
  (p.pull_request as { number: number; head: { sha: string } }).number = PR;
  (p.pull_request as { number: number; head: { sha: string } }).head.sha = 'f'.repeat(40);
  p.installation = { id: INSTALLATION, node_id: `I_fake${INSTALLATION}` };
  await storeRaw(h, 'pull_request', p, 'sync-1');
  await tickUntil(h, async () => (await stages()).join() === 'cancelled');
  const [dir] = await jobDirsOf(h);
  const state = await stateOf<JobData>(dir!);
  expect(state.data.stale).toEqual({ superseded_by: 'f'.repeat(40) });
  const jobComment = h.fake.commentsOf(OWNER, REPO, PR).find((c) => c.body.startsWith('New job'))!.body;
  expect(jobComment).toContain(
    `:warning: built from \`${state.data.head_sha!.slice(0, 12)}\`, superseded by \`ffffffffffff\``,
  );
});
