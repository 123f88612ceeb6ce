/**
 * The poller as the real `hpcbot poll` child process: killed at the worst moment and re-run, two at
 * once, `--replay`, a broken directory, `--dir`. GitHub is the fake (in this process); everything else
 * is real, and everything the children know is on disk.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { JobData } from '../src/store/job.js';
import { storeEvent, storePayload } from '../src/ingest/eventStore.js';
import { JobDirs } from '../src/store/jobdirs.js';
import { readState, writeState, type DirState } from '../src/store/state.js';
import type { EventData } from '../src/stages/event.js';
import { OWNER as APP_OWNER, PR, REPO as APP_REPO, commentPayload, startAppSite } from './support/appSite.js';
import { FakeGitHub } from './support/fakeGithub.js';
import { payloads } from './support/payloads.js';
import { killAll, runCli, spawnCli, tempDir } from './support/spawn.js';

const OWNER = 'Codertocat';
const REPO = 'Hello-World';
const BOT = 'hpcbot-test';
const ENV = { HPCBOT_TEST_TOKEN: 'pat-token-for-children' };

let tmp: string;
let fake: FakeGitHub;
let siteYaml: string;
let jobdirs: JobDirs;

beforeEach(async () => {
  tmp = await tempDir('hpcbot-pollproc-');
  fake = new FakeGitHub({ patLogin: BOT });
  const url = await fake.start();
  await fs.mkdir(path.join(tmp, 'repos_cfg'));
  await fs.writeFile(
    path.join(tmp, 'repos_cfg', 'repos.cfg'),
    '[eessi-test]\nrepo_name = software.eessi.io\nrepo_version = 2023.06\ncontainer = docker://x\n',
  );
  siteYaml = path.join(tmp, 'site.yaml');
  await fs.writeFile(
    siteYaml,
    [
      'instance: test',
      'jobdirs: jobdirs',
      'github:',
      `  api_url: ${url}`,
      '  token_env: HPCBOT_TEST_TOKEN',
      '  dry_run: false',
      `  bot_login: ${BOT}`,
      'poller:',
      '  max_attempts: 5',
      'permissions:',
      '  command: [alice]',
      '  build: [alice]',
      'backend:',
      '  kind: local',
      'build:',
      '  repos_cfg_dir: repos_cfg',
      '  node_types:',
      '    zen4:',
      '      cpu_subdir: x86_64/amd/zen4',
      '      repo_targets: [eessi-test]',
      '',
    ].join('\n'),
  );
  jobdirs = new JobDirs(path.join(tmp, 'jobdirs'));
  await jobdirs.ensureBaseDirs();
});

afterEach(async () => {
  await killAll();
  await fake.stop();
  await fs.rm(tmp, { recursive: true, force: true });
});

/** Store a real issue_comment.created payload on PR 1, as the server would. */
async function comment(body: string, delivery: string, login = 'alice'): Promise<string> {
  const p = payloads.commentOnPr() as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  p.comment.body = body;
  p.comment.user.login = login;
  p.sender.login = login;
  const { eventDir } = await storeEvent(jobdirs, {
    delivery,
    event: 'issue_comment',
    rawBody: JSON.stringify(p),
    action: 'created',
    installationId: 1,
    headers: {},
    owner: OWNER,
    repo: REPO,
    scope: { kind: 'pr', number: 1 },
    receivedAt: new Date(),
  });
  return eventDir;
}

function poll(...args: string[]) {
  return runCli(['poll', '--config', siteYaml, ...args], { env: ENV });
}

const lockFile = () => path.join(jobdirs.locksDir, 'poller.lock');

async function eventState(dir: string): Promise<DirState<EventData>> {
  const s = await readState<EventData>(dir);
  if (!s) throw new Error(`no state in ${dir}`);
  return s;
}

const replies = () => fake.commentsOf(OWNER, REPO, 1);
const posts = () => fake.callsTo('POST', `/repos/${OWNER}/${REPO}/issues/1/comments`);
const marker = (dir: string, key: string) => `<!-- hpcbot:test:${path.basename(dir)}#${key} -->`;

