/**
 * How a job's end is shown in its comment: the real final state and why (`finalState`), as a table of
 * cases, then through the job stage with the real GitHub adapter against the fake, where the scheduler
 * is a stub that reports the final state.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { siteSchema, type Config } from '../src/config/config.js';
import { parseIni } from '../src/domain/ini.js';
import type { JobData } from '../src/store/job.js';
import {
  cancelReasonText,
  cancelledBeforeSubmissionText,
  endedEarlyReason,
  finalState,
  jobTimeLimit,
  type FinalRow,
} from '../src/domain/jobComment.js';
import { renderStatusTable } from '../src/stages/commands/status.js';
import { monthDir } from '../src/store/jobdirs.js';
import { runTick } from '../src/poller.js';
import { interpretResult } from '../src/domain/resultFile.js';
import { newState, readState, writeState, type DirState } from '../src/store/state.js';
import type { BuildTarget } from '../src/domain/targets.js';
import type { Backend, JobObservation } from '../src/adapters/schedulers/types.js';
import { INSTALLATION, OWNER, PR, REPO, startHarness, type Harness } from './support/botHarness.js';

const noResult = interpretResult(undefined, 'result', '_bot_job42.result');
const noTest = interpretResult(undefined, 'test', '_bot_job42.test');
const result = (status: string, description: string) =>
  interpretResult(
    parseIni(`[RESULT]\ncomment_description = ${description}\nstatus = ${status}\n`),
    'result',
    '_bot_job42.result',
  );
const test_ = (status: string, description: string) =>
  interpretResult(
    parseIni(`[TEST]\ncomment_description = ${description}\nstatus = ${status}\n`),
    'test',
    '_bot_job42.test',
  );

const sub = (s: string) => `<sub>(scheduler: \`${s}\`)</sub>`;

describe('finalState', () => {
  test.each<
    [
      string,
      string | undefined,
      string | undefined,
      string | undefined,
      ReturnType<typeof result> | undefined,
      'finished' | 'cancelled',
      FinalRow[],
    ]
  >([
    [
      'COMPLETED',
      '0:0',
      undefined,
      undefined,
      result('SUCCESS', ':grin: SUCCESS built 3 packages'),
      'finished',
      [
        {
          key: 'finished',
          status: 'finished',
          comment: `:grin: SUCCESS built 3 packages ${sub('COMPLETED, exit code 0:0')}`,
        },
        { key: 'test', status: 'test result', comment: ':grin: SUCCESS tests passed' },
      ],
    ],
    [
      'FAILED',
      '1:0',
      undefined,
      undefined,
      result('FAILURE', ':cry: FAILURE build failed'),
      'finished',
      [
        {
          key: 'finished',
          status: 'finished',
          comment: `:cry: FAILURE build failed ${sub('FAILED, exit code 1:0')}`,
        },
        { key: 'test', status: 'test result', comment: ':grin: SUCCESS tests passed' },
      ],
    ],
    [
      'CANCELLED by 1000',
      '0:15',
      'cancelled by alice',
      undefined,
      undefined,
      'cancelled',
      [
        {
          key: 'finished',
          status: 'cancelled',
          comment: `cancelled by \`alice\` (\`bot: cancel\`) ${sub('CANCELLED by 1000, exit code 0:15')}`,
        },
      ],
    ],
    [
      'CANCELLED',
      '0:15',
      'superseded by 2026.03/o/r/pr_7/event_d-2/run_000/zen4/eessi-test',
      undefined,
      undefined,
      'cancelled',
      [
        {
          key: 'finished',
          status: 'cancelled',
          comment: `cancelled: superseded by the job in \`2026.03/o/r/pr_7/event_d-2/run_000/zen4/eessi-test\` ${sub('CANCELLED, exit code 0:15')}`,
        },
      ],
    ],
    [
      'CANCELLED',
      '0:15',
      'superseded by 0123456789',
      undefined,
      undefined,
      'cancelled',
      [
        {
          key: 'finished',
          status: 'cancelled',
          comment: `cancelled: superseded by the new push \`0123456789\` ${sub('CANCELLED, exit code 0:15')}`,
        },
      ],
    ],
    [
      'CANCELLED',
      '0:15',
      'PR merged',
      undefined,
      undefined,
      'cancelled',
      [
        {
          key: 'finished',
          status: 'cancelled',
          comment: `cancelled because the PR was merged ${sub('CANCELLED, exit code 0:15')}`,
        },
      ],
    ],
    [
      'CANCELLED by 0',
      '0:9',
      undefined,
      undefined,
      undefined,
      'cancelled',
      [
        {
          key: 'finished',
          status: 'cancelled',
          comment: `cancelled outside the bot ${sub('CANCELLED by 0, exit code 0:9')}`,
        },
      ],
    ],
    // Cancelled during its tests: the build's result file says something, so it is shown.
    [
      'CANCELLED',
      '0:15',
      'PR closed',
      undefined,
      result('SUCCESS', ':grin: SUCCESS built 3 packages'),
      'cancelled',
      [
        {
          key: 'finished',
          status: 'cancelled',
          comment: `cancelled because the PR was closed<br/>:grin: SUCCESS built 3 packages ${sub('CANCELLED, exit code 0:15')}`,
        },
        { key: 'test', status: 'test result', comment: ':grin: SUCCESS tests passed' },
      ],
    ],
    [
      'TIMEOUT',
      '0:0',
      undefined,
      '1-00:00:00',
      undefined,
      'finished',
      [
        {
          key: 'finished',
          status: 'timed out',
          comment: `the job hit its time limit of \`1-00:00:00\` ${sub('TIMEOUT, exit code 0:0')}`,
        },
      ],
    ],
    [
      'TIMEOUT',
      undefined,
      undefined,
      undefined,
      undefined,
      'finished',
      [
        {
          key: 'finished',
          status: 'timed out',
          comment: `the job hit its time limit ${sub('TIMEOUT, exit code ?')}`,
        },
      ],
    ],
    [
      'OUT_OF_MEMORY',
      '0:125',
      undefined,
      undefined,
      undefined,
      'finished',
      [
        {
          key: 'finished',
          status: 'out of memory',
          comment: `the job ran out of memory ${sub('OUT_OF_MEMORY, exit code 0:125')}`,
        },
      ],
    ],
    [
      'NODE_FAIL',
      '1:0',
      undefined,
      undefined,
      undefined,
      'finished',
      [
        {
          key: 'finished',
          status: 'node failure',
          comment: `a node the job ran on failed ${sub('NODE_FAIL, exit code 1:0')}`,
        },
      ],
    ],
    [
      'PREEMPTED',
      '0:0',
      undefined,
      undefined,
      undefined,
      'finished',
      [
        {
          key: 'finished',
          status: 'ended',
          comment: `the scheduler ended the job as \`PREEMPTED\` ${sub('PREEMPTED, exit code 0:0')}`,
        },
      ],
    ],
  ])('%s (exit %s, cancel reason %s, time limit %s)', (state, exitCode, cancel, limit, res, stage, rows) => {
    const withTest = res ? test_('SUCCESS', ':grin: SUCCESS tests passed') : noTest;
    const final = finalState(
      cancel ? { cancel_requested: cancel } : {},
      exitCode ? { state, exitCode } : { state },
      { result: res ?? noResult, test: withTest },
      limit,
    );
    expect(final).toEqual({ stage, rows });
  });

  test('a job that ran to its end shows the missing result files as before', () => {
    expect(
      finalState({}, { state: 'COMPLETED', exitCode: '0:0' }, { result: noResult, test: noTest }),
    ).toEqual({
      stage: 'finished',
      rows: [
        {
          key: 'finished',
          status: 'finished',
          comment: `:shrug: UNKNOWN (no result in \`_bot_job42.result\`) ${sub('COMPLETED, exit code 0:0')}`,
        },
        {
          key: 'test',
          status: 'test result',
          comment: ':shrug: UNKNOWN (no test result in `_bot_job42.test`)',
        },
      ],
    });
  });

  test('a cancel reason the bot does not know is shown as it is, in a code span', () => {
    expect(cancelReasonText('maintenance `window`')).toBe('cancelled: `` maintenance `window` ``');
  });
});

describe('jobTimeLimit', () => {
  const config = (backend: Record<string, unknown>): Config =>
    ({
      ...siteSchema.parse({ instance: 'test', jobdirs: '/tmp/unused', backend }),
      source: '/tmp/site.yaml',
    }) as Config;
  const target = (slurmParams: string[]): Pick<JobData, 'target'> => ({
    target: { nodeType: 'zen4', repoId: 'r', os: 'linux', onArch: 'a', forArch: 'a', slurmParams },
  });

  test.each<[string, Record<string, unknown>, string[], string | undefined]>([
    ['the local backend has none', { kind: 'local' }, ['--time=01:00:00'], undefined],
    ['Slurm default_time', { kind: 'slurm', slurm: { default_time: '04:00:00' } }, [], '04:00:00'],
    ['the default default_time', { kind: 'slurm' }, [], '24:00:00'],
    [
      'site sbatch_params --time=',
      { kind: 'slurm', slurm: { sbatch_params: ['--time=02:00:00'] } },
      [],
      '02:00:00',
    ],
    [
      'node slurm_params after site params',
      { kind: 'slurm', slurm: { sbatch_params: ['--time=2:00:00'] } },
      ['-t', '30'],
      '30',
    ],
    ['-tVALUE', { kind: 'slurm' }, ['--mem=4G', '-t5'], '5'],
    ['--time VALUE', { kind: 'slurm' }, ['--time', '3:00:00', '--mem', '4G'], '3:00:00'],
  ])('%s', (_what, backend, params, expected) => {
    expect(jobTimeLimit(config(backend), target(params))).toBe(expected);
  });
});

// ---- through the job stage --------------------------------------------------------------------

const TARGET: BuildTarget = {
  nodeType: 'zen4',
  repoId: 'eessi-test',
  os: 'linux',
  onArch: 'x86_64/amd/zen4',
  forArch: 'x86_64/amd/zen4',
  slurmParams: [],
};

/** The scheduler as the job stage sees it: every job has ended with `final`. */
function endedBackend(final: Omit<JobObservation, 'jobId' | 'final'>): Backend {
  return {
    kind: 'slurm',
    submit: () => Promise.reject(new Error('nothing is submitted here')),
    findBySubmitId: async () => undefined,
    release: async () => true,
    cancel: async () => undefined,
    observe: async (jobs) => new Map(jobs.map((j) => [j.jobId, { ...final, jobId: j.jobId, final: true }])),
  };
}

