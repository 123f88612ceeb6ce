/**
 * No commenter can stall the bot: in one poller tick (the real runTick against the fake GitHub, real git,
 * the local backend) job directories advance before any reply goes out, a commenter without permission
 * is told so once per PR and hour, a tick posts at most `poller.max_replies_per_tick` replies (the rest
 * follow, each exactly once), and pull requests advance side by side, a slow git fetch included.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { parseConfig } from '../src/config/config.js';
import { byPullRequest, runTick } from '../src/poller.js';
import type { StageDeps } from '../src/stages/context.js';
import { readState } from '../src/store/state.js';
import {
  INSTALLATION,
  OWNER,
  PR,
  REPO,
  REVIEWER,
  jobDirsOf,
  nextDelivery,
  openPr,
  stageOf,
  startHarness,
  storeComment,
  storeRaw,
  type Harness,
} from './support/botHarness.js';
import { payloads } from './support/payloads.js';
import { runCli } from './support/spawn.js';
import { createPrRepo, PASSING_BOT } from './support/prRepo.js';

let h: Harness | undefined;
let proxy: http.Server | undefined;
afterEach(async () => {
  proxy?.closeAllConnections();
  await new Promise((r) => (proxy ? proxy.close(r) : r(undefined)));
  proxy = undefined;
  await h?.stop();
  h = undefined;
});

/** Store a real issue_comment.created payload on PR `number` of `OWNER/repo`, as the server would. */
async function commentOn(harness: Harness, repo: string, number: number, body: string, sender: string) {
  const p = payloads.commentOnPr();
  p.repository!.owner.login = OWNER;
  p.repository!.name = repo;
  p.issue!.number = number;
  p.installation = { id: INSTALLATION, node_id: `I_fake${INSTALLATION}` };
  const c = p.comment as { body: string; user: { login: string } };
  c.body = body;
  c.user.login = sender;
  (p.sender as { login: string }).login = sender;
  return await storeRaw(harness, 'issue_comment', p, nextDelivery());
}

/** The harness's deps with other poller settings and a clock the test moves. */
function withPoller(harness: Harness, poller: Partial<StageDeps['config']['poller']>, clock: () => Date) {
  const config = { ...harness.config, poller: { ...harness.config.poller, ...poller } };
  return { ...harness.deps, config, now: clock };
}

const DENIED = 'account `mallory` has NO permission to send commands to bot instance `test`';
const toWhom = (c: { body: string }) =>
  c.body.startsWith(DENIED) ? 'mallory' : c.body.includes(`\`${REVIEWER}\``) ? REVIEWER : c.body;

