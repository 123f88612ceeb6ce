/**
 * The target matrix (issue 13, item 3), pure: check runs of a commit in, markdown out; and the summary
 * comment (`reporting.comments: summary`) that shows an instance's part of it, through the poller.
 */
import type { ListedCheckRun } from '../src/adapters/github/index.js';
import { checkRunName } from '../src/domain/checkRun.js';
import {
  fleetRuns,
  renderSummaryComment,
  renderTargetMatrix,
  runState,
  type SummaryJob,
} from '../src/domain/targetMatrix.js';
import type { JobData } from '../src/store/job.js';
import type { BuildTarget } from '../src/domain/targets.js';
import { runTick } from '../src/poller.js';
import {
  jobDirsOf,
  openPr,
  OWNER,
  PR,
  REPO,
  startHarness,
  stageOf,
  storeComment,
  tickUntil,
  type Harness,
} from './support/botHarness.js';
import { PASSING_BOT } from './support/prRepo.js';
import { killAll } from './support/spawn.js';

const HEAD = 'c'.repeat(40);
let nextId = 1;

function run(
  instance: string,
  forArch: string,
  forAccel: string | undefined,
  state: Pick<ListedCheckRun, 'status' | 'conclusion'>,
  repoId = 'eessi.io-2023.06-software',
): ListedCheckRun {
  const target: BuildTarget = {
    nodeType: 'n',
    repoId,
    os: 'linux',
    onArch: forArch,
    forArch,
    ...(forAccel ? { forAccel } : {}),
    slurmParams: [],
  };
  const id = nextId++;
  return {
    id,
    name: checkRunName(instance, target),
    ...state,
    htmlUrl: `https://github.com/o/r/runs/${id}`,
    appId: 9,
  };
}

const ok = { status: 'completed', conclusion: 'success' } as const;
const failed = { status: 'completed', conclusion: 'failure' } as const;
const running = { status: 'in_progress', conclusion: null } as const;

describe('fleetRuns', () => {
  test('reads the target back from the names checkRunName writes', () => {
    const runs = fleetRuns([
      run('a', 'x86_64/amd/zen4', 'nvidia/cc90', ok),
      run('b-2', 'aarch64/neoverse_v1', undefined, running),
    ]);
    expect(runs).toEqual([
      expect.objectContaining({
        instance: 'a',
        repoId: 'eessi.io-2023.06-software',
        forArch: 'x86_64/amd/zen4',
        forAccel: 'nvidia/cc90',
      }),
      expect.objectContaining({ instance: 'b-2', forArch: 'aarch64/neoverse_v1' }),
    ]);
    expect(runs[1]).not.toHaveProperty('forAccel');
  });

  test('leaves out the gate, other checks, names with markdown in them, and runs of other Apps', () => {
    const own = run('a', 'x86_64/amd/zen4', undefined, ok);
    const runs = fleetRuns(
      [
        own,
        { ...own, id: 90, name: 'hpcbot/deploy-gate' },
        { ...own, id: 91, name: 'CI / lint' },
        { ...own, id: 92, name: 'hpcbot/a: repo x86_64|[x](javascript:alert) y' },
        { ...own, id: 93, name: 'hpcbot/evil: eessi x86_64/amd/zen4', appId: 15368 },
      ],
      9,
    );
    expect(runs.map((r) => r.instance)).toEqual(['a']);
  });
});

describe('runState', () => {
  test.each<[Pick<ListedCheckRun, 'status' | 'conclusion'>, string]>([
    [{ status: 'queued', conclusion: null }, 'queued'],
    [running, 'running'],
    [ok, 'success'],
    [failed, 'failure'],
    [{ status: 'completed', conclusion: 'cancelled' }, 'cancelled'],
    [{ status: 'completed', conclusion: 'timed_out' }, 'timed_out'],
    [{ status: 'completed', conclusion: 'action_required' }, 'action_required'],
    [{ status: 'completed', conclusion: 'neutral' }, 'superseded'],
  ])('%j is %s', (r, state) => expect(runState(r)).toBe(state));
});

