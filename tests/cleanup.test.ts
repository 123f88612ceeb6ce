/** Cleanup on PR close: cancel active jobs, say merged/closed, move the PR's directories to the trash. */
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { JobData } from '../src/job.js';
import { readState } from '../src/state.js';
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
  p.installation = { id: INSTALLATION };
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
  },
);
