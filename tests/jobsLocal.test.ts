/** The whole build cycle on the local backend: comment → job dir → checkout → run → result in the PR. */
import { workTreeOf } from '../src/store/workTree.js';
import { readFileSync, existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { createBackend } from '../src/adapters/schedulers/index.js';
import type { JobData } from '../src/store/job.js';
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
  expect(existsSync(path.join(workTreeOf(jobDir!), 'BASE.md'))).toBe(true);
  expect(existsSync(path.join(workTreeOf(jobDir!), 'bot', 'build.sh'))).toBe(true);
  const jobCfg = readFileSync(path.join(workTreeOf(jobDir!), 'cfg', 'job.cfg'), 'utf8');
  expect(jobCfg).toContain(
    '[repository]\nrepos_cfg_dir = ' + path.join(workTreeOf(jobDir!), 'cfg') + '\nrepo_id = eessi-test\n',
  );
  expect(jobCfg).toContain(
    '[architecture]\nnode_type = zen4\nsoftware_subdir = x86_64/amd/zen4\nos_type = linux\naccelerator = \n',
  );
  expect(readFileSync(path.join(workTreeOf(jobDir!), 'cfg', 'repos.cfg'), 'utf8')).toContain('[eessi-test]');
  const jobId = state.data.job_id!;
  expect(readFileSync(path.join(workTreeOf(jobDir!), `_bot_job${jobId}.metadata`), 'utf8')).toBe(
    `[PR]\nrepo = ${OWNER}/${REPO}\npr_number = ${PR}\npr_comment_id = ${state.comments.job!.id}\njob_owner = reviewer1\n`,
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

describe('more of the job flow on the local backend', () => {
  test('exportvariable reaches the job through cfg/export_vars.sh (SKIP_TESTS=yes skips bot/test.sh)', async () => {
    h = await startHarness();
    openPr(h, PASSING_BOT);
    await storeComment(h, 'bot: build for:arch=zen4 exportvariable:SKIP_TESTS=yes');
    await tickUntil(
      h,
      async () =>
        (await jobDirsOf(h)).length === 1 && (await stageOf((await jobDirsOf(h))[0]!)) === 'finished',
    );
    const [dir] = await jobDirsOf(h);
    expect(readFileSync(path.join(workTreeOf(dir!), 'cfg', 'export_vars.sh'), 'utf8')).toBe(
      "export SKIP_TESTS='yes'\n",
    );
    expect(readFileSync(path.join(workTreeOf(dir!), 'build-env.txt'), 'utf8')).toBe('SKIP_TESTS=yes\n');
    const id = (await stateOf<JobData>(dir!)).data.job_id!;
    expect(readFileSync(path.join(workTreeOf(dir!), `slurm-${id}.out`), 'utf8')).not.toContain('testing');
  });

  test("the job script does not see the bot's secrets (webhook secret, GitHub token) in its environment", async () => {
    const secrets = { HARNESS_GITHUB_TOKEN: 'ghp_harness', HPCBOT_WEBHOOK_SECRET: 'webhook-secret-value' };
    const saved = Object.keys(secrets).map((name) => [name, process.env[name]] as const);
    Object.assign(process.env, secrets); // the poller's environment, for the whole run
    try {
      h = await startHarness();
      openPr(h, {
        ...PASSING_BOT,
        'bot/build.sh': PASSING_BOT['bot/build.sh'].replace('exit 0', 'env > job-env.txt\nexit 0'),
      });
      await storeComment(h, 'bot: build for:arch=zen4');
      await tickUntil(
        h,
        async () =>
          (await jobDirsOf(h)).length === 1 && (await stageOf((await jobDirsOf(h))[0]!)) === 'finished',
      );
    } finally {
      for (const [name, value] of saved) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
    const [dir] = await jobDirsOf(h);
    const env = readFileSync(path.join(workTreeOf(dir!), 'job-env.txt'), 'utf8');
    expect(env).toMatch(/^SLURM_JOB_ID=\d+$/m);
    expect(env).not.toMatch(/HARNESS_GITHUB_TOKEN|ghp_harness|HPCBOT_WEBHOOK_SECRET|webhook-secret-value/);
  });

  test('an exportvariable outside the allow-list submits nothing and says what is allowed', async () => {
    h = await startHarness();
    await storeComment(h, 'bot: build for:arch=zen4 exportvariable:EVIL=1');
    await tickUntil(h, async () => h.fake.commentsOf(OWNER, REPO, PR).length === 1);
    expect(await jobDirsOf(h)).toEqual([]);
    expect(h.fake.commentsOf(OWNER, REPO, PR)[0]!.body).toContain(
      'no jobs were submitted: export variable(s) `EVIL=1` not allowed here; allowed: `SKIP_TESTS=yes`',
    );
  });

  test('max_parallel holds a second job back until a slot is free; a fresh backend object picks up running jobs', async () => {
    h = await startHarness(
      '    zen4-bis:\n      cpu_subdir: x86_64/amd/zen4\n      repo_targets: [eessi-test]',
      'backend:\n  kind: local\n  local:\n    max_parallel: 1\n',
    );
    openPr(h, {
      ...PASSING_BOT,
      'bot/build.sh': PASSING_BOT['bot/build.sh'].replace('exit 0', 'sleep 2; exit 0'),
    });
    await storeComment(h, 'bot: build for:arch=zen4');
    const stages = async () => Promise.all((await jobDirsOf(h)).map(async (d) => (await stageOf(d)) ?? '?'));
    await tickUntil(h, async () => (await stages()).includes('released'));
    expect((await stages()).sort()).toEqual(['released', 'submitted']);
    // As after a poller restart: nothing the backend knows lives in memory.
    h.deps.backend = createBackend(h.config, h.deps.logger, h.deps.jobdirs, h.deps.account);
    await tickUntil(h, async () => (await stages()).every((s) => s === 'finished'));
    expect(await stages()).toEqual(['finished', 'finished']);
  });

  test('a job that vanishes from the backend is `lost` after the configured number of ticks, with a row', async () => {
    h = await startHarness('  infra_retries: 0'); // no resubmission of the lost job (see infraRetry.test.ts)
    openPr(h, { ...PASSING_BOT, 'bot/build.sh': '#!/bin/bash\nsleep 30\n' });
    await storeComment(h, 'bot: build for:arch=zen4');
    await tickUntil(
      h,
      async () =>
        (await jobDirsOf(h)).length === 1 && (await stageOf((await jobDirsOf(h))[0]!)) === 'running',
    );
    const [dir] = await jobDirsOf(h);
    const id = (await stateOf<JobData>(dir!)).data.job_id!;
    await h.deps.backend.cancel(id, dir!);
    rmSync(path.join(h.config.jobdirs, 'local-jobs', `${id}.json`));
    const ticks = await tickUntil(h, async () => (await stageOf(dir!)) === 'lost');
    expect(ticks).toBe(h.config.backend.slurm.missing_ticks_before_lost);
    const body = h.fake.commentsOf(OWNER, REPO, PR).find((c) => c.body.startsWith('New job'))!.body;
    expect(body).toContain(
      `|lost|job \`${id}\` vanished from the scheduler (not in squeue nor sacct for 3 polls)|`,
    );
  });

  test('chatlevel incognito posts nothing and still runs the job to the end', async () => {
    h = await startHarness('chatlevel: incognito');
    openPr(h, PASSING_BOT);
    await storeComment(h, 'bot: build for:arch=zen4');
    await tickUntil(
      h,
      async () =>
        (await jobDirsOf(h)).length === 1 && (await stageOf((await jobDirsOf(h))[0]!)) === 'finished',
    );
    expect(h.fake.commentsOf(OWNER, REPO, PR)).toEqual([]);
    const state = await stateOf<JobData>((await jobDirsOf(h))[0]!);
    expect(state.data.result?.status).toBe('SUCCESS');
  });

  test('a fetch failure gets a comment with the git output and a tip; nothing is submitted', async () => {
    h = await startHarness();
    h.fake.addPullRequest(OWNER, REPO, {
      number: PR,
      headSha: 'b'.repeat(40),
      baseSha: 'c'.repeat(40),
      baseRef: 'main',
    });
    await storeComment(h, 'bot: build for:arch=zen4');
    await tickUntil(
      h,
      async () => (await jobDirsOf(h)).length === 1 && (await stageOf((await jobDirsOf(h))[0]!)) === 'failed',
    );
    const failure = h.fake
      .commentsOf(OWNER, REPO, PR)
      .find((c) => c.body.startsWith('Preparing the job'))!.body;
    expect(failure).toContain('failed at the fetch step: could not fetch PR #7 and its base branch');
    expect(failure).toMatch(/```\n(.|\n)*(not found|repository|fatal)(.|\n)*```/i);
    expect(failure).toContain('Tip: check that the repository is reachable');
    expect((await stateOf<JobData>((await jobDirsOf(h))[0]!)).data.job_id).toBeUndefined();
  });

  test('the jobs of one comment share one fetch and build the same merge, however many build lines it has', async () => {
    h = await startHarness(
      [
        '    zen2:',
        '      os: linux',
        '      cpu_subdir: x86_64/amd/zen2',
        '      repo_targets: [eessi-test]',
      ].join('\n'),
    );
    setUpPr();
    await storeComment(h, 'bot: build for:arch=x86_64/amd/zen4\nbot: build for:arch=x86_64/amd/zen2');
    await tickUntil(h, async () => {
      const dirs = await jobDirsOf(h);
      return dirs.length === 2 && (await Promise.all(dirs.map(stageOf))).every((s) => s === 'finished');
    });
    // Each fetch over smart HTTP starts with one GET of info/refs.
    const fetches = h.fake.gitCalls.filter((c) => c.method === 'GET' && c.path.endsWith('/info/refs'));
    expect(fetches).toHaveLength(1);
    const merges = await Promise.all(
      (await jobDirsOf(h)).map(async (d) => (await stateOf<JobData>(d)).data.merge_sha),
    );
    expect(new Set(merges).size).toBe(1);
  });
});
