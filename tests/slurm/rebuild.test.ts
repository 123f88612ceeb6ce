/**
 * Rebuilds and infrastructure retries against the real single-node Slurm (run under
 * `flock /tmp/slurm.lock`): `bot: rebuild failed` after one of two targets failed resubmits only that
 * one, and a job whose node is set DOWN while it runs comes back as NODE_FAIL and is resubmitted once.
 */
import type { JobData } from '../../src/store/job.js';
import { readState } from '../../src/store/state.js';
import {
  jobDirsOf,
  letGo,
  openPr,
  OWNER,
  PR,
  REPO,
  stageOf,
  startHarness,
  stateOf,
  storeComment,
  tickUntil,
  type Harness,
} from '../support/botHarness.js';
import { describeSlurm, pollUntil, sacctJob, slurm, squeueJob } from '../support/slurm.js';

// --no-requeue: without it Slurm requeues a batch job whose node failed instead of ending it as NODE_FAIL.
/** The Slurm job name of this file's jobs (job_name_prefix + `-test`, the instance). */
const JOB_NAME = `hpcbot-r${process.pid}-test`;
const SLURM = [
  'backend:',
  '  kind: slurm',
  '  slurm:',
  `    job_name_prefix: hpcbot-r${process.pid}`,
  "    default_time: '00:10:00'",
  '    missing_ticks_before_lost: 20',
  '    sbatch_params: ["--no-requeue"]',
].join('\n');

const ICELAKE_NODE = [
  '    icelake:',
  '      cpu_subdir: x86_64/intel/icelake',
  '      repo_targets: [eessi-test]',
].join('\n');

/** icelake builds fail; a build waits (at most 2 minutes) for a `go` file when HOLD is exported. */
const BOT = {
  'bot/build.sh': [
    '#!/bin/bash',
    'if grep -q wait_for_go cfg/export_vars.sh 2>/dev/null; then',
    '  for i in $(seq 1 1200); do [ -e go ] && break; sleep 0.1; done',
    'fi',
    'echo "building $(grep software_subdir cfg/job.cfg)"',
  ].join('\n'),
  'bot/check-build.sh': [
    '#!/bin/bash',
    'if grep -q icelake cfg/job.cfg; then s=FAILURE; else s=SUCCESS; fi',
    'printf "[RESULT]\\ncomment_description = %s\\nstatus = %s\\nartefacts =\\n" "$s" "$s" > "_bot_job${SLURM_JOB_ID}.result"',
  ].join('\n'),
};

let h: Harness | undefined;
let downedNode: string | undefined;

async function resumeNode(): Promise<void> {
  if (!downedNode) return;
  // ReturnToService may have brought it back already; then scontrol refuses "resume", which is fine.
  await slurm('scontrol', ['update', `nodename=${downedNode}`, 'state=resume']).catch(() => undefined);
  const node = downedNode;
  const state = await pollUntil(
    async () => (await slurm('sinfo', ['-N', '-h', '-n', node, '-o', '%T'])).trim(),
    (s) => /^(idle|mixed|allocated)/.test(s),
    { timeoutMs: 60_000 },
  );
  if (!/^(idle|mixed|allocated)/.test(state)) throw new Error(`node ${node} did not come back: ${state}`);
  downedNode = undefined;
}

afterEach(async () => {
  await resumeNode(); // even when the test failed
  if (!h) return;
  const ids: string[] = [];
  for (const dir of await jobDirsOf(h)) {
    const data = (await readState<JobData>(dir))?.data;
    if (data?.job_id) ids.push(data.job_id);
    letGo(dir);
  }
  if (ids.length) await slurm('scancel', ids).catch(() => undefined);
  await h.stop();
  h = undefined;
});

async function harness(): Promise<Harness> {
  const harness = await startHarness(ICELAKE_NODE, SLURM);
  const config = {
    ...harness.config,
    build: { ...harness.config.build, allowed_exportvars: ['HOLD=wait_for_go'] },
  };
  harness.config = config;
  harness.deps.config = config;
  openPr(harness, BOT);
  return harness;
}

async function jobs(harness: Harness) {
  return Promise.all(
    (await jobDirsOf(harness)).map(async (dir) => ({ dir, ...(await stateOf<JobData>(dir)) })),
  );
}

async function handled(harness: Harness, body: string): Promise<void> {
  const eventDir = await storeComment(harness, body);
  await tickUntil(
    harness,
    async () => ['done', 'ignored'].includes((await stageOf(eventDir)) ?? ''),
    120_000,
  );
}

async function allFinished(harness: Harness, count: number): Promise<void> {
  await tickUntil(
    harness,
    async () => {
      const all = await jobs(harness);
      return all.length === count && all.every((j) => j.stage === 'finished');
    },
    240_000,
    1000,
  );
}

