/**
 * The webhook endpoint over real HTTP, with real payloads from @octokit/webhooks-examples, against a
 * temp jobdirs. What is on disk is checked after every kind of request.
 */
import { promises as fs } from 'node:fs';
import type { Server } from 'node:http';
import path from 'node:path';
import { loadConfig, type Config } from '../src/config/config.js';
import { EVENT_FILE, INCOMING_DIR, storeEvent, type IncomingEvent } from '../src/ingest/eventStore.js';
import { JobDirs, monthDir } from '../src/store/jobdirs.js';
import { createLogger } from '../src/log.js';
import { loadWebhookSecret } from '../src/config/secrets.js';
import { MAX_BODY_BYTES, createApp, ingestOf, startServer, stopServer } from '../src/server.js';
import { example, get, makeDelivery, payloads, post, send, sign, type Delivery } from './support/payloads.js';
import { eventDirs, listFiles, tempDir as makeTempDir, writeSiteYaml } from './support/spawn.js';

const SECRET = 'test-webhook-secret-6d1f0c';
const logger = createLogger('test', { level: 'silent' });

interface Harness {
  url: string;
  base: string;
  root: string;
  config: Config;
  server: Server;
  /** Until every delivery acknowledged so far is built, durable and queued (the ingest journal's job). */
  settled(): Promise<void>;
}

const harnesses: Harness[] = [];
const temps: string[] = [];

async function tempDir(): Promise<string> {
  const dir = await makeTempDir('hpcbot-server-');
  temps.push(dir);
  return dir;
}