test('killed right after posting its reply, the re-run finds the comment instead of posting again', async () => {
  const dir = await comment('bot: help', 'crash-1');
  const crashed = await runCli(['poll', '--config', siteYaml, '--once'], {
    env: { ...ENV, HPCBOT_CRASH_POINT: 'after-comment-created' },
  });
  expect(crashed.code).toBeNull(); // killed by a signal (SIGKILL), not an exit
  expect(replies()).toHaveLength(1);
  const posted = replies()[0]!;
  expect(posted.body.endsWith(marker(dir, 'g0:reply'))).toBe(true);
  // What the crash left: the intent without the id, the event still pending, the dead poller's lock.
  let s = await eventState(dir);
  expect(s.stage).toBe('received');
  expect(s.comments['g0:reply']).toEqual({ intent_at: expect.any(String) });
  expect(await jobdirs.pending()).toEqual([dir]);
  await expect(fs.access(lockFile())).resolves.toBeUndefined();

  const rerun = await poll('--once');
  expect(rerun).toMatchObject({ code: 0 });
  expect(replies()).toEqual([posted]);
  expect(posts()).toHaveLength(1);
  expect(fake.callsTo('GET', `/repos/${OWNER}/${REPO}/issues/1/comments`)).toHaveLength(1);
  s = await eventState(dir);
  expect(s.stage).toBe('done');
  expect(s.comments['g0:reply']).toEqual({ intent_at: expect.any(String), id: posted.id });
  expect(await jobdirs.pending()).toEqual([]);
  await expect(fs.access(lockFile())).rejects.toThrow();
});

test('two pollers started together: the lock lets each effect happen once', async () => {
  const a = await comment('bot: help', 'lock-a');
  const b = await comment('bot: status', 'lock-b');
  const one = spawnCli(['poll', '--config', siteYaml, '--once'], { env: ENV });
  const two = spawnCli(['poll', '--config', siteYaml, '--once'], { env: ENV });
  const [r1, r2] = await Promise.all([one.exited, two.exited]);
  expect([r1.code, r2.code]).toEqual([0, 0]);
  expect(posts()).toHaveLength(2);
  const bodies = replies().map((c) => c.body);
  expect(bodies.filter((x) => x.endsWith(marker(a, 'g0:reply')))).toHaveLength(1);
  expect(bodies.filter((x) => x.endsWith(marker(b, 'g0:reply')))).toHaveLength(1);
  for (const dir of [a, b]) expect((await eventState(dir)).stage).toBe('done');
  expect(await jobdirs.pending()).toEqual([]);
  await expect(fs.access(lockFile())).rejects.toThrow();
});

test('--replay starts a finished build event over as run_001; run_000 stays as it was', async () => {
  const dir = await comment('bot: build for:arch=zen4', 'replay-1');
  expect(await poll('--once')).toMatchObject({ code: 0 });
  const job0 = path.join(dir, 'run_000', 'zen4', 'eessi-test');
  const s0 = (await readState<JobData>(job0))!;
  expect(s0.stage).toBe('prepared');
  // By the time an operator replays the event, its first run has finished.
  await writeState(job0, { ...s0, stage: 'finished' });
  await jobdirs.dequeue(job0);
  const before = {
    files: await fs.readdir(job0),
    state: await fs.readFile(path.join(job0, 'state.json'), 'utf8'),
  };

  const replay = await poll('--replay', dir);
  expect(replay).toMatchObject({ code: 0 });
  const s = await eventState(dir);
  expect(s.stage).toBe('done');
  expect(s.data.generation).toBe(1);
  expect(s.data.runs).toEqual({ 'g0:cmd0': 'run_000', 'g1:cmd0': 'run_001' });
  expect((await fs.readdir(dir)).filter((n) => n.startsWith('run_')).sort()).toEqual(['run_000', 'run_001']);
  const job1 = path.join(dir, 'run_001', 'zen4', 'eessi-test');
  expect((await readState<JobData>(job1))!.stage).toBe('prepared');
  expect({
    files: await fs.readdir(job0),
    state: await fs.readFile(path.join(job0, 'state.json'), 'utf8'),
  }).toEqual(before);
  // One reply per generation, each with its own marker.
  const bodies = replies().map((c) => c.body);
  expect(bodies).toHaveLength(2);
  expect(bodies[0]!.endsWith(marker(dir, 'g0:reply'))).toBe(true);
  expect(bodies[1]!.endsWith(marker(dir, 'g1:reply'))).toBe(true);
  expect(bodies[1]).toContain(`prepared in \`${jobdirs.relative(job1)}\``);

  // A job directory is not an event; the refusal changes nothing.
  const refused = await poll('--replay', job0);
  expect(refused.code).not.toBe(0);
  expect(refused.stderr + refused.stdout).toContain('is not an event directory');
  expect(await fs.readFile(path.join(job0, 'state.json'), 'utf8')).toBe(before.state);
});

