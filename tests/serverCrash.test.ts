/**
 * The real server as a child process (`node --import tsx src/cli/main.ts server`), killed with SIGKILL:
 * mid-stream at a random moment, and at each step of storing an event (HPCBOT_CRASH_POINT). After
 * the kill, every acknowledged delivery must be durable (in an event dir or in the ingest journal), no
 * event dir may be partial and no temp file may be visible as an event; after a restart, before any
 * redelivery, every acknowledged delivery is in an event dir and queued, and every redelivery is
 * stored exactly once.
 */
import { randomUUID } from 'node:crypto';
import { jest } from '@jest/globals';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { EVENT_FILE, INCOMING_DIR } from '../src/ingest/eventStore.js';
import { JOURNAL_DIR, readJournal } from '../src/ingest/journal.js';
import { JobDirs } from '../src/store/jobdirs.js';
import { makeDelivery, payloads, send, type Delivery, type Reply } from './support/payloads.js';
import {
  eventDirs,
  freePort,
  killAll,
  listFiles,
  spawnCli,
  tempDir,
  waitForHttp,
  writeSiteYaml,
  type Child,
} from './support/spawn.js';

const SECRET = 'crash-test-secret-' + randomUUID();
const ENV = { HPCBOT_TEST_WEBHOOK_SECRET: SECRET, HPCBOT_LOG_LEVEL: 'warn' };

jest.setTimeout(120_000);

const temps: string[] = [];
afterEach(killAll);
afterAll(async () => {
  for (const dir of temps) await fs.rm(dir, { recursive: true, force: true });
});

interface Setup {
  configFile: string;
  root: string;
  port: number;
  url: string;
}

async function setup(): Promise<Setup> {
  const dir = await tempDir('hpcbot-crash-');
  temps.push(dir);
  const port = await freePort();
  const configFile = await writeSiteYaml(dir, port);
  return { configFile, root: path.join(dir, 'jobdirs'), port, url: `http://127.0.0.1:${port}/webhook` };
}

async function startServer(s: Setup, env: Record<string, string> = {}): Promise<Child> {
  const child = spawnCli(['server', '--config', s.configFile], { env: { ...ENV, ...env } });
  await Promise.race([
    waitForHttp(`http://127.0.0.1:${s.port}/healthz`),
    child.exited.then(() => {
      throw new Error(`server exited:\n${child.stdout()}\n${child.stderr()}`);
    }),
  ]);
  return child;
}

const kinds = [
  () => ['pull_request', payloads.prOpened()] as const,
  () => ['pull_request', payloads.prSynchronize()] as const,
  () => ['issue_comment', payloads.commentOnPr()] as const,
  () => ['pull_request', payloads.prLabeled()] as const,
];

function delivery(i: number): Delivery {
  const [event, payload] = kinds[i % kinds.length]!();
  return makeDelivery(event, payload, { secret: SECRET });
}

/** The event dirs per delivery id. */
async function eventDirsById(root: string): Promise<Map<string, string[]>> {
  const byId = new Map<string, string[]>();
  for (const dir of await eventDirs(root)) {
    const id = path.basename(dir).slice('event_'.length);
    byId.set(id, [...(byId.get(id) ?? []), dir]);
  }
  return byId;
}

/** The delivery ids in the ingest journal. */
async function journaled(root: string): Promise<Set<string>> {
  const ids = new Set<string>();
  for (const seg of await readJournal(path.join(root, JOURNAL_DIR))) {
    for (const r of seg.records) ids.add(r.delivery);
  }
  return ids;
}

