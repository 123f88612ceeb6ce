/**
 * A real `hpcbot poll` child killed (SIGKILL) inside a job's checkout and inside a local job's start;
 * re-runs finish the job, start it exactly once, and never blame the PR.
 */
import { existsSync, promises as fs, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { JobData } from '../src/store/job.js';
import { storeEvent } from '../src/ingest/eventStore.js';
import { JobDirs } from '../src/store/jobdirs.js';
import { readState } from '../src/store/state.js';
import { workTreeOf } from '../src/store/workTree.js';
import { FakeGitHub } from './support/fakeGithub.js';
import { payloads } from './support/payloads.js';
import { createPrRepo, PASSING_BOT } from './support/prRepo.js';
import { killAll, runCli, tempDir } from './support/spawn.js';

const OWNER = 'Codertocat';
const REPO = 'Hello-World';
const ENV = { HPCBOT_TEST_TOKEN: 'pat-token-for-children' };

let tmp: string;
let fake: FakeGitHub;
let siteYaml: string;
let jobdirs: JobDirs;

/** The build counts its own runs in a file outside the work tree (which a re-checkout would reset). */
const countingBot = (counter: string) => ({
  ...PASSING_BOT,
  'bot/build.sh': `#!/bin/bash\necho run >> ${counter}\nsleep 1\n${PASSING_BOT['bot/build.sh']}`,
});

beforeEach(async () => {
  tmp = await tempDir('hpcbot-crashresume-');
  const gitRoot = path.join(tmp, 'git');
  fake = new FakeGitHub({ gitRoot, patLogin: 'hpcbot-test' });
  const url = await fake.start();
  await fs.mkdir(path.join(tmp, 'repos_cfg'));
  await fs.writeFile(
    path.join(tmp, 'repos_cfg', 'repos.cfg'),
    '[eessi-test]\nrepo_name = software.eessi.io\nrepo_version = 2023.06\ncontainer = docker://x\n',
  );
  siteYaml = path.join(tmp, 'site.yaml');
  await fs.writeFile(
    siteYaml,
    [
      'instance: test',
      'jobdirs: jobdirs',
      'github:',
      `  api_url: ${url}`,
      '  token_env: HPCBOT_TEST_TOKEN',
      '  bot_login: hpcbot-test',
      'permissions:',
      '  command: [alice]',
      '  build: [alice]',
      'backend:',
      '  kind: local',
      'build:',
      '  repos_cfg_dir: repos_cfg',
      '  node_types:',
      '    zen4:',
      '      cpu_subdir: x86_64/amd/zen4',
      '      repo_targets: [eessi-test]',
      '',
    ].join('\n'),
  );
  jobdirs = new JobDirs(path.join(tmp, 'jobdirs'));
  await jobdirs.ensureBaseDirs();
  const repo = createPrRepo(gitRoot, OWNER, REPO, 1, countingBot(path.join(tmp, 'runs.txt')));
  fake.addPullRequest(OWNER, REPO, {
    number: 1,
    headSha: repo.headSha,
    baseSha: repo.baseSha,
    baseRef: 'main',
  });
});

afterEach(async () => {
  await killAll();
  await fake.stop();
  await fs.rm(tmp, { recursive: true, force: true });
});

async function build(): Promise<void> {
  const p = payloads.commentOnPr() as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  p.comment.body = 'bot: build for:arch=x86_64/amd/zen4';
  p.comment.user.login = 'alice';
  p.sender.login = 'alice';
  await storeEvent(jobdirs, {
    delivery: 'crash-build',
    event: 'issue_comment',
    rawBody: JSON.stringify(p),
    action: 'created',
    installationId: 1,
    headers: {},
    owner: OWNER,
    repo: REPO,
    scope: { kind: 'pr', number: 1 },
    receivedAt: new Date(),
  });
}

const poll = (crashPoint?: string) =>
  runCli(['poll', '--config', siteYaml, '--once'], {
    env: crashPoint ? { ...ENV, HPCBOT_CRASH_POINT: crashPoint } : ENV,
  });

async function theJob(): Promise<string> {
  const dirs = await jobdirs.prJobDirs(OWNER, REPO, 1);
  expect(dirs).toHaveLength(1);
  return dirs[0]!;
}

/** Poll with the crash point set until a poller is killed there. */
async function pollUntilKilledAt(point: string): Promise<void> {
  const deadline = Date.now() + 90_000; // a failed step backs off; the machine may be busy
  while (Date.now() < deadline) {
    if ((await poll(point)).code === null) return;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`never reached ${point}`);
}

/** Poll (without crashing) until the job is final; returns its state. */
async function pollUntilFinal(dir: string) {
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    const s = await readState<JobData>(dir);
    if (s && ['finished', 'failed', 'cancelled', 'lost'].includes(s.stage)) return s;
    expect((await poll()).code).toBe(0);
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error('the job did not end');
}

test('killed during the checkout (stale index.lock, half the files): the retry starts clean and the job succeeds', async () => {
  await build();
  await pollUntilKilledAt('checkout-begun');
  const dir = await theJob();
  const partial = workTreeOf(dir) + '.partial';
  // What a kill in the middle of `git checkout` leaves: its lock and some files.
  writeFileSync(path.join(partial, '.git', 'index.lock'), '');
  writeFileSync(path.join(partial, 'README.md'), 'half written');
  expect((await readState<JobData>(dir))!.stage).toBe('prepared');

  const s = await pollUntilFinal(dir);
  expect(s.stage).toBe('finished');
  expect(s.data.result?.status).toBe('SUCCESS');
  expect(readFileSync(path.join(workTreeOf(dir), 'README.md'), 'utf8')).toBe('base\n');
  expect(existsSync(partial)).toBe(false);
  expect(
    fake
      .commentsOf(OWNER, REPO, 1)
      .map((c) => c.body)
      .join('\n'),
  ).not.toMatch(/collide|failed at the/);
}, 300_000);

test.each(['local-start-recorded', 'local-runner-spawned'])(
  'killed at %s: the local job starts exactly once and finishes',
  async (point) => {
    await build();
    await pollUntilKilledAt(point);
    const dir = await theJob();
    const s = await pollUntilFinal(dir);
    expect(s.stage).toBe('finished');
    expect(s.data.scheduler_state).toBe('COMPLETED');
    expect(readFileSync(path.join(tmp, 'runs.txt'), 'utf8')).toBe('run\n');
  },
  300_000,
);
