/**
 * The real server as a child process (`node --import tsx src/cli/main.ts server`), killed with SIGKILL:
 * mid-stream at a random moment, and at each step of storing an event (HPCBOT_CRASH_POINT). After
 * the kill, every acknowledged delivery must be on disk and parse, no temp file may be visible as an
 * event, and after a restart every redelivery is stored exactly once.
 */
import { randomUUID } from 'node:crypto';
import { jest } from '@jest/globals';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { EVENT_FILE, INCOMING_DIR } from '../src/ingest/eventStore.js';
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

  // Right after the kill: everything acknowledged is there, complete; nothing half-written is visible.
  const afterKill = await expectConsistent(s.root, sent);
  for (const id of acknowledged) expect(afterKill.get(id)).toHaveLength(1);
  const contents = new Map<string, string>();
  for (const id of acknowledged) {
    contents.set(id, await fs.readFile(path.join(afterKill.get(id)![0]!, EVENT_FILE), 'utf8'));
  }

  // Restart and redeliver everything, as GitHub (or an operator) would.
  server = await startServer(s);
  for (const id of acknowledged) {
    const reply = await send(s.url, sent.get(id)!);
    expect(reply.status).toBe(200);
    expect(reply.json).toEqual({ delivery: id, duplicate: true });
  }
  for (const id of unanswered) {
    const reply = await send(s.url, sent.get(id)!);
    // Stored now (202), or it had been stored just before the kill and its answer was lost (200).
    if (afterKill.has(id)) expect(reply.json).toEqual({ delivery: id, duplicate: true });
    else expect(reply.json).toEqual({ delivery: id, stored: true });
  }
  await expectEachStoredOnce(s.root, sent);
  for (const [id, text] of contents) {
    const dir = (await eventDirsById(s.root)).get(id)![0]!;
    expect(await fs.readFile(path.join(dir, EVENT_FILE), 'utf8')).toBe(text); // untouched
  }
  server.proc.kill('SIGTERM');
  expect((await server.exited).code).toBe(0);
});

describe.each([
  ['store-staging', 'while the event is being staged'],
  ['store-claimed', 'after claiming the delivery id, before the event dir is in place'],
  ['store-published', 'after the event dir is in place, before it is indexed'],
  ['store-queued', 'after indexing, before the answer'],
])('kill -9 at %s (%s)', (point) => {
  test('the delivery gets no answer, nothing partial is visible, and its redelivery is stored exactly once', async () => {
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
    await server.exited;

    server = await startServer(s, { HPCBOT_CRASH_POINT: point });
    const victim = delivery(3);
    sent.set(victim.delivery, victim);
    await expect(send(s.url, victim)).rejects.toThrow(); // the process died mid-request
    expect((await server.exited).signal).toBe('SIGKILL');
    const afterKill = await expectConsistent(s.root, sent);
    expect(afterKill.has(victim.delivery)).toBe(point === 'store-published' || point === 'store-queued');

    server = await startServer(s);
    const reply = await send(s.url, victim);
    if (afterKill.has(victim.delivery)) {
      expect(reply).toMatchObject({ status: 200, json: { delivery: victim.delivery, duplicate: true } });
    } else {
      expect(reply).toMatchObject({ status: 202, json: { delivery: victim.delivery, stored: true } });
    }
    expect((await send(s.url, victim)).status).toBe(200); // and from now on a duplicate
    await expectEachStoredOnce(s.root, sent);
    server.proc.kill('SIGTERM');
    await server.exited;
  });
});
