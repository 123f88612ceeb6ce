/**
 * The server's ingest journal: records read back up to a torn tail, replay at start, dedup across the
 * journal and the stored events, and a kill -9 between the journal and the event dir (the real server,
 * HPCBOT_CRASH_POINT).
 */
import { randomUUID } from 'node:crypto';
import { jest } from '@jest/globals';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../src/config/config.js';
import {
  EVENT_FILE,
  INCOMING_DIR,
  buildEventDir,
  eventRecord,
  repairDeliveries,
  storeEvent,
  type EventRecord,
  type IncomingEvent,
} from '../src/ingest/eventStore.js';
import { Ingest, replayJournal } from '../src/ingest/ingest.js';
import { JOURNAL_DIR, Journal, decodeRecords, encodeRecord, readJournal } from '../src/ingest/journal.js';
import { createLogger } from '../src/log.js';
import { ingestOf, startServer, stopServer } from '../src/server.js';
import { JobDirs } from '../src/store/jobdirs.js';
import { newState, writeState } from '../src/store/state.js';
import { makeDelivery, payloads, send } from './support/payloads.js';
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

jest.setTimeout(60_000);

const SECRET = 'journal-test-secret-' + randomUUID();
const logger = createLogger('test', { level: 'silent' });

const temps: string[] = [];
afterEach(killAll);
afterAll(async () => {
  for (const dir of temps) await fs.rm(dir, { recursive: true, force: true });
});

async function freshJobdirs(): Promise<JobDirs> {
  const dir = await tempDir('hpcbot-journal-');
  temps.push(dir);
  const jobdirs = new JobDirs(path.join(dir, 'jobdirs'));
  await jobdirs.ensureBaseDirs();
  return jobdirs;
}

/** A real issue_comment on a PR, as the server hands it to the ingest. */
function incoming(delivery: string = randomUUID(), receivedAt = new Date()): IncomingEvent {
  const payload = payloads.commentOnPr();
  return {
    delivery,
    event: 'issue_comment',
    rawBody: Buffer.from(JSON.stringify(payload)),
    action: 'created',
    installationId: payload.installation?.id ?? null,
    headers: { 'x-github-delivery': delivery, 'x-github-event': 'issue_comment' },
    owner: payload.repository!.owner.login,
    repo: payload.repository!.name,
    scope: { kind: 'pr', number: payload.issue!.number },
    receivedAt,
  };
}

const journalDir = (jobdirs: JobDirs) => path.join(jobdirs.root, JOURNAL_DIR);

/** Append records to a fresh journal and close it: the segment a server killed right then leaves. */
async function journalOf(jobdirs: JobDirs, records: EventRecord[]): Promise<string> {
  const journal = await Journal.open(journalDir(jobdirs));
  for (const r of records) await journal.append(r);
  const segment = await journal.close();
  return segment!.file;
}

async function journaled(jobdirs: JobDirs): Promise<string[]> {
  return (await readJournal(journalDir(jobdirs))).flatMap((seg) => seg.records.map((r) => r.delivery));
}

async function eventDirsOf(jobdirs: JobDirs, delivery: string): Promise<string[]> {
  return (await eventDirs(jobdirs.root)).filter((d) => path.basename(d) === `event_${delivery}`);
}

describe('a torn tail', () => {
  test.each([
    ['cut short in its last record', (seg: Buffer, lastAt: number) => seg.subarray(0, lastAt + 40)],
    [
      'one byte of its last record changed',
      (seg: Buffer, lastAt: number) => {
        const copy = Buffer.from(seg);
        copy[lastAt + 100] = copy[lastAt + 100]! ^ 0xff;
        return copy;
      },
    ],
    [
      'followed by zeros (a size extended before its data)',
      (seg: Buffer) => Buffer.concat([seg, Buffer.alloc(4096)]),
    ],
  ])(
    '%s: the records before it are built, the rest is dropped, and the journal is emptied',
    async (_name, damage) => {
      const jobdirs = await freshJobdirs();
      const records = [incoming(), incoming(), incoming()].map((ev) => eventRecord(jobdirs, ev));
      const file = await journalOf(jobdirs, records);
      const whole = await fs.readFile(file);
      const lastAt = whole.length - Buffer.concat(encodeRecord(records[2]!)).length;
      const damaged = damage(whole, lastAt);
      await fs.writeFile(file, damaged);
      const intact = damaged.length > whole.length ? 3 : 2;

      const read = decodeRecords(damaged);
      expect(read.records.map((r) => r.delivery)).toEqual(records.slice(0, intact).map((r) => r.delivery));
      expect(read.droppedBytes).toBe(damaged.length - (intact === 3 ? whole.length : lastAt));
      expect(Buffer.concat(read.records[0]!.content).equals(Buffer.concat(records[0]!.content))).toBe(true);

      const report = await replayJournal(jobdirs);
      expect(report.built).toEqual(records.slice(0, intact).map((r) => r.delivery));
      expect(report.tornTails).toEqual([{ file, bytes: read.droppedBytes }]);
      for (const r of records.slice(0, intact)) {
        const [dir] = await eventDirsOf(jobdirs, r.delivery);
        expect(await fs.readFile(path.join(dir!, EVENT_FILE))).toEqual(Buffer.concat(r.content));
      }
      if (intact === 2) expect(await eventDirsOf(jobdirs, records[2]!.delivery)).toEqual([]);
      expect(await fs.readdir(journalDir(jobdirs))).toEqual([]);
      // repairDeliveries (the next step of a start) queues them.
      expect((await repairDeliveries(jobdirs)).queued).toHaveLength(intact);
    },
  );
});

