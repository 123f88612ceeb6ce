/**
 * Automatic resubmission of jobs the infrastructure failed (build.infra_retries): the pure decision as
 * a table, then real jobs on the local backend through the poller. The local backend cannot fail a node,
 * so its observations of chosen job ids are reported as NODE_FAIL (everything else is the real backend);
 * tests/slurm/rebuild.test.ts downs a real Slurm node instead.
 */
import type { Backend } from '../src/adapters/schedulers/types.js';
import { infraFailure } from '../src/domain/jobComment.js';
import type { ParsedResult } from '../src/domain/resultFile.js';
import type { JobData } from '../src/store/job.js';
import {
  jobDirsOf,
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
} from './support/botHarness.js';
import { PASSING_BOT } from './support/prRepo.js';
import { killAll } from './support/spawn.js';

const result = (status: 'SUCCESS' | 'FAILURE' | 'UNKNOWN'): { result: ParsedResult } => ({
  result: { summary: { status, description: '', artefacts: [] }, descriptionHtml: '' } as ParsedResult,
});

describe('infraFailure', () => {
  test.each<[string, 'SUCCESS' | 'FAILURE' | 'UNKNOWN', boolean, string | undefined]>([
    ['NODE_FAIL', 'UNKNOWN', true, 'NODE_FAIL'],
    ['BOOT_FAIL', 'UNKNOWN', false, 'BOOT_FAIL'],
    ['PREEMPTED', 'UNKNOWN', true, 'PREEMPTED'],
    ['NODE_FAIL', 'FAILURE', true, undefined], // the result file says the build failed: never retried
    ['FAILED', 'UNKNOWN', false, 'a failure before the job script started'],
    ['FAILED', 'UNKNOWN', true, undefined],
    ['FAILED', 'FAILURE', false, undefined],
    ['COMPLETED', 'SUCCESS', true, undefined],
    ['TIMEOUT', 'UNKNOWN', true, undefined],
    ['CANCELLED by 0', 'UNKNOWN', true, undefined],
    ['OUT_OF_MEMORY', 'UNKNOWN', true, undefined],
  ])('%s, result %s, output written %s', (state, status, written, expected) => {
    expect(infraFailure(state, result(status), written)).toBe(expected);
  });
});

/** The real local backend, except that final observations of the first `failures` jobs say NODE_FAIL. */
function failingNodes(
  real: Backend,
  failures: number,
): Backend & { submitted: string[]; submitIds: string[] } {
  const submitted: string[] = [];
  const submitIds: string[] = [];
  return {
    kind: real.kind,
    submitted,
    submitIds,
    submit: async (req) => {
      const r = await real.submit(req);
      submitted.push(r.jobId);
      submitIds.push(req.submitId);
      return r;
    },
    findBySubmitId: (id, tree) => real.findBySubmitId(id, tree),
    release: (id, tree) => real.release(id, tree),
    cancel: (id, tree) => real.cancel(id, tree),
    observe: async (jobs) => {
      const seen = await real.observe(jobs);
      for (const [id, obs] of seen)
        if (obs.final && submitted.indexOf(id) >= 0 && submitted.indexOf(id) < failures)
          seen.set(id, { ...obs, state: 'NODE_FAIL', exitCode: '0:0' });
      return seen;
    },
  };
}

const FAILING_BOT = {
  ...PASSING_BOT,
  'bot/check-build.sh':
    '#!/bin/bash\nprintf "[RESULT]\\ncomment_description = :cry: FAILURE\\nstatus = FAILURE\\nartefacts =\\n" > "_bot_job${SLURM_JOB_ID}.result"\n',
};

let h: Harness | undefined;
afterEach(async () => {
  await killAll();
  await h?.stop();
  h = undefined;
});

async function runOneJob(
  yaml: string,
  files: Record<string, string>,
  failures: number,
): Promise<{ data: JobData; stage: string; backend: ReturnType<typeof failingNodes>; comment: string }> {
  h = await startHarness(yaml);
  const backend = failingNodes(h.deps.backend, failures);
  h.deps.backend = backend;
  openPr(h, files);
  await storeComment(h, 'bot: build for:arch=zen4');
  let dir = '';
  await tickUntil(
    h,
    async () => {
      dir = (await jobDirsOf(h!))[0] ?? '';
      return dir !== '' && ['finished', 'lost', 'failed'].includes((await stageOf(dir)) ?? '');
    },
    120_000,
  );
  await tickUntil(h, async () =>
    /\|(finished|node failure)\|/.test((await stateOf<JobData>(dir)).data.comment_body ?? ''),
  );
  const state = await stateOf<JobData>(dir);
  const comment = h.fake.commentsOf(OWNER, REPO, PR).find((c) => c.body.includes('#job -->'))!.body;
  return { data: state.data, stage: state.stage, backend, comment };
}

describe('through the poller', () => {
  test('a NODE_FAIL is resubmitted once with a fresh submit id, and the second run counts', async () => {
    const { data, stage, backend, comment } = await runOneJob('', PASSING_BOT, 1);
    expect(stage).toBe('finished');
    expect(backend.submitted).toHaveLength(2);
    const [failedId, retryId] = backend.submitted;
    expect(data.infra_failed_job_ids).toEqual([failedId]);
    expect(data.job_id).toBe(retryId);
    expect(data.submit_id).toBe(backend.submitIds[1]);
    expect(backend.submitIds[1]).not.toBe(backend.submitIds[0]);
    expect(data.result?.status).toBe('SUCCESS');
    expect(data.scheduler_state).toBe('COMPLETED');
    expect(comment).toMatch(/\|resubmitted\|resubmitted after NODE_FAIL \(1 of 1\)\|/);
    // Both submissions have their rows, in order.
    const statuses = data.rows.map((r) => r.status).filter((s) => s !== 'running'); // a fast job may skip it
    expect(statuses).toEqual([
      'submitted',
      'released',
      'resubmitted',
      'submitted',
      'released',
      'finished',
      'test result',
    ]);
  }, 120_000);

  test('at most build.infra_retries times: the second NODE_FAIL ends the job as a node failure', async () => {
    const { data, stage, backend, comment } = await runOneJob('', PASSING_BOT, 2);
    expect(backend.submitted).toHaveLength(2);
    expect(stage).toBe('finished');
    expect(data.scheduler_state).toBe('NODE_FAIL');
    expect(comment).toContain('|node failure|a node the job ran on failed');
  }, 120_000);

  test('build.infra_retries: 2 allows two', async () => {
    const { data, backend } = await runOneJob('  infra_retries: 2', PASSING_BOT, 2);
    expect(backend.submitted).toHaveLength(3);
    expect(data.rows.filter((r) => r.status === 'resubmitted').map((r) => r.comment)).toEqual([
      'resubmitted after NODE_FAIL (1 of 2)',
      'resubmitted after NODE_FAIL (2 of 2)',
    ]);
    expect(data.result?.status).toBe('SUCCESS');
  }, 120_000);

  test('a result file that says FAILURE is never retried, whatever the scheduler says', async () => {
    const { data, backend } = await runOneJob('', FAILING_BOT, 1);
    expect(backend.submitted).toHaveLength(1);
    expect(data.infra_retries).toBeUndefined();
    expect(data.result?.status).toBe('FAILURE');
  }, 120_000);
});
