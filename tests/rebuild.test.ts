/**
 * `bot: rebuild failed` and `bot: rebuild for:...` (src/stages/commands/rebuild.ts): the pure decisions
 * as tables, then real jobs on the local backend through the poller, with real git and the fake GitHub.
 */
import { parseBotCommand } from '../src/domain/commands.js';
import type { BuildTarget } from '../src/domain/targets.js';
import { failedBecause, targetSelected } from '../src/stages/commands/rebuild.js';
import type { JobData } from '../src/store/job.js';
import {
  jobDirsOf,
  releaseWaitingJobs,
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
import { killAll } from './support/spawn.js';

const ZEN4: BuildTarget = {
  nodeType: 'zen4',
  repoId: 'eessi-test',
  os: 'linux',
  onArch: 'x86_64/amd/zen4',
  forArch: 'x86_64/amd/zen4',
  slurmParams: [],
};
const GPU: BuildTarget = { ...ZEN4, nodeType: 'zen4_cc90', onAccel: 'nvidia/cc90', forAccel: 'nvidia/cc90' };

function job(stage: string, extra: Partial<JobData> = {}): { stage: string; data: JobData } {
  return {
    stage,
    data: {
      pr: { owner: 'o', repo: 'r', number: 1, installation_id: null },
      instance: 'test',
      target: ZEN4,
      exportVariables: [],
      backend: 'local',
      submit_id: 'x',
      rows: [],
      job_id: '1',
      ...extra,
    },
  };
}

describe('failedBecause: what `rebuild failed` rebuilds', () => {
  test.each<[string, string, Partial<JobData>, string | undefined]>([
    [
      'a build failure',
      'finished',
      { scheduler_state: 'FAILED', result: { status: 'FAILURE', description: '', artefacts: [] } },
      'Build failed',
    ],
    [
      'a success',
      'finished',
      { scheduler_state: 'COMPLETED', result: { status: 'SUCCESS', description: '', artefacts: [] } },
      undefined,
    ],
    ['a time-out', 'finished', { scheduler_state: 'TIMEOUT' }, 'Timed out'],
    ['a node failure', 'finished', { scheduler_state: 'NODE_FAIL' }, 'Node failure'],
    ['a lost job', 'lost', {}, 'Lost: the scheduler no longer knows the job'],
    ['a failed checkout', 'failed', {}, 'The bot could not run the job'],
    ['a cancel through the bot', 'cancelled', { cancel_requested: 'cancelled by alice' }, 'cancelled'],
    ['a cancel outside the bot', 'cancelled', {}, undefined],
    ['an active job', 'running', {}, undefined],
  ])('%s', (_what, stage, extra, expected) => {
    expect(failedBecause(job(stage, extra))).toBe(expected);
  });
});

describe('targetSelected: what `rebuild for:` rebuilds', () => {
  const sel = (line: string, t: BuildTarget) => {
    const cmd = parseBotCommand(line);
    if (!cmd.ok) throw new Error(cmd.error);
    return targetSelected(t, cmd.args.on, cmd.args.for!, cmd.args.filters.repository);
  };
  test.each<[string, BuildTarget, boolean]>([
    ['rebuild for:arch=zen4', ZEN4, true],
    ['rebuild for:arch=zen3', ZEN4, false],
    ['rebuild for:arch=zen4', GPU, false], // a GPU target is named with its accelerator
    ['rebuild for:arch=zen4,accel=cc90', GPU, true],
    ['rebuild for:arch=zen4,accel=cc80', GPU, false],
    ['rebuild for:arch=zen4 repo:eessi-test', ZEN4, true],
    ['rebuild for:arch=zen4 repo:other', ZEN4, false],
    ['rebuild on:arch=zen4 for:arch=zen4,accel=cc90', GPU, true],
    ['rebuild on:arch=icelake for:arch=zen4,accel=cc90', GPU, false],
  ])('%s on %o', (line, t, expected) => {
    expect(sel(line, t)).toBe(expected);
  });

  test('syntax: `failed` alone, or `for:`; never export variables', () => {
    expect(parseBotCommand('rebuild failed')).toMatchObject({ ok: true });
    expect(parseBotCommand('rebuild failed inst:test')).toMatchObject({ ok: true });
    expect(parseBotCommand('rebuild')).toMatchObject({
      ok: false,
      error: 'say what to rebuild: `failed`, or the targets with `for:`',
    });
    expect(parseBotCommand('rebuild failed for:arch=zen4')).toMatchObject({ ok: false });
    expect(parseBotCommand('rebuild for:arch=zen4 exportvariable:A=b')).toMatchObject({ ok: false });
    expect(parseBotCommand('rebuild everything')).toMatchObject({ ok: false });
  });
});

// ---- through the poller ----------------------------------------------------------------------

/** icelake builds fail, everything else succeeds; a job waits for a `go` file when asked to. */
const BOT = {
  'bot/build.sh': [
    '#!/bin/bash',
    'if grep -q wait_for_go cfg/export_vars.sh 2>/dev/null; then',
    '  for i in $(seq 1 600); do [ -e go ] && break; sleep 0.1; done',
    'fi',
    'echo "building $(grep software_subdir cfg/job.cfg)"',
    'exit 0',
  ].join('\n'),
  'bot/check-build.sh': [
    '#!/bin/bash',
    'if grep -q icelake cfg/job.cfg; then s=FAILURE; else s=SUCCESS; fi',
    'printf "[RESULT]\\ncomment_description = %s\\nstatus = %s\\nartefacts =\\n" "$s" "$s" > "_bot_job${SLURM_JOB_ID}.result"',
  ].join('\n'),
};

const ICELAKE_NODE = [
  '    icelake:',
  '      cpu_subdir: x86_64/intel/icelake',
  '      repo_targets: [eessi-test]',
].join('\n');

let h: Harness | undefined;
afterEach(async () => {
  await killAll();
  if (h) await releaseWaitingJobs(h);
  await h?.stop();
  h = undefined;
});

async function harness(extraYaml = ''): Promise<Harness> {
  const harness = await startHarness(`${ICELAKE_NODE}\n${extraYaml}`);
  const config = {
    ...harness.config,
    build: { ...harness.config.build, allowed_exportvars: ['SKIP_TESTS=yes', 'HOLD=wait_for_go'] },
  };
  harness.config = config;
  harness.deps.config = config;
  openPr(harness, BOT);
  return harness;
}

/** Store a comment, tick until its event is handled, return the reply the bot posted for it. */
async function command(harness: Harness, body: string): Promise<string> {
  const before = harness.fake.commentsOf(OWNER, REPO, PR).length;
  const eventDir = await storeComment(harness, body);
  await tickUntil(harness, async () => ['done', 'ignored'].includes((await stageOf(eventDir)) ?? ''));
  const replies = harness.fake
    .commentsOf(OWNER, REPO, PR)
    .slice(before)
    .filter((c) => !c.body.includes('#job -->'));
  return replies.map((c) => c.body).join('\n');
}

async function jobs(harness: Harness) {
  return Promise.all(
    (await jobDirsOf(harness)).map(async (dir) => ({ dir, ...(await stateOf<JobData>(dir)) })),
  );
}

async function allEnded(harness: Harness, count: number): Promise<void> {
  await tickUntil(harness, async () => {
    const all = await jobs(harness);
    return all.length === count && all.every((j) => ['finished', 'cancelled'].includes(j.stage));
  });
}

describe('rebuild through the poller', () => {
  test('`rebuild failed` after one of two targets failed resubmits only that one, with its export variables', async () => {
    h = await harness();
    await command(h, 'bot: build for:arch=zen4\nbot: build for:arch=icelake exportvariable:SKIP_TESTS=yes');
    await allEnded(h, 2);
    const before = await jobs(h);
    const failed = before.find((j) => j.data.target.nodeType === 'icelake')!;
    const passed = before.find((j) => j.data.target.nodeType === 'zen4')!;
    expect(failed.data.result?.status).toBe('FAILURE');

    const reply = await command(h, 'bot: rebuild failed');
    const after = await jobs(h);
    expect(after).toHaveLength(3);
    const fresh = after.find((j) => !before.some((b) => b.dir === j.dir))!;
    expect(fresh.data.target).toEqual(failed.data.target);
    expect(fresh.data.exportVariables).toEqual([{ name: 'SKIP_TESTS', value: 'yes' }]);
    const rel = (d: string) => h!.deps.jobdirs.relative(d);
    expect(reply).toContain(
      'resubmitted:\n' +
        `  - job for \`eessi-test\` on node type \`icelake\` (for \`x86_64/intel/icelake\`) prepared in \`${rel(fresh.dir)}\`; its progress is reported in a comment of its own\n` +
        '  skipped:\n' +
        `  - \`x86_64/amd/zen4\` for \`eessi-test\` on node type \`zen4\`: its latest job (\`${rel(passed.dir)}\`) succeeded`,
    );

    // The failed target's latest job is now the rebuild: once it failed again, it is rebuilt again;
    // the older failure is not counted twice.
    await allEnded(h, 3);
    await command(h, 'bot: rebuild failed');
    expect(await jobs(h)).toHaveLength(4);
  });

  test('`rebuild for:` rebuilds a matching target whatever its state; an active one is superseded', async () => {
    h = await harness();
    await command(h, 'bot: build for:arch=zen4');
    await allEnded(h, 1);
    const reply = await command(h, 'bot: rebuild for:arch=zen4 repo:eessi-test');
    expect(reply).toContain('resubmitted:');
    expect(reply).not.toContain('skipped:');
    expect(await jobs(h)).toHaveLength(2);

    // Nothing matches: said so, nothing prepared.
    expect(await command(h, 'bot: rebuild for:arch=zen3')).toContain(
      'nothing was rebuilt: no job of instance `test` for this PR matches',
    );
    expect(await jobs(h)).toHaveLength(2);
  });

  test('an active target: `rebuild failed` skips it, `rebuild for:` follows build.on_overlap (supersede)', async () => {
    h = await harness();
    await command(h, 'bot: build for:arch=zen4 exportvariable:HOLD=wait_for_go');
    await tickUntil(h, async () => (await jobs(h!))[0]?.stage === 'running');
    const [active] = await jobs(h);

    const skipped = await command(h, 'bot: rebuild failed');
    expect(skipped).toContain('nothing was resubmitted');
    expect(skipped).toContain(
      `its latest job (\`${h.deps.jobdirs.relative(active!.dir)}\`) is still active (running)`,
    );

    const superseding = await command(h, 'bot: rebuild for:arch=zen4');
    expect(superseding).toContain(
      `; superseded the active job in \`${h.deps.jobdirs.relative(active!.dir)}\``,
    );
    const all = await jobs(h);
    expect(all).toHaveLength(2);
    const fresh = all.find((j) => j.dir !== active!.dir)!;
    expect(fresh.data.exportVariables).toEqual([{ name: 'HOLD', value: 'wait_for_go' }]);
    expect((await stateOf<JobData>(active!.dir)).data.cancel_requested).toBe(
      `superseded by ${h.deps.jobdirs.relative(fresh.dir)}`,
    );
  });

  test('a sender without build permission gets a refusal and nothing is rebuilt', async () => {
    h = await harness();
    await command(h, 'bot: build for:arch=icelake');
    await allEnded(h, 1);
    const config = { ...h.config, permissions: { ...h.config.permissions, build: ['someone-else'] } };
    h.deps.config = config;
    expect(await command(h, 'bot: rebuild failed')).toContain(
      'account `reviewer1` has NO permission to submit build jobs',
    );
    expect(await jobs(h)).toHaveLength(1);
  });
});
