/**
 * `bot: plan ...` and `bot: build ... --dry-run` (src/stages/commands/plan.ts): the exact job list a
 * build would prepare and what build.on_overlap would do, with nothing written or submitted.
 */
import { parseBotCommand } from '../src/domain/commands.js';
import { plannedAction } from '../src/stages/commands/plan.js';
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
import { PASSING_BOT, WAITING_BOT } from './support/prRepo.js';
import { killAll } from './support/spawn.js';

describe('plannedAction', () => {
  test.each<[string[], 'supersede' | 'queue' | 'refuse', unknown]>([
    [[], 'supersede', { kind: 'new' }],
    [[], 'refuse', { kind: 'new' }],
    [['a', 'b'], 'supersede', { kind: 'supersede', activeDir: 'a' }],
    [['a'], 'queue', { kind: 'queue', activeDir: 'a' }],
    [['a'], 'refuse', { kind: 'refuse', activeDir: 'a' }],
  ])('%j with %s', (overlapping, policy, expected) => {
    expect(plannedAction(overlapping, policy)).toEqual(expected);
  });

  test('syntax: --dry-run belongs to build only; plan takes the arguments of build', () => {
    expect(parseBotCommand('build for:arch=zen4 --dry-run')).toMatchObject({
      ok: true,
      expanded: 'build for:architecture=zen4 --dry-run',
    });
    expect(parseBotCommand('plan for:arch=zen4 --dry-run')).toMatchObject({
      ok: false,
      error: 'unexpected argument `--dry-run`',
    });
    expect(parseBotCommand('plan for:set=gpu repo:eessi')).toMatchObject({ ok: true });
    expect(parseBotCommand('plan')).toMatchObject({ ok: false });
  });
});

const GPU_NODE = [
  '    zen4_cc90:',
  '      cpu_subdir: x86_64/amd/zen4',
  '      accel: nvidia/cc90',
  '      repo_targets: [eessi-test]',
].join('\n');

let h: Harness | undefined;
afterEach(async () => {
  await killAll();
  if (h) await releaseWaitingJobs(h);
  await h?.stop();
  h = undefined;
});

async function command(harness: Harness, body: string): Promise<string> {
  const before = harness.fake.commentsOf(OWNER, REPO, PR).length;
  const eventDir = await storeComment(harness, body);
  await tickUntil(harness, async () => ['done', 'ignored'].includes((await stageOf(eventDir)) ?? ''));
  return harness.fake
    .commentsOf(OWNER, REPO, PR)
    .slice(before)
    .filter((c) => !c.body.includes('#job -->'))
    .map((c) => c.body)
    .join('\n');
}

const TABLE_HEAD = '  |target|node type|repo|action|\n  |---|---|---|---|\n';

describe('through the poller', () => {
  test('plan and build --dry-run list the jobs and submit nothing', async () => {
    h = await startHarness(GPU_NODE);
    openPr(h, WAITING_BOT);
    const callsBefore = h.fake.calls.length;
    const reply = await command(
      h,
      'bot: plan for:arch=zen4 exportvariable:SKIP_TESTS=yes\nbot: build on:arch=zen4 for:arch=zen4,accel=nvidia/cc80 --dry-run',
    );
    expect(reply).toContain(
      'dry run on instance `test`, nothing was submitted; `bot: build` would prepare 1 job(s) with `SKIP_TESTS=yes`:\n  \n' +
        TABLE_HEAD +
        '  |`x86_64/amd/zen4`|`zen4`|`eessi-test`|new job|',
    );
    expect(reply).toContain(
      '  |`x86_64/amd/zen4, nvidia/cc80` on `x86_64/amd/zen4`|`zen4`|`eessi-test`|new job|',
    );
    expect(await jobDirsOf(h)).toEqual([]);
    // Only reading calls and the one reply.
    const writes = h.fake.calls.slice(callsBefore).filter((c) => c.method !== 'GET');
    expect(writes.map((c) => `${c.method} ${c.path}`)).toEqual([
      `POST /repos/${OWNER}/${REPO}/issues/${PR}/comments`,
    ]);
  });

  test.each<['supersede' | 'queue' | 'refuse', string]>([
    ['supersede', 'new job, supersedes (cancels) the active job in'],
    ['queue', 'new job, queued behind the active job in'],
    ['refuse', 'refused: a job of this target is active in'],
  ])(
    'an active job of the target: on_overlap %s is shown, and the job is left alone',
    async (policy, says) => {
      h = await startHarness(`${GPU_NODE}\n  on_overlap: ${policy}`);
      openPr(h, WAITING_BOT);
      await command(h, 'bot: build for:arch=zen4');
      await tickUntil(h, async () => (await stageOf((await jobDirsOf(h!))[0]!)) === 'running');
      const [active] = await jobDirsOf(h);
      const reply = await command(h, 'bot: plan for:arch=zen4');
      expect(reply).toContain(
        `|\`x86_64/amd/zen4\`|\`zen4\`|\`eessi-test\`|${says} \`${h.deps.jobdirs.relative(active!)}\``,
      );
      expect(await jobDirsOf(h)).toEqual([active]);
      expect((await stateOf<JobData>(active!)).data.cancel_requested).toBeUndefined();
    },
  );

  test('no matching node type, an unknown set, no permission: each is said', async () => {
    h = await startHarness();
    openPr(h, PASSING_BOT);
    expect(await command(h, 'bot: plan for:arch=zen3')).toContain(
      'dry run on instance `test`, nothing was submitted; no jobs would be submitted: no node type of instance `test` matches.',
    );
    expect(await command(h, 'bot: plan for:set=gpu')).toContain(
      'no jobs would be submitted: unknown target set "gpu"; this instance has no target_sets',
    );
    h.deps.config = { ...h.config, permissions: { ...h.config.permissions, build: ['someone-else'] } };
    expect(await command(h, 'bot: plan for:arch=zen4')).toContain(
      '|`x86_64/amd/zen4`|`zen4`|`eessi-test`|refused: account `reviewer1` has NO permission to submit build jobs|',
    );
    expect(await jobDirsOf(h)).toEqual([]);
  });
});
