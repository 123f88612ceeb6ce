/**
 * The deploy gate (issue 13, item 4): `deploy.require` parsed and validated, the pure decision over a
 * commit's check runs, and through the poller, the real adapter and the fake GitHub: the gate run
 * written when a job completes (API calls per lifecycle counted), `bot: deploy` refused while it is red,
 * and the bounded, paginated read of a commit with 200 (and 1005) check runs.
 */
import { createGitHub, type ListedCheckRun } from '../src/adapters/github/index.js';
import { ConfigError, parseConfig } from '../src/config/config.js';
import { checkRunName } from '../src/domain/checkRun.js';
import {
  decideGate,
  expandRequirement,
  GATE_RUN_NAME,
  parseRequirement,
  renderGateRefusal,
  renderGateRun,
  type CellRequirement,
  type Requirement,
} from '../src/domain/deployGate.js';
import { fleetRuns } from '../src/domain/targetMatrix.js';
import type { BuildTarget } from '../src/domain/targets.js';
import type { JobData } from '../src/store/job.js';
import { runTick } from '../src/poller.js';
import {
  jobDirsOf,
  letGo,
  releaseWaitingJobs,
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
import { APP_ID, reconfigure } from './support/fleet.js';
import { PASSING_BOT, WAITING_BOT } from './support/prRepo.js';
import { killAll } from './support/spawn.js';

// ---- parsing -------------------------------------------------------------------------------------

describe('parseRequirement', () => {
  test.each<[string, Requirement]>([
    ['all-requested', { kind: 'all-requested' }],
    [
      'for:arch=x86_64/amd/zen4,accel=nvidia/cc90 repo:eessi.io-2023.06-software',
      {
        kind: 'target',
        text: 'for:arch=x86_64/amd/zen4,accel=nvidia/cc90 repo:eessi.io-2023.06-software',
        forArch: 'x86_64/amd/zen4',
        forAccel: 'nvidia/cc90',
        repoId: 'eessi.io-2023.06-software',
      },
    ],
    // The EESSI spellings, as in `bot: build`.
    [
      'for:arch=x86_64-amd-zen4,accel=nvidia=cc90',
      {
        kind: 'target',
        text: 'for:arch=x86_64-amd-zen4,accel=nvidia=cc90',
        forArch: 'x86_64/amd/zen4',
        forAccel: 'nvidia/cc90',
      },
    ],
  ])('%s', (text, requirement) => expect(parseRequirement(text)).toEqual({ ok: true, requirement }));

  test.each([
    ['zen4', 'no `for:` argument was given'],
    ['repo:x', 'no `for:` argument was given'],
    ['for:arch=zen4 on:arch=zen3', '`on:` means nothing here'],
    ['for:arch=zen4 inst:a', 'only `for:` and `repo:` are allowed'],
    ['for:arch=zen4 exportvariable:A=b', 'only `for:` and `repo:` are allowed'],
  ])('%s is refused: %s', (text, error) => {
    const parsed = parseRequirement(text);
    expect(parsed.ok).toBe(false);
    expect(!parsed.ok && parsed.error).toContain(error);
    expect(!parsed.ok && parsed.error).toContain(
      'write `all-requested`, `for:arch=<cpu>[,accel=<gpu>] [repo:<repo_id>]` or `for:set=<target set> [repo:<repo_id>]`',
    );
  });

  test('a target set stands for its lines (nested sets too), with the repo of the requirement', () => {
    const parsed = parseRequirement('for:set=all repo:eessi-test');
    expect(parsed).toEqual({
      ok: true,
      requirement: { kind: 'set', text: 'for:set=all repo:eessi-test', set: 'all', repoId: 'eessi-test' },
    });
    const sets = {
      cpu: ['for:arch=x86_64/amd/zen4'],
      all: ['for:set=cpu', 'for:arch=x86_64/amd/zen3,accel=nvidia/cc80'],
    };
    expect(parsed.ok && expandRequirement(parsed.requirement, sets)).toEqual([
      {
        kind: 'target',
        text: 'for:arch=x86_64/amd/zen4 repo:eessi-test',
        forArch: 'x86_64/amd/zen4',
        repoId: 'eessi-test',
      },
      {
        kind: 'target',
        text: 'for:arch=x86_64/amd/zen3,accel=nvidia/cc80 repo:eessi-test',
        forArch: 'x86_64/amd/zen3',
        forAccel: 'nvidia/cc80',
        repoId: 'eessi-test',
      },
    ]);
  });

  test('a requirement naming an unknown target set is a config error with its key path and line', () => {
    const text = [
      'instance: dev',
      'jobdirs: /tmp/j',
      'target_sets:',
      '  cpu: [for:arch=zen4]',
      'deploy:',
      '  require:',
      '    - for:set=gpu',
    ].join('\n');
    expect(() => parseConfig(text, 'site.yaml')).toThrow(
      /site\.yaml:7: deploy\.require\.0: .*unknown target set "gpu"; known sets: cpu/,
    );
    expect(() => parseConfig(text.replace('for:set=gpu', 'for:set=cpu'), 'site.yaml')).not.toThrow();
  });

  test('a bad entry in site.yaml is a config error with its key path and line', () => {
    const text = [
      'instance: dev',
      'jobdirs: /tmp/j',
      'deploy:',
      '  require:',
      '    - all-requested',
      '    - for:zen4',
    ].join('\n');
    let error: unknown;
    try {
      parseConfig(text, 'site.yaml');
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect(String((error as Error).message)).toMatch(
      /site\.yaml:6: deploy\.require\.1: .*`for:` item `zen4` is not of the form key=value/,
    );
  });
});

// ---- the decision ------------------------------------------------------------------------------

const HEAD = 'e'.repeat(40);
let nextId = 1;
function run(
  instance: string,
  forArch: string,
  forAccel: string | undefined,
  state: Pick<ListedCheckRun, 'status' | 'conclusion'>,
): ListedCheckRun {
  const target: BuildTarget = {
    nodeType: 'n',
    repoId: 'r',
    os: 'linux',
    onArch: forArch,
    forArch,
    ...(forAccel ? { forAccel } : {}),
    slurmParams: [],
  };
  return { id: nextId++, name: checkRunName(instance, target), ...state };
}
const ok = { status: 'completed', conclusion: 'success' } as const;
const failed = { status: 'completed', conclusion: 'failure' } as const;
const running = { status: 'in_progress', conclusion: null } as const;
const req = (...texts: string[]) =>
  texts.map((t) => {
    const p = parseRequirement(t);
    if (!p.ok) throw new Error(p.error);
    if (p.requirement.kind === 'set') throw new Error('expand sets first');
    return p.requirement;
  });
const decide = (requirements: CellRequirement[], runs: ListedCheckRun[], complete = true) =>
  decideGate(requirements, fleetRuns(runs), { headSha: HEAD, complete });

describe('decideGate', () => {
  const zen4 = 'x86_64/amd/zen4';
  test.each<[string, CellRequirement[], ListedCheckRun[], boolean, string[]]>([
    ['the cell succeeded', req('for:arch=zen4'), [run('a', zen4, undefined, ok)], true, ['success']],
    ['no run: missing', req('for:arch=zen4'), [run('a', zen4, 'nvidia/cc90', ok)], false, ['missing']],
    ['still running', req('for:arch=zen4'), [run('a', zen4, undefined, running)], false, ['pending']],
    ['failed', req('for:arch=zen4'), [run('a', zen4, undefined, failed)], false, ['failed']],
    [
      'one instance failed, another succeeded: any success counts',
      req('for:arch=zen4'),
      [run('a', zen4, undefined, failed), run('b', zen4, undefined, ok)],
      true,
      ['success'],
    ],
    [
      'a glob requires each cell it matches',
      req('for:arch=x86_64/*/*,accel=nvidia/*'),
      [run('a', zen4, 'nvidia/cc90', ok), run('a', 'x86_64/intel/icelake', 'nvidia/cc80', failed)],
      false,
      ['success', 'failed'],
    ],
    [
      'all-requested: every cell that has a run',
      req('all-requested'),
      [run('a', zen4, undefined, ok), run('b', zen4, 'nvidia/cc90', running)],
      false,
      ['success', 'pending'],
    ],
    ['all-requested with no run is missing', req('all-requested'), [], false, ['missing']],
    [
      'a cell named twice counts once',
      req('for:arch=zen4', 'all-requested'),
      [run('a', zen4, undefined, ok)],
      true,
      ['success'],
    ],
    [
      'runs of other check names do not count',
      req('for:arch=zen4'),
      [
        { id: 1, name: 'hpcbot/deploy-gate', ...ok },
        { id: 2, name: 'x86_64/amd/zen4', ...ok },
      ],
      false,
      ['missing'],
    ],
  ])('%s', (_what, requirements, runs, green, states) => {
    const d = decide(requirements, runs);
    expect(d.green).toBe(green);
    expect(d.verdicts.map((v) => v.state)).toEqual(states);
  });

  test('no requirement is never green', () => {
    expect(decide([], [run('a', 'x86_64/amd/zen4', undefined, ok)]).green).toBe(false);
  });

  test('the gate run and the refusal list what is not ready, cell by cell', () => {
    const d = decide(
      req('for:arch=zen4', 'for:arch=zen4,accel=nvidia/cc90', 'for:arch=neoverse_v1'),
      [
        { ...run('a', 'x86_64/amd/zen4', undefined, ok), htmlUrl: 'https://github.com/o/r/runs/1' },
        run('b', 'x86_64/amd/zen4', 'nvidia/cc90', failed),
      ],
      false,
    );
    const body = renderGateRun(d, [
      'for:arch=zen4',
      'for:arch=zen4,accel=nvidia/cc90',
      'for:arch=neoverse_v1',
    ]);
    expect(body).toMatchObject({
      name: GATE_RUN_NAME,
      external_id: HEAD,
      status: 'completed',
      conclusion: 'failure',
      output: { title: '2 required target(s) not built at this commit' },
      actions: [],
    });
    expect(body.output.summary.split('\n')).toEqual([
      '`deploy.require`:',
      '- `for:arch=zen4`',
      '- `for:arch=zen4,accel=nvidia/cc90`',
      '- `for:arch=neoverse_v1`',
      '',
      'Not ready:',
      '- `r x86_64/amd/zen4 nvidia/cc90`: failed (:x: failure on b)',
      '- :grey_question: `for:arch=neoverse_v1`: no build at this commit',
      '- :warning: the commit has more check runs than the bot reads: cells may be missing',
    ]);
    const refusal = renderGateRefusal(d, 'dev');
    expect(refusal).toContain('deploy refused on instance `dev`');
    expect(refusal).toContain('- `r x86_64/amd/zen4 nvidia/cc90`: failed (:x: failure on b)');
    expect(refusal).not.toContain('r x86_64/amd/zen4`: built');
  });
});

// ---- through the poller ------------------------------------------------------------------------

let h: Harness | undefined;
afterEach(async () => {
  await killAll();
  if (h) await releaseWaitingJobs(h);
  await h?.stop();
  h = undefined;
});

const FAST = { retryBaseMs: 1, retries: 1, throttle: false };
const REQUIRE_ZEN4 = 'deploy:\n  policy: all\n  require: ["for:arch=x86_64/amd/zen4"]';
const gateRuns = (harness: Harness, sha: string) =>
  harness.fake.checkRunsOf(OWNER, REPO, sha).filter((r) => r.name === GATE_RUN_NAME);

test('a job that completes evaluates the gate: one list call and one write (API calls per lifecycle)', async () => {
  h = await startHarness(REQUIRE_ZEN4);
  reconfigure(h);
  const repo = openPr(h, WAITING_BOT);
  await storeComment(h, 'bot: build for:arch=x86_64/amd/zen4');
  const stageIs = (stage: string) => async () => {
    const [dir] = await jobDirsOf(h!);
    return dir !== undefined && (await stageOf(dir)) === stage;
  };
  await tickUntil(h, stageIs('running'));
  await runTick(h.deps);
  expect(gateRuns(h, repo.headSha)).toEqual([]);
  const [dir] = await jobDirsOf(h);
  letGo(dir!);
  await tickUntil(h, async () => (await stateOf<JobData>(dir!)).data.check?.gated !== undefined);
  for (let i = 0; i < 3; i++) await runTick(h.deps);
  const [gate, ...more] = gateRuns(h, repo.headSha);
  expect(more).toEqual([]);
  expect(gate).toMatchObject({ app_id: APP_ID, conclusion: 'success', external_id: repo.headSha });
  expect(gate!.output.title).toBe('Every required target was built at this commit');

  // Every call the job's lifecycle made to GitHub, from the command to the finished job (README figure).
  const calls = h.fake.calls
    .filter((c) => !c.path.startsWith('/app/') && !c.path.endsWith('.git') && !c.path.includes('.git/'))
    .map(
      (c) =>
        `${c.method} ${c.path
          .replace(`/repos/${OWNER}/${REPO}`, '')
          .replace(/[0-9a-f]{40}/, ':sha')
          .replace(/\/\d+(?=\/|$)/g, '/:n')}`,
    );
  expect(calls).toEqual([
    'POST /issues/:n/comments', // the reply to the build command
    'GET /pulls/:n', // the job: the PR's head and base
    'POST /issues/:n/comments', // the job comment
    'POST /check-runs', // the job's run: queued
    'PATCH /issues/comments/:n', // running row
    'PATCH /check-runs/:n', // in_progress
    'PATCH /issues/comments/:n', // finished and test rows
    'PATCH /check-runs/:n', // completed
    'GET /commits/:sha/check-runs', // the gate: one list of the commit's runs
    'POST /check-runs', // the gate run
  ]);
});

test('bot: deploy is refused while the gate is red, with the missing cell; with a personal token it says why not', async () => {
  h = await startHarness(
    'deploy:\n  policy: all\n  require: ["for:arch=x86_64/amd/zen4", "for:arch=zen4,accel=nvidia/cc90"]',
  );
  reconfigure(h);
  const repo = openPr(h, PASSING_BOT);
  await storeComment(h, 'bot: build for:arch=x86_64/amd/zen4');
  await tickUntil(h, async () => {
    const [dir] = await jobDirsOf(h!);
    return dir !== undefined && (await stageOf(dir)) === 'finished';
  });
  for (let i = 0; i < 2; i++) await runTick(h.deps);
  expect(gateRuns(h, repo.headSha)).toEqual([expect.objectContaining({ conclusion: 'failure' })]);

  const reply = async () => {
    const before = h!.fake.commentsOf(OWNER, REPO, PR).length;
    await storeComment(h!, 'bot: deploy');
    await runTick(h!.deps);
    return h!.fake
      .commentsOf(OWNER, REPO, PR)
      .slice(before)
      .map((c) => c.body)
      .join('\n');
  };
  const refused = await reply();
  expect(refused).toContain(
    'deploy refused on instance `test`: the deploy gate (`hpcbot/deploy-gate`) is red',
  );
  expect(refused).toContain('- :grey_question: `for:arch=zen4,accel=nvidia/cc90`: no build at this commit');
  expect(refused).not.toContain('uploaded');

  // A personal token writes commit statuses, not check runs: the gate cannot be read, so no deploy.
  const { app_id: _appId, private_key_file: _keyFile, ...github } = h.config.github;
  h.config = { ...h.config, github };
  h.deps.config = h.config;
  h.deps.github = createGitHub(h.config, h.deps.logger, { HARNESS_GITHUB_TOKEN: 'ghp_harness' }, FAST);
  expect(h.deps.github.checkSurface()).toBe('statuses');
  expect(await reply()).toContain('the deploy gate reads check runs, which need a GitHub App');
});

describe('reading a commit with many check runs', () => {
  test('200 runs: two pages of 100, all read; 1005 runs: ten pages, and the read says it is incomplete', async () => {
    h = await startHarness();
    reconfigure(h);
    const sha = 'f'.repeat(40);
    const seed = (n: number) => {
      for (let i = 0; i < n; i++)
        h!.fake.addCheckRun(OWNER, REPO, {
          name: `hpcbot/other: r x86_64/amd/zen${h!.fake.checkRunsOf(OWNER, REPO, sha).length}`,
          head_sha: sha,
          app_id: APP_ID,
          status: 'completed',
          conclusion: 'success',
        });
    };
    const repoRef = { owner: OWNER, repo: REPO, installationId: 4242 };
    const lists = () => h!.fake.callsTo('GET', /\/commits\/[0-9a-f]{40}\/check-runs$/).length;

    seed(200);
    const all = await h.deps.github.listCheckRuns(repoRef, sha);
    expect(all.complete).toBe(true);
    expect(all.runs).toHaveLength(200);
    expect(new Set(all.runs.map((r) => r.name)).size).toBe(200);
    expect(lists()).toBe(2);

    seed(805);
    const bounded = await h.deps.github.listCheckRuns(repoRef, sha);
    expect(bounded.complete).toBe(false);
    expect(bounded.runs).toHaveLength(1000);
    expect(lists()).toBe(2 + 10);
  });
});