let h: Harness;
afterEach(async () => h?.stop());

test.each<[string, string, string | undefined, string, string]>([
  ['TIMEOUT', '0:0', undefined, 'finished', '|timed out|the job hit its time limit of `04:00:00`'],
  ['OUT_OF_MEMORY', '0:125', undefined, 'finished', '|out of memory|the job ran out of memory'],
  ['NODE_FAIL', '1:0', undefined, 'finished', '|node failure|a node the job ran on failed'],
  [
    'CANCELLED by 0',
    '0:15',
    'cancelled by reviewer1',
    'cancelled',
    '|cancelled|cancelled by `reviewer1` (`bot: cancel`)',
  ],
  [
    'CANCELLED by 0',
    '0:15',
    'superseded by 0123456789',
    'cancelled',
    '|cancelled|cancelled: superseded by the new push `0123456789`',
  ],
])(
  'a running job that ends as %s: the comment shows it and why',
  async (state, exitCode, cancel, stage, shown) => {
    // No automatic resubmission of a NODE_FAIL here (that is infraRetry.test.ts).
    h = await startHarness(
      '  infra_retries: 0',
      'backend:\n  kind: slurm\n  slurm:\n    default_time: "04:00:00"\n',
    );
    h.deps.backend = endedBackend({ state, exitCode });
    const { jobdirs } = h.deps;
    const dir = path.join(
      jobdirs.prDir(monthDir(new Date()), OWNER, REPO, PR),
      'event_d-1',
      'run_000',
      'zen4',
      'eessi-test',
    );
    mkdirSync(dir, { recursive: true });
    const data: JobData = {
      pr: { owner: OWNER, repo: REPO, number: PR, installation_id: INSTALLATION },
      instance: 'test',
      target: TARGET,
      exportVariables: [],
      backend: 'slurm',
      submit_id: 'submit-1',
      job_id: '4711',
      rows: [],
      ...(cancel ? { cancel_requested: cancel } : {}),
    };
    await writeState(dir, newState('job', 'running', data, new Date()));
    await jobdirs.enqueue(dir);

    expect(await runTick(h.deps)).toEqual({ advanced: 1, failed: 0, skipped: 0, unchanged: 0, young: 0 });

    expect((await readState(dir))?.stage).toBe(stage);
    const [posted, ...more] = h.fake.commentsOf(OWNER, REPO, PR);
    expect(more).toEqual([]);
    const rows = posted!.body.split('\n').filter((l) => l.startsWith('|') && !l.startsWith('|-'));
    // The header row, then one final row (no empty result rows for a job that was ended early).
    expect(rows).toHaveLength(2);
    const final = rows[1]!.slice(rows[1]!.indexOf('|', 1));
    expect(final).toBe(`${shown} ${sub(`${state}, exit code ${exitCode}`)}|`);
    expect(await jobdirs.pending()).toEqual([]);
  },
);