describe('replay', () => {
  test('the server builds and queues what its journal holds before it listens; redeliveries are duplicates', async () => {
    const jobdirs = await freshJobdirs();
    const config = loadConfig(await writeSiteYaml(path.dirname(jobdirs.root), 0));
    const payload = payloads.prOpened();
    const d = makeDelivery('pull_request', payload, { secret: SECRET });
    const ev: IncomingEvent = {
      ...incoming(d.delivery),
      event: 'pull_request',
      rawBody: d.body,
      action: 'opened',
      scope: { kind: 'pr', number: payload.number as number },
    };
    await journalOf(jobdirs, [eventRecord(jobdirs, ev)]);

    const server = await startServer({ config, logger, secret: SECRET });
    try {
      const [dir] = await eventDirsOf(jobdirs, d.delivery);
      expect(dir).toBeDefined();
      expect(await jobdirs.pending()).toEqual([dir]);
      expect(await journaled(jobdirs)).toEqual([]);
      const addr = server.address();
      const url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/webhook`;
      expect(await send(url, d)).toMatchObject({
        status: 200,
        json: { delivery: d.delivery, duplicate: true },
      });
      await ingestOf(server).settled();
      expect(await eventDirsOf(jobdirs, d.delivery)).toEqual([dir]);
    } finally {
      await stopServer(server);
    }
  });

  test('a journaled delivery whose claim names another event dir was stored by someone else: left alone', async () => {
    const jobdirs = await freshJobdirs();
    const ev = incoming();
    const stored = await storeEvent(jobdirs, ev);
    const nextMonth = eventRecord(jobdirs, { ...ev, receivedAt: new Date(Date.now() + 40 * 86400_000) });
    expect(nextMonth.eventDir).not.toBe(jobdirs.relative(stored.eventDir));
    await journalOf(jobdirs, [nextMonth]);

    const report = await replayJournal(jobdirs);
    expect(report).toMatchObject({ built: [], present: [], claimedElsewhere: [ev.delivery] });
    expect(await eventDirsOf(jobdirs, ev.delivery)).toEqual([stored.eventDir]);
    expect(await journaled(jobdirs)).toEqual([]);
  });

  test('an event dir that does not match its record (cut short by a power loss) is rebuilt, unless the poller has it', async () => {
    const jobdirs = await freshJobdirs();
    const [torn, taken] = [eventRecord(jobdirs, incoming()), eventRecord(jobdirs, incoming())];
    for (const r of [torn, taken]) {
      const built = buildEventDir(jobdirs, r, { sync: false });
      await fs.truncate(path.join(built.eventDir, EVENT_FILE), 10);
    }
    const takenDir = jobdirs.resolve(taken.eventDir);
    await writeState(takenDir, newState('event', 'received', {}, new Date()));
    await journalOf(jobdirs, [torn, taken]);

    const report = await replayJournal(jobdirs);
    expect(report.present.sort()).toEqual([torn.delivery, taken.delivery].sort());
    const tornDir = jobdirs.resolve(torn.eventDir);
    expect(await fs.readFile(path.join(tornDir, EVENT_FILE))).toEqual(Buffer.concat(torn.content));
    expect(await fs.readdir(tornDir)).toEqual([EVENT_FILE]);
    expect((await fs.readFile(path.join(takenDir, EVENT_FILE))).length).toBe(10); // the poller's: untouched
    expect(await fs.readdir(path.join(jobdirs.root, INCOMING_DIR))).toEqual([]);
  });
});

test('a redelivery while the first copy is only in the journal is a duplicate, and the delivery is stored once', async () => {
  const jobdirs = await freshJobdirs();
  const ingest = new Ingest(jobdirs, { logger });
  const incomingDir = path.join(jobdirs.root, INCOMING_DIR);
  await fs.writeFile(incomingDir, 'in the way'); // event dirs cannot be built until it is gone
  const ev = incoming();
  const claim = path.join(jobdirs.deliveriesDir, ev.delivery);

  expect(await ingest.accept(ev)).toEqual({ duplicate: false });
  await new Promise((r) => setTimeout(r, 50)); // a build attempt fails meanwhile
  expect(ingest.trouble).toMatch(/building an event dir failed/);
  expect(await journaled(jobdirs)).toEqual([ev.delivery]);
  await expect(fs.access(claim)).rejects.toThrow();
  expect(await ingest.accept({ ...ev, receivedAt: new Date() })).toEqual({ duplicate: true });

  await fs.rm(incomingDir);
  await fs.mkdir(incomingDir);
  await ingest.settled(); // the retry builds it
  const [dir] = await eventDirsOf(jobdirs, ev.delivery);
  expect(await eventDirsOf(jobdirs, ev.delivery)).toEqual([dir]);
  expect(await jobdirs.pending()).toEqual([dir]);
  expect(await journaled(jobdirs)).toEqual([]);
  expect(ingest.trouble).toBeUndefined();
  // From now on the claim on disk answers.
  expect(await ingest.accept(incoming(ev.delivery))).toEqual({ duplicate: true });
  await ingest.close();
  expect(await eventDirsOf(jobdirs, ev.delivery)).toEqual([dir]);
  expect(await fs.readdir(journalDir(jobdirs))).toEqual([]);
});

test('more deliveries at once than the ingest holds unindexed: the surplus waits for room, and each is stored once', async () => {
  const jobdirs = await freshJobdirs();
  const ingest = new Ingest(jobdirs, { logger });
  const small = (i: number): IncomingEvent => ({
    ...incoming(),
    rawBody: Buffer.from(`{"n":${i}}`),
    scope: { kind: 'pr', number: 1 + (i % 7) },
  });
  const events = Array.from({ length: 4096 + 300 }, (_, i) => small(i)); // over MAX_PENDING_RECORDS
  const answers = await Promise.all(events.map((ev) => ingest.accept(ev)));
  expect(answers.every((a) => !a.duplicate)).toBe(true);
  await ingest.settled();
  const pending = await jobdirs.pending();
  expect(pending).toHaveLength(events.length);
  expect(new Set(pending.map((d) => path.basename(d)))).toEqual(
    new Set(events.map((e) => `event_${e.delivery}`)),
  );
  await ingest.close();
  expect(await fs.readdir(journalDir(jobdirs))).toEqual([]);
});

test('kill -9 between the journal and the event dir: no answer; the next start builds and queues it; its redelivery is a duplicate', async () => {
  const dir = await tempDir('hpcbot-journal-');
  temps.push(dir);
  const port = await freePort();
  const configFile = await writeSiteYaml(dir, port);
  const jobdirs = new JobDirs(path.join(dir, 'jobdirs'));
  const url = `http://127.0.0.1:${port}/webhook`;
  const start = async (crashPoint: string): Promise<Child> => {
    const child = spawnCli(['server', '--config', configFile], {
      env: { HPCBOT_TEST_WEBHOOK_SECRET: SECRET, HPCBOT_LOG_LEVEL: 'warn', HPCBOT_CRASH_POINT: crashPoint },
    });
    await Promise.race([
      waitForHttp(`http://127.0.0.1:${port}/healthz`),
      child.exited.then(() => {
        throw new Error(`server exited:\n${child.stdout()}\n${child.stderr()}`);
      }),
    ]);
    return child;
  };

  let server = await start('journal-committed');
  const d = makeDelivery('issue_comment', payloads.commentOnPr(), { secret: SECRET });
  await expect(send(url, d)).rejects.toThrow();
  expect((await server.exited).signal).toBe('SIGKILL');
  expect(await eventDirsOf(jobdirs, d.delivery)).toEqual([]);
  expect(await journaled(jobdirs)).toEqual([d.delivery]);

  server = await start('none');
  const [eventDir] = await eventDirsOf(jobdirs, d.delivery);
  expect(eventDir).toBeDefined();
  expect(await jobdirs.pending()).toEqual([eventDir]);
  const stored = JSON.parse(await fs.readFile(path.join(eventDir!, EVENT_FILE), 'utf8'));
  expect(stored.payload).toEqual(JSON.parse(d.body.toString('utf8')));
  expect(await send(url, d)).toMatchObject({ status: 200, json: { delivery: d.delivery, duplicate: true } });
  server.proc.kill('SIGTERM');
  expect((await server.exited).code).toBe(0);
  expect(await eventDirsOf(jobdirs, d.delivery)).toEqual([eventDir]);
  expect(await journaled(jobdirs)).toEqual([]);
});
