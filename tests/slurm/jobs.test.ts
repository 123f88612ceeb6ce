/** Build jobs against the real single-node Slurm: the full cycle, failures, cancel, timeout, handovers, crashes. */
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { JobData } from '../../src/store/job.js';
import { workTreeOf } from '../../src/store/workTree.js';
import { runTick } from '../../src/poller.js';
import { cancelJob } from '../../src/stages/job.js';
import { readState } from '../../src/store/state.js';
import { PASSING_BOT } from '../support/prRepo.js';
import { describeSlurm, expectOneSubmissionAfterKill, pollUntil, slurm } from '../support/slurm.js';
import { payloads } from '../support/payloads.js';
import {
  INSTALLATION,
  jobDirsOf,
  nextDelivery,
  storeRaw,
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
} from '../support/botHarness.js';

const SLURM = (extra = '') =>
  `backend:\n  kind: slurm\n  slurm:\n    job_name_prefix: hpcbot-t${process.pid}\n    default_time: '00:10:00'\n    missing_ticks_before_lost: 20\n${extra}`;

let h: Harness;
afterEach(async () => {
  if (!h) return;
  const ids = [];
  for (const dir of await jobDirsOf(h)) {
    const id = (await readState<JobData>(dir))?.data.job_id;
    if (id) ids.push(id);
  }
  if (ids.length) await slurm('scancel', ids).catch(() => undefined);
  await h.stop();
});

function setUpPr(files: Record<string, string>) {
  const repo = openPr(h, files);
  return repo;
}

async function onlyJob(): Promise<string> {
  const dirs = await jobDirsOf(h);
  if (dirs.length !== 1) throw new Error(`expected one job dir, found ${dirs.length}`);
  return dirs[0]!;
}

const stageIs = (stage: string) => async () =>
  (await jobDirsOf(h)).length === 1 && (await stageOf(await onlyJob())) === stage;
/** Submitted and (with hold_release) released: the poller does both in one go. */
const handedOver = async () =>
  (await jobDirsOf(h)).length === 1 &&
  ['released', 'running', 'finished'].includes((await stageOf(await onlyJob())) ?? '');

/** Run `fn` with a `scontrol` on PATH that always fails (so a release fails and the job stays held). */
async function withFailingScontrol<T>(fn: () => Promise<T>): Promise<T> {
  const bin = path.join(h.root, 'failing-bin');
  mkdirSync(bin, { recursive: true });
  writeFileSync(path.join(bin, 'scontrol'), '#!/bin/sh\necho "scontrol: refused by the test" >&2\nexit 1\n', {
    mode: 0o755,
  });
  const saved = process.env.PATH;
  process.env.PATH = `${bin}:${saved}`;
  try {
    return await fn();
  } finally {
    process.env.PATH = saved;
  }
}

function jobComment(): string {
  const c = h.fake.commentsOf(OWNER, REPO, PR).filter((x) => x.body.startsWith('New job on instance'));
  expect(c).toHaveLength(1);
  return c[0]!.body;
}

const SLEEPY_BOT = { ...PASSING_BOT, 'bot/build.sh': '#!/bin/bash\nsleep 300\n' };

