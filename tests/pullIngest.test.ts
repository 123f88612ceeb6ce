/**
 * Pull ingest (ingest.mode: pull): deliveries that exist only in GitHub's list of the App's deliveries
 * (the fake's GET /app/hook/deliveries) are stored like the server stores webhooks, and acted on.
 */
import { jest } from '@jest/globals';
import { createSign, generateKeyPairSync } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { createDeliveries } from '../src/adapters/github/deliveries.js';
import { loadConfig, parseConfig, type Config } from '../src/config/config.js';
import { checkSite } from '../src/config/siteCheck.js';
import { readEventFile } from '../src/ingest/eventStore.js';
import { pullNew, readPullState, type PullDeps } from '../src/ingest/pull.js';
import { JobDirs } from '../src/store/jobdirs.js';
import { readHeartbeat } from '../src/store/heartbeat.js';
import { commentPayload, startAppSite, OWNER, PR, REPO, type AppSite } from './support/appSite.js';
import { eventDirs, killAll, spawnCli } from './support/spawn.js';

jest.setTimeout(180_000);

const logger = pino({ level: 'silent' });
let site: AppSite;
let config: Config;
let jobdirs: JobDirs;

beforeEach(async () => {
  site = await startAppSite('ingest:\n  mode: pull\n  pull_interval: 1s\n');
  config = loadConfig(site.siteYaml);
  jobdirs = new JobDirs(config.jobdirs);
  await jobdirs.ensureBaseDirs();
});

afterEach(async () => {
  await killAll();
  await site.stop();
});

function deps(): PullDeps {
  const deliveries = createDeliveries(config, logger, {}, { retryBaseMs: 1, retries: 0, throttle: false });
  return { config, jobdirs, deliveries, logger, now: () => new Date() };
}

const deliveryCalls = () => site.fake.calls.filter((c) => c.path.startsWith('/app/hook/deliveries'));

test('a delivery is stored once, as the server would store it, with source: pull', async () => {
  const d = site.fake.addDelivery('issue_comment', commentPayload('bot: help'));
  const report = await pullNew(deps());
  expect(report).toMatchObject({ pages: 1, listed: 1, stored: 1 });

  const dirs = await eventDirs(jobdirs.root);
  expect(dirs.map((x) => path.basename(x))).toEqual([`event_${d.guid}`]);
  expect(dirs[0]).toContain(`${OWNER}/${REPO}/pr_${PR}/`);
  const stored = await readEventFile(dirs[0]!);
  expect(stored).toMatchObject({
    delivery: d.guid,
    event: 'issue_comment',
    action: 'created',
    source: 'pull',
  });
  expect(stored.headers['x-github-delivery']).toBe(d.guid);
  expect((stored.payload as { comment: { body: string } }).comment.body).toBe('bot: help');
  expect(await fs.readFile(path.join(jobdirs.deliveriesDir, d.guid), 'utf8')).toBe(
    jobdirs.relative(dirs[0]!) + '\n',
  );
  expect(await jobdirs.pending()).toEqual([dirs[0]]);
  expect((await readPullState(jobdirs)).newestId).toBe(d.id);
  // Every call was the App's, with its JWT: one listing, one fetch.
  expect(deliveryCalls().map((c) => `${c.method} ${c.path}`)).toEqual([
    'GET /app/hook/deliveries',
    `GET /app/hook/deliveries/${d.id}`,
  ]);
  expect(deliveryCalls().every((c) => /^bearer /i.test(c.auth ?? '') && c.status === 200)).toBe(true);

  // Idle: one call, the first page, nothing fetched.
  const before = site.fake.calls.length;
  expect(await pullNew(deps())).toMatchObject({ pages: 1, listed: 0, stored: 0 });
  expect(site.fake.calls.slice(before).map((c) => `${c.method} ${c.path}`)).toEqual([
    'GET /app/hook/deliveries',
  ]);

  // A redelivery has a new id and the same guid: listed, not fetched, not stored again.
  await deps().deliveries.redeliver(d.id);
  const afterRedeliver = site.fake.calls.length;
  expect(await pullNew(deps())).toMatchObject({ listed: 1, stored: 0, present: 1 });
  expect(site.fake.calls.slice(afterRedeliver).map((c) => c.path)).toEqual(['/app/hook/deliveries']);
  expect(await eventDirs(jobdirs.root)).toHaveLength(1);
});