async function startHarness(opts: { secret?: string; insecure?: boolean } = {}): Promise<Harness> {
  const dir = await tempDir();
  const config = loadConfig(await writeSiteYaml(dir, 0));
  const server = await startServer({
    config,
    logger,
    secret: 'secret' in opts ? opts.secret : SECRET,
    insecureSkipSignature: opts.insecure,
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const base = `http://127.0.0.1:${port}`;
  const h = {
    url: `${base}/webhook`,
    base,
    root: config.jobdirs,
    config,
    server,
    settled: () => ingestOf(server).settled(),
  };
  harnesses.push(h);
  return h;
}

afterAll(async () => {
  for (const h of harnesses) await stopServer(h.server);
  for (const dir of temps) await fs.rm(dir, { recursive: true, force: true });
});

/** The files a fresh server has: none (only the empty base directories, and its lock). */
async function storedFiles(h: Harness): Promise<string[]> {
  await h.settled();
  return (await listFiles(h.root)).filter((f) => f !== path.join('locks', 'server.lock'));
}

function signed(event: string, payload: unknown, extra: Parameters<typeof makeDelivery>[2] = {}): Delivery {
  return makeDelivery(event, payload, { secret: SECRET, ...extra });
}

function expectedEventDir(h: Harness, owner: string, repo: string, scope: string, delivery: string): string {
  return path.join(h.root, monthDir(new Date()), owner, repo, scope, `event_${delivery}`);
}

describe('storing real deliveries', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });

  test.each([
    ['opened', payloads.prOpened],
    ['labeled', payloads.prLabeled],
    ['closed', payloads.prClosed],
    ['synchronize', payloads.prSynchronize],
  ])('pull_request %s is stored under pr_<N>, indexed and claimed', async (action, make) => {
    const payload = make();
    expect(payload.action).toBe(action);
    const d = signed('pull_request', payload);
    const reply = await send(h.url, d);
    expect(reply.status).toBe(202);
    expect(reply.json).toEqual({ delivery: d.delivery, stored: true });
    await h.settled();

    const dir = expectedEventDir(h, 'Codertocat', 'Hello-World', `pr_${payload.number}`, d.delivery);
    expect(await fs.readdir(dir)).toEqual([EVENT_FILE]);
    const stored = JSON.parse(await fs.readFile(path.join(dir, EVENT_FILE), 'utf8'));
    expect(stored.action).toBe(action);
    expect(stored.payload).toEqual(payload);

    const jobdirs = new JobDirs(h.root);
    expect(await jobdirs.pending()).toContain(dir);
    expect(await jobdirs.isQueued(dir)).toBe(true);
    const claim = await fs.readFile(path.join(jobdirs.deliveriesDir, d.delivery), 'utf8');
    expect(jobdirs.resolve(claim.trim())).toBe(dir);
  });

  test('event.json holds exactly the envelope, and the payload byte for byte as sent', async () => {
    const payload = payloads.prOpened();
    // A body GitHub could send but JSON.stringify would not produce: indentation, escapes, non-ASCII.
    (payload.pull_request as { title: string }).title = 'Fix \u00e9t\u00e9 \u{1F680} "quotes" \\ </script>';
    const body = JSON.stringify(payload, null, 2).replace('"number": 2', '"number":   2') + '\n';
    const d = signed('pull_request', body, { headers: { 'x-github-hook-id': '42', 'x-other': 'no' } });
    const before = Date.now();
    const reply = await send(h.url, d);
    expect(reply.status).toBe(202);
    await h.settled();

    const dir = expectedEventDir(h, 'Codertocat', 'Hello-World', 'pr_2', d.delivery);
    const text = await fs.readFile(path.join(dir, EVENT_FILE), 'utf8');
    const stored = JSON.parse(text);
    expect(Object.keys(stored)).toEqual([
      'delivery',
      'event',
      'action',
      'received_at',
      'installation_id',
      'headers',
      'payload',
    ]);
    expect(stored.delivery).toBe(d.delivery);
    expect(stored.event).toBe('pull_request');
    expect(stored.action).toBe('opened');
    expect(stored.installation_id).toBe(payload.installation!.id);
    const received = Date.parse(stored.received_at);
    expect(received).toBeGreaterThanOrEqual(before - 1000);
    expect(received).toBeLessThanOrEqual(Date.now() + 1000);
    // X-GitHub-* only: no signature, no user agent, no content type, no other header.
    expect(stored.headers).toEqual({
      'x-github-event': 'pull_request',
      'x-github-delivery': d.delivery,
      'x-github-hook-id': '42',
      'x-github-hook-installation-target-type': 'integration',
      'x-github-hook-installation-target-id': '12345',
    });
    // The payload is the body spliced in unchanged: the bytes after "payload": are the bytes sent.
    const raw = Buffer.from(text, 'utf8');
    const marker = Buffer.from('"payload":');
    const at = raw.indexOf(marker);
    expect(at).toBeGreaterThan(0);
    const spliced = raw.subarray(at + marker.length, raw.length - '}\n'.length);
    expect(spliced.equals(d.body)).toBe(true);
    expect(stored.payload).toEqual(JSON.parse(d.body.toString('utf8')));
  });

  test('an App-less delivery stores installation_id null', async () => {
    const payload = payloads.prOpened();
    delete payload.installation;
    const d = signed('pull_request', payload);
    expect((await send(h.url, d)).status).toBe(202);
    await h.settled();
    const dir = expectedEventDir(h, 'Codertocat', 'Hello-World', 'pr_2', d.delivery);
    const stored = JSON.parse(await fs.readFile(path.join(dir, EVENT_FILE), 'utf8'));
    expect(stored.installation_id).toBeNull();
  });

  test('issue_comment on a pull request is stored under the PR', async () => {
    const payload = payloads.commentOnPr();
    const d = signed('issue_comment', payload);
    const reply = await send(h.url, d);
    expect(reply.status).toBe(202);
    expect(reply.json).toEqual({ delivery: d.delivery, stored: true });
    await h.settled();
    const dir = expectedEventDir(h, 'Codertocat', 'Hello-World', `pr_${payload.issue!.number}`, d.delivery);
    const stored = JSON.parse(await fs.readFile(path.join(dir, EVENT_FILE), 'utf8'));
    expect(stored.event).toBe('issue_comment');
    expect(stored.action).toBe('created');
    expect(stored.payload.comment.body).toBe((payload.comment as { body: string }).body);
  });

  test('issue_comment on a plain issue and events the bot never acts on are acknowledged, not stored', async () => {
    const before = await storedFiles(h);
    for (const [event, payload] of [
      ['issue_comment', payloads.commentOnIssue()],
      ['push', payloads.push()],
      ['issues', example('issues', (x) => x.action === 'opened')],
    ] as const) {
      const d = signed(event, payload);
      const reply = await send(h.url, d);
      expect(reply.status).toBe(202);
      expect(reply.json).toMatchObject({ delivery: d.delivery, stored: false });
      expect(typeof reply.json.reason).toBe('string');
    }
    expect(await storedFiles(h)).toEqual(before);
  });

  test('a repository event is stored under _repo', async () => {
    const payload = payloads.repositoryRenamed();
    const d = signed('repository', payload);
    expect((await send(h.url, d)).status).toBe(202);
    await h.settled();
    const owner = payload.repository!.owner.login;
    const dir = expectedEventDir(h, owner, payload.repository!.name, '_repo', d.delivery);
    expect(await fs.readdir(dir)).toEqual([EVENT_FILE]);
  });

  test('ping answers 200 and stores nothing', async () => {
    const before = await storedFiles(h);
    const reply = await send(h.url, signed('ping', payloads.ping()));
    expect(reply.status).toBe(200);
    expect(await storedFiles(h)).toEqual(before);
  });

  test('a repository named .github (legal on GitHub) is stored', async () => {
    const payload = payloads.prOpened();
    payload.repository!.name = '.github';
    const d = signed('pull_request', payload);
    expect((await send(h.url, d)).status).toBe(202);
    await h.settled();
    const dir = expectedEventDir(h, 'Codertocat', '.github', 'pr_2', d.delivery);
    expect(await fs.readdir(dir)).toEqual([EVENT_FILE]);
  });

  test('no staged directory or temp file is left behind', async () => {
    await h.settled();
    expect(await fs.readdir(path.join(h.root, INCOMING_DIR))).toEqual([]);
    const files = await listFiles(h.root);
    expect(files.filter((f) => path.basename(f).startsWith('.tmp-'))).toEqual([]);
    for (const dir of await eventDirs(h.root)) expect(await fs.readdir(dir)).toEqual([EVENT_FILE]);
  });
});

