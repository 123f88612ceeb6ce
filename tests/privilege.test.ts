/**
 * PR code runs as the job user (`backend.run_as`) and cannot reach the bot's secrets or records: a hostile
 * build script tries, on the real local backend, while its normal build still succeeds and deploys.
 * The same attack against the real Slurm dev cluster is in tests/slurm/privilege.test.ts.
 */
import {
  chmodSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { JobData } from '../src/store/job.js';
import { workTreeOf } from '../src/store/workTree.js';
import {
  jobDirsOf,
  openPr,
  OWNER,
  PR,
  REPO,
  startHarness,
  stageOf,
  stateOf,
  storeComment,
  tickUntil,
  type Harness,
} from './support/botHarness.js';
import { createPrRepoWithLinks } from './support/hostilePr.js';
import { runHostileBuild } from './support/hostileRun.js';
import { describeWithJobUser, JOB_USER } from './support/jobUser.js';
import { PASSING_BOT } from './support/prRepo.js';

describeWithJobUser('a hostile PR on the local backend with run_as', () => {
  test('cannot read secrets, forge events, edit state or other job dirs, or plant links; its build deploys', async () => {
    await runHostileBuild(`backend:\n  kind: local\n  run_as: ${JOB_USER}\n`);
  }, 180_000);
});

// Without run_as the same job is the bot: the attack report shows what run_as prevents. This keeps the
// attack script honest (it can detect a leak) and documents the default's weakness.
test('without run_as, the same script reads the secrets (the documented weakness of the default)', async () => {
  const { report } = await runHostileBuild('backend:\n  kind: local\n', { expectLeaks: true });
  expect(report).toMatch(/^read-signing-key: LEAKED/m);
  expect(report).toMatch(/^edit-own-state: LEAKED/m);
}, 180_000);

// ---- committed links where the bot writes ---------------------------------------------------------

/** Every name in `dir` with its content (links as `-> target`), to compare before and after. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const p = path.join(e.parentPath, e.name);
    out[path.relative(dir, p)] = e.isSymbolicLink()
      ? `-> ${readlinkSync(p)}`
      : e.isFile()
        ? readFileSync(p, 'utf8')
        : e.isDirectory()
          ? '(dir)'
          : '(other)';
  }
  return out;
}

async function linkedPrRun(backendYaml: string) {
  const outside = mkdtempSync(path.join(os.tmpdir(), 'hpcbot-outside-'));
  writeFileSync(path.join(outside, 'keep.txt'), 'outside the tree\n');
  const h = await startHarness('', backendYaml);
  try {
    chmodSync(h.root, 0o755);
    const jobdirsRoot = h.deps.jobdirs.root;
    // Every name the bot (or its local runner) writes in the tree, as a link out of it: the job's
    // output for the first few job ids, the runner's markers, the metadata file, and cfg/ itself.
    const links: Record<string, string> = { cfg: outside };
    for (const id of [1, 2, 3]) {
      links[`slurm-${id}.out`] = '../state.json';
      links[`.hpcbot-local-${id}.started`] = '../job.json';
      links[`.hpcbot-local-${id}.exit`] = path.join(outside, 'keep.txt');
      links[`_bot_job${id}.metadata`] = '../state.json';
    }
    const repo = createPrRepoWithLinks(h.gitRoot, OWNER, REPO, PR, PASSING_BOT, links);
    h.fake.addPullRequest(OWNER, REPO, {
      number: PR,
      headSha: repo.headSha,
      baseSha: repo.baseSha,
      baseRef: 'main',
    });
    const before = snapshot(outside);
    await storeComment(h, 'bot: build for:arch=x86_64/amd/zen4');
    await tickUntil(h, async () => {
      const dirs = await jobDirsOf(h);
      return dirs.length === 1 && ['finished', 'failed'].includes((await stageOf(dirs[0]!))!);
    });
    const [dir] = await jobDirsOf(h);
    const state = await stateOf<JobData>(dir!); // still the bot's JSON: nothing wrote through a link
    expect(state.stage).toBe('finished');
    expect(state.data.result?.status).toBe('SUCCESS');
    expect(snapshot(outside)).toEqual(before);
    const tree = workTreeOf(dir!);
    const id = state.data.job_id!;
    expect(lstatSync(path.join(tree, 'cfg')).isDirectory()).toBe(true);
    expect(readFileSync(path.join(tree, 'cfg', 'job.cfg'), 'utf8')).toContain('[architecture]');
    expect(lstatSync(path.join(tree, `slurm-${id}.out`)).isFile()).toBe(true);
    expect(readFileSync(path.join(tree, `slurm-${id}.out`), 'utf8')).toContain('building for');
    expect(lstatSync(path.join(tree, `_bot_job${id}.metadata`)).isFile()).toBe(true);
    expect(JSON.parse(readFileSync(path.join(dir!, 'job.json'), 'utf8'))).toMatchObject({
      node_type: 'zen4',
    });
    // Nothing anywhere under jobdirs outside the job's tree is a file the job's output went into.
    for (const f of readdirSync(jobdirsRoot, { recursive: true, withFileTypes: true }))
      if (f.isFile() && !path.join(f.parentPath, f.name).startsWith(tree + path.sep))
        expect(readFileSync(path.join(f.parentPath, f.name), 'latin1')).not.toContain('building for');
  } finally {
    await h.stop();
    rmSync(outside, { recursive: true, force: true });
  }
}

describeWithJobUser('links committed where the bot writes, with run_as', () => {
  test('cfg -> outside dir, slurm-<id>.out -> ../state.json, markers, metadata: nothing outside the tree changes', async () => {
    await linkedPrRun(`backend:\n  kind: local\n  run_as: ${JOB_USER}\n`);
  }, 120_000);
});

test('links committed where the bot writes, without run_as: nothing outside the tree changes', async () => {
  await linkedPrRun('backend:\n  kind: local\n');
}, 120_000);

// ---- the local runner's markers, replaced by the job ---------------------------------------------

test.each([
  [
    'leaves a fifo start marker and an exit status linked to /dev/zero',
    'FAILED',
    ['mkfifo "$started"', 'ln -s /dev/zero "$exited"'],
  ],
  [
    'leaves a start marker linked to /dev/zero and a fifo exit status',
    'FAILED',
    ['ln -s /dev/zero "$started"', 'mkfifo "$exited"'],
  ],
  // A pid that is not a process of the job user started after the job: not its runner, so it ended.
  ['writes pid 1 (old, and root) into its start marker', 'NODE_FAIL', ['echo "1 1" >"$started"']],
  [
    'writes the poller’s pid into its start marker',
    'NODE_FAIL',
    [`echo "${process.pid} ${process.pid}" >"$started"`],
  ],
])(
  'a job that kills its runner and %s: the tick completes and the job ends %s',
  async (_what, ended, plant) => {
    const h = await startHarness();
    try {
      // The build kills the runner (so it never writes the exit status) and replaces the markers.
      const build = [
        '#!/bin/bash',
        'started=.hpcbot-local-${SLURM_JOB_ID}.started; exited=.hpcbot-local-${SLURM_JOB_ID}.exit',
        'read -r runner _ <"$started"',
        'rm -f "$started" "$exited"',
        ...plant,
        'kill -9 "$runner"',
        'exit 0',
      ].join('\n');
      openPr(h, { ...PASSING_BOT, 'bot/build.sh': build });
      await storeComment(h, 'bot: build for:arch=x86_64/amd/zen4');
      await tickUntil(
        h,
        async () => {
          const dirs = await jobDirsOf(h);
          return dirs.length === 1 && ['finished', 'failed'].includes((await stageOf(dirs[0]!))!);
        },
        60_000,
      );
      const [dir] = await jobDirsOf(h);
      expect((await stateOf<JobData>(dir!)).data.scheduler_state).toBe(ended);
      if (ended === 'FAILED') {
        // The job comment says why, not just FAILED.
        const comment = h.fake.commentsOf(OWNER, REPO, PR).find((c) => c.body.startsWith('New job on'));
        expect(comment?.body).toMatch(
          /scheduler: `FAILED, exit code 0:0; the job tampered with its (start marker|exit status file) /,
        );
      }
    } finally {
      await h.stop();
    }
  },
  90_000,
);

// ---- the bot's environment does not reach the job (without run_as: the allow-list) -----------------

test('without run_as, HOME, SSH_AUTH_SOCK, GIT_ASKPASS, GIT_CONFIG_* and the bot’s git credential helper stay behind', async () => {
  const saved = { ...process.env };
  const home = mkdtempSync(path.join(os.tmpdir(), 'hpcbot-bothome-'));
  let h: Harness | undefined;
  try {
    writeFileSync(path.join(home, '.gitconfig'), '[credential]\n\thelper = !true hpcbot-bot-home-helper\n');
    Object.assign(process.env, {
      HOME: home,
      SSH_AUTH_SOCK: path.join(home, 'agent.sock'),
      GIT_ASKPASS: '/bin/echo',
      GIT_CONFIG_COUNT: '1',
      GIT_CONFIG_KEY_0: 'credential.helper',
      GIT_CONFIG_VALUE_0: '!true hpcbot-bot-env-helper',
    });
    h = await startHarness();
    const build = [
      '#!/bin/bash',
      'env >job-env.txt',
      '(cd / && git config --get-all credential.helper) >job-helpers.txt 2>&1',
      PASSING_BOT['bot/build.sh'].replace('#!/bin/bash\n', ''),
    ].join('\n');
    openPr(h, { ...PASSING_BOT, 'bot/build.sh': build });
    await storeComment(h, 'bot: build for:arch=x86_64/amd/zen4');
    await tickUntil(h, async () => {
      const dirs = await jobDirsOf(h!);
      return dirs.length === 1 && ['finished', 'failed'].includes((await stageOf(dirs[0]!))!);
    });
    const [dir] = await jobDirsOf(h);
    expect((await stateOf<JobData>(dir!)).data.result?.status).toBe('SUCCESS');
    const tree = workTreeOf(dir!);
    const env = readFileSync(path.join(tree, 'job-env.txt'), 'utf8');
    expect(env).not.toMatch(/^(SSH_AUTH_SOCK|GIT_ASKPASS|GIT_CONFIG_[A-Z0-9_]*)=/m);
    expect(env).toMatch(new RegExp(`^HOME=${tree}$`, 'm'));
    expect(env).not.toContain(home);
    expect(readFileSync(path.join(tree, 'job-helpers.txt'), 'utf8')).not.toContain('hpcbot-bot');
  } finally {
    process.env = saved;
    await h?.stop();
    rmSync(home, { recursive: true, force: true });
  }
}, 120_000);