test('a broken directory records error, attempts and next retry; the others still advance', async () => {
  const broken = path.join(path.dirname(await comment('bot: help', 'good-1')), 'event_broken-1');
  const good = path.join(path.dirname(broken), 'event_good-1');
  await fs.mkdir(broken);
  await fs.writeFile(path.join(broken, 'event.json'), '{"delivery": "broken-1", "event": ');
  await jobdirs.enqueue(broken);

  const first = await poll('--once');
  expect(first.code).toBe(1); // a directory failed this tick
  expect((await eventState(good)).stage).toBe('done');
  expect(replies()).toHaveLength(1);
  const s1 = await eventState(broken);
  expect(s1).toMatchObject({
    kind: 'event',
    stage: 'received',
    attempts: 1,
    last_error: { message: expect.stringMatching(/JSON/), at: expect.any(String) },
  });
  expect(Date.parse(s1.next_retry_at!) - Date.parse(s1.last_error!.at)).toBe(10_000);
  expect(await jobdirs.pending()).toEqual([broken]);

  // The next tick comes before the retry time: the directory is left alone.
  const second = await poll('--once');
  expect(second.code).toBe(0);
  expect(await eventState(broken)).toEqual(s1);

  // An operator's --dir does not wait for the retry time.
  const forced = await poll('--dir', broken);
  expect(forced.code).toBe(1);
  const s2 = await eventState(broken);
  expect(s2.attempts).toBe(2);
  expect(Date.parse(s2.next_retry_at!) - Date.parse(s2.last_error!.at)).toBe(20_000);
  expect(replies()).toHaveLength(1);
});

test('--dir advances only that directory', async () => {
  const a = await comment('bot: help', 'dir-a');
  const b = await comment('bot: help', 'dir-b');
  const run = await poll('--dir', a);
  expect(run.code).toBe(0);
  expect((await eventState(a)).stage).toBe('done');
  expect(await readState(b)).toBeUndefined();
  expect(await jobdirs.pending()).toEqual([b]);
  expect(replies().map((c) => c.body.endsWith(marker(a, 'g0:reply')))).toEqual([true]);
});

test('a flood of comments: one "no permission" reply per hour, and each tick within its reply budget', async () => {
  await fs.writeFile(
    siteYaml,
    (await fs.readFile(siteYaml, 'utf8')).replace(
      '  max_attempts: 5\n',
      '  max_attempts: 5\n  max_replies_per_tick: 2\n',
    ),
  );
  const denied = [];
  for (let i = 1; i <= 4; i++) denied.push(await comment('bot: help', `flood-a-${i}`, 'mallory'));
  const asked = [];
  for (let i = 1; i <= 3; i++) asked.push(await comment('bot: help', `flood-b-${i}`));
  const deniedReplies = () =>
    replies().filter((c) => c.body.startsWith('account `mallory` has NO permission'));

  expect(await poll('--once')).toMatchObject({ code: 0 });
  expect(deniedReplies()).toHaveLength(1);
  expect(replies()).toHaveLength(2); // the budget: mallory's one reply and alice's first
  expect((await eventState(denied[0]!)).stage).toBe('done');
  for (const dir of denied.slice(1)) expect((await eventState(dir)).stage).toBe('ignored');
  expect(await jobdirs.pending()).toEqual(asked.slice(1));

  // A new process knows from jobdirs alone that mallory was told within the hour.
  const more = await comment('bot: help', 'flood-0', 'mallory'); // sorts first, before the budget is spent
  expect(await poll('--once')).toMatchObject({ code: 0 });
  expect((await eventState(more)).stage).toBe('ignored');
  expect(deniedReplies()).toHaveLength(1);
  expect(replies()).toHaveLength(4);
  for (const dir of asked) {
    expect(replies().filter((c) => c.body.endsWith(marker(dir, 'g0:reply')))).toHaveLength(1);
    expect((await eventState(dir)).stage).toBe('done');
  }
  expect(await jobdirs.pending()).toEqual([]);
}, 60_000); // two children, and real GitHub's pace: comments 3 s apart