describe('rejected deliveries write nothing', () => {
  let h: Harness;
  let empty: string[];
  beforeAll(async () => {
    h = await startHarness();
    empty = await storedFiles(h);
    expect(empty).toEqual([]); // a fresh server has only empty base directories
  });
  afterEach(async () => {
    expect(await storedFiles(h)).toEqual(empty);
  });

  test('missing signature: 401', async () => {
    const d = makeDelivery('pull_request', payloads.prOpened());
    const reply = await send(h.url, d);
    expect(reply.status).toBe(401);
    expect(reply.json.error).toMatch(/X-Hub-Signature-256/);
  });

  test('signature made with another secret: 401', async () => {
    const d = makeDelivery('pull_request', payloads.prOpened(), { secret: 'not-the-secret' });
    expect((await send(h.url, d)).status).toBe(401);
  });

  test('body changed after signing: 401', async () => {
    const d = signed('pull_request', payloads.prOpened());
    const tampered = Buffer.from(d.body.toString('utf8').replace('"number":2', '"number":3'));
    expect(tampered.equals(d.body)).toBe(false);
    expect((await post(h.url, tampered, d.headers)).status).toBe(401);
  });

  test.each([
    ['sha1 instead of sha256', (s: string) => s.replace('sha256=', 'sha1=')],
    ['upper-case hex', (s: string) => s.toUpperCase().replace('SHA256=', 'sha256=')],
    ['truncated', (s: string) => s.slice(0, -2)],
    ['garbage', () => 'sha256=zz'],
  ])('malformed signature (%s): 401', async (_name, mangle) => {
    const d = signed('pull_request', payloads.prOpened());
    const headers = { ...d.headers, 'x-hub-signature-256': mangle(d.headers['x-hub-signature-256']!) };
    expect((await post(h.url, d.body, headers)).status).toBe(401);
  });

  test('the signature is checked before the headers: bad signature and no event header is 401', async () => {
    const d = makeDelivery('pull_request', payloads.prOpened(), {
      secret: 'wrong',
      headers: { 'x-github-event': undefined },
    });
    expect((await send(h.url, d)).status).toBe(401);
  });

  test('missing X-GitHub-Event: 400', async () => {
    const d = signed('pull_request', payloads.prOpened(), { headers: { 'x-github-event': undefined } });
    const reply = await send(h.url, d);
    expect(reply.status).toBe(400);
    expect(reply.json.error).toMatch(/X-GitHub-Event/);
  });

  test('missing X-GitHub-Delivery: 400', async () => {
    const d = signed('pull_request', payloads.prOpened(), { headers: { 'x-github-delivery': undefined } });
    const reply = await send(h.url, d);
    expect(reply.status).toBe(400);
    expect(reply.json.error).toMatch(/X-GitHub-Delivery/);
  });

  test.each(['../../etc', 'a/b', 'x'.repeat(65), 'ünï', 'a.b'])(
    'a delivery id that is not a GUID-like name (%s): 400',
    async (id) => {
      const d = signed('pull_request', payloads.prOpened(), { headers: { 'x-github-delivery': id } });
      expect((await send(h.url, d)).status).toBe(400);
    },
  );

  test('an event name that is not one: 400', async () => {
    const d = signed('pull_request', payloads.prOpened(), { headers: { 'x-github-event': '../pull' } });
    expect((await send(h.url, d)).status).toBe(400);
  });

  test.each([
    ['malformed JSON', '{"action": "opened", '],
    ['a JSON array', '[1,2,3]'],
    ['a JSON string', '"pull_request"'],
    ['JSON null', 'null'],
  ])('%s (signed): 400', async (_name, body) => {
    const reply = await send(h.url, signed('pull_request', body));
    expect(reply.status).toBe(400);
  });

  test('an empty body (signed): 400', async () => {
    const d = signed('pull_request', '');
    const headers = { ...d.headers, 'x-hub-signature-256': sign(SECRET, '') };
    expect((await post(h.url, Buffer.alloc(0), headers)).status).toBe(400);
  });

  test('a form-encoded delivery (wrong webhook setting): 415', async () => {
    const d = signed('pull_request', `payload=${encodeURIComponent(JSON.stringify(payloads.prOpened()))}`, {
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect((await send(h.url, d)).status).toBe(415);
  });

  test('a compressed body is refused, not inflated: 415', async () => {
    const d = signed('pull_request', payloads.prOpened(), { headers: { 'content-encoding': 'gzip' } });
    expect((await send(h.url, d)).status).toBe(415);
  });

  test.each([
    ['owner', '..'],
    ['owner', '.hidden'],
    ['owner', 'a/b'],
    ['owner', 'a\\b'],
    ['owner', 'ünïcödé'],
    ['owner', 'a b'],
    ['owner', ''],
    ['owner', '-leading-hyphen'],
    ['owner', 'x'.repeat(40)],
    ['owner', 'nul\u0000byte'],
    ['owner', 'dot.ted'],
    ['repo', '..'],
    ['repo', '.'],
    ['repo', 'a/b'],
    ['repo', '../../../../tmp/x'],
    ['repo', 'a\\b'],
    ['repo', 'répo'],
    ['repo', 'new\nline'],
    ['repo', ''],
    ['repo', 'x'.repeat(101)],
  ])('hostile %s name %j: 400', async (which, name) => {
    const payload = payloads.prOpened();
    if (which === 'owner') payload.repository!.owner.login = name;
    else payload.repository!.name = name;
    const reply = await send(h.url, signed('pull_request', payload));
    expect(reply.status).toBe(400);
  });

  test.each([
    ['a string', '2/../../x'],
    ['negative', -1],
    ['fractional', 1.5],
    ['zero', 0],
    ['huge', 2 ** 60],
  ])('a PR number that is not a positive integer (%s): 400', async (_name, n) => {
    const payload = payloads.prOpened() as { number: unknown; pull_request: { number: unknown } };
    payload.number = n;
    payload.pull_request.number = n;
    expect((await send(h.url, signed('pull_request', payload, { hostile: true }))).status).toBe(400);
  });

  test('an issue_comment on a PR with a hostile repository name: 400', async () => {
    const payload = payloads.commentOnPr();
    payload.repository!.name = '..';
    expect((await send(h.url, signed('issue_comment', payload))).status).toBe(400);
  });

  test('a body over 25 MiB: 413 (with Content-Length), and the server carries on', async () => {
    const big = Buffer.alloc(MAX_BODY_BYTES + 1, 0x20);
    const d = signed('pull_request', big);
    expect((await send(h.url, d)).status).toBe(413);
    expect((await send(h.url, signed('ping', payloads.ping()))).status).toBe(200);
  });

  test('a body over 25 MiB: 413 (chunked, no length given)', async () => {
    const big = Buffer.alloc(MAX_BODY_BYTES + 1024 * 1024, 0x20);
    const d = signed('pull_request', big);
    expect((await send(h.url, d, { chunked: true })).status).toBe(413);
  });
});

describe('size limit', () => {
  test('a body of exactly 25 MiB is accepted and stored byte for byte', async () => {
    const h = await startHarness();
    const json = JSON.stringify(payloads.prSynchronize());
    const body = Buffer.alloc(MAX_BODY_BYTES, 0x20); // JSON allows trailing whitespace
    body.write(json, 0, 'utf8');
    const d = signed('pull_request', body);
    const reply = await send(h.url, d);
    expect(reply.status).toBe(202);
    await h.settled();
    const dir = expectedEventDir(h, 'Codertocat', 'Hello-World', 'pr_2', d.delivery);
    const raw = await fs.readFile(path.join(dir, EVENT_FILE));
    const marker = raw.indexOf('"payload":') + '"payload":'.length;
    expect(raw.subarray(marker, raw.length - 2).equals(body)).toBe(true);
  });
});

describe('redeliveries', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });

  test('a redelivery is 200 duplicate and leaves the stored file untouched', async () => {
    const d = signed('pull_request', payloads.prLabeled());
    expect((await send(h.url, d)).status).toBe(202);
    await h.settled();
    const file = path.join(expectedEventDir(h, 'Codertocat', 'Hello-World', 'pr_2', d.delivery), EVENT_FILE);
    const before = { stat: await fs.stat(file), text: await fs.readFile(file, 'utf8') };
    await new Promise((r) => setTimeout(r, 20)); // a rewrite would show in mtime and received_at

    const again = await send(h.url, d);
    expect(again.status).toBe(200);
    expect(again.json).toEqual({ delivery: d.delivery, duplicate: true });
    const after = await fs.stat(file);
    expect(after.ino).toBe(before.stat.ino);
    expect(after.mtimeMs).toBe(before.stat.mtimeMs);
    expect(await fs.readFile(file, 'utf8')).toBe(before.text);
    expect(await fs.readdir(path.join(h.root, INCOMING_DIR))).toEqual([]);
  });

  test('20 concurrent identical deliveries: exactly one 202, one event dir, one queue entry', async () => {
    const d = signed('issue_comment', payloads.commentOnPr());
    const replies = await Promise.all(Array.from({ length: 20 }, () => send(h.url, d)));
    const statuses = replies.map((r) => r.status).sort();
    expect(statuses).toEqual([...Array(19).fill(200), 202]);
    for (const r of replies.filter((x) => x.status === 200)) expect(r.json.duplicate).toBe(true);
    await h.settled();

    const dirs = (await eventDirs(h.root)).filter((p) => p.endsWith(`event_${d.delivery}`));
    expect(dirs).toHaveLength(1);
    expect(await fs.readdir(dirs[0]!)).toEqual([EVENT_FILE]);
    const queue = await fs.readdir(new JobDirs(h.root).queueDir);
    expect(queue.filter((n) => n.includes(d.delivery))).toHaveLength(1);
    expect(await fs.readdir(path.join(h.root, INCOMING_DIR))).toEqual([]);
  });

  test('50 concurrent different deliveries are all stored, each once', async () => {
    const ds = Array.from({ length: 50 }, (_, i) =>
      signed('pull_request', i % 2 ? payloads.prOpened() : payloads.prClosed()),
    );
    const replies = await Promise.all(ds.map((d) => send(h.url, d)));
    expect(replies.map((r) => r.status)).toEqual(Array(50).fill(202));
    await h.settled();
    const all = await eventDirs(h.root);
    for (const d of ds) expect(all.filter((p) => p.endsWith(`event_${d.delivery}`))).toHaveLength(1);
    const pending = await new JobDirs(h.root).pending();
    for (const d of ds) expect(pending.some((p) => p.endsWith(`event_${d.delivery}`))).toBe(true);
  });
});

