/**
 * Recovery of missed deliveries (ingest.mode: both, `hpcbot deliveries recover`) and a pulling poller
 * killed with SIGKILL in the middle of a page: every delivery stored exactly once.
 */
import { jest } from '@jest/globals';
import { promises as fs } from 'node:fs';
import type { Server } from 'node:http';
import path from 'node:path';
import pino from 'pino';
import { loadConfig } from '../src/config/config.js';
import { readEventFile } from '../src/ingest/eventStore.js';
import { readPullState } from '../src/ingest/pull.js';
import { createApp, ingestOf, startServer, stopServer } from '../src/server.js';
import { readHeartbeat } from '../src/store/heartbeat.js';
import { JobDirs } from '../src/store/jobdirs.js';
import { commentPayload, startAppSite, type AppSite } from './support/appSite.js';
import type { FakeDelivery } from './support/fakeGithub.js';
import { makeDelivery, send } from './support/payloads.js';
import { eventDirs, killAll, runCli, spawnCli } from './support/spawn.js';

jest.setTimeout(180_000);

const SECRET = 'recovery-test-secret';
let site: AppSite;

afterEach(async () => {
  await killAll();
  await site.stop();
});

/** Every stored event: guid → how many event dirs hold it, and its source. */
async function storedEvents(root: string): Promise<Map<string, { dirs: number; source?: string }>> {
  const out = new Map<string, { dirs: number; source?: string }>();
  for (const dir of await eventDirs(root)) {
    const ev = await readEventFile(dir);
    const seen = out.get(ev.delivery);
    out.set(ev.delivery, { dirs: (seen?.dirs ?? 0) + 1, ...(ev.source ? { source: ev.source } : {}) });
  }
  return out;
}

async function waitFor(cond: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 100));
  }
}

const fetchesOf = (ds: FakeDelivery[]) =>
  ds.flatMap((d) => site.fake.callsTo('GET', `/app/hook/deliveries/${d.id}`));

test('50 deliveries while the server was down are recovered in both mode; the 10 it stored are not fetched', async () => {
  site = await startAppSite('ingest:\n  mode: both\n  pull_interval: 1s\n');
  const config = loadConfig(site.siteYaml);
  const jobdirs = new JobDirs(config.jobdirs);
  await jobdirs.ensureBaseDirs();
  const logger = pino({ level: 'silent' });

  // The server up: 10 deliveries reach it (GitHub lists them as answered with 202).
  const app = createApp({ config, logger, secret: SECRET });
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const port = (server.address() as { port: number }).port;
  const answered: FakeDelivery[] = [];
  for (let i = 0; i < 10; i++) {
    const payload = commentPayload(`while up ${i}`);
    const d = makeDelivery('issue_comment', payload, { secret: SECRET });
    expect((await send(`http://127.0.0.1:${port}/webhook`, d)).status).toBe(202);
    answered.push(site.fake.addDelivery('issue_comment', payload, { guid: d.delivery, statusCode: 202 }));
  }
  await ingestOf(app).settled();
  await new Promise((r) => server.close(r));
  await ingestOf(app).close();

  // The server down: 50 deliveries fail to connect.
  const missed = Array.from({ length: 50 }, (_, i) =>
    site.fake.addDelivery('issue_comment', commentPayload(`while down ${i}`), { statusCode: 0 }),
  );

  spawnCli(['poll', '--config', site.siteYaml]);
  await waitFor(async () => (await readHeartbeat(jobdirs.root, 'poller'))?.ingest?.recovered === 50, 60_000);
  // A few more passes (pull and look-back) change nothing.
  const lists = () => site.fake.callsTo('GET', '/app/hook/deliveries').length;
  const after = lists();
  await waitFor(async () => lists() >= after + 2, 30_000);

  const stored = await storedEvents(jobdirs.root);
  expect(stored.size).toBe(60);
  expect([...stored.values()].every((s) => s.dirs === 1)).toBe(true);
  expect(missed.every((d) => stored.get(d.guid)?.source === 'pull')).toBe(true);
  expect(answered.every((d) => stored.get(d.guid) && stored.get(d.guid)!.source === undefined)).toBe(true);
  expect(fetchesOf(answered)).toHaveLength(0);
  expect(missed.every((d) => fetchesOf([d]).length === 1)).toBe(true);
  expect((await readPullState(jobdirs)).recovered).toBe(50);
  expect((await fs.readdir(jobdirs.deliveriesDir)).length).toBe(60);
});