/** Retry `check` until it passes: the server builds and queues in the background after its answer. */
async function eventually(check: () => Promise<void>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** Invariants that hold at any moment, even right after a SIGKILL. */
async function expectConsistent(root: string, sent: Map<string, Delivery>): Promise<Map<string, string[]>> {
  const byId = await eventDirsById(root);
  for (const [id, dirs] of byId) {
    expect(sent.has(id)).toBe(true); // no event that nobody sent
    expect(dirs).toHaveLength(1); // never twice
    // Only event.json: no temp file or half-written staging dir is ever visible as an event.
    expect(await fs.readdir(dirs[0]!)).toEqual([EVENT_FILE]);
    const stored = JSON.parse(await fs.readFile(path.join(dirs[0]!, EVENT_FILE), 'utf8'));
    expect(stored.delivery).toBe(id);
    expect(stored.payload).toEqual(JSON.parse(sent.get(id)!.body.toString('utf8')));
  }
  // The pending-work index never points at an event that is not complete on disk.
  for (const dir of await new JobDirs(root).pending()) {
    expect(byId.get(path.basename(dir).slice('event_'.length))).toEqual([dir]);
  }
  // Temp files only ever live in .incoming, deliveries/ and queue/, never under a month dir.
  for (const file of await listFiles(root)) {
    if (path.basename(file).startsWith('.tmp-') || file.split(path.sep).some((p) => p.startsWith('.tmp-'))) {
      expect([INCOMING_DIR, 'deliveries', 'queue']).toContain(file.split(path.sep)[0]);
    }
  }
  return byId;
}

/** After recovery: each delivery stored exactly once and indexed exactly once. */
async function expectEachStoredOnce(root: string, sent: Map<string, Delivery>): Promise<void> {
  const byId = await expectConsistent(root, sent);
  expect([...byId.keys()].sort()).toEqual([...sent.keys()].sort());
  const queue = (await fs.readdir(new JobDirs(root).queueDir)).filter((n) => !n.startsWith('.tmp-'));
  for (const id of sent.keys()) expect(queue.filter((n) => n.endsWith(`event_${id}`))).toHaveLength(1);
  const pending = await new JobDirs(root).pending();
  expect(pending.sort()).toEqual([...byId.values()].flat().sort());
  expect(await fs.readdir(path.join(root, INCOMING_DIR))).toEqual([]);
  expect(await journaled(root)).toEqual(new Set());
}

test('kill -9 mid-stream: every acknowledged delivery is on disk, and redeliveries are recognised', async () => {
  const s = await setup();
  let server = await startServer(s);

  const TOTAL = 400;
  const KILL_AFTER = 60;
  const sent = new Map<string, Delivery>();
  const answers = new Map<string, Reply | Error>();
  let acked = 0;
  let next = 0;
  let killed = false;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  const worker = async () => {
    while (next < TOTAL) {
      const d = delivery(next++);
      sent.set(d.delivery, d);
      try {
        const reply = await send(s.url, d, { agent });
        answers.set(d.delivery, reply);
        if (reply.status >= 200 && reply.status < 300 && ++acked === KILL_AFTER && !killed) {
          killed = true;
          server.proc.kill('SIGKILL'); // while the other workers' deliveries are in flight
        }
      } catch (err) {
        answers.set(d.delivery, err as Error);
        if (killed) break; // the server is gone; the rest are "never sent"
      }
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  agent.destroy();
  expect(killed).toBe(true);
  await server.exited;

  const acknowledged = [...answers]
    .filter(([, r]) => !(r instanceof Error) && r.status < 300)
    .map(([id]) => id);
  const unanswered = [...sent.keys()].filter((id) => !acknowledged.includes(id));
  expect(acknowledged.length).toBeGreaterThanOrEqual(KILL_AFTER);
  expect(unanswered.length).toBeGreaterThan(0);
  for (const id of acknowledged)
    expect((answers.get(id) as Reply).json).toEqual({ delivery: id, stored: true });

  // Right after the kill: everything acknowledged is durable, in an event dir or still in the journal;
  // nothing half-written is visible.
  const afterKill = await expectConsistent(s.root, sent);
  const inJournal = await journaled(s.root);
  for (const id of acknowledged) expect(afterKill.has(id) || inJournal.has(id)).toBe(true);

  // Restart: before it answers anything, the server has built and queued every acknowledged delivery.
  server = await startServer(s);
  const afterStart = await expectConsistent(s.root, sent);
  const pending = await new JobDirs(s.root).pending();
  const contents = new Map<string, string>();
  for (const id of acknowledged) {
    expect(afterStart.get(id)).toHaveLength(1);
    expect(pending).toContain(afterStart.get(id)![0]);
    contents.set(id, await fs.readFile(path.join(afterStart.get(id)![0]!, EVENT_FILE), 'utf8'));
  }
  expect(await journaled(s.root)).toEqual(new Set());

  // Redeliver everything, as GitHub (or an operator) would.
  for (const id of acknowledged) {
    const reply = await send(s.url, sent.get(id)!);
    expect(reply.status).toBe(200);
    expect(reply.json).toEqual({ delivery: id, duplicate: true });
  }
  for (const id of unanswered) {
    const reply = await send(s.url, sent.get(id)!);
    // Stored now (202), or it had been stored just before the kill and its answer was lost (200).
    if (afterStart.has(id)) expect(reply.json).toEqual({ delivery: id, duplicate: true });
    else expect(reply.json).toEqual({ delivery: id, stored: true });
  }
  await eventually(() => expectEachStoredOnce(s.root, sent));
  for (const [id, text] of contents) {
    const dir = (await eventDirsById(s.root)).get(id)![0]!;
    expect(await fs.readFile(path.join(dir, EVENT_FILE), 'utf8')).toBe(text); // untouched
  }
  server.proc.kill('SIGTERM');
  expect((await server.exited).code).toBe(0);
});

/** Where the victim is after the kill: `lost` (never durable), `journaled` or `built` (in its event dir). */
type Left = 'lost' | 'journaled' | 'built';

describe.each<[string, string, boolean, Left]>([
  // point, when, answered before the kill (may be), where the delivery is after the kill
  ['journal-writing', 'before its journal record is written', false, 'lost'],
  ['journal-committed', 'with its journal record durable, before the answer', false, 'journaled'],
  ['store-staging', 'after the answer, while its event dir is staged', true, 'journaled'],
  ['store-claimed', 'after the answer and the claim, before the event dir is in place', true, 'journaled'],
  ['store-published', 'with the event dir in place, before the checkpoint', true, 'journaled'],
  ['ingest-synced', 'after the checkpoint syncfs, before the journal segment is deleted', true, 'journaled'],
  ['ingest-retired', 'after the journal segment is deleted, before indexing', true, 'built'],
  ['store-queued', 'after indexing', true, 'built'],
])('kill -9 at %s (%s)', (point, _when, mayAnswer, left) => {
  test('nothing partial is visible, an acknowledged delivery is never lost, and its redelivery is stored exactly once', async () => {
    const s = await setup();
    const sent = new Map<string, Delivery>();
    // Earlier deliveries, stored normally, must survive the crash untouched.
    let server = await startServer(s, { HPCBOT_CRASH_POINT: 'none' });
    for (let i = 0; i < 3; i++) {
      const d = delivery(i);
      sent.set(d.delivery, d);
      expect((await send(s.url, d)).status).toBe(202);
    }
    server.proc.kill('SIGTERM');
    expect((await server.exited).code).toBe(0);
    await expectEachStoredOnce(s.root, sent); // a stopped server has queued everything it answered

    server = await startServer(s, { HPCBOT_CRASH_POINT: point });
    const victim = delivery(3);
    sent.set(victim.delivery, victim);
    const answer = await send(s.url, victim).catch(() => undefined); // the process dies around it
    if (!mayAnswer) expect(answer).toBeUndefined();
    if (answer)
      expect(answer).toMatchObject({ status: 202, json: { delivery: victim.delivery, stored: true } });
    expect((await server.exited).signal).toBe('SIGKILL');
    const afterKill = await expectConsistent(s.root, sent);
    const inEventDir = ['store-published', 'ingest-synced', 'ingest-retired', 'store-queued'].includes(point);
    expect(afterKill.has(victim.delivery)).toBe(inEventDir);
    expect((await journaled(s.root)).has(victim.delivery)).toBe(left === 'journaled');

    server = await startServer(s);
    if (left !== 'lost') {
      // Built and queued before the server answers anything.
      const [dir] = (await eventDirsById(s.root)).get(victim.delivery) ?? [];
      expect(await new JobDirs(s.root).pending()).toContain(dir);
    }
    const reply = await send(s.url, victim);
    if (left === 'lost') {
      expect(reply).toMatchObject({ status: 202, json: { delivery: victim.delivery, stored: true } });
    } else {
      expect(reply).toMatchObject({ status: 200, json: { delivery: victim.delivery, duplicate: true } });
    }
    expect((await send(s.url, victim)).status).toBe(200); // and from now on a duplicate
    await eventually(() => expectEachStoredOnce(s.root, sent));
    server.proc.kill('SIGTERM');
    await server.exited;
  });
});