describe('cancelled before submission', () => {
  test('the row uses the words of every other cancellation, never the raw reason', () => {
    const dir = '2026.05/acme/software/pr_7/event_b/run_000/zen4/eessi-test';
    expect(cancelledBeforeSubmissionText(`superseded by ${dir}`)).toBe(
      `cancelled before submission: superseded by the job in \`${dir}\``,
    );
    expect(cancelledBeforeSubmissionText('superseded by 0123456789abcdef')).toBe(
      'cancelled before submission: superseded by the new push `0123456789abcdef`',
    );
    expect(cancelledBeforeSubmissionText('cancelled by alice')).toBe(
      'cancelled before submission by `alice` (`bot: cancel`)',
    );
    expect(cancelledBeforeSubmissionText('PR closed')).toBe(
      'cancelled before submission because the PR was closed',
    );
  });
});

describe('the status table says why a job ended early', () => {
  test('endedEarlyReason: cancels by whom or what, and the scheduler ends in words', () => {
    expect(endedEarlyReason('cancelled', { cancel_requested: 'cancelled by bob' })).toBe('by `bob`');
    expect(endedEarlyReason('cancelled', { cancel_requested: 'superseded by 0123456789abcdef' })).toBe(
      'superseded by the push `0123456789`',
    );
    expect(endedEarlyReason('cancelled', { cancel_requested: 'PR merged' })).toBe('the PR was merged');
    expect(endedEarlyReason('cancelled', {})).toBe('outside the bot');
    expect(endedEarlyReason('finished', { scheduler_state: 'TIMEOUT' })).toBe('timed out');
    expect(endedEarlyReason('finished', { scheduler_state: 'OUT_OF_MEMORY' })).toBe('out of memory');
    expect(endedEarlyReason('finished', { scheduler_state: 'NODE_FAIL' })).toBe('node failure');
    expect(endedEarlyReason('finished', { scheduler_state: 'COMPLETED' })).toBeUndefined();
    expect(endedEarlyReason('running', { scheduler_state: 'RUNNING' })).toBeUndefined();
  });

  test('renderStatusTable shows the reason next to the stage', () => {
    const target = {
      onArch: 'x86_64/amd/zen4',
      forArch: 'x86_64/amd/zen4',
      repoId: 'eessi-test',
    } as unknown as JobData['target'];
    const job = (stage: string, data: Partial<JobData>) => ({
      dir: `2026.05/acme/software/pr_7/event_${stage}/run_000/zen4/eessi-test`,
      state: {
        kind: 'job',
        stage,
        attempts: 0,
        history: [{ stage, at: '2026-05-01T00:00:00Z' }],
        comments: {},
        data: { target, rows: [], ...data },
      } as unknown as DirState<JobData>,
    });
    const table = renderStatusTable(
      [
        job('cancelled', { cancel_requested: 'cancelled by bob' }),
        job('finished', { scheduler_state: 'TIMEOUT' }),
        job('finished', {
          scheduler_state: 'COMPLETED',
          result: { status: 'SUCCESS', description: '', artefacts: [] },
        }),
      ],
      'test',
    );
    expect(table).toContain('|cancelled (by `bob`)|');
    expect(table).toContain('|finished (timed out)|');
    expect(table).toMatch(/\|:grin: SUCCESS\|2026-05-01T00:00:00Z\|finished\|/);
  });
});
