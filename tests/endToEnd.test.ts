/**
 * Real @octokit/webhooks-examples payloads, signed, through the real webhook server and then the
 * poller, to the exact comments on the (fake) GitHub: the whole path a reviewer's action takes.
 */
import type { Server } from 'node:http';
import { createApp, ingestOf } from '../src/server.js';
import { runTick } from '../src/poller.js';
import { makeDelivery, payloads, send } from './support/payloads.js';
import {
  INSTALLATION,
  OWNER,
  PR,
  REPO,
  REVIEWER,
  openPr,
  startHarness,
  type Harness,
} from './support/botHarness.js';
import { PASSING_BOT } from './support/prRepo.js';

const SECRET = 'e2e-webhook-secret';
let h: Harness;
let server: Server;
let url: string;
/** Until the server's ingest has queued every acknowledged delivery (it acknowledges once journaled). */
let settled: () => Promise<void>;

beforeEach(async () => {
  h = await startHarness();
  const app = createApp({ config: h.config, logger: h.deps.logger, secret: SECRET });
  settled = () => ingestOf(app).settled();
  server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const addr = server.address();
  url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}${h.config.server.webhook_path}`;
});

afterEach(async () => {
  await new Promise((r) => server.close(r));
  await h.stop();
});

function onOurPr<T extends Record<string, unknown>>(payload: T): T {
  const p = payload as Record<string, unknown> & {
    repository: { owner: { login: string }; name: string };
    pull_request?: { number: number };
    issue?: { number: number };
    number?: number;
  };
  p.repository.owner.login = OWNER;
  p.repository.name = REPO;
  p.installation = { id: INSTALLATION, node_id: `I_fake${INSTALLATION}` };
  if (p.pull_request) p.pull_request.number = PR;
  if (p.issue) p.issue.number = PR;
  if (p.number !== undefined) p.number = PR;
  return payload;
}

test('a signed PR comment with commands comes back as one reply on the PR', async () => {
  const p = onOurPr(payloads.commentOnPr());
  Object.assign(p.comment as object, {
    body: 'Looks good.\nbot: help\nbot: frobnicate\n',
    user: { ...(p.comment as { user: object }).user, login: REVIEWER },
  });
  const reply = await send(url, makeDelivery('issue_comment', p, { secret: SECRET }));
  expect(reply.status).toBe(202);
  await settled();
  await runTick(h.deps);

  const posted = h.fake.callsTo('POST', `/repos/${OWNER}/${REPO}/issues/${PR}/comments`);
  expect(posted).toHaveLength(1);
  const body = (posted[0]!.body as { body: string }).body;
  expect(body).toMatch(/^<details>\n<summary>Updates by the bot instance <code>test<\/code>/);
  expect(body).toContain('- received bot command `help` from `reviewer1`');
  expect(body).toContain('- received bot command `frobnicate` from `reviewer1`');
  expect(body).toContain('unknown command `frobnicate`');
  expect(body).toContain('`bot: build [on:arch=<cpu>[,accel=<gpu>]] for:arch=<cpu>');
  expect(body.split('\n').some((l) => /^bot:[ ]?/.test(l.trim()))).toBe(false);
  expect(await h.deps.jobdirs.pending()).toEqual([]);
});

test('a redelivered comment is acknowledged as a duplicate and answered once', async () => {
  const p = onOurPr(payloads.commentOnPr());
  Object.assign(p.comment as object, {
    body: 'bot: show_config',
    user: { ...(p.comment as { user: object }).user, login: REVIEWER },
  });
  const d = makeDelivery('issue_comment', p, { secret: SECRET });
  expect((await send(url, d)).status).toBe(202);
  await settled();
  await runTick(h.deps);
  expect((await send(url, d)).json).toEqual({ delivery: d.delivery, duplicate: true });
  await runTick(h.deps);
  const posted = h.fake.callsTo('POST', `/repos/${OWNER}/${REPO}/issues/${PR}/comments`);
  expect(posted).toHaveLength(1);
  const body = (posted[0]!.body as { body: string }).body;
  expect(body).toContain('Instance `test` is configured to build on:');
  expect(body).toContain(
    '- node type `zen4`: OS `linux`, CPU architecture `x86_64/amd/zen4`, repositories `eessi-test`',
  );
});

test('the bot:build label gets the hint; a build command then runs a job to its result', async () => {
  openPr(h, PASSING_BOT);
  const labeled = onOurPr(payloads.prLabeled());
  (labeled.label as { name: string }).name = 'bot:build';
  (labeled.sender as { login: string }).login = REVIEWER;
  expect((await send(url, makeDelivery('pull_request', labeled, { secret: SECRET }))).status).toBe(202);
  const comment = onOurPr(payloads.commentOnPr());
  Object.assign(comment.comment as object, {
    body: 'bot: build for:arch=zen4',
    user: { ...(comment.comment as { user: object }).user, login: REVIEWER },
  });
  expect((await send(url, makeDelivery('issue_comment', comment, { secret: SECRET }))).status).toBe(202);
  await settled();

  for (let i = 0; i < 40 && (await h.deps.jobdirs.pending()).length > 0; i++) {
    await runTick(h.deps);
    await new Promise((r) => setTimeout(r, 200));
  }
  const bodies = h.fake.commentsOf(OWNER, REPO, PR).map((c) => c.body);
  expect(bodies.filter((b) => b.startsWith('Handling the label'))).toHaveLength(1);
  expect(bodies.find((b) => b.startsWith('Handling the label'))).toMatch(
    /^Handling the label 'bot:build' is disabled on this instance\. Use the command `bot: build \[FILTER\]\*` instead\./,
  );
  const job = bodies.find((b) => b.startsWith('New job on instance `test`'));
  expect(job).toMatch(/\|finished\|.*:grin: SUCCESS/);
  expect(job).toMatch(/\|test result\|:grin: SUCCESS tests passed\|/);
});