describe('storeEvent after a crash midway', () => {
  function incoming(delivery: string, receivedAt = new Date()): IncomingEvent {
    const payload = payloads.prOpened();
    return {
      delivery,
      event: 'pull_request',
      rawBody: JSON.stringify(payload),
      action: 'opened',
      installationId: 1,
      headers: { 'x-github-delivery': delivery },
      owner: 'Codertocat',
      repo: 'Hello-World',
      scope: { kind: 'pr', number: 2 },
      receivedAt,
    };
  }

  test('a claim without its event dir (killed after claiming): the redelivery stores it, where the claim says', async () => {
    const root = path.join(await tempDir(), 'jobdirs');
    const jobdirs = new JobDirs(root);
    await jobdirs.ensureBaseDirs();
    const lastMonth = new Date(Date.UTC(2026, 0, 31, 23, 59));
    const claimedDir = jobdirs.eventDir(
      lastMonth,
      'Codertocat',
      'Hello-World',
      { kind: 'pr', number: 2 },
      'abc-1',
    );
    // As buildEventDir claims: private (0600) until its event dir is in place.
    await fs.writeFile(path.join(jobdirs.deliveriesDir, 'abc-1'), jobdirs.relative(claimedDir) + '\n', {
      mode: 0o600,
    });

    const result = await storeEvent(jobdirs, incoming('abc-1', new Date(Date.UTC(2026, 1, 1, 0, 1))));
    expect(result).toEqual({ duplicate: false, eventDir: claimedDir });
    expect(await fs.readdir(claimedDir)).toEqual([EVENT_FILE]);
    expect(await jobdirs.pending()).toEqual([claimedDir]);
    // Nothing in the month the redelivery arrived in.
    expect(await fs.readdir(root)).not.toContain('2026.02');
  });

  test('an event dir without its queue entry (killed before indexing): the redelivery indexes it', async () => {
    const root = path.join(await tempDir(), 'jobdirs');
    const jobdirs = new JobDirs(root);
    await jobdirs.ensureBaseDirs();
    const first = await storeEvent(jobdirs, incoming('abc-2'));
    await jobdirs.dequeue(first.eventDir);
    const text = await fs.readFile(path.join(first.eventDir, EVENT_FILE), 'utf8');

    const again = await storeEvent(jobdirs, incoming('abc-2'));
    expect(again).toEqual({ duplicate: true, eventDir: first.eventDir });
    expect(await jobdirs.pending()).toEqual([first.eventDir]);
    expect(await fs.readFile(path.join(first.eventDir, EVENT_FILE), 'utf8')).toBe(text);
  });

  test('dequeuing an event leaves its claim, so a later redelivery is still a duplicate', async () => {
    const root = path.join(await tempDir(), 'jobdirs');
    const jobdirs = new JobDirs(root);
    await jobdirs.ensureBaseDirs();
    const first = await storeEvent(jobdirs, incoming('abc-3'));
    await jobdirs.dequeue(first.eventDir);
    const claim = await fs.readFile(path.join(jobdirs.deliveriesDir, 'abc-3'), 'utf8');
    expect(jobdirs.resolve(claim.trim())).toBe(first.eventDir);
    expect((await storeEvent(jobdirs, incoming('abc-3'))).duplicate).toBe(true);
  });
});

