/**
 * Two bot instances of one fleet (issue 13, items 3 and 4): two configs and two jobdirs, one GitHub App,
 * one fake GitHub, one PR. Instance `a` builds the CPU target, `b` the GPU one; the target matrix that
 * `a` (the status responder) posts shows both, the deploy gate turns green only once both required cells
 * succeeded, and turns red again at a new head after a push.
 */
import type { JobData } from '../src/store/job.js';
import { GATE_RUN_NAME } from '../src/domain/deployGate.js';
import {
  INSTALLATION,
  jobDirsOf,
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
import { APP_ID, reconfigure, startInstance } from './support/fleet.js';
import { payloads } from './support/payloads.js';
import { PASSING_BOT } from './support/prRepo.js';
import { killAll } from './support/spawn.js';

const FLEET_YAML = [
  'reporting:',
  '  status_responder: a',
  'deploy:',
  '  policy: all',
  '  require:',
  '    - for:arch=x86_64/amd/zen4',
  '    - for:arch=x86_64/amd/zen4,accel=nvidia/cc90 repo:eessi-test',
].join('\n');
/** Instance b has a GPU node type as well (appended to the harness's node_types). */
const GPU_NODE =
  '    gpu:\n      cpu_subdir: x86_64/amd/zen4\n      accel: nvidia/cc90\n      repo_targets: [eessi-test]';

let a: Harness | undefined;
let b: Harness | undefined;
afterEach(async () => {
  await killAll();
  await b?.stop();
  await a?.stop();
  a = b = undefined;
});

async function finishAll(h: Harness): Promise<string[]> {
  await tickUntil(h, async () => {
    const dirs = await jobDirsOf(h);
    return dirs.length > 0 && (await Promise.all(dirs.map(stageOf))).every((s) => s === 'finished');
  });
  // One more tick publishes what the last one changed.
  await tickUntil(h, async () => true);
  return await jobDirsOf(h);
}

const gateRuns = (h: Harness, sha: string) =>
  h.fake.checkRunsOf(OWNER, REPO, sha).filter((r) => r.name === GATE_RUN_NAME);

/** The bot's reply comments of one instance (their markers name the instance). */
const repliesOf = (h: Harness, instance: string) =>
  h.fake
    .commentsOf(OWNER, REPO, PR)
    .filter((c) => c.body.includes(`<!-- hpcbot:${instance}:`) && !c.body.includes('#job -->'));

async function command(h: Harness, body: string): Promise<string> {
  const before = new Set(h.fake.commentsOf(OWNER, REPO, PR).map((c) => c.id));
  await storeComment(h, body);
  await tickUntil(h, async () => true);
  const fresh = h.fake.commentsOf(OWNER, REPO, PR).filter((c) => !before.has(c.id));
  return fresh.map((c) => c.body).join('\n---\n');
}

test('the matrix shows both instances; the gate is green only when both succeeded, red again after a push', async () => {
  a = await startHarness(FLEET_YAML);
  reconfigure(a, (c) => ({ ...c, instance: 'a' }));
  b = await startInstance(a, 'b', `${GPU_NODE}\n${FLEET_YAML}`);
  const repo = openPr(a, PASSING_BOT);
  const head = repo.headSha;

  // One comment, delivered to both instances as the server would; each takes its line.
  const body =
    'bot: build for:arch=x86_64/amd/zen4 inst:a\nbot: build for:arch=x86_64/amd/zen4,accel=nvidia/cc90 inst:b';
  await storeComment(a, body);
  await storeComment(b, body);

  // a finishes first: its own cell is built, b's is missing, so the gate is red and says which.
  const [aJob] = await finishAll(a);
  expect((await stateOf<JobData>(aJob!)).data.result?.status).toBe('SUCCESS');
  let [gate, ...more] = gateRuns(a, head);
  expect(more).toEqual([]);
  expect(gate).toMatchObject({ app_id: APP_ID, status: 'completed', conclusion: 'failure' });
  expect(gate!.output.summary).toContain(
    '- :grey_question: `for:arch=x86_64/amd/zen4,accel=nvidia/cc90 repo:eessi-test`: no build at this commit',
  );
  expect(gate!.output.summary).not.toContain('`eessi-test x86_64/amd/zen4`: ');

  // A deploy now is refused, cell by cell.
  const refused = await command(a, 'bot: deploy');
  expect(refused).toContain('deploy refused on instance `a`: the deploy gate (`hpcbot/deploy-gate`) is red');
  expect(refused).toContain(
    '`for:arch=x86_64/amd/zen4,accel=nvidia/cc90 repo:eessi-test`: no build at this commit',
  );
  expect(refused).not.toContain('uploaded');

  // b finishes: every required cell succeeded, and b updates the same gate run (one App) to green.
  await finishAll(b);
  [gate, ...more] = gateRuns(a, head);
  expect(more).toEqual([]);
  expect(gate).toMatchObject({ status: 'completed', conclusion: 'success' });
  expect(gate!.output.summary).toMatch(
    /^- `eessi-test x86_64\/amd\/zen4`: built \(\[:white_check_mark: success on a\]\(https:\/\/github\.invalid\/\S+\/runs\/\d+\)\)$/m,
  );
  expect(gate!.output.summary).toMatch(
    /^- `eessi-test x86_64\/amd\/zen4 nvidia\/cc90`: built \(\[:white_check_mark: success on b\]\(https:\/\/github\.invalid\/\S+\/runs\/\d+\)\)$/m,
  );

  // `bot: status`: only a (the status responder) answers, with both instances in its matrix.
  const statusReply = await command(a, 'bot: status');
  const bReplies = repliesOf(b, 'b').length;
  expect(bReplies).toBeGreaterThan(0); // b did reply to the build command
  const bStatus = await storeComment(b, 'bot: status');
  await tickUntil(b, async () => (await stageOf(bStatus)) === 'ignored');
  expect(repliesOf(b, 'b')).toHaveLength(bReplies);
  expect(statusReply).toContain('from the check runs of 2 instance(s): `a`, `b`');
  expect(statusReply).toContain('|CPU target|`none`|`nvidia/cc90`|');
  const runUrl = (name: string) => {
    const run = a!.fake.checkRunsOf(OWNER, REPO, head).find((r) => r.name === name);
    return `https://github.invalid/${OWNER}/${REPO}/runs/${run!.id}`;
  };
  expect(statusReply).toContain(
    `|\`x86_64/amd/zen4\`|[:white_check_mark: a](${runUrl('hpcbot/a: eessi-test x86_64/amd/zen4')})|` +
      `[:white_check_mark: b](${runUrl('hpcbot/b: eessi-test x86_64/amd/zen4 nvidia/cc90')})|`,
  );
  // a's own jobs follow, as before.
  expect(statusReply).toContain(
    'This is the status of all the `bot: build` jobs of instance `a` for this PR:',
  );

  // Now a deploy goes ahead.
  const deployed = await command(a, 'bot: deploy');
  expect(deployed).not.toContain('refused');
  expect(deployed).toContain('uploaded');

  // A new push: the jobs are superseded, each instance evaluates the gate at the new head: red, nothing built.
  const newHead = 'd'.repeat(40);
  a.fake.addPullRequest(OWNER, REPO, {
    number: PR,
    headSha: newHead,
    baseSha: repo.baseSha,
    baseRef: 'main',
  });
  for (const h of [a, b]) {
    const p = payloads.prSynchronize() as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    p.repository.owner.login = OWNER;
    p.repository.name = REPO;
    p.number = PR;
    p.pull_request.number = PR;
    p.pull_request.head.sha = newHead;
    p.installation = { id: INSTALLATION, node_id: `I_fake${INSTALLATION}` };
    await storeRaw(h, 'pull_request', p, nextDelivery());
    await tickUntil(
      h,
      async () =>
        (await stateOf<JobData>((await jobDirsOf(h))[0]!)).data.check?.gated !== undefined &&
        gateRuns(h, newHead).length > 0,
    );
    await tickUntil(h, async () => true);
  }
  const [newGate, ...moreNew] = gateRuns(a, newHead);
  expect(moreNew).toEqual([]);
  expect(newGate).toMatchObject({ status: 'completed', conclusion: 'failure' });
  expect(newGate!.output.summary).toContain(
    '- :grey_question: `for:arch=x86_64/amd/zen4`: no build at this commit',
  );
  // The old head's job runs are neutral (superseded); its gate run stays as it was.
  expect(gateRuns(a, head)).toEqual([expect.objectContaining({ conclusion: 'success' })]);
  expect(
    a.fake
      .checkRunsOf(OWNER, REPO, head)
      .filter((r) => r.name !== GATE_RUN_NAME)
      .map((r) => r.conclusion),
  ).toEqual(['neutral', 'neutral']);
}, 180_000);
