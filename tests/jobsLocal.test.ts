/** The whole build cycle on the local backend: comment → job dir → checkout → run → result in the PR. */
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import type { JobData } from '../src/job.js';
import { PASSING_BOT, advanceBase } from './support/prRepo.js';
import {
  jobDirsOf,
  openPr,
  OWNER,
  PR,
  REPO,
  startHarness,
  stateOf,
  stageOf,
  storeComment,
  tickUntil,
  type Harness,
} from './support/botHarness.js';

let h: Harness;
afterEach(async () => {
  await h?.stop();
});

function setUpPr(files: Record<string, string> = PASSING_BOT) {
  const repo = openPr(h, files);
  return repo;
}

test('a build command runs one job through every stage and reports it in one job comment', async () => {
  h = await startHarness();
  const repo = setUpPr();
  const baseNow = advanceBase(repo.bare, { 'BASE.md': 'moved on\n' });
  await storeComment(h, 'bot: build for:arch=x86_64/amd/zen4');

  await tickUntil(h, async () => {
    const dirs = await jobDirsOf(h);
    return dirs.length === 1 && (await stageOf(dirs[0]!)) === 'finished';
  });

  const [jobDir] = await jobDirsOf(h);
  const state = await stateOf<JobData>(jobDir!);
  expect(state.data.head_sha).toBe(repo.headSha);
  expect(state.data.base_sha).toBe(baseNow);
  expect(state.data.merge_sha).toMatch(/^[0-9a-f]{40}$/);
  expect(state.data.result).toEqual({
    status: 'SUCCESS',
    description: expect.stringContaining(':grin: SUCCESS'),
    artefacts: [expect.stringMatching(/^eessi-2023\.06-software-linux-x86_64-amd-zen4-\d+\.tar\.gz$/)],
  });
  expect(state.data.scheduler_state).toBe('COMPLETED');
  expect(state.data.exit_code).toBe('0:0');
  expect(state.history.map((t) => t.stage)).toEqual(
    expect.arrayContaining(['prepared', 'submitting', 'submitted', 'released', 'finished']),
  );

  // The checkout is the merge of the PR head into the moved base.
  expect(existsSync(path.join(jobDir!, 'BASE.md'))).toBe(true);
  expect(existsSync(path.join(jobDir!, 'bot', 'build.sh'))).toBe(true);
  const jobCfg = readFileSync(path.join(jobDir!, 'cfg', 'job.cfg'), 'utf8');
  expect(jobCfg).toContain(
    '[repository]\nrepos_cfg_dir = ' + path.join(jobDir!, 'cfg') + '\nrepo_id = eessi-test\n',
  );
  expect(jobCfg).toContain(
    '[architecture]\nnode_type = zen4\nsoftware_subdir = x86_64/amd/zen4\nos_type = linux\naccelerator = \n',
  );
  expect(readFileSync(path.join(jobDir!, 'cfg', 'repos.cfg'), 'utf8')).toContain('[eessi-test]');
  const jobId = state.data.job_id!;
  expect(readFileSync(path.join(jobDir!, `_bot_job${jobId}.metadata`), 'utf8')).toBe(
    `[PR]\nrepo = ${OWNER}/${REPO}\npr_number = ${PR}\npr_comment_id = ${state.comments.job!.id}\n`,
  );

  // Exactly one job comment and one reply, and the job comment holds every row once.
  const comments = h.fake.commentsOf(OWNER, REPO, PR);
  const jobComments = comments.filter((c) => c.body.startsWith('New job on instance `test`'));
  expect(jobComments).toHaveLength(1);
  const body = jobComments[0]!.body;
  expect(body).toContain('Building for: `x86_64/amd/zen4`');
  expect(body).toMatch(new RegExp(`\\|submitted\\|job id \`${jobId}\` awaits release by job manager\\|`));
  expect(body).toMatch(/\|released\|job was started by the local backend\|/);
  expect(body).toMatch(
    /\|finished\|<details><summary>:grin: SUCCESS<\/summary><ul><li>built <code>eessi-.*\.tar\.gz<\/code><\/li><\/ul><\/details> <sub>\(scheduler: `COMPLETED, exit code 0:0`\)<\/sub>\|/,
  );
  expect(body).toMatch(/\|test result\|:grin: SUCCESS tests passed\|/);
  for (const status of ['submitted', 'released', 'finished', 'test result']) {
    expect(body.split('\n').filter((l) => l.split('|')[2] === status)).toHaveLength(1);
  }
  expect(body).toMatch(/<!-- hpcbot:test:event_.*#job -->$/);
  expect(await h.deps.jobdirs.pending()).toEqual([]);
});

test('a merge conflict gets a comment with the git output and a tip, and nothing is submitted', async () => {
  h = await startHarness();
  const repo = setUpPr({ ...PASSING_BOT, 'README.md': 'the PR changes this line\n' });
  advanceBase(repo.bare, { 'README.md': 'the base changes it too\n' });
  await storeComment(h, 'bot: build for:arch=zen4');
  await tickUntil(h, async () => {
    const dirs = await jobDirsOf(h);
    return dirs.length === 1 && (await stageOf(dirs[0]!)) === 'failed';
  });
  const [jobDir] = await jobDirsOf(h);
  const state = await stateOf<JobData>(jobDir!);
  expect(state.data.job_id).toBeUndefined();
  expect(existsSync(path.join(h.config.jobdirs, 'local-jobs'))).toBe(false);
  const failure = h.fake.commentsOf(OWNER, REPO, PR).find((c) => c.body.startsWith('Preparing the job'));
  expect(failure?.body).toContain('failed at the merge step');
  expect(failure?.body).toContain('CONFLICT');
  expect(failure?.body).toContain('Tip: merge or rebase main into the PR branch');
});