describe('renderTargetMatrix', () => {
  test('rows are CPU targets, columns accelerators (none first), cells link to their runs', () => {
    const listed = [
      run('a', 'x86_64/amd/zen4', undefined, ok),
      run('a', 'x86_64/amd/zen4', 'nvidia/cc90', running),
      run('b', 'x86_64/amd/zen4', 'nvidia/cc90', failed),
      run('b', 'aarch64/neoverse_v1', 'nvidia/cc70', ok),
    ];
    const md = renderTargetMatrix(fleetRuns(listed), { headSha: HEAD, complete: true });
    const lines = md.split('\n');
    expect(lines[0]).toBe('Target matrix of `cccccccccccc` from the check runs of 2 instance(s): `a`, `b`');
    expect(lines).toContain('|CPU target|`none`|`nvidia/cc70`|`nvidia/cc90`|');
    const url = (i: number) => `https://github.com/o/r/runs/${listed[i]!.id}`;
    expect(lines).toContain(`|\`aarch64/neoverse_v1\`||[:white_check_mark: b](${url(3)})||`);
    expect(lines).toContain(
      `|\`x86_64/amd/zen4\`|[:white_check_mark: a](${url(0)})||[:arrows_counterclockwise: a](${url(1)}) [:x: b](${url(2)})|`,
    );
    expect(md).not.toContain('more check runs');
  });

  test('one table per repository; one instance shows no names; an incomplete read says so', () => {
    const md = renderTargetMatrix(
      fleetRuns([
        run('a', 'x86_64/amd/zen4', undefined, ok, 'r1'),
        run('a', 'x86_64/amd/zen4', undefined, ok, 'r2'),
      ]),
      { headSha: HEAD, complete: false },
    );
    expect(md.match(/^\|CPU target\|/gm)).toHaveLength(2);
    expect(md).toContain('`r1`:');
    expect(md).toContain('`r2`:');
    expect(md).toMatch(/\[:white_check_mark:\]\(https:/);
    expect(md).toContain('more check runs than the bot reads');
  });

  test('a link that is not a plain https URL is left out, the state stays', () => {
    const r = { ...run('a', 'x86_64/amd/zen4', undefined, ok), htmlUrl: 'javascript:alert(1)' };
    const md = renderTargetMatrix(fleetRuns([r]), { headSha: HEAD, complete: true });
    expect(md).toContain('|`x86_64/amd/zen4`|:white_check_mark:|');
    expect(md).not.toContain('javascript');
  });

  test('no runs: nothing', () => {
    expect(renderTargetMatrix([], { headSha: HEAD, complete: true })).toBe('');
  });
});

describe('renderSummaryComment', () => {
  const target: BuildTarget = {
    nodeType: 'zen4',
    repoId: 'eessi-test',
    os: 'linux',
    onArch: 'x86_64/amd/zen4',
    forArch: 'x86_64/amd/zen4',
    slurmParams: [],
  };
  const job = (stage: string, createdAt: string, data: Partial<JobData> = {}): SummaryJob => ({
    stage,
    createdAt,
    data: {
      pr: { owner: 'o', repo: 'r', number: 1, installation_id: 1 },
      instance: 'dev',
      target,
      exportVariables: [],
      backend: 'slurm',
      submit_id: 's',
      rows: [],
      head_sha: HEAD,
      ...data,
    },
  });

  test('the newest job per target at the head; superseded jobs are left out', () => {
    const md = renderSummaryComment('dev', [
      job('cancelled', '2026-01-01T00:00:00Z'),
      job('running', '2026-01-02T00:00:00Z', { job_id: '7' }), // the rebuild
      job('finished', '2026-01-01T00:00:00Z', {
        target: { ...target, forAccel: 'nvidia/cc90' },
        stale: { superseded_by: HEAD },
      }),
    ]);
    expect(md).toContain('Build jobs of instance `dev` for this PR');
    expect(md).toContain('|CPU target|`none`|');
    expect(md).toContain('|`x86_64/amd/zen4`|:arrows_counterclockwise:|');
    expect(md).not.toContain('cc90');
  });

  test('no job at the head yet', () => {
    expect(renderSummaryComment('dev', [])).toContain("no build jobs at the PR's head yet");
  });
});

// ---- reporting.comments: summary, through the poller -------------------------------------------

describe('reporting.comments: summary', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await killAll();
    await h?.stop();
    h = undefined;
  });

  test('one comment per PR for the instance, with its part of the matrix, instead of a comment per job', async () => {
    h = await startHarness(
      '    gpu:\n      cpu_subdir: x86_64/amd/zen4\n      accel: nvidia/cc90\n      repo_targets: [eessi-test]\n' +
        'reporting:\n  comments: summary',
    );
    const repo = openPr(h, PASSING_BOT);
    await storeComment(
      h,
      'bot: build for:arch=x86_64/amd/zen4\nbot: build for:arch=x86_64/amd/zen4,accel=nvidia/cc90',
    );
    await tickUntil(h, async () => {
      const dirs = await jobDirsOf(h!);
      return dirs.length === 2 && (await Promise.all(dirs.map(stageOf))).every((s) => s === 'finished');
    });
    for (let i = 0; i < 2; i++) await runTick(h.deps);
    const comments = h.fake.commentsOf(OWNER, REPO, PR);
    expect(comments.filter((c) => c.body.includes('#job -->'))).toEqual([]);
    const summaries = comments.filter((c) => c.body.includes(`<!-- hpcbot:test:pr_${PR}#summary -->`));
    expect(summaries).toHaveLength(1);
    const body = summaries[0]!.body;
    expect(body).toContain('Build jobs of instance `test` for this PR');
    expect(body).toContain(`Target matrix of \`${repo.headSha.slice(0, 12)}\``);
    expect(body).toContain('|CPU target|`none`|`nvidia/cc90`|');
    expect(body).toContain('|`x86_64/amd/zen4`|:white_check_mark:|:white_check_mark:|');
    // Created once, then edited only when it changed: ticks without a change write nothing.
    const posts = h.fake.callsTo('POST', `/repos/${OWNER}/${REPO}/issues/${PR}/comments`);
    expect(posts.filter((c) => (c.body as { body: string }).body.includes('#summary -->'))).toHaveLength(1);
    const writes = h.fake.calls.length;
    for (let i = 0; i < 2; i++) await runTick(h.deps);
    expect(h.fake.calls.length).toBe(writes);
  }, 120_000);
});
