/**
 * What a killed server left behind is settled when the server starts, before it listens: GitHub does not
 * redeliver on its own. The states are made by the real server (`node --import tsx src/cli/main.ts
 * server`) killed with SIGKILL at the steps of storing an event (HPCBOT_CRASH_POINT), plus the one a
 * killed in-process `storeEvent` (a tool) can leave; then a normal server is started on the same
 * jobdirs.
 */
import { randomUUID } from 'node:crypto';
import { jest } from '@jest/globals';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { INCOMING_DIR } from '../src/ingest/eventStore.js';
import { JOURNAL_DIR, readJournal } from '../src/ingest/journal.js';
import { JobDirs } from '../src/store/jobdirs.js';
import { newState, writeState } from '../src/store/state.js';
import { makeDelivery, payloads, send, type Delivery } from './support/payloads.js';
import {
  eventDirs,
  freePort,
  killAll,
  spawnCli,
  tempDir,
  waitForHttp,
  writeSiteYaml,
  type Child,
} from './support/spawn.js';

const SECRET = 'repair-test-secret-' + randomUUID();
const ENV = { HPCBOT_TEST_WEBHOOK_SECRET: SECRET, HPCBOT_LOG_LEVEL: 'warn' };

jest.setTimeout(120_000);

let dir: string;
afterEach(async () => {
  await killAll();
  await fs.rm(dir, { recursive: true, force: true });
});

async function startServer(configFile: string, port: number, crashPoint = 'none'): Promise<Child> {
  const child = spawnCli(['server', '--config', configFile], {
    env: { ...ENV, HPCBOT_CRASH_POINT: crashPoint },
  });
  await Promise.race([
    waitForHttp(`http://127.0.0.1:${port}/healthz`),
    child.exited.then(() => {
      throw new Error(`server exited:\n${child.stdout()}\n${child.stderr()}`);
    }),
  ]);
  return child;
}

function comment(): Delivery {
  return makeDelivery('issue_comment', payloads.commentOnPr(), { secret: SECRET });
}

/** Send a delivery to a server that dies around it (before or after its answer). */
async function sendAndDie(url: string, d: Delivery, server: Child): Promise<void> {
  await send(url, d).catch(() => undefined);
  expect((await server.exited).signal).toBe('SIGKILL');
}