test('`hpcbot deliveries recover` stores what is missing, once', async () => {
  site = await startAppSite('ingest:\n  mode: webhook\n');
  const ds = Array.from({ length: 5 }, (_, i) =>
    site.fake.addDelivery('issue_comment', commentPayload(`missed ${i}`), { statusCode: 502 }),
  );
  const first = await runCli(['deliveries', 'recover', '--config', site.siteYaml, '--since', '1h']);
  expect(first.stderr).toBe('');
  expect(first.stdout).toMatch(
    /looked at 5 deliveries \(1 pages\): 5 recovered and stored, 0 already stored/,
  );
  // One PR closed meanwhile: its event dir went to the trash, its claim stayed. Not brought back.
  const [trashed] = await eventDirs(site.jobdirs);
  await fs.rename(trashed!, path.join(site.tmp, 'trashed-event'));
  const again = await runCli(['deliveries', 'recover', '--config', site.siteYaml]);
  expect(again.stdout).toMatch(
    /looked at 5 deliveries \(1 pages\): 0 recovered and stored, 5 already stored/,
  );
  const stored = await storedEvents(site.jobdirs);
  expect(stored.size).toBe(4);
  expect([...stored.keys()].every((g) => ds.some((d) => d.guid === g))).toBe(true);
  expect((await readPullState(new JobDirs(site.jobdirs))).recovered).toBe(5);
});

test('after a restart of the server, a closed PR whose event dirs went to the trash is not stored again by a redelivery or a look-back', async () => {
  site = await startAppSite('ingest:\n  mode: webhook\n');
  const config = loadConfig(site.siteYaml);
  const jobdirs = new JobDirs(config.jobdirs);
  const logger = pino({ level: 'silent' });
  const start = async () => {
    const server = await startServer({
      config: { ...config, server: { ...config.server, port: 0 } },
      logger,
      secret: SECRET,
    });
    return { server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}/webhook` };
  };

  // Three commands on the PR reach the server and are stored (GitHub lists them as answered).
  let { server, url } = await start();
  const sent = Array.from({ length: 3 }, (_, i) => {
    const payload = commentPayload(`bot: build ${i}`);
    const d = makeDelivery('issue_comment', payload, { secret: SECRET });
    site.fake.addDelivery('issue_comment', payload, { guid: d.delivery, statusCode: 202 });
    return d;
  });
  for (const d of sent) expect((await send(url, d)).status).toBe(202);
  await stopServer(server);
  const claims = sent.map((d) => path.join(jobdirs.deliveriesDir, d.delivery));
  for (const c of claims) expect((await fs.stat(c)).mode & 0o777).toBe(0o644); // published

  // The PR is closed: the poller has answered its events (out of the index) and moves its event dirs
  // to the trash; the claims stay.
  for (const d of await jobdirs.pending()) await jobdirs.dequeue(d);
  const prDirs = new Set((await eventDirs(jobdirs.root)).map((d) => path.dirname(d)));
  expect(prDirs.size).toBe(1);
  await fs.rename([...prDirs][0]!, path.join(site.tmp, 'trash-pr_1'));
  expect(await eventDirs(jobdirs.root)).toEqual([]);

  // The server restarts (and settles half-published deliveries): the claims of the trashed events stay.
  ({ server, url } = await start());
  for (const c of claims)
    expect(
      await fs.stat(c).then(
        () => true,
        () => false,
      ),
    ).toBe(true);
  // A manual redelivery is a duplicate, not a new event.
  expect(await send(url, sent[0]!)).toMatchObject({ status: 200, json: { duplicate: true } });
  await ingestOf(server).settled();
  await stopServer(server);
  // A look-back over GitHub's deliveries brings nothing back.
  const recover = await runCli(['deliveries', 'recover', '--config', site.siteYaml, '--since', '1h']);
  expect(recover.stdout).toMatch(
    /looked at 3 deliveries \(1 pages\): 0 recovered and stored, 3 already stored/,
  );
  expect(await eventDirs(jobdirs.root)).toEqual([]);
  expect(await jobdirs.pending()).toEqual([]);
});

test('a pulling poller killed with SIGKILL mid-page loses nothing and stores nothing twice', async () => {
  site = await startAppSite('ingest:\n  mode: pull\n  pull_interval: 1s\n');
  const jobdirs = new JobDirs(site.jobdirs);
  const ds = Array.from({ length: 30 }, (_, i) =>
    site.fake.addDelivery('issue_comment', commentPayload(`no command here ${i}`)),
  );
  // Killed right after claiming the first delivery (its event dir not yet in place), then right after
  // storing one in a later run (the cursor not yet moved).
  for (const point of ['store-claimed', 'pull-stored', 'pull-stored']) {
    const crashed = spawnCli(['poll', '--config', site.siteYaml], { env: { HPCBOT_CRASH_POINT: point } });
    expect((await crashed.exited).signal).toBe('SIGKILL');
  }
  expect((await readPullState(jobdirs)).newestId).toBeUndefined();
  const claims = await fs.readdir(jobdirs.deliveriesDir);
  expect(claims.length).toBeGreaterThanOrEqual(2);

  spawnCli(['poll', '--config', site.siteYaml]);
  await waitFor(async () => (await readPullState(jobdirs)).newestId === ds.at(-1)!.id, 60_000);
  const stored = await storedEvents(jobdirs.root);
  expect([...stored.keys()].sort()).toEqual(ds.map((d) => d.guid).sort());
  expect([...stored.values()].every((s) => s.dirs === 1)).toBe(true);
  expect((await fs.readdir(jobdirs.deliveriesDir)).sort()).toEqual(ds.map((d) => d.guid).sort());
});
