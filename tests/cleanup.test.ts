/** Cleanup on PR close: cancel active jobs, say merged/closed, move the PR's directories to the trash. */
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { storeEvent } from '../src/ingest/eventStore.js';
import type { JobData } from '../src/store/job.js';
import { monthDir } from '../src/store/jobdirs.js';
import { runTick } from '../src/poller.js';
import { readState } from '../src/store/state.js';
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
  storeComment,
  storeRaw,
  tickUntil,
  type Harness,
} from './support/botHarness.js';

let h: Harness;
afterEach(async () => h?.stop());

function closedPayload(merged: boolean) {
  const p = payloads.prClosed();
  p.repository!.owner.login = OWNER;
  p.repository!.name = REPO;
  const pr = p.pull_request as { number: number; merged: boolean };
  pr.number = PR;
  pr.merged = merged;
  p.installation = { id: INSTALLATION, node_id: `I_fake${INSTALLATION}` };
  return p;
}

test.each([
  [true, 'PR merged'],
  [false, 'PR closed without merging'],
])(
  'merged=%s: the running job is cancelled, the comment says "%s", the PR dir is in the trash',
  async (merged, text) => {
    h = await startHarness();
    openPr(h, {
      ...PASSING_BOT,
      'bot/build.sh': '#!/bin/bash\nsleep 60\n',
    });
    await storeComment(h, 'bot: build for:arch=zen4');
    await tickUntil(
      h,
      async () =>
        (await jobDirsOf(h)).length === 1 && (await stageOf((await jobDirsOf(h))[0]!)) === 'running',
    );
    const [jobDir] = await jobDirsOf(h);
    const prDir = path.resolve(jobDir!, '../../../..');
    expect(path.basename(prDir)).toBe(`pr_${PR}`);

    const eventDir = await storeRaw(h, 'pull_request', closedPayload(merged), `close-${merged}`);
    await tickUntil(h, async () => !existsSync(prDir));

    const trash = path.join(h.config.jobdirs, 'trash', OWNER, REPO);
    const [day] = readdirSync(trash);
    const month = path.basename(path.resolve(prDir, '../../..'));
    const moved = path.join(trash, day!, month, `pr_${PR}`);
    const movedJob = path.join(moved, path.relative(prDir, jobDir!));
    const job = await readState<JobData>(movedJob);
    expect(job?.stage).toBe('cancelled');
    expect(job?.data.cancel_requested).toBe(merged ? 'PR merged' : 'PR closed');
    const event = await readState(path.join(moved, path.basename(eventDir)));
    expect(event?.stage).toBe('done');
    expect(await h.deps.jobdirs.pending()).toEqual([]);
    const closing = h.fake.commentsOf(OWNER, REPO, PR).filter((c) => c.body.startsWith('PR '));
    expect(closing).toHaveLength(1);
    expect(closing[0]!.body).toMatch(
      new RegExp(`^${text}: cancelled 1 active job\\(s\\) of instance \`test\``),
    );
    // The job's comment ends with a row saying it was cancelled and why, not "finished | UNKNOWN".
    const jobComment = h.fake.commentsOf(OWNER, REPO, PR).find((c) => c.body.startsWith('New job'));
    const lastRow = jobComment!.body
      .split('\n')
      .filter((l) => l.startsWith('|'))
      .at(-1);
    const why = merged ? 'cancelled because the PR was merged' : 'cancelled because the PR was closed';
    expect(lastRow).toMatch(
      new RegExp(`^\\|[^|]+\\|cancelled\\|${why} <sub>\\(scheduler: \`CANCELLED[^\`]*\`\\)</sub>\\|$`),
    );
  },
);

test('events of the PR in an earlier month go too; a move that fails midway is finished by the retry, saying nothing twice', async () => {
  h = await startHarness();
  const now = new Date();
  const lastMonth = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 15));
  const comment = payloads.commentOnPr();
  comment.repository!.owner.login = OWNER;
  comment.repository!.name = REPO;
  comment.issue!.number = PR;
  (comment.comment as { body: string; user: { login: string } }).body = 'bot: status';
  (comment.comment as { body: string; user: { login: string } }).user.login = 'reviewer1';
  const { eventDir: old } = await storeEvent(h.deps.jobdirs, {
    delivery: 'm-1-old',
    event: 'issue_comment',
    rawBody: JSON.stringify(comment),
    action: 'created',
    installationId: INSTALLATION,
    headers: {},
    owner: OWNER,
    repo: REPO,
    scope: { kind: 'pr', number: PR },
    receivedAt: lastMonth,
  });
  const recent = await storeComment(h, 'bot: status', undefined, 'm-2-new');
  const close = await storeRaw(h, 'pull_request', closedPayload(false), 'm-3-close');

  // Something in the way of the second move: the close fails after the first one.
  const day = now.toISOString().slice(0, 10).replaceAll('-', '.');
  const trashPr = (date: Date) =>
    path.join(h.config.jobdirs, 'trash', OWNER, REPO, day, monthDir(date), `pr_${PR}`);
  const blocker = path.join(trashPr(now), path.basename(recent));
  mkdirSync(blocker, { recursive: true });
  writeFileSync(path.join(blocker, 'in-the-way'), '');
  const replies = () => h.fake.commentsOf(OWNER, REPO, PR).map((c) => c.body);

  expect(await runTick(h.deps)).toMatchObject({ advanced: 2, failed: 1 });
  expect(replies()).toHaveLength(2);
  expect(existsSync(path.join(trashPr(lastMonth), path.basename(old)))).toBe(true);
  expect(existsSync(recent)).toBe(true);
  expect((await readState(close))?.stage).toBe('received');

  rmSync(blocker, { recursive: true });
  const later = new Date(Date.now() + 3600_000);
  h.deps.now = () => later; // the retry is due
  expect(await runTick(h.deps)).toMatchObject({ advanced: 1, failed: 0 });
  for (const [dir, month] of [
    [old, lastMonth],
    [recent, now],
    [close, now],
  ] as const) {
    expect((await readState(path.join(trashPr(month), path.basename(dir))))?.stage).toBe('done');
    expect(existsSync(dir)).toBe(false);
  }
  expect(existsSync(path.dirname(old))).toBe(false);
  expect(existsSync(path.dirname(recent))).toBe(false);
  expect(replies()).toHaveLength(2);
  expect(await h.deps.jobdirs.pending()).toEqual([]);
});