test('a flood of comments: jobs go first, mallory is told once an hour, replies follow within the budget', async () => {
  h = await startHarness();
  openPr(h, PASSING_BOT);
  let now = Date.now();
  const deps = withPoller(h, { max_replies_per_tick: 3 }, () => new Date(now));
  await storeComment(h, 'bot: build for:arch=zen4');
  await runTick(deps);
  const [job] = await jobDirsOf(h);
  expect(await stageOf(job!)).toBe('prepared');

  // The flood is on PR 3, whose index entries sort before PR 7's job: today's order would answer it first.
  const FLOOD = 3;
  const mallory: string[] = [];
  for (let i = 0; i < 10; i++) mallory.push(await commentOn(h, REPO, FLOOD, 'bot: help', 'mallory'));
  const reviewer: string[] = [];
  for (let i = 0; i < 4; i++) reviewer.push(await commentOn(h, REPO, FLOOD, 'bot: help', REVIEWER));
  const floodReplies = () => h!.fake.commentsOf(OWNER, REPO, FLOOD);
  const mark = h.fake.calls.length;

  const first = await runTick(deps);

  // The job was checked out (its GET of the PR), submitted and released before the first reply was posted.
  expect(await stageOf(job!)).toBe('released');
  const calls = h.fake.calls.slice(mark).map((c) => `${c.method} ${c.path}`);
  const jobCall = calls.indexOf(`GET /repos/${OWNER}/${REPO}/pulls/${PR}`);
  const firstReply = calls.indexOf(`POST /repos/${OWNER}/${REPO}/issues/${FLOOD}/comments`);
  expect(jobCall).toBeGreaterThanOrEqual(0);
  expect(firstReply).toBeGreaterThan(jobCall);
  // Three replies: one to mallory, two to the reviewer; the other two reviewer events wait.
  expect(floodReplies().map(toWhom)).toEqual(['mallory', REVIEWER, REVIEWER]);
  expect(first).toEqual({ advanced: 3 + 10 + 2, failed: 0, skipped: 2, unchanged: 0, young: 1 });
  expect((await readState(mallory[0]!))!.stage).toBe('done');
  for (const dir of mallory.slice(1)) {
    const s = (await readState(dir))!;
    expect(s.stage).toBe('ignored');
    expect(s.history.at(-1)!.note).toMatch(/^mallory may not send commands and was told so at /);
    expect(s.comments).toEqual({});
  }
  // Once the budget is spent, further events are not even started: they stay as the server stored them.
  for (const dir of reviewer.slice(2)) expect(await readState(dir)).toBeUndefined();
  expect(await h.deps.jobdirs.pending()).toEqual([...reviewer.slice(2), job]);

  // The next tick posts the rest, each once; mallory hears nothing more within the hour.
  await runTick(deps);
  expect(floodReplies()).toHaveLength(5);
  for (const dir of reviewer) {
    const marker = `<!-- hpcbot:test:${path.basename(dir)}#g0:reply -->`;
    expect(floodReplies().filter((c) => c.body.endsWith(marker))).toHaveLength(1);
    expect((await readState(dir))!.stage).toBe('done');
  }
  now += 30 * 60_000;
  await commentOn(h, REPO, FLOOD, 'bot: help', 'Mallory');
  await runTick(deps);
  expect(floodReplies().filter((c) => c.body.startsWith(DENIED))).toHaveLength(1);

  // An hour after the reply, mallory is told again; on another PR, right away.
  now += 31 * 60_000;
  await commentOn(h, REPO, FLOOD, 'bot: help', 'mallory');
  await commentOn(h, REPO, 4, 'bot: help', 'mallory');
  await runTick(deps);
  expect(floodReplies().filter((c) => c.body.startsWith(DENIED))).toHaveLength(2);
  expect(h.fake.commentsOf(OWNER, REPO, 4).map(toWhom)).toEqual(['mallory']);
});

test('a reply over the budget, reached in a lane running alongside, stays queued untouched and goes out next tick', async () => {
  h = await startHarness();
  const deps = withPoller(h, { max_replies_per_tick: 1, concurrency: 2 }, () => new Date());
  // Two PRs, two lanes: both events start while one reply is left, so one of them finds it spent.
  const dirs = [
    await commentOn(h, REPO, 3, 'bot: help', REVIEWER),
    await commentOn(h, REPO, 4, 'bot: help', REVIEWER),
  ];
  const replies = () => [3, 4].flatMap((n) => h!.fake.commentsOf(OWNER, REPO, n));

  expect(await runTick(deps)).toEqual({ advanced: 1, failed: 0, skipped: 1, unchanged: 0, young: 0 });
  expect(replies()).toHaveLength(1);
  const states = await Promise.all(dirs.map(async (d) => (await readState(d))!));
  const deferred = dirs[states.findIndex((s) => s.stage === 'received')]!;
  expect(states.map((s) => s.stage).sort()).toEqual(['done', 'received']);
  const s = (await readState(deferred))!;
  expect(s).toMatchObject({ attempts: 0, comments: {} });
  expect(s.next_retry_at).toBeUndefined();
  expect(s.last_error).toBeUndefined();
  expect(await h.deps.jobdirs.pending()).toEqual([deferred]);

  expect(await runTick(deps)).toEqual({ advanced: 1, failed: 0, skipped: 0, unchanged: 0, young: 0 });
  for (const dir of dirs) {
    const marker = `<!-- hpcbot:test:${path.basename(dir)}#g0:reply -->`;
    expect(replies().filter((c) => c.body.endsWith(marker))).toHaveLength(1);
  }
  expect(await h.deps.jobdirs.pending()).toEqual([]);
});

