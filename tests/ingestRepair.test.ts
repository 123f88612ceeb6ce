/**
 * Deliveries a killed server left half-published are settled when the server starts, before it
 * listens: GitHub does not redeliver them on its own. The half-published states are made by the real
 * server (`node --import tsx src/cli/main.ts server`) killed with SIGKILL at the steps of storing an event
 * (HPCBOT_CRASH_POINT), then a normal server is started on the same jobdirs.
 */
import { randomUUID } from 'node:crypto';
import { jest } from '@jest/globals';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { INCOMING_DIR } from '../src/ingest/eventStore.js';
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

test('on start the server queues complete events that were not queued, releases claims without an event, and drops staged dirs', async () => {
  dir = await tempDir('hpcbot-repair-');
  const port = await freePort();
  const configFile = await writeSiteYaml(dir, port);
  const url = `http://127.0.0.1:${port}/webhook`;
  const jobdirs = new JobDirs(path.join(dir, 'jobdirs'));
  const claimOf = (d: Delivery) => path.join(jobdirs.deliveriesDir, d.delivery);
  const dirOf = async (d: Delivery) => (await eventDirs(jobdirs.root)).filter((p) => p.endsWith(d.delivery));
  const exists = (p: string) =>
    fs.access(p).then(
      () => true,
      () => false,
    );

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

  // Three deliveries, each killed at another step of storing it. Each next start must repair what the
  // kill before it left, before it answers anything.
  const sendAndDie = async (d: Delivery) => {
    await expect(send(url, d)).rejects.toThrow();
    expect((await server.exited).signal).toBe('SIGKILL');
  };
  const incoming = () => fs.readdir(path.join(jobdirs.root, INCOMING_DIR));

  const published = comment(); // killed with its event dir in place, not in the index
  server = await startServer(configFile, port, 'store-published');
  await sendAndDie(published);
  const [publishedDir] = await dirOf(published);
  expect(publishedDir).toBeDefined();
  expect(await jobdirs.isQueued(publishedDir!)).toBe(false);

  const claimed = comment(); // killed with a claim and no event dir (its staged dir in .incoming)
  server = await startServer(configFile, port, 'store-claimed');
  expect(await jobdirs.isQueued(publishedDir!)).toBe(true);
  await sendAndDie(claimed);
  expect(await exists(claimOf(claimed))).toBe(true);
  expect(await dirOf(claimed)).toEqual([]);
  expect((await incoming()).length).toBe(1);

  const staging = comment(); // killed with a half-written staged dir in .incoming
  server = await startServer(configFile, port, 'store-staging');
  expect(await exists(claimOf(claimed))).toBe(false);
  expect(await incoming()).toEqual([]);
  await sendAndDie(staging);
  expect(await dirOf(staging)).toEqual([]);
  expect((await incoming()).length).toBe(1);

  server = await startServer(configFile, port);
  const [queuedDir] = await dirOf(queued);
  expect((await jobdirs.pending()).sort()).toEqual([publishedDir!, queuedDir!].sort());
  for (const d of [claimed, staging]) expect(await exists(claimOf(d))).toBe(false);
  expect(await incoming()).toEqual([]);
  // The queue entry is the claim's hard link, exactly as storeEvent makes it.
  const entry = await fs.stat(jobdirs.queueEntryPath(publishedDir!));
  expect(entry.ino).toBe((await fs.stat(claimOf(published))).ino);

  // Redeliveries: the released ones are stored as new, the completed one is a duplicate.
  for (const d of [claimed, staging]) {
    expect(await send(url, d)).toMatchObject({ status: 202, json: { delivery: d.delivery, stored: true } });
    expect(await dirOf(d)).toHaveLength(1);
  }
  expect(await send(url, published)).toMatchObject({
    status: 200,
    json: { delivery: published.delivery, duplicate: true },
  });
  server.proc.kill('SIGTERM');
  await server.exited;

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
