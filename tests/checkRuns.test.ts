/**
 * A check run per job (issue 13, item 1): rendered from the job's state (a table of cases), then through
 * the real poller, the real GitHub adapter and the fake GitHub: one run per job, written once per state
 * change, every conclusion, exactly once across a `kill -9`, commit statuses with a personal token, the
 * dry-run store, and `reporting` turning surfaces off.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { createGitHub, GitHubError, type CheckRunBody } from '../src/adapters/github/index.js';
import type { Backend, JobObservation } from '../src/adapters/schedulers/types.js';
import { parseConfig, type Config } from '../src/config/config.js';
import {
  fitOutput,
  MAX_OUTPUT_CHARS,
  renderCheckRun,
  renderCommitStatus,
  type JobView,
} from '../src/domain/checkRun.js';
import type { BuildTarget } from '../src/domain/targets.js';
import { runTick } from '../src/poller.js';
import type { JobData, ResultSummary } from '../src/store/job.js';
import { monthDir } from '../src/store/jobdirs.js';
import { newState, readState, writeState } from '../src/store/state.js';
import { workTreeOf } from '../src/store/workTree.js';
import {
  INSTALLATION,
  jobDirsOf,
  letGo,
  releaseWaitingJobs,
  nextDelivery,
  openPr,
  OWNER,
  PR,
  REPO,
  startHarness,
  stageOf,
  stateOf,
  storeComment,
  storeRaw,
  tickUntil,
  type Harness,
} from './support/botHarness.js';
import { payloads } from './support/payloads.js';
import { PASSING_BOT, WAITING_BOT } from './support/prRepo.js';
import { killAll, runCli } from './support/spawn.js';

// ---- the pure rendering ------------------------------------------------------------------------

const ZEN4: BuildTarget = {
  nodeType: 'zen4',
  repoId: 'eessi-test',
  os: 'linux',
  onArch: 'x86_64/amd/zen4',
  forArch: 'x86_64/amd/zen4',
  slurmParams: [],
};
const GPU: BuildTarget = { ...ZEN4, nodeType: 'gpu', onAccel: 'nvidia/cc90', forAccel: 'nvidia/cc90' };
const HEAD = 'a'.repeat(40);

function view(stage: string, data: Partial<JobData> = {}): JobView {
  return {
    stage,
    data: {
      pr: { owner: OWNER, repo: REPO, number: PR, installation_id: 1 },
      instance: 'test',
      target: ZEN4,
      exportVariables: [],
      backend: 'slurm',
      submit_id: 's-1',
      rows: [],
      head_sha: HEAD,
      base_sha: 'b'.repeat(40),
      ...data,
    },
  };
}

const success: ResultSummary = { status: 'SUCCESS', description: ':grin: SUCCESS', artefacts: ['a.tar.gz'] };
const failure: ResultSummary = { status: 'FAILURE', description: ':cry: FAILURE', artefacts: [] };
const passed: JobData['test'] = { status: 'SUCCESS', description: 'tests passed' };
const ran = (state: string, result = success, test = passed) => ({
  job_id: '42',
  scheduler_state: state,
  exit_code: '0:0',
  result,
  test,
});

const render = (v: JobView, currentHead = true) =>
  renderCheckRun(v, { externalId: '2025.01/o/r/pr_7/event_d/run_000/zen4/eessi-test', currentHead });

describe('renderCheckRun', () => {
  test.each<[string, JobView, CheckRunBody['status'], string | undefined, string]>([
    ['prepared', view('prepared'), 'queued', undefined, 'Waiting to be submitted'],
    ['submitting', view('submitting'), 'queued', undefined, 'Waiting to be submitted'],
    ['submitted', view('submitted', { job_id: '42' }), 'queued', undefined, 'Submitted as job 42'],
    ['released', view('released', { job_id: '42' }), 'queued', undefined, 'Queued as job 42'],
    ['running', view('running', { job_id: '42' }), 'in_progress', undefined, 'Running as job 42'],
    ['built and tested', view('finished', ran('COMPLETED')), 'completed', 'success', 'Build succeeded'],
    ['build failed', view('finished', ran('FAILED', failure)), 'completed', 'failure', 'Build failed'],
    [
      'tests failed',
      view('finished', ran('COMPLETED', success, { status: 'FAILURE', description: 'x' })),
      'completed',
      'failure',
      'Tests failed',
    ],
    [
      'no result',
      view('finished', ran('COMPLETED', { status: 'UNKNOWN', description: '', artefacts: [] })),
      'completed',
      'failure',
      'Build result unknown',
    ],
    ['timed out', view('finished', ran('TIMEOUT')), 'completed', 'timed_out', 'Timed out'],
    ['node failure', view('finished', ran('NODE_FAIL')), 'completed', 'action_required', 'Node failure'],
    [
      'out of memory',
      view('finished', ran('OUT_OF_MEMORY')),
      'completed',
      'failure',
      'Ended as OUT_OF_MEMORY',
    ],
    ['cancelled', view('cancelled', { job_id: '42' }), 'completed', 'cancelled', 'Cancelled'],
    [
      'lost',
      view('lost', { job_id: '42' }),
      'completed',
      'action_required',
      'Lost: the scheduler no longer knows the job',
    ],
    ['parked', view('failed'), 'completed', 'failure', 'The bot could not run the job'],
  ])('%s', (_what, v, status, conclusion, title) => {
    const run = render(v);
    expect(run.status).toBe(status);
    expect(run.conclusion).toBe(conclusion);
    expect('conclusion' in run).toBe(conclusion !== undefined);
    expect(run.output.title).toBe(title);
  });

  test('a job whose head is no longer the PR head completes as neutral; while active it keeps its status', () => {
    const stale = { stale: { superseded_by: 'c'.repeat(40) } };
    expect(render(view('finished', { ...ran('COMPLETED'), ...stale }), false)).toMatchObject({
      status: 'completed',
      conclusion: 'neutral',
      output: { title: 'Build succeeded (superseded)' },
    });
    expect(render(view('cancelled', stale), false).conclusion).toBe('neutral');
    const running = render(view('running', { job_id: '42', ...stale }), false);
    expect(running.status).toBe('in_progress');
    expect(running.conclusion).toBeUndefined();
    expect(running.output.summary).toContain(
      ':warning: built from `aaaaaaaaaaaa`, superseded by `cccccccccccc`',
    );
  });

  test('the name is stable per target (with the accelerator), the external id is the job dir', () => {
    expect(render(view('running')).name).toBe('hpcbot/test: eessi-test x86_64/amd/zen4');
    const gpu = render(view('finished', { ...ran('COMPLETED'), target: GPU }));
    expect(gpu.name).toBe('hpcbot/test: eessi-test x86_64/amd/zen4 nvidia/cc90');
    expect(gpu.external_id).toBe('2025.01/o/r/pr_7/event_d/run_000/zen4/eessi-test');
  });

  test('the summary holds the comment facts, with the hostile result text made harmless', () => {
    const hostile = {
      status: 'FAILURE' as const,
      description: '<img src=x onerror=alert(1)> @everyone [x](http://evil) <b>bold</b>',
      artefacts: ['one.tar.gz', 'two`s.tar.gz'],
    };
    const run = render(
      view('finished', {
        ...ran('FAILED', hostile),
        exit_code: '1:0',
        started_at: '2025-01-01T10:00:00.123Z',
        finished_at: '2025-01-01T11:00:00.456Z',
        target: GPU,
      }),
    );
    const s = run.output.summary;
    expect(s).toContain('(node type `gpu`)');
    expect(s).toContain('- Building for: `x86_64/amd/zen4` and accelerator `nvidia/cc90`');
    expect(s).toContain('- Job: `42` (slurm), stage `finished`');
    expect(s).toContain('- Scheduler: `FAILED, exit code 1:0`');
    expect(s).toContain(
      '- Result: &#60;img src=x onerror=alert&#40;1&#41;&#62; &#64;everyone &#91;x&#93;&#40;http://evil&#41; <b>bold</b>',
    );
    expect(s).toContain('- Test result: tests passed');
    expect(s).toContain('- Artefacts:\n  - `one.tar.gz`\n  - `` two`s.tar.gz ``');
    expect(s).not.toMatch(/<img|@everyone/);
    expect(run.started_at).toBe('2025-01-01T10:00:00Z');
    expect(run.completed_at).toBe('2025-01-01T11:00:00Z');
  });
});

// The rendering of the tail itself (lines, scrubbing, the 8 KB cap) is tested in logTail.test.ts.
describe('the log tail', () => {
  test('only runs that did not succeed show it; an unreadable log says why', () => {
    const tail = { file: 'slurm-42.out', text: 'boom\n', cutAtStart: false };
    const opts = { externalId: 'j', currentHead: true, logTail: tail, logTailLines: 40 };
    expect(renderCheckRun(view('finished', ran('FAILED', failure)), opts).output.text).toContain('boom');
    expect(renderCheckRun(view('finished', ran('TIMEOUT')), opts).output.text).toContain('boom');
    expect(renderCheckRun(view('finished', ran('COMPLETED')), opts).output).not.toHaveProperty('text');
    expect(
      renderCheckRun(view('lost'), {
        ...opts,
        logTail: { file: 'slurm-42.out', unread: 'is a symbolic link' },
      }).output.text,
    ).toBe('`slurm-42.out` is a symbolic link: no log to show.');
  });

  test('every output field is capped at 65,535 characters with a note', () => {
    const cut = fitOutput('y'.repeat(70_000));
    expect(cut).toHaveLength(MAX_OUTPUT_CHARS);
    expect(cut.endsWith('… (cut: GitHub takes at most 65535 characters here)')).toBe(true);
    expect(fitOutput('short')).toBe('short');
    const many = Array.from({ length: 100 }, (_, i) => `${'z'.repeat(390)}${i}.tar.gz`);
    const run = render(
      view('finished', ran('COMPLETED', { ...success, artefacts: many.concat(many, many) })),
    );
    expect(run.output.summary.length).toBeLessThanOrEqual(MAX_OUTPUT_CHARS);
    expect(run.output.summary).toContain('(cut: GitHub takes at most 65535 characters here)');
  });
});

describe('renderCommitStatus (personal tokens cannot write check runs)', () => {
  test.each<[string, JobView, boolean, string, string]>([
    ['queued', view('released', { job_id: '42' }), true, 'pending', 'Queued as job 42 on zen4'],
    ['success', view('finished', ran('COMPLETED')), true, 'success', 'Build succeeded on zen4'],
    ['failure', view('finished', ran('FAILED', failure)), true, 'failure', 'Build failed on zen4'],
    ['timed out', view('finished', ran('TIMEOUT')), true, 'failure', 'Timed out on zen4'],
    ['cancelled', view('cancelled'), true, 'error', 'Cancelled on zen4'],
    ['lost', view('lost'), true, 'error', 'Lost: the scheduler no longer knows the job on zen4'],
    [
      'superseded',
      view('finished', ran('COMPLETED')),
      false,
      'success',
      'superseded: Build succeeded on zen4',
    ],
  ])('%s', (_what, v, currentHead, state, description) => {
    expect(renderCommitStatus(v, { currentHead })).toEqual({
      context: 'hpcbot/test/eessi-test x86_64/amd/zen4',
      state,
      description,
    });
  });

  test('the description fits in 140 characters', () => {
    const s = renderCommitStatus(
      view('finished', { ...ran('COMPLETED'), target: { ...ZEN4, nodeType: 'n'.repeat(300) } }),
      {
        currentHead: true,
      },
    );
    expect(s.description).toHaveLength(140);
    expect(s.description.endsWith('…')).toBe(true);
  });
});

// ---- through the poller, the adapter and the fake GitHub ---------------------------------------

const APP_ID = 77;
let appKey: string;
beforeAll(() => {
  appKey = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  }).privateKey;
});

let h: Harness | undefined;
afterEach(async () => {
  await killAll();
  if (h) await releaseWaitingJobs(h);
  await h?.stop();
  h = undefined;
});

const FAST = { retryBaseMs: 1, retries: 1, throttle: false };

/** The harness with GitHub App auth (installation tokens): what check runs need. */
function useApp(harness: Harness, github: Partial<Config['github']> = {}): void {
  const keyFile = path.join(harness.root, 'app.pem');
  writeFileSync(keyFile, appKey, { mode: 0o600 });
  const config = {
    ...harness.config,
    github: { ...harness.config.github, app_id: APP_ID, private_key_file: keyFile, ...github },
  };
  harness.config = config;
  harness.deps.config = config;
  harness.deps.github = createGitHub(config, harness.deps.logger, {}, FAST);
}