describeSlurm('rebuild and infrastructure retries on Slurm', () => {
  test('`rebuild failed` after one of two targets failed resubmits only that one', async () => {
    h = await harness();
    await handled(h, 'bot: build for:arch=zen4\nbot: build for:arch=icelake');
    await allFinished(h, 2);
    const before = await jobs(h);
    expect(before.map((j) => [j.data.target.nodeType, j.data.result?.status]).sort()).toEqual([
      ['icelake', 'FAILURE'],
      ['zen4', 'SUCCESS'],
    ]);

    await handled(h, 'bot: rebuild failed');
    await allFinished(h, 3);
    const fresh = (await jobs(h)).filter((j) => !before.some((b) => b.dir === j.dir));
    expect(fresh).toHaveLength(1);
    expect(fresh[0]!.data.target.nodeType).toBe('icelake');
    expect(fresh[0]!.data.backend).toBe('slurm');
    const acct = await sacctJob(fresh[0]!.data.job_id!);
    expect(acct?.State).toBe('COMPLETED');
    const replies = h.fake.commentsOf(OWNER, REPO, PR).filter((c) => !c.body.includes('#job -->'));
    const reply = replies.at(-1)?.body ?? '';
    expect(reply).toContain('resubmitted:\n  - job for `eessi-test` on node type `icelake`');
    expect(reply).toMatch(
      /skipped:\n {2}- `x86_64\/amd\/zen4` for `eessi-test` on node type `zen4`: its latest job .* succeeded/,
    );
  }, 600_000);

  test('a job whose node goes down comes back NODE_FAIL and is resubmitted once', async () => {
    h = await harness();
    await handled(h, 'bot: build for:arch=zen4 exportvariable:HOLD=wait_for_go');
    let dir = '';
    let jobId = '';
    await tickUntil(
      h,
      async () => {
        dir = (await jobDirsOf(h!))[0] ?? '';
        const data = dir ? (await readState<JobData>(dir))?.data : undefined;
        jobId = data?.job_id ?? '';
        return jobId !== '' && (await squeueJob(jobId))?.state === 'R';
      },
      120_000,
      500,
    );
    const node = (await slurm('squeue', ['-h', '-j', jobId, '-o', '%N'])).trim();
    expect(node).not.toBe('');
    downedNode = node;
    await slurm('scontrol', ['update', `nodename=${node}`, 'state=down', 'reason=hpcbot-rebuild-test']);
    const failed = await pollUntil(
      async () => (await sacctJob(jobId))?.State,
      (s) => s === 'NODE_FAIL',
      { timeoutMs: 60_000 },
    );
    expect(failed).toBe('NODE_FAIL');

    await tickUntil(h, async () => (await stateOf<JobData>(dir)).data.infra_retries === 1, 120_000, 500);
    await resumeNode();
    letGo(dir);
    await allFinished(h, 1);

    const data = (await stateOf<JobData>(dir)).data;
    expect(data.infra_failed_job_ids).toEqual([jobId]);
    expect(data.job_id).not.toBe(jobId);
    expect(data.result?.status).toBe('SUCCESS');
    expect(data.rows.find((r) => r.status === 'resubmitted')?.comment).toBe(
      'resubmitted after NODE_FAIL (1 of 1)',
    );
    // Exactly one more Slurm job of this bot since the failed one: its one resubmission. slurmctld
    // forgets ended jobs after MinJobAge, and slurmdbd may take minutes to record them on a busy
    // machine, so the jobs are taken from both: `squeue --states=all`, then sacct.
    // (sacct may still call a job that ended NODE_FAIL `allocation`: the name is taken from the config.)
    const name = JOB_NAME;
    const seen = new Set<string>();
    const jobsOfName = async (cmd: string, args: string[]) =>
      (await slurm(cmd, args).catch(() => ''))
        .split('\n')
        .map((l) => l.split('|'))
        .filter(([id, n]) => n === name && /^\d+$/.test(id ?? '') && Number(id) >= Number(jobId))
        .forEach(([id]) => seen.add(id!));
    const since = await pollUntil(
      async () => {
        await jobsOfName('squeue', ['--states=all', '-h', `--name=${name}`, '-o', '%i|%j']);
        await jobsOfName('sacct', [
          '-X',
          '-n',
          '-P',
          '-a',
          `--name=${name}`,
          '-o',
          'JobID,JobName',
          '-S',
          'now-1hour',
        ]);
        return [...seen].sort();
      },
      (ids) => ids.includes(jobId) && ids.includes(data.job_id!),
      { timeoutMs: 180_000 },
    );
    expect(since).toEqual([jobId, data.job_id!].sort());
  }, 600_000);
});