test('pull requests advance side by side in the poller process: a slow git fetch for one holds up no other', async () => {
  h = await startHarness();
  const harness = h;
  for (const repo of ['aaa-slow', 'zzz-fast']) {
    const r = createPrRepo(harness.gitRoot, OWNER, repo, 1, PASSING_BOT);
    harness.fake.addPullRequest(OWNER, repo, { number: 1, headSha: r.headSha, baseSha: r.baseSha });
    await commentOn(harness, repo, 1, 'bot: build for:arch=zen4', REVIEWER);
  }
  await runTick(harness.deps);
  const jobOf = async (repo: string) => (await harness.deps.jobdirs.prJobDirs(OWNER, repo, 1))[0]!;
  const [slow, fast] = [await jobOf('aaa-slow'), await jobOf('zzz-fast')];
  expect([await stageOf(slow), await stageOf(fast)]).toEqual(['prepared', 'prepared']);

  // Between the poller and the fake: git requests for aaa-slow wait until zzz-fast is checked out.
  let held: 'until zzz-fast was checked out' | 'for 10 s' | undefined;
  proxy = http.createServer((req, res) => {
    void (async () => {
      if (req.url?.startsWith(`/${OWNER}/aaa-slow.git/`) && held === undefined) {
        const until = Date.now() + 10_000;
        const checkedOut = ['submitting', 'submitted', 'released'];
        while (!checkedOut.includes((await stageOf(fast)) ?? '') && Date.now() < until)
          await new Promise((r) => setTimeout(r, 50));
        held = Date.now() < until ? 'until zzz-fast was checked out' : 'for 10 s';
      }
      const upstream = http.request(
        `${harness.fake.url}${req.url}`,
        { method: req.method, headers: req.headers },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    })();
  });
  await new Promise<void>((r) => proxy!.listen(0, '127.0.0.1', r));
  const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  // The real poller process, talking to GitHub (and its git) through the proxy.
  const site = path.join(harness.root, 'site-through-proxy.yaml');
  const text = readFileSync(harness.config.source, 'utf8');
  writeFileSync(site, text.replace(`api_url: ${harness.fake.url}`, `api_url: ${proxyUrl}`));
  const polled = await runCli(['poll', '--once', '--config', site], {
    env: { HARNESS_GITHUB_TOKEN: 'ghp_harness', HPCBOT_LOG_FORMAT: 'json' },
  });
  expect(polled.code).toBe(0);
  const report = polled.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg: string; advanced?: number })
    .find((l) => l.msg === 'tick done');

  expect(held).toBe('until zzz-fast was checked out');
  // Each job goes from checkout to release in one go: three steps each.
  expect(report).toMatchObject({ advanced: 6, failed: 0, skipped: 0, unchanged: 0, young: 2 });
  expect([await stageOf(slow), await stageOf(fast)]).toEqual(['released', 'released']);
});

test('the lanes of a tick: one per pull request across months, in index order', () => {
  const root = '/jobdirs';
  const dirs = [
    '2025.01/o/r/pr_1/event_a',
    '2025.01/o/r/pr_1/event_a/run_000/zen4/eessi',
    '2025.01/o/r/pr_2/event_b',
    '2025.02/o/r/pr_1/event_c',
    '2025.02/o/other/pr_1/event_d',
    '2025.02/o/r/_repo/event_e',
  ].map((d) => ({ dir: path.join(root, d) }));
  expect(byPullRequest(root, dirs).map((lane) => lane.map((w) => path.basename(w.dir)))).toEqual([
    ['event_a', 'eessi', 'event_c'],
    ['event_b'],
    ['event_d'],
    ['event_e'],
  ]);
});

test('site.yaml: poller.concurrency and poller.max_replies_per_tick', () => {
  const base = 'instance: t\njobdirs: /j\n';
  const poller = parseConfig(
    `${base}poller:\n  concurrency: 2\n  max_replies_per_tick: 5\n`,
    's.yaml',
  ).poller;
  expect(poller).toMatchObject({ concurrency: 2, max_replies_per_tick: 5 });
  expect(() => parseConfig(`${base}poller:\n  max_replies_per_tick: 0\n`, 's.yaml')).toThrow(
    /poller\.max_replies_per_tick/,
  );
  expect(() => parseConfig(`${base}poller:\n  concurrency: 0\n`, 's.yaml')).toThrow(/poller\.concurrency/);
});
