/**
 * A PR closed while other events of it are still pending (in the same tick, or failing and retrying):
 * every such event is answered, and says that the PR is closed, before anything is moved to the trash.
 * A close undone by a later reopen moves nothing. In-process poller ticks, the real GitHub adapter
 * against the fake, which records the exact replies.
 */
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { monthDir } from '../src/store/jobdirs.js';
import { runTick } from '../src/poller.js';
import { readState } from '../src/store/state.js';
import { example, payloads } from './support/payloads.js';
import {
  INSTALLATION,
  jobDirsOf,
  OWNER,
  PR,
  REPO,
  startHarness,
  storeComment,
  storeRaw,
  type Harness,
} from './support/botHarness.js';

let h: Harness;
afterEach(async () => h?.stop());

function prPayload(action: 'closed' | 'reopened', merged = false) {
  const p =
    action === 'closed' ? payloads.prClosed() : example('pull_request', (e) => e.action === 'reopened');
  p.repository!.owner.login = OWNER;
  p.repository!.name = REPO;
  const pr = p.pull_request as { number: number; merged: boolean };
  pr.number = PR;
  pr.merged = merged;
  p.installation = { id: INSTALLATION, node_id: `I_fake${INSTALLATION}` };
  return p;
}

const prDir = () => h.deps.jobdirs.prDir(monthDir(new Date()), OWNER, REPO, PR);

/** The bot's reply to the comment stored as `eventDir` (found by its hidden marker). */
function replyTo(eventDir: string): string[] {
  const marker = `<!-- hpcbot:test:${path.basename(eventDir)}#g0:reply -->`;
  return h.fake
    .commentsOf(OWNER, REPO, PR)
    .filter((c) => c.body.includes(marker))
    .map((c) => c.body);
}

/** Ticks until the PR's directory is gone; every tick must go without a failure. */
async function tickUntilTrashed(maxTicks = 10): Promise<void> {
  for (let i = 0; i < maxTicks && existsSync(prDir()); i++) {
    expect(await runTick(h.deps)).toMatchObject({ failed: 0 });
  }
  expect(existsSync(prDir())).toBe(false);
}

/** The trashed event dir of `eventDir` (one trash day, the month of today). */
function trashed(eventDir: string): string {
  const trash = path.join(h.config.jobdirs, 'trash', OWNER, REPO);
  const [day] = readdirSync(trash);
  return path.join(trash, day!, monthDir(new Date()), `pr_${PR}`, path.basename(eventDir));
}

test.each([
  ['before', false, 'the PR is closed'],
  ['after', true, 'the PR was merged'],
])(
  'a status and a build received before the close, which is queued %s them (merged=%s): both answered with "%s"',
  async (order, merged, state) => {
    h = await startHarness();
    // Queue entries are taken in the order of their names, i.e. of the delivery ids.
    const id = (name: string, rank: number) =>
      `q-${order === 'before' ? (name === 'close' ? 0 : rank) : rank}-${name}`;
    const status = await storeComment(h, 'bot: status', undefined, id('status', 1));
    const build = await storeComment(h, 'bot: build for:arch=zen4', undefined, id('build', 2));
    const close = await storeRaw(h, 'pull_request', prPayload('closed', merged), id('close', 3));

    expect(await runTick(h.deps)).toMatchObject({ advanced: 3, failed: 0 });
    const [statusReply, ...moreStatus] = replyTo(status);
    expect(moreStatus).toEqual([]);
    expect(statusReply).toContain(
      `\n  ${state}: no new jobs start, and its job directories go to the trash.\n`,
    );
    expect(statusReply).toContain('\n  no build jobs of instance `test` for this PR yet\n');
    const [buildReply, ...moreBuild] = replyTo(build);
    expect(moreBuild).toEqual([]);
    expect(buildReply).toContain(`\n  no jobs were submitted: ${state}\n`);
    expect(await jobDirsOf(h)).toEqual([]);

    await tickUntilTrashed();
    for (const dir of [status, build, close]) expect((await readState(trashed(dir)))?.stage).toBe('done');
    expect(await h.deps.jobdirs.pending()).toEqual([]);
    // Nothing was said twice.
    expect(replyTo(status)).toHaveLength(1);
    expect(replyTo(build)).toHaveLength(1);
  },
);

test('an event whose reply failed is retried and answered before its PR dir goes to the trash', async () => {
  h = await startHarness();
  const status = await storeComment(h, 'bot: status', undefined, 'r-1-status');
  const close = await storeRaw(h, 'pull_request', prPayload('closed'), 'r-2-close');
  // The adapter tries twice; both fail, so the status event fails this tick and is retried later.
  h.fake.failNext('POST', /\/issues\/\d+\/comments$/, 500, 2);

  expect(await runTick(h.deps)).toMatchObject({ advanced: 1, failed: 1 });
  expect(replyTo(status)).toEqual([]);
  const waiting = await readState(close);
  expect(waiting?.stage).toBe('received');
  expect(waiting?.data.waiting).toBe('1 other event or job dir(s) of the PR still pending');
  expect((await readState(status))?.next_retry_at).toBeDefined();

  // Later, when the retry is due: the status is answered, then the PR goes to the trash.
  const later = new Date(Date.now() + 3600_000);
  h.deps.now = () => later;
  await tickUntilTrashed();
  const [reply, ...more] = h.fake
    .commentsOf(OWNER, REPO, PR)
    .filter((c) => c.body.includes(`${path.basename(status)}#g0:reply`))
    .map((c) => c.body);
  expect(more).toEqual([]);
  expect(reply).toContain(
    '\n  the PR is closed: no new jobs start, and its job directories go to the trash.\n',
  );
  expect((await readState(trashed(status)))?.stage).toBe('done');
  expect((await readState(trashed(close)))?.stage).toBe('done');
  expect(await h.deps.jobdirs.pending()).toEqual([]);
});

test('a close followed by a reopen moves nothing, and the PR is open again for commands', async () => {
  h = await startHarness();
  const close = await storeRaw(h, 'pull_request', prPayload('closed'), 'o-2-close');
  await new Promise((r) => setTimeout(r, 5)); // received later
  const reopen = await storeRaw(h, 'pull_request', prPayload('reopened'), 'o-1-reopen');
  expect(await runTick(h.deps)).toMatchObject({ advanced: 2, failed: 0 });

  const closed = await readState(close);
  expect(closed?.stage).toBe('ignored');
  expect(closed?.history.at(-1)?.note).toBe(`the PR was reopened since (${path.basename(reopen)})`);
  expect(existsSync(close)).toBe(true);
  expect(existsSync(reopen)).toBe(true);

  const status = await storeComment(h, 'bot: status', undefined, 'o-3-status');
  expect(await runTick(h.deps)).toMatchObject({ advanced: 1, failed: 0 });
  const [reply] = replyTo(status);
  expect(reply).toContain('\n  no build jobs of instance `test` for this PR yet\n');
  expect(reply).not.toContain('closed');
});