/** Names of the files under `dir` (two levels deep). */
async function filesUnder(dir: string, depth = 2): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(dir, { withFileTypes: true }).catch(() => [])) {
    out.push(e.name);
    if (e.isDirectory() && depth > 1) out.push(...(await filesUnder(path.join(dir, e.name), depth - 1)));
  }
  return out;
}

test('paced as on GitHub: the finished job is reported before the replies of its tick, and each tick posts at most max_replies_per_tick (default 3)', async () => {
  // The App site: a real PR repository, the local backend, the GitHub client with its real pacing
  // (plugin-throttling on: new comments 3 s apart), and the default reply budget.
  const site = await startAppSite('ingest:\n  mode: webhook\n');
  try {
    const jd = new JobDirs(site.jobdirs);
    await jd.ensureBaseDirs();
    const store = (body: string, delivery: string) =>
      storePayload(jd, 'issue_comment', commentPayload(body), delivery, 99);
    const pollOnce = () => runCli(['poll', '--config', site.siteYaml, '--once']);
    const prComments = () => site.fake.commentsOf(APP_OWNER, APP_REPO, PR);
    const isReply = (c: { method: string; path: string }) =>
      c.method === 'POST' && c.path === `/repos/${APP_OWNER}/${APP_REPO}/issues/${PR}/comments`;

    await store('bot: build for:arch=zen4', 'build-0');
    expect(await pollOnce()).toMatchObject({ code: 0 }); // the command: a job is prepared
    expect(await pollOnce()).toMatchObject({ code: 0 }); // checked out, started; its comment posted
    const [job] = await jd.prJobDirs(APP_OWNER, APP_REPO, PR);
    const jobComment = prComments().find((c) => c.body.startsWith('New job on instance `test`'));
    expect(jobComment?.body).not.toMatch(/\|finished\|/);
    // The local job ends (its runner writes its exit status); the next tick sees it finished.
    const deadline = Date.now() + 60_000;
    while (!(await filesUnder(job!)).some((n) => n.endsWith('.exit'))) {
      if (Date.now() > deadline) throw new Error('the local job did not finish');
      await new Promise((r) => setTimeout(r, 100));
    }

    // A flood of authorised commands lands in that tick.
    const flood: string[] = [];
    for (let i = 0; i < 7; i++) flood.push(await store('bot: help', `help-${i}`));
    const perTick: number[] = [];
    let mark = site.fake.calls.length;
    expect(await pollOnce()).toMatchObject({ code: 0 });
    const calls = site.fake.calls.slice(mark);
    const update = calls.findIndex(
      (c) =>
        c.method === 'PATCH' &&
        c.path === `/repos/${APP_OWNER}/${APP_REPO}/issues/comments/${jobComment!.id}`,
    );
    expect(update).toBeGreaterThanOrEqual(0);
    expect(calls.findIndex(isReply)).toBeGreaterThan(update);
    expect(prComments().find((c) => c.id === jobComment!.id)?.body).toMatch(/\|finished\|/);
    perTick.push(calls.filter(isReply).length);

    // The rest follow, at most the budget per tick, each once.
    while (perTick.reduce((a, b) => a + b, 0) < flood.length) {
      mark = site.fake.calls.length;
      expect(await pollOnce()).toMatchObject({ code: 0 });
      perTick.push(site.fake.calls.slice(mark).filter(isReply).length);
      if (perTick.length > 5) break;
    }
    expect(perTick).toEqual([3, 3, 1]);
    for (const dir of flood)
      expect(prComments().filter((c) => c.body.includes(`${path.basename(dir)}#g0:reply -->`))).toHaveLength(
        1,
      );
  } finally {
    await site.stop();
  }
}, 180_000);