describe('server start', () => {
  test('createApp refuses to run without a secret unless told to skip verification', async () => {
    const dir = await tempDir();
    const config = loadConfig(await writeSiteYaml(dir, 0));
    expect(() => createApp({ config, logger, secret: undefined })).toThrow(
      /refusing to start without a webhook secret/,
    );
    expect(() => createApp({ config, logger, secret: '' })).toThrow(/refusing/);
    expect(() => createApp({ config, logger, secret: undefined, insecureSkipSignature: true })).not.toThrow();
  });

  test('with --insecure-skip-signature an unsigned delivery is stored', async () => {
    const h = await startHarness({ secret: undefined, insecure: true });
    const d = makeDelivery('pull_request', payloads.prOpened());
    expect(d.headers['x-hub-signature-256']).toBeUndefined();
    expect((await send(h.url, d)).status).toBe(202);
  });

  test('a second server on the same jobdirs refuses to start and leaves the running one alone', async () => {
    const h = await startHarness();
    const d = signed('pull_request', payloads.prOpened());
    expect((await send(h.url, d)).status).toBe(202);
    await expect(
      startServer({
        config: { ...h.config, server: { ...h.config.server, port: 0 } },
        logger,
        secret: SECRET,
      }),
    ).rejects.toThrow(
      /another webhook server uses this jobdirs \(pid \d+ .*\): stop it first, or remove .*server\.lock/,
    );
    await h.settled();
    expect(await new JobDirs(h.root).pending()).toEqual([
      expectedEventDir(h, 'Codertocat', 'Hello-World', 'pr_2', d.delivery),
    ]);
    expect((await send(h.url, signed('pull_request', payloads.prOpened()))).status).toBe(202);
  });

  test('temp files of a killed server are removed on start; a live process keeps its own', async () => {
    const dir = await tempDir();
    const config = loadConfig(await writeSiteYaml(dir, 0));
    const jobdirs = new JobDirs(config.jobdirs);
    await jobdirs.ensureBaseDirs();
    const dead = 4194304 + 1; // above Linux's largest pid: never a running process
    const staged = path.join(config.jobdirs, INCOMING_DIR, `.tmp-${dead}-aaaa`);
    await fs.mkdir(staged, { recursive: true });
    await fs.writeFile(path.join(staged, EVENT_FILE), '{"partial');
    await fs.writeFile(path.join(jobdirs.deliveriesDir, `.tmp-${dead}-bbbb`), 'x');
    const mine = path.join(jobdirs.deliveriesDir, `.tmp-${process.pid}-cccc`);
    await fs.writeFile(mine, 'x');

    const server = await startServer({ config, logger, secret: SECRET });
    await stopServer(server);
    expect(await fs.readdir(path.join(config.jobdirs, INCOMING_DIR))).toEqual([]);
    expect(await fs.readdir(jobdirs.deliveriesDir)).toEqual([path.basename(mine)]);
  });
});