test('after downtime it pages back to the horizon, oldest first; other events are not fetched', async () => {
  const old = site.fake.addDelivery('issue_comment', commentPayload('bot: help'), {
    deliveredAt: new Date(Date.now() - 4 * 86_400_000),
  });
  const fresh = Array.from({ length: 130 }, (_, i) =>
    i % 10 === 0
      ? site.fake.addDelivery('push', { ref: 'refs/heads/main' })
      : site.fake.addDelivery('issue_comment', commentPayload(`bot: help ${i}`)),
  );
  const report = await pullNew(deps());
  expect(report).toMatchObject({ pages: 2, listed: 130, stored: 117, ignored: 13 });
  const stored = new Set((await eventDirs(jobdirs.root)).map((d) => path.basename(d).slice('event_'.length)));
  expect(stored.has(old.guid)).toBe(false);
  expect(fresh.filter((d) => d.event === 'issue_comment').every((d) => stored.has(d.guid))).toBe(true);
  expect(site.fake.callsTo('GET', /^\/app\/hook\/deliveries\/\d+$/)).toHaveLength(117);
  // The second page came from the cursor in the first page's Link header.
  const lists = site.fake.callsTo('GET', '/app/hook/deliveries');
  expect(lists.map((c) => c.query)).toEqual([
    { per_page: '100' },
    { per_page: '100', cursor: `v1_${fresh[29]!.id}` },
  ]);
});

test('the fake answers deliveries only to a JWT signed by the App key', async () => {
  const list = (auth: string) =>
    fetch(`${site.fake.url}/app/hook/deliveries`, { headers: { authorization: auth } }).then((r) => r.status);
  const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const unsigned = `${b64({ alg: 'RS256', typ: 'JWT' })}.${b64({ iss: 4711, iat: now, exp: now + 60 })}`;
  const foreign = `${unsigned}.${createSign('RSA-SHA256').update(unsigned).sign(other).toString('base64url')}`;
  expect(await list(`Bearer ${foreign}`)).toBe(401);
  expect(await list('token ghs_not_an_app_jwt')).toBe(401);
  expect(await list('token ghp_personal')).toBe(401);
  expect((await pullNew(deps())).pages).toBe(1); // the bot's own JWT is accepted
});

test('poller process, no server: a `bot: build` delivery becomes a job and a reply; idle is one call per pass', async () => {
  const d = site.fake.addDelivery('issue_comment', commentPayload('bot: build for:arch=zen4'));
  spawnCli(['poll', '--config', site.siteYaml]);
  const comments = () => site.fake.commentsOf(OWNER, REPO, PR).map((c) => c.body);
  await waitFor(() => comments().some((b) => /\|finished\|/.test(b)), 90_000);
  expect(
    comments().filter((b) => b.includes('- received bot command `build for:arch=zen4` from `alice`')),
  ).toHaveLength(1);
  expect(comments().find((b) => b.startsWith('New job on instance `test`'))).toMatch(/:grin: SUCCESS/);
  const dirs = await eventDirs(jobdirs.root);
  expect(dirs.map((x) => path.basename(x))).toEqual([`event_${d.guid}`]);
  expect((await readEventFile(dirs[0]!)).source).toBe('pull');
  expect((await jobdirs.prJobDirs(OWNER, REPO, PR)).length).toBe(1);

  // Idle: from here on each pass is exactly one listing of the first page.
  const from = deliveryCalls().length;
  await waitFor(() => deliveryCalls().length >= from + 3, 30_000);
  const idle = deliveryCalls().slice(from);
  expect(idle.every((c) => c.method === 'GET' && c.path === '/app/hook/deliveries')).toBe(true);
  expect(idle.every((c) => c.query.cursor === undefined)).toBe(true);
  const beat = await readHeartbeat(jobdirs.root, 'poller');
  expect(beat?.ingest).toMatchObject({ mode: 'pull' });
  expect(beat?.ingest?.lagMs).toBeGreaterThanOrEqual(0);
});

async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('ingest settings', () => {
  const yaml = (ingest: string) => `instance: t\njobdirs: j\ngithub:\n  token_env: T\n${ingest}`;

  test('durations take units; a bad one is an error at its key and line', () => {
    const c = parseConfig(yaml('ingest:\n  mode: both\n  pull_interval: 2m\n  horizon: 1d\n'), 'site.yaml');
    expect(c.ingest).toEqual({ mode: 'both', pull_interval: 120, horizon: 86_400, reconcile_interval: 600 });
    expect(c.health.alert_after).toBe(600);
    expect(() => parseConfig(yaml('ingest:\n  pull_interval: 15x\n'), 'site.yaml')).toThrow(
      /site\.yaml:6.*ingest\.pull_interval/,
    );
  });

  test('pull without a GitHub App is refused by the config check, with what to do', async () => {
    const c = parseConfig(yaml('ingest:\n  mode: pull\n'), path.join(site.tmp, 'other.yaml'));
    const { errors } = await checkSite(c, { T: 'ghp_x' });
    expect(errors).toContainEqual({
      keyPath: 'ingest.mode',
      message: expect.stringContaining('set github.app_id and github.private_key_file') as unknown as string,
    });
  });
});