test('on start the server builds what its journal holds, queues built event dirs that are not queued, releases claims without an event dir, and drops staged dirs', async () => {
  dir = await tempDir('hpcbot-repair-');
  const port = await freePort();
  const configFile = await writeSiteYaml(dir, port);
  const url = `http://127.0.0.1:${port}/webhook`;
  const jobdirs = new JobDirs(path.join(dir, 'jobdirs'));
  const claimOf = (d: { delivery: string }) => path.join(jobdirs.deliveriesDir, d.delivery);
  const dirOf = async (d: { delivery: string }) =>
    (await eventDirs(jobdirs.root)).filter((p) => p.endsWith(d.delivery));
  const exists = (p: string) =>
    fs.access(p).then(
      () => true,
      () => false,
    );
  const journaled = async () =>
    (await readJournal(path.join(jobdirs.root, JOURNAL_DIR))).flatMap((seg) =>
      seg.records.map((r) => r.delivery),
    );
  const incoming = () => fs.readdir(path.join(jobdirs.root, INCOMING_DIR));

  // Two deliveries stored normally; the poller has done the first one (state file, out of the index).
  let server = await startServer(configFile, port);
  const processed = comment();
  const queued = comment();
  for (const d of [processed, queued]) expect((await send(url, d)).status).toBe(202);
  server.proc.kill('SIGTERM');
  await server.exited;
  const [processedDir] = await dirOf(processed);
  await writeState(processedDir!, newState('event', 'done', {}, new Date()));
  await jobdirs.dequeue(processedDir!);

  // Killed after its journal segment was deleted, before indexing: built and durable, not queued.
  const retired = comment();
  server = await startServer(configFile, port, 'ingest-retired');
  await sendAndDie(url, retired, server);
  const [retiredDir] = await dirOf(retired);
  expect(retiredDir).toBeDefined();
  expect(await jobdirs.isQueued(retiredDir!)).toBe(false);
  expect(await journaled()).toEqual([]);

  // Killed while building: its claim is there and its staged dir, no event dir; the journal has it.
  const claimed = comment();
  server = await startServer(configFile, port, 'store-claimed');
  expect(await jobdirs.isQueued(retiredDir!)).toBe(true); // this start queued it, before listening
  await sendAndDie(url, claimed, server);
  expect(await exists(claimOf(claimed))).toBe(true);
  expect((await fs.stat(claimOf(claimed))).mode & 0o777).toBe(0o600); // claimed, not yet published
  expect(await dirOf(claimed)).toEqual([]);
  expect((await incoming()).length).toBe(1);
  expect(await journaled()).toEqual([claimed.delivery]);

  // A claim without an event dir and without a journal record: what an in-process storeEvent killed
  // after claiming leaves. Nothing was acknowledged for it, so it is released.
  const orphan = { delivery: randomUUID() };
  const nowhere = jobdirs.eventDir(
    new Date(),
    'acme',
    'software',
    { kind: 'pr', number: 7 },
    orphan.delivery,
  );
  // Claims are created private (0600) and made readable once their event dir is in place.
  await fs.writeFile(claimOf(orphan), jobdirs.relative(nowhere) + '\n', { mode: 0o600 });

  server = await startServer(configFile, port);
  const [queuedDir] = await dirOf(queued);
  const [claimedDir] = await dirOf(claimed);
  expect(claimedDir).toBeDefined();
  expect(jobdirs.resolve((await fs.readFile(claimOf(claimed), 'utf8')).trim())).toBe(claimedDir);
  expect((await fs.stat(claimOf(claimed))).mode & 0o777).toBe(0o644); // published
  expect((await jobdirs.pending()).sort()).toEqual([retiredDir!, queuedDir!, claimedDir!].sort());
  expect(await exists(claimOf(orphan))).toBe(false);
  expect(await incoming()).toEqual([]);
  expect(await journaled()).toEqual([]);
  // The queue entry is the claim's hard link, exactly as the server makes it.
  for (const [d, eventDir] of [
    [retired, retiredDir!],
    [claimed, claimedDir!],
  ] as const) {
    expect((await fs.stat(jobdirs.queueEntryPath(eventDir))).ino).toBe((await fs.stat(claimOf(d))).ino);
  }

  // Redeliveries: the acknowledged ones are duplicates; the released claim's delivery is stored as new.
  for (const d of [retired, claimed]) {
    expect(await send(url, d)).toMatchObject({
      status: 200,
      json: { delivery: d.delivery, duplicate: true },
    });
  }
  const orphanAgain = makeDelivery('issue_comment', payloads.commentOnPr(), {
    secret: SECRET,
    delivery: orphan.delivery,
  });
  expect(await send(url, orphanAgain)).toMatchObject({
    status: 202,
    json: { delivery: orphan.delivery, stored: true },
  });
  server.proc.kill('SIGTERM'); // a stopped server queues what it answered
  expect((await server.exited).code).toBe(0);
  expect(await dirOf(orphan)).toHaveLength(1);

  // Idempotent: a second start changes nothing.
  const snapshot = async () => ({
    deliveries: (await fs.readdir(jobdirs.deliveriesDir)).sort(),
    queue: (await fs.readdir(jobdirs.queueDir)).sort(),
  });
  const before = await snapshot();
  expect(before.deliveries).toHaveLength(5);
  expect(before.queue).toHaveLength(4); // all but the processed one
  server = await startServer(configFile, port);
  expect(await snapshot()).toEqual(before);
  server.proc.kill('SIGTERM');
  await server.exited;
});