const checkCalls = (harness: Harness) =>
  harness.fake.calls
    .filter((c) => /\/check-runs|\/statuses\//.test(c.path))
    .map((c) => `${c.method} ${c.path.replace(/\/\d+$/, '/:id').replace(/[0-9a-f]{40}/, ':sha')}`);

/** Calls that wrote the job comment (its POST carries the `#job` marker; edits go to its id). */
function jobCommentCalls(harness: Harness, commentId: number | undefined): string[] {
  return harness.fake.calls
    .filter(
      (c) =>
        (c.method === 'POST' && (c.body as { body?: string } | undefined)?.body?.includes('#job -->')) ||
        (c.method === 'PATCH' && c.path.endsWith(`/issues/comments/${commentId}`)),
    )
    .map((c) => c.method);
}

async function onlyJob(harness: Harness): Promise<string> {
  const dirs = await jobDirsOf(harness);
  expect(dirs).toHaveLength(1);
  return dirs[0]!;
}

async function untilStage(harness: Harness, ...stages: string[]): Promise<string> {
  await tickUntil(harness, async () => {
    const dirs = await jobDirsOf(harness);
    return dirs.length === 1 && stages.includes((await stageOf(dirs[0]!)) ?? '');
  });
  return await onlyJob(harness);
}

const runsOf = (harness: Harness, sha: string) => harness.fake.checkRunsOf(OWNER, REPO, sha);

describe('a check run per job, through the poller', () => {
  test('one run per job, written once per state change: queued, in progress, completed (API calls counted)', async () => {
    h = await startHarness();
    useApp(h);
    const repo = openPr(h, WAITING_BOT);
    await storeComment(h, 'bot: build for:arch=x86_64/amd/zen4');

    const dir = await untilStage(h, 'released', 'running');
    const rel = h.deps.jobdirs.relative(dir);
    const name = 'hpcbot/test: eessi-test x86_64/amd/zen4';
    const [run] = runsOf(h, repo.headSha);
    expect(run).toMatchObject({ name, external_id: rel, app_id: APP_ID });
    expect(checkCalls(h)).toEqual(['POST /repos/hpc-org/software-layer/check-runs']);

    await untilStage(h, 'running');
    expect(runsOf(h, repo.headSha)).toEqual([
      expect.objectContaining({ id: run!.id, status: 'in_progress' }),
    ]);
    // Ticks without a change write nothing.
    for (let i = 0; i < 3; i++) await runTick(h.deps);
    expect(checkCalls(h)).toEqual([
      'POST /repos/hpc-org/software-layer/check-runs',
      'PATCH /repos/hpc-org/software-layer/check-runs/:id',
    ]);

    letGo(dir);
    await untilStage(h, 'finished');
    for (let i = 0; i < 2; i++) await runTick(h.deps);
    const [done, ...more] = runsOf(h, repo.headSha);
    expect(more).toEqual([]);
    expect(done).toMatchObject({
      id: run!.id,
      status: 'completed',
      conclusion: 'success',
      output: { title: 'Build succeeded', text: null },
    });
    expect(done!.output.summary).toContain(':grin: SUCCESS');
    const state = await stateOf<JobData>(dir);
    expect(state.data.check).toEqual({
      surface: 'checks',
      intent_at: expect.any(String),
      creating: expect.any(String),
      id: run!.id,
      sent: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    // The figure in the README: 3 check-run writes and 3 job-comment writes per job, and no reads.
    expect(checkCalls(h)).toEqual([
      'POST /repos/hpc-org/software-layer/check-runs',
      'PATCH /repos/hpc-org/software-layer/check-runs/:id',
      'PATCH /repos/hpc-org/software-layer/check-runs/:id',
    ]);
    expect(jobCommentCalls(h, state.comments.job?.id)).toEqual(['POST', 'PATCH', 'PATCH']);
    expect(h.fake.callsTo('GET', /\/issues\/\d+\/comments$|\/check-runs$/)).toEqual([]);
  });

  test('a failed build: conclusion failure, and the log tail collapsed, scrubbed and capped', async () => {
    const secret = 'ghp_CheckRunSecret0123456789';
    const saved = process.env.HARNESS_GITHUB_TOKEN;
    process.env.HARNESS_GITHUB_TOKEN = secret; // github.token_env of the harness: a secret of the poller
    try {
      h = await startHarness();
      useApp(h);
      const repo = openPr(h, {
        'bot/build.sh': [
          '#!/bin/bash',
          'for i in $(seq 1 30); do head -c 3000 /dev/zero | tr "\\0" x; echo " long $i"; done',
          `echo "the token is ${secret}, twice: ${secret}"`,
          'echo "\\`\\`\\`\\`\\` five backticks <script>alert(1)</script>"',
          'exit 1',
        ].join('\n'),
        'bot/check-build.sh':
          '#!/bin/bash\nprintf "[RESULT]\\ncomment_description = :cry: FAILURE\\nstatus = FAILURE\\nartefacts =\\n" > "_bot_job${SLURM_JOB_ID}.result"\n',
      });
      await storeComment(h, 'bot: build for:arch=zen4');
      const dir = await untilStage(h, 'finished');
      const [run, ...more] = runsOf(h, repo.headSha);
      expect(more).toEqual([]);
      expect(run).toMatchObject({
        status: 'completed',
        conclusion: 'failure',
        output: { title: 'Build failed' },
      });
      expect(run!.output.summary).toContain('- Result: :cry: FAILURE');
      expect(run!.output.summary).toContain('- Scheduler: `FAILED, exit code 1:0`');
      const text = run!.output.text!;
      const id = (await stateOf<JobData>(dir)).data.job_id!;
      expect(
        text.startsWith(
          `<details>\n<summary>Last 40 lines of <code>slurm-${id}.out</code>, cut to its last 8 KB</summary>`,
        ),
      ).toBe(true);
      const m = /\n```\n([\s\S]*)\n```\n<\/details>$/.exec(text)!;
      expect(Buffer.byteLength(m[1]!)).toBeLessThanOrEqual(8192);
      expect(m[1]!.split('\n').length).toBeLessThanOrEqual(40);
      expect(m[1]).toContain('the token is [secret], twice: [secret]');
      expect(m[1]).toContain('ˋˋˋˋˋ five backticks <script>alert(1)</script>');
      expect(m[1]).toContain('bot/build.sh exited with 1');
      expect(JSON.stringify(h.fake.calls)).not.toContain(secret);
    } finally {
      if (saved === undefined) delete process.env.HARNESS_GITHUB_TOKEN;
      else process.env.HARNESS_GITHUB_TOKEN = saved;
    }
  });

  test('bot: cancel on a running job: conclusion cancelled', async () => {
    h = await startHarness();
    useApp(h);
    const repo = openPr(h, WAITING_BOT);
    await storeComment(h, 'bot: build for:arch=zen4');
    await untilStage(h, 'running');
    await storeComment(h, 'bot: cancel');
    await untilStage(h, 'cancelled');
    expect(runsOf(h, repo.headSha)).toEqual([
      expect.objectContaining({
        status: 'completed',
        conclusion: 'cancelled',
        output: expect.objectContaining({ title: 'Cancelled', text: null }),
      }),
    ]);
    expect(runsOf(h, repo.headSha)[0]!.output.summary).toContain(
      '- Cancel: cancelled by `reviewer1` (`bot: cancel`)',
    );
  });

  test('a job the scheduler lost: conclusion action_required', async () => {
    h = await startHarness('  infra_retries: 0'); // a lost job is not resubmitted (see infraRetry.test.ts)
    useApp(h);
    const repo = openPr(h, WAITING_BOT);
    await storeComment(h, 'bot: build for:arch=zen4');
    const dir = await untilStage(h, 'running');
    const id = (await stateOf<JobData>(dir)).data.job_id!;
    // The local backend's record is its scheduler: without it, the job is in neither squeue nor sacct.
    rmSync(path.join(h.config.jobdirs, 'local-jobs', `${id}.json`));
    letGo(dir);
    await untilStage(h, 'lost');
    expect(runsOf(h, repo.headSha)).toEqual([
      expect.objectContaining({ status: 'completed', conclusion: 'action_required' }),
    ]);
  });

  /** The scheduler as the job stage sees it: every job has ended with `final` (only Slurm times out). */
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

  test.each([
    ['TIMEOUT', 'timed_out', 'Timed out'],
    ['NODE_FAIL', 'action_required', 'Node failure'],
    ['OUT_OF_MEMORY', 'failure', 'Ended as OUT_OF_MEMORY'],
  ])(
    'a running Slurm job that ends as %s: conclusion %s, with its log tail',
    async (state, conclusion, title) => {
      // No automatic resubmission of a NODE_FAIL here (that is infraRetry.test.ts).
      h = await startHarness('  infra_retries: 0', 'backend:\n  kind: slurm\n');
      useApp(h);
      h.deps.backend = endedBackend({ state, exitCode: '0:9' });
      const dir = path.join(
        h.deps.jobdirs.prDir(monthDir(new Date()), OWNER, REPO, PR),
        'event_d-1',
        'run_000',
        'zen4',
        'eessi-test',
      );
      mkdirSync(workTreeOf(dir), { recursive: true });
      writeFileSync(
        path.join(workTreeOf(dir), 'slurm-4711.out'),
        'compiling\nslurmstepd: error: *** JOB 4711 ON n1 ***\n',
      );
      const data: JobData = {
        pr: { owner: OWNER, repo: REPO, number: PR, installation_id: INSTALLATION },
        instance: 'test',
        target: ZEN4,
        exportVariables: [],
        backend: 'slurm',
        submit_id: 'submit-1',
        job_id: '4711',
        head_sha: HEAD,
        rows: [],
      };
      await writeState(dir, newState('job', 'running', data, new Date()));
      await h.deps.jobdirs.enqueue(dir);

      await runTick(h.deps);

      expect((await readState(dir))?.stage).toBe('finished');
      const [run, ...more] = runsOf(h, HEAD);
      expect(more).toEqual([]);
      expect(run).toMatchObject({ status: 'completed', conclusion, output: { title } });
      expect(run!.output.text).toBe(
        '<details>\n<summary>Last 40 lines of <code>slurm-4711.out</code></summary>\n\n```\ncompiling\nslurmstepd: error: *** JOB 4711 ON n1 ***\n```\n</details>',
      );
    },
  );

  test('a new push: the superseded job completes as neutral on its own head', async () => {
    h = await startHarness();
    useApp(h);
    const repo = openPr(h, WAITING_BOT);
    await storeComment(h, 'bot: build for:arch=zen4');
    await untilStage(h, 'running');
    const push = payloads.prSynchronize() as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    push.repository.owner.login = OWNER;
    push.repository.name = REPO;
    push.number = PR;
    push.pull_request.number = PR;
    push.pull_request.head.sha = 'f'.repeat(40);
    push.installation = { id: INSTALLATION, node_id: `I_fake${INSTALLATION}` };
    await storeRaw(h, 'pull_request', push, nextDelivery());
    await untilStage(h, 'cancelled');
    expect(runsOf(h, repo.headSha)).toEqual([
      expect.objectContaining({ status: 'completed', conclusion: 'neutral' }),
    ]);
    expect(runsOf(h, repo.headSha)[0]!.output.title).toBe('Cancelled (superseded)');
  });
});

describe('exactly once, and only where configured', () => {
  test('killed between creating the run and saving its id: the re-run finds it, no second run', async () => {
    h = await startHarness();
    useApp(h);
    const repo = openPr(h, WAITING_BOT);
    await storeComment(h, 'bot: build for:arch=zen4');
    await runTick(h.deps); // the event: the job is prepared
    const dir = await onlyJob(h);
    expect(await stageOf(dir)).toBe('prepared');

    // The real poller process, with the same site.yaml but App auth, killed with SIGKILL right after the POST.
    const site = path.join(h.root, 'site-app.yaml');
    writeFileSync(
      site,
      readFileSync(h.config.source, 'utf8').replace(
        '  token_env: HARNESS_GITHUB_TOKEN',
        `  app_id: ${APP_ID}\n  private_key_file: ${h.config.github.private_key_file}`,
      ),
    );
    const crashed = await runCli(['poll', '--config', site, '--once'], {
      env: { HPCBOT_CRASH_POINT: 'after-check-created' },
    });
    expect(crashed.code).toBeNull(); // killed by a signal
    const [created, ...more] = runsOf(h, repo.headSha);
    expect(more).toEqual([]);
    let state = await stateOf<JobData>(dir);
    expect(state.data.check).toEqual({
      surface: 'checks',
      intent_at: expect.any(String),
      creating: expect.any(String),
    });

    const rerun = await runCli(['poll', '--config', site, '--once']);
    expect(rerun.code).toBe(0);
    expect(runsOf(h, repo.headSha)).toEqual([expect.objectContaining({ id: created!.id })]);
    expect(h.fake.callsTo('POST', `/repos/${OWNER}/${REPO}/check-runs`)).toHaveLength(1);
    const lookups = h.fake.callsTo('GET', `/repos/${OWNER}/${REPO}/commits/${repo.headSha}/check-runs`);
    expect(lookups.map((c) => c.query)).toEqual([
      { check_name: 'hpcbot/test: eessi-test x86_64/amd/zen4', filter: 'all', per_page: '100' },
    ]);
    state = await stateOf<JobData>(dir);
    expect(state.data.check?.id).toBe(created!.id);

    letGo(dir);
    await untilStage(h, 'finished');
    expect(runsOf(h, repo.headSha)).toEqual([
      expect.objectContaining({ id: created!.id, status: 'completed', conclusion: 'success' }),
    ]);
  });

  test('with a personal access token: commit statuses, one per state change, and no check-run call', async () => {
    h = await startHarness();
    const repo = openPr(h, WAITING_BOT);
    await storeComment(h, 'bot: build for:arch=zen4');
    const dir = await untilStage(h, 'running');
    letGo(dir);
    await untilStage(h, 'finished');
    for (let i = 0; i < 2; i++) await runTick(h.deps);
    const id = (await stateOf<JobData>(dir)).data.job_id!;
    expect(
      h.fake
        .statusesOf(OWNER, REPO, repo.headSha)
        .map((s) => [s.context, s.state, s.description, s.target_url]),
    ).toEqual([
      ['hpcbot/test/eessi-test x86_64/amd/zen4', 'pending', `Queued as job ${id} on zen4`, null],
      ['hpcbot/test/eessi-test x86_64/amd/zen4', 'pending', `Running as job ${id} on zen4`, null],
      ['hpcbot/test/eessi-test x86_64/amd/zen4', 'success', 'Build succeeded on zen4', null],
    ]);
    expect(checkCalls(h).filter((c) => c.includes('check-runs'))).toEqual([]);
  });

  test('a personal token gets 403 on check runs, as on GitHub', async () => {
    h = await startHarness();
    const run = render(view('running'));
    const refused = h.deps.github.createCheckRun(
      { owner: OWNER, repo: REPO, installationId: null },
      HEAD,
      run,
    );
    await expect(refused).rejects.toBeInstanceOf(GitHubError);
    await expect(refused).rejects.toMatchObject({
      status: 403,
      transient: false,
      message: expect.stringContaining('GitHub said: "Resource not accessible by personal access token"'),
    });
    expect(h.fake.callsTo('POST', `/repos/${OWNER}/${REPO}/check-runs`).map((c) => c.status)).toEqual([403]);
  });

  test('GitHub refusing the check run for good is logged, and the job goes on', async () => {
    h = await startHarness();
    useApp(h);
    const repo = openPr(h, PASSING_BOT);
    h.fake.failNext('POST', /\/check-runs$/, 403);
    await storeComment(h, 'bot: build for:arch=zen4');
    const dir = await untilStage(h, 'finished');
    const s = await stateOf<JobData>(dir);
    expect(s.attempts).toBe(0);
    expect(s.last_error).toBeUndefined();
    // Refused once; the next change (here: finished) looks for the run, then creates it.
    const posts = h.fake.callsTo('POST', `/repos/${OWNER}/${REPO}/check-runs`);
    expect(posts.map((c) => c.status)).toEqual([403, 201]);
    expect(h.fake.callsTo('GET', `/repos/${OWNER}/${REPO}/commits/${repo.headSha}/check-runs`)).toHaveLength(
      1,
    );
    expect(runsOf(h, repo.headSha)).toEqual([expect.objectContaining({ conclusion: 'success' })]);
  });

  test('finding a run reads at most 10 pages of 100, newest first', async () => {
    h = await startHarness();
    useApp(h);
    const name = 'hpcbot/test: eessi-test x86_64/amd/zen4';
    const ref = { owner: OWNER, repo: REPO, installationId: INSTALLATION };
    const mine = h.fake.addCheckRun(OWNER, REPO, { name, head_sha: HEAD, external_id: 'my/job' });
    for (let i = 0; i < 250; i++)
      h.fake.addCheckRun(OWNER, REPO, { name, head_sha: HEAD, external_id: `other/${i}` });
    await expect(h.deps.github.findCheckRun(ref, HEAD, name, 'my/job')).resolves.toBe(mine.id);
    const pages = () => h!.fake.callsTo('GET', `/repos/${OWNER}/${REPO}/commits/${HEAD}/check-runs`);
    expect(pages().map((c) => c.query.page ?? '1')).toEqual(['1', '2', '3']);
    for (let i = 0; i < 1000; i++)
      h.fake.addCheckRun(OWNER, REPO, { name, head_sha: HEAD, external_id: `more/${i}` });
    await expect(h.deps.github.findCheckRun(ref, HEAD, name, 'my/job')).resolves.toBeUndefined();
    expect(pages()).toHaveLength(3 + 10);
  });

  test('dry run: check runs go to the dry-run store, never to GitHub', async () => {
    h = await startHarness();
    useApp(h, { dry_run: true });
    const repo = openPr(h, PASSING_BOT);
    await storeComment(h, 'bot: build for:arch=zen4');
    const dir = await untilStage(h, 'finished');
    expect(checkCalls(h)).toEqual([]);
    const shaDir = path.join(h.config.jobdirs, 'dry-run', OWNER, REPO, 'checks', repo.headSha);
    const [nameDir, ...others] = readdirSync(shaDir);
    expect(others).toEqual([]);
    expect(nameDir).toMatch(/^hpcbot_test_eessi-test_x86_64_amd_zen4-[0-9a-f]{8}$/);
    const id = (await stateOf<JobData>(dir)).data.check!.id!;
    expect(readdirSync(path.join(shaDir, nameDir!))).toEqual([`${id}.json`]);
    expect(JSON.parse(readFileSync(path.join(shaDir, nameDir!, `${id}.json`), 'utf8'))).toMatchObject({
      id,
      head_sha: repo.headSha,
      name: 'hpcbot/test: eessi-test x86_64/amd/zen4',
      external_id: h.deps.jobdirs.relative(dir),
      status: 'completed',
      conclusion: 'success',
    });
  });

  test('dry run with a personal token: the commit status goes to the dry-run store', async () => {
    h = await startHarness();
    const config = { ...h.config, github: { ...h.config.github, dry_run: true } };
    h.deps.config = config;
    h.deps.github = createGitHub(
      config,
      pino({ level: 'silent' }),
      { HARNESS_GITHUB_TOKEN: 'ghp_harness' },
      FAST,
    );
    const repo = openPr(h, PASSING_BOT);
    await storeComment(h, 'bot: build for:arch=zen4');
    await untilStage(h, 'finished');
    expect(checkCalls(h)).toEqual([]);
    const dir = path.join(h.config.jobdirs, 'dry-run', OWNER, REPO, 'statuses', repo.headSha);
    const [file, ...others] = readdirSync(dir);
    expect(others).toEqual([]);
    expect(JSON.parse(readFileSync(path.join(dir, file!), 'utf8'))).toEqual({
      sha: repo.headSha,
      context: 'hpcbot/test/eessi-test x86_64/amd/zen4',
      state: 'success',
      description: 'Build succeeded on zen4',
    });
  });

  test('reporting.checks: false: no check-run or status call', async () => {
    h = await startHarness('reporting:\n  checks: false\n');
    useApp(h);
    openPr(h, PASSING_BOT);
    await storeComment(h, 'bot: build for:arch=zen4');
    const dir = await untilStage(h, 'finished');
    expect(checkCalls(h)).toEqual([]);
    expect((await stateOf<JobData>(dir)).comments.job?.id).toEqual(expect.any(Number));
  });

  test('reporting.comments: none: no job comment, the check run still', async () => {
    h = await startHarness('reporting:\n  comments: none\n');
    useApp(h);
    const repo = openPr(h, PASSING_BOT);
    await storeComment(h, 'bot: build for:arch=zen4');
    const dir = await untilStage(h, 'finished');
    const s = await stateOf<JobData>(dir);
    expect(s.comments.job).toBeUndefined();
    expect(h.fake.commentsOf(OWNER, REPO, PR).filter((c) => c.body.includes('#job -->'))).toEqual([]);
    expect(runsOf(h, repo.headSha)).toEqual([expect.objectContaining({ conclusion: 'success' })]);
    expect(parseConfig('instance: x\njobdirs: /j\n', 'site.yaml').reporting).toEqual({
      checks: true,
      comments: 'per_job',
      log_tail_lines: 40,
    });
  });
});