describeSlurm('Slurm build jobs', () => {
  test('full cycle: held, released, running, finished with the result parsed', async () => {
    h = await startHarness('', SLURM());
    setUpPr({
      ...PASSING_BOT,
      'bot/build.sh': PASSING_BOT['bot/build.sh'].replace('exit 0', 'sleep 3; exit 0'),
    });
    await storeComment(h, 'bot: build for:arch=x86_64/amd/zen4');
    await tickUntil(h, handedOver);
    const dir = await onlyJob();
    const id = (await stateOf<JobData>(dir)).data.job_id!;
    const queued = await slurm('squeue', ['--noheader', '-t', 'all', '-j', id, '-o', '%j|%k|%Z']);
    expect(queued.trim()).toBe(
      `hpcbot-t${process.pid}-test|hpcbot:${(await stateOf<JobData>(dir)).data.submit_id}|${workTreeOf(dir)}`,
    );

    await tickUntil(h, stageIs('finished'), 90_000, 500);
    const state = await stateOf<JobData>(dir);
    expect(state.data.scheduler_state).toBe('COMPLETED');
    expect(state.data.exit_code).toBe('0:0');
    expect(state.data.result?.status).toBe('SUCCESS');
    expect(state.history.map((t) => t.stage)).toEqual([
      'prepared',
      'submitting',
      'submitted',
      'released',
      'running',
      'finished',
    ]);
    const body = jobComment();
    const rows = body
      .split('\n')
      .filter((l) => /^\|[A-Z][a-z]{2} \d\d /.test(l))
      .map((l) => l.split('|')[2]);
    expect(rows).toEqual(['submitted', 'released', 'running', 'finished', 'test result']);
    expect(body).toContain(`|job \`${id}\` is running|`);
    expect(body).toContain('(scheduler: `COMPLETED, exit code 0:0`)');
    expect(readFileSync(path.join(workTreeOf(dir), `slurm-${id}.out`), 'utf8')).toContain(
      'building for software_subdir = x86_64/amd/zen4',
    );
  }, 120_000);

  test("the job gets only an allow-list of the bot's environment through sbatch (no secrets, agents or HOME)", async () => {
    const bots = {
      HARNESS_GITHUB_TOKEN: 'ghp_harness',
      HPCBOT_WEBHOOK_SECRET: 'webhook-secret-value',
      SSH_AUTH_SOCK: '/tmp/agent.sock',
      GIT_ASKPASS: '/bin/echo',
      TZ: 'Europe/Amsterdam', // allow-listed: passed on
    };
    const saved = { ...process.env };
    Object.assign(process.env, bots); // the poller's environment
    try {
      h = await startHarness('', SLURM());
      setUpPr({
        ...PASSING_BOT,
        'bot/build.sh': PASSING_BOT['bot/build.sh'].replace('exit 0', 'env > job-env.txt\nexit 0'),
      });
      await storeComment(h, 'bot: build for:arch=zen4');
      await tickUntil(h, stageIs('finished'), 90_000, 500);
    } finally {
      process.env = saved;
    }
    const tree = workTreeOf(await onlyJob());
    const env = readFileSync(path.join(tree, 'job-env.txt'), 'utf8');
    expect(env).toMatch(/^TZ=Europe\/Amsterdam$/m);
    expect(env).toMatch(new RegExp(`^HOME=${tree}$`, 'm'));
    expect(env).not.toMatch(/HARNESS_GITHUB_TOKEN|ghp_harness|HPCBOT_WEBHOOK_SECRET|webhook-secret-value/);
    expect(env).not.toMatch(/^(SSH_AUTH_SOCK|GIT_ASKPASS)=/m);
  }, 120_000);

  test('a failing build is FAILED with its exit code and the FAILURE result', async () => {
    h = await startHarness('', SLURM());
    setUpPr({
      ...PASSING_BOT,
      'bot/build.sh': '#!/bin/bash\nexit 3\n',
      'bot/check-build.sh':
        '#!/bin/bash\nprintf "[RESULT]\\ncomment_description = :cry: FAILURE build broke\\nstatus = FAILURE\\nartefacts =\\n" > "_bot_job${SLURM_JOB_ID}.result"\n',
    });
    await storeComment(h, 'bot: build for:arch=zen4');
    await tickUntil(h, stageIs('finished'), 90_000, 500);
    const state = await stateOf<JobData>(await onlyJob());
    expect(state.data.scheduler_state).toBe('FAILED');
    expect(state.data.exit_code).toBe('3:0');
    expect(state.data.result).toEqual({
      status: 'FAILURE',
      description: ':cry: FAILURE build broke',
      artefacts: [],
    });
    expect(jobComment()).toContain(
      '|finished|:cry: FAILURE build broke <sub>(scheduler: `FAILED, exit code 3:0`)</sub>|',
    );
  }, 120_000);

  test('bot: cancel cancels a running job, which ends CANCELLED', async () => {
    h = await startHarness('', SLURM());
    setUpPr(SLEEPY_BOT);
    await storeComment(h, 'bot: build for:arch=zen4');
    await tickUntil(h, stageIs('running'), 60_000, 500);
    await storeComment(h, 'bot: cancel');
    await tickUntil(h, stageIs('cancelled'), 60_000, 500);
    const state = await stateOf<JobData>(await onlyJob());
    expect(state.data.scheduler_state).toBe('CANCELLED');
    expect(state.data.cancel_requested).toBe('cancelled by reviewer1');
    const acct = await slurm('sacct', [
      '--noheader',
      '--parsable2',
      '-X',
      '-j',
      state.data.job_id!,
      '-o',
      'State',
    ]);
    expect(acct.trim()).toMatch(/^CANCELLED/);
  }, 120_000);

  test('a job over its time limit ends TIMEOUT', async () => {
    h = await startHarness('      slurm_params: ["--time=00:00:05"]', SLURM());
    setUpPr(SLEEPY_BOT);
    await storeComment(h, 'bot: build for:arch=zen4');
    await tickUntil(h, stageIs('finished'), 150_000, 1000);
    const state = await stateOf<JobData>(await onlyJob());
    expect(state.data.scheduler_state).toBe('TIMEOUT');
    expect(jobComment()).toContain('(scheduler: `TIMEOUT, exit code 0:0`)');
  }, 180_000);

  test('delayed_begin submits with a begin time and needs no release', async () => {
    h = await startHarness('', SLURM('    handover: delayed_begin\n    delay_begin_seconds: 3\n'));
    setUpPr(PASSING_BOT);
    await storeComment(h, 'bot: build for:arch=zen4');
    await tickUntil(h, handedOver);
    const id = (await stateOf<JobData>(await onlyJob())).data.job_id!;
    const queued = await slurm('squeue', ['--noheader', '-j', id, '-o', '%T|%r']);
    expect(queued.trim()).toBe('PENDING|BeginTime');
    await tickUntil(h, stageIs('finished'), 90_000, 500);
    const body = jobComment();
    expect(body).toContain(`job id \`${id}\` will be eligible to start in about 3 seconds`);
    expect(body).toContain('|released|job awaits its begin time|');
  }, 120_000);

  test('exactly once: a poller killed right after sbatch does not submit twice', async () => {
    h = await startHarness('', SLURM());
    setUpPr(PASSING_BOT);
    await storeComment(h, 'bot: build for:arch=zen4');
    // The event in-process (the job is prepared), then a real poller process that checks the job out,
    // submits it and dies right after sbatch, before the job id is saved.
    await tickUntil(h, stageIs('prepared'));
    const dir = await onlyJob();
    await expectOneSubmissionAfterKill(h, dir, `hpcbot-t${process.pid}-test`);
  }, 120_000);

  test('when squeue and sacct fail, a tick changes no job state; the next good tick recovers', async () => {
    h = await startHarness('', SLURM());
    setUpPr(PASSING_BOT);
    await storeComment(h, 'bot: build for:arch=zen4');
    await tickUntil(h, stageIs('released'));
    const dir = await onlyJob();
    const before = readFileSync(path.join(dir, 'state.json'), 'utf8');
    await new Promise((r) => setTimeout(r, 3000)); // the job finishes meanwhile
    const saved = process.env.SLURM_CONF;
    // The same cluster config, but the clients look for the controller on a port where nothing listens.
    const conf = path.join(h.root, 'unreachable-slurm.conf');
    const real = readFileSync(saved ?? '/etc/slurm/slurm.conf', 'utf8').replace(/^SlurmctldPort=.*$/m, '');
    writeFileSync(conf, `${real}\nSlurmctldPort=9\n`);
    process.env.SLURM_CONF = conf;
    try {
      await runTick(h.deps);
    } finally {
      if (saved === undefined) delete process.env.SLURM_CONF;
      else process.env.SLURM_CONF = saved;
    }
    expect(readFileSync(path.join(dir, 'state.json'), 'utf8')).toBe(before);
    await tickUntil(h, stageIs('finished'), 60_000, 500);
    expect((await stateOf<JobData>(dir)).data.scheduler_state).toBe('COMPLETED');
  }, 120_000);
  test('closing the PR cancels the running Slurm job and moves the PR to the trash', async () => {
    h = await startHarness('', SLURM());
    openPr(h, SLEEPY_BOT);
    await storeComment(h, 'bot: build for:arch=zen4');
    await tickUntil(h, stageIs('running'), 60_000, 500);
    const dir = await onlyJob();
    const id = (await stateOf<JobData>(dir)).data.job_id!;
    const closed = payloads.prClosed();
    closed.repository!.owner.login = OWNER;
    closed.repository!.name = REPO;
    Object.assign(closed.pull_request as object, { number: PR, merged: false });
    closed.installation = { id: INSTALLATION, node_id: `I_fake${INSTALLATION}` };
    await storeRaw(h, 'pull_request', closed, nextDelivery());
    await tickUntil(h, async () => (await jobDirsOf(h)).length === 0, 60_000, 500);
    const acct = await pollUntil(
      () => slurm('sacct', ['--noheader', '--parsable2', '-X', '-j', id, '-o', 'State']),
      (out) => out.startsWith('CANCELLED'),
    );
    expect(acct).toMatch(/^CANCELLED/);
    const comment = h.fake.commentsOf(OWNER, REPO, PR).find((c) => c.body.startsWith('PR closed'));
    expect(comment?.body).toMatch(
      /^PR closed without merging: cancelled 1 active job\(s\) of instance `test`/,
    );
    const trash = path.join(h.config.jobdirs, 'trash', OWNER, REPO);
    expect(readdirSync(trash)).toHaveLength(1);
  }, 120_000);
  test('a job cancelled while still held is never released and ends CANCELLED', async () => {
    h = await startHarness('', SLURM());
    openPr(h, PASSING_BOT);
    await storeComment(h, 'bot: build for:arch=zen4');
    // The release fails (and is retried later), so the job is still held when the cancel comes.
    const dir = await withFailingScontrol(async () => {
      await tickUntil(h, stageIs('submitted'));
      const held = await onlyJob();
      await cancelJob(h.deps, held, 'test cancel');
      return held;
    });
    await tickUntil(h, stageIs('cancelled'), 60_000, 500);
    const state = await stateOf<JobData>(dir);
    expect(state.data.scheduler_state).toBe('CANCELLED');
    expect(state.history.map((t) => t.stage)).toEqual([
      'prepared',
      'submitting',
      'submitted',
      'released',
      'cancelled',
    ]);
    expect(state.last_error).toBeUndefined();
    expect(jobComment()).not.toContain('|released|');
  }, 120_000);
});
