/**
 * The pbs backend (flavour torque) against real batch commands: Debian's slurm-wlm-torque, whose qsub,
 * qstat, qrls and qdel are Torque front ends to the Slurm dev cluster. What this covers: the qsub
 * arguments are accepted, the wrapper gives the job script Slurm's contract (cwd, SLURM_JOB_ID,
 * slurm-<id>.out), hold and release, qdel, qstat -f parsing of live output, one job after a crash
 * right after qsub, and no state change when qstat fails. What it cannot cover: Slurm's qstat prints no
 * exit status, so final jobs are FINISHED here; the exit-status mapping is tested on the fixtures of
 * tests/pbsParse.test.ts.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { JobData } from '../../src/store/job.js';
import { workTreeOf } from '../../src/store/workTree.js';
import { runTick } from '../../src/poller.js';
import { readState } from '../../src/store/state.js';
import { PASSING_BOT } from '../support/prRepo.js';
import { describeSlurm, expectOneSubmissionAfterKill, pollUntil, slurm } from '../support/slurm.js';
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
} from '../support/botHarness.js';

const NAME = `hpcbot-p${process.pid}`;
const PBS = `backend:\n  kind: pbs\n  pbs:\n    flavour: torque\n    job_name_prefix: ${NAME}\n    default_walltime: '00:10:00'\n    missing_ticks_before_lost: 20\n`;

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

async function onlyJob(): Promise<string> {
  const dirs = await jobDirsOf(h);
  if (dirs.length !== 1) throw new Error(`expected one job dir, found ${dirs.length}`);
  return dirs[0]!;
}

const stageIs = (stage: string) => async () =>
  (await jobDirsOf(h)).length === 1 && (await stageOf(await onlyJob())) === stage;

/** Run `fn` with a `command` on PATH that always fails. */
async function withFailing<T>(command: string, fn: () => Promise<T>): Promise<T> {
  const bin = path.join(h.root, `failing-${command}`);
  mkdirSync(bin, { recursive: true });
  writeFileSync(path.join(bin, command), `#!/bin/sh\necho "${command}: refused by the test" >&2\nexit 1\n`, {
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

async function acct(id: string): Promise<string> {
  return pollUntil(
    async () =>
      (await slurm('sacct', ['--noheader', '--parsable2', '-X', '-j', id, '-o', 'State,ExitCode'])).trim(),
    (out) => out !== '' && !/^(PENDING|RUNNING)/.test(out),
  );
}

function jobComment(): string {
  const c = h.fake.commentsOf(OWNER, REPO, PR).filter((x) => x.body.startsWith('New job on instance'));
  expect(c).toHaveLength(1);
  return c[0]!.body;
}

const SLEEPY_BOT = { ...PASSING_BOT, 'bot/build.sh': '#!/bin/bash\nsleep 300\n' };

describeSlurm('PBS backend through the Torque front ends of Slurm', () => {
  test('full cycle: qsub held, qrls, running, finished; the job script sees SLURM_JOB_ID and its work tree', async () => {
    h = await startHarness('', PBS);
    openPr(h, {
      ...PASSING_BOT,
      'bot/build.sh': PASSING_BOT['bot/build.sh'].replace('exit 0', 'sleep 3; pwd > job-pwd.txt; exit 0'),
    });
    await storeComment(h, 'bot: build for:arch=x86_64/amd/zen4');
    await tickUntil(h, async () =>
      ['released', 'running', 'finished'].includes((await stageOf(await onlyJob().catch(() => ''))) ?? ''),
    );
    const dir = await onlyJob();
    const id = (await stateOf<JobData>(dir)).data.job_id!;
    expect(id).toMatch(/^\d+$/);
    // qsub -N and the work tree as working directory, as Slurm sees them.
    const queued = await slurm('squeue', ['--noheader', '-t', 'all', '-j', id, '-o', '%j|%Z']);
    expect(queued.trim()).toBe(`${NAME}-test|${workTreeOf(dir)}`);
    expect(readFileSync(path.join(dir, 'qsub.out'), 'utf8').trim()).toBe(id);

    await tickUntil(h, stageIs('finished'), 90_000, 500);
    const state = await stateOf<JobData>(dir);
    expect(state.data.scheduler_state).toBe('FINISHED');
    expect(state.data.result?.status).toBe('SUCCESS');
    expect(state.history.map((t) => t.stage)).toEqual([
      'prepared',
      'submitting',
      'submitted',
      'released',
      'running',
      'finished',
    ]);
    const tree = workTreeOf(dir);
    expect(readFileSync(path.join(tree, 'job-pwd.txt'), 'utf8').trim()).toBe(tree);
    expect(readFileSync(path.join(tree, `slurm-${id}.out`), 'utf8')).toContain(
      'building for software_subdir = x86_64/amd/zen4',
    );
    const body = jobComment();
    expect(body).toContain('|released|job awaits launch by PBS scheduler|');
    expect(body).toContain('(scheduler: `FINISHED, exit code ?`)');
    expect(await acct(id)).toBe('COMPLETED|0:0');
  }, 120_000);

  test('a failing build: the result file says FAILURE, and the job really failed', async () => {
    h = await startHarness('', PBS);
    openPr(h, {
      ...PASSING_BOT,
      'bot/build.sh': '#!/bin/bash\nexit 3\n',
      'bot/check-build.sh':
        '#!/bin/bash\nprintf "[RESULT]\\ncomment_description = :cry: FAILURE build broke\\nstatus = FAILURE\\nartefacts =\\n" > "_bot_job${SLURM_JOB_ID}.result"\n',
    });
    await storeComment(h, 'bot: build for:arch=zen4');
    await tickUntil(h, stageIs('finished'), 90_000, 500);
    const state = await stateOf<JobData>(await onlyJob());
    expect(state.data.result).toEqual({
      status: 'FAILURE',
      description: ':cry: FAILURE build broke',
      artefacts: [],
    });
    expect(await acct(state.data.job_id!)).toBe('FAILED|3:0');
  }, 120_000);

  test('bot: cancel runs qdel on the running job', async () => {
    h = await startHarness('', PBS);
    openPr(h, SLEEPY_BOT);
    await storeComment(h, 'bot: build for:arch=zen4');
    await tickUntil(h, stageIs('running'), 60_000, 500);
    await storeComment(h, 'bot: cancel');
    // Slurm's qstat shows a cancelled job as C without exit status: FINISHED, so the stage is finished
    // (on PBS Pro substate 91 and on Torque 271 make it CANCELLED; see tests/pbsParse.test.ts).
    await tickUntil(h, stageIs('finished'), 60_000, 500);
    const state = await stateOf<JobData>(await onlyJob());
    expect(state.data.cancel_requested).toBe('cancelled by reviewer1');
    expect(state.data.scheduler_state).toBe('FINISHED');
    expect(await acct(state.data.job_id!)).toMatch(/^CANCELLED/);
  }, 120_000);

  test('hold and release: the job waits held (qsub -h) until qrls works', async () => {
    h = await startHarness('', PBS);
    openPr(h, PASSING_BOT);
    await storeComment(h, 'bot: build for:arch=zen4');
    const dir = await withFailing('qrls', async () => {
      await tickUntil(h, stageIs('submitted'));
      await runTick(h.deps); // the release fails again; the job stays submitted and held
      return onlyJob();
    });
    expect(await stageOf(dir)).toBe('submitted');
    const id = (await stateOf<JobData>(dir)).data.job_id!;
    const held = await slurm('squeue', ['--noheader', '-j', id, '-o', '%T|%r']);
    expect(held.trim()).toBe('PENDING|JobHeldUser');
    await tickUntil(h, stageIs('finished'), 90_000, 500);
    expect((await stateOf<JobData>(dir)).data.result?.status).toBe('SUCCESS');
  }, 120_000);

  test('exactly once: a poller killed right after qsub does not submit twice', async () => {
    h = await startHarness('', PBS);
    openPr(h, PASSING_BOT);
    await storeComment(h, 'bot: build for:arch=zen4');
    await tickUntil(h, stageIs('prepared'));
    const dir = await onlyJob();
    await expectOneSubmissionAfterKill(h, dir, `${NAME}-test`);
  }, 120_000);

  test('when qstat fails, a tick changes no job state; the next good tick recovers', async () => {
    h = await startHarness('', PBS);
    openPr(h, PASSING_BOT);
    await storeComment(h, 'bot: build for:arch=zen4');
    await tickUntil(h, stageIs('released'));
    const dir = await onlyJob();
    const before = readFileSync(path.join(dir, 'state.json'), 'utf8');
    await withFailing('qstat', () => runTick(h.deps));
    expect(readFileSync(path.join(dir, 'state.json'), 'utf8')).toBe(before);
    await tickUntil(h, stageIs('finished'), 60_000, 500);
    expect((await stateOf<JobData>(dir)).data.result?.status).toBe('SUCCESS');
  }, 120_000);
});