describe('webhook secret file', () => {
  test('generated on first start with mode 600 in a mode 700 dir, then reused; the env var wins', async () => {
    const dir = await tempDir();
    const config = loadConfig(await writeSiteYaml(dir, 0));
    const env = { XDG_CONFIG_HOME: path.join(dir, 'xdg') };
    const first = await loadWebhookSecret(config, env);
    expect(first.generated).toBe(true);
    expect(first.secret).toMatch(/^[0-9a-f]{64}$/);
    const file = path.join(dir, 'xdg', 'hpcbot', 'webhook-secret');
    expect(first.source).toBe(`file ${file}`);
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
    expect((await fs.stat(path.dirname(file))).mode & 0o777).toBe(0o700);

    const second = await loadWebhookSecret(config, env);
    expect(second).toEqual({ ...first, generated: false });

    const fromEnv = await loadWebhookSecret(config, { HPCBOT_TEST_WEBHOOK_SECRET: 'from-env' });
    expect(fromEnv).toEqual({
      secret: 'from-env',
      source: 'env HPCBOT_TEST_WEBHOOK_SECRET',
      generated: false,
    });
    expect(fromEnv.source).not.toContain('from-env');
  });

  test("an operator's secret file is only read: its directory is neither written to nor chmod-ed", async () => {
    const dir = await tempDir();
    const secrets = path.join(dir, 'mounted');
    await fs.mkdir(secrets, { mode: 0o755 });
    await fs.chmod(secrets, 0o755);
    await fs.writeFile(path.join(secrets, 'hook'), 'operator-secret\n', { mode: 0o600 });
    const old = new Date(Math.floor(Date.now() / 1000) * 1000 - 3600_000); // whole seconds: exact in stat
    await fs.utimes(secrets, old, old);
    const config = loadConfig(await writeSiteYaml(dir, 0, '  webhook_secret_file: mounted/hook'));

    const loaded = await loadWebhookSecret(config, {});
    expect(loaded).toEqual({
      secret: 'operator-secret',
      source: `file ${path.join(secrets, 'hook')}`,
      generated: false,
    });
    const after = await fs.stat(secrets);
    expect(after.mode & 0o777).toBe(0o755);
    expect(after.mtimeMs).toBe(old.getTime()); // no temp file was created and removed in it
  });

  test('a server started with the generated secret accepts deliveries signed with it', async () => {
    const dir = await tempDir();
    const config = loadConfig(await writeSiteYaml(dir, 0));
    const { secret } = await loadWebhookSecret(config, {});
    const server = await startServer({ config, logger, secret });
    try {
      const addr = server.address();
      const url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/webhook`;
      const d = makeDelivery('pull_request', payloads.prOpened(), { secret });
      expect((await send(url, d)).status).toBe(202);
      const wrong = makeDelivery('pull_request', payloads.prOpened(), { secret: SECRET });
      expect((await send(url, wrong)).status).toBe(401);
    } finally {
      await stopServer(server);
    }
  });
});

describe('health and metrics', () => {
  test('/healthz is 200 while jobdirs is writable, 503 once it is gone', async () => {
    const h = await startHarness();
    const ok = await get(`${h.base}/healthz`);
    expect(ok.status).toBe(200);
    expect(ok.json).toEqual({ ok: true });
    await fs.rm(h.root, { recursive: true, force: true });
    const gone = await get(`${h.base}/healthz`);
    expect(gone.status).toBe(503);
    expect(gone.json.ok).toBe(false);
  });

  test('/metrics counts deliveries by event and outcome and times the durable writes', async () => {
    const h = await startHarness();
    const stored = [
      signed('pull_request', payloads.prOpened()),
      signed('issue_comment', payloads.commentOnPr()),
    ];
    for (const d of stored) expect((await send(h.url, d)).status).toBe(202);
    expect((await send(h.url, stored[0]!)).status).toBe(200);
    expect((await send(h.url, signed('issue_comment', payloads.commentOnIssue()))).status).toBe(202);
    expect((await send(h.url, signed('ping', payloads.ping()))).status).toBe(200);
    // Unverified requests must not create series for invented event names.
    const forged = makeDelivery('zzz_invented_event', payloads.prOpened(), { secret: 'wrong' });
    expect((await send(h.url, forged)).status).toBe(401);
    expect((await send(h.url, signed('pull_request', '{'))).status).toBe(400);
    expect((await send(h.url, signed('pull_request', Buffer.alloc(MAX_BODY_BYTES + 1, 0x20)))).status).toBe(
      413,
    );

    const metrics = await get(`${h.base}/metrics`);
    expect(metrics.status).toBe(200);
    const text = metrics.text;
    const value = (series: string) => {
      const line = text.split('\n').find((l) => l.startsWith(series + ' '));
      return line === undefined ? undefined : Number(line.slice(series.length + 1));
    };
    expect(value('hpcbot_webhook_deliveries_total{event="pull_request",outcome="stored"}')).toBe(1);
    expect(value('hpcbot_webhook_deliveries_total{event="issue_comment",outcome="stored"}')).toBe(1);
    expect(value('hpcbot_webhook_deliveries_total{event="pull_request",outcome="duplicate"}')).toBe(1);
    expect(value('hpcbot_webhook_deliveries_total{event="issue_comment",outcome="ignored"}')).toBe(1);
    expect(value('hpcbot_webhook_deliveries_total{event="ping",outcome="ping"}')).toBe(1);
    expect(value('hpcbot_webhook_deliveries_total{event="unverified",outcome="rejected_401"}')).toBe(1);
    expect(value('hpcbot_webhook_deliveries_total{event="pull_request",outcome="rejected_400"}')).toBe(1);
    expect(value('hpcbot_webhook_deliveries_total{event="unverified",outcome="rejected_413"}')).toBe(1);
    expect(text).not.toContain('zzz_invented_event');
    // One observation per durable write (stored and duplicate), in a histogram with buckets.
    expect(value('hpcbot_event_write_seconds_count')).toBe(3);
    expect(text).toMatch(/^hpcbot_event_write_seconds_bucket\{le="0\.005"\} \d+$/m);
    expect(text).toMatch(/^# TYPE hpcbot_event_write_seconds histogram$/m);
    expect(text).toMatch(/^process_cpu_seconds_total /m);
  });

  test('an unknown path is 404', async () => {
    const h = await startHarness();
    expect((await get(`${h.base}/nope`)).status).toBe(404);
    expect((await get(`${h.base}/webhook`)).status).toBe(404);
  });
});
