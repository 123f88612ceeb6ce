/**
 * hpcbot gc: prunes old trash, `_repo` events, delivery claims, mirrors of repositories without an open
 * PR and local-job records of final jobs; never anything of an open PR or of unfinished work.
 */
import { existsSync, mkdirSync, mkdtempSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseConfig } from '../src/config/config.js';
import { collectGarbage, formatGcReport, parseAge, prIsOpen, REDELIVERY_WINDOW_MS } from '../src/cli/gc.js';
import { JobDirs } from '../src/store/jobdirs.js';
import { newState, transition, writeState } from '../src/store/state.js';
import { runCli } from './support/spawn.js';

const DAY = 86_400_000;
const NOW = new Date('2026-11-24T12:00:00Z');
const OLD = new Date(NOW.getTime() - 40 * DAY);
const RECENT = new Date(NOW.getTime() - DAY);

interface EventSpec {
  scope: string; // pr_<N> or _repo
  name: string;
  stage: string;
  at: Date;
  /** Stage of one job under it. */
  job?: string;
  /** A pull_request event with this action; otherwise an issue_comment. */
  prAction?: 'closed' | 'reopened';
}

async function makeEvent(root: string, repo: string, e: EventSpec): Promise<{ event: string; job?: string }> {
  const dir = path.join(root, '2026.09', 'org', repo, e.scope, `event_${e.name}`);
  mkdirSync(dir, { recursive: true });
  const event = e.prAction ? 'pull_request' : 'issue_comment';
  writeFileSync(
    path.join(dir, 'event.json'),
    JSON.stringify({
      delivery: e.name,
      event,
      action: e.prAction ?? 'created',
      received_at: e.at.toISOString(),
    }),
  );
  writeFileSync(path.join(dir, 'payload-bytes'), 'x'.repeat(1000));
  await writeState(dir, transition(newState('event', 'received', {}, e.at), e.stage, e.at));
  if (!e.job) return { event: dir };
  const job = path.join(dir, 'run_000', 'zen4', 'eessi-test');
  mkdirSync(job, { recursive: true });
  await writeState(job, transition(newState('job', 'prepared', {}, e.at), e.job, e.at));
  return { event: dir, job };
}

function setAge(file: string, at: Date): void {
  utimesSync(file, at, at);
}

function mirror(root: string, repo: string, fetchedAt: Date): string {
  const dir = path.join(root, 'mirrors', 'org', `${repo}.git`);
  mkdirSync(path.join(dir, 'objects'), { recursive: true });
  writeFileSync(path.join(dir, 'objects', 'pack'), 'p'.repeat(300));
  writeFileSync(path.join(dir, 'FETCH_HEAD'), 'sha\n');
  setAge(path.join(dir, 'FETCH_HEAD'), fetchedAt);
  return dir;
}

function setUp() {
  const base = mkdtempSync(path.join(os.tmpdir(), 'hpcbot-gc-'));
  const file = path.join(base, 'site.yaml');
  writeFileSync(file, 'instance: t\njobdirs: jobdirs\n');
  return { file, config: parseConfig('instance: t\njobdirs: jobdirs\n', file) };
}

test('parseAge', () => {
  expect(parseAge('30d')).toBe(30 * DAY);
  expect(parseAge('12h')).toBe(12 * 3_600_000);
  expect(() => parseAge('30 days')).toThrow('--older-than takes a number with d, h or m');
});

test('open PR rule: unfinished work or no closing event keeps a PR open; the latest close/reopen decides', async () => {
  const { config } = setUp();
  const root = config.jobdirs;
  const pr = (repo: string) => path.join(root, '2026.09', 'org', repo, 'pr_1');
  const done = { scope: 'pr_1', stage: 'done', at: OLD };
  await makeEvent(root, 'a', { ...done, name: 'c1', job: 'finished' });
  expect(await prIsOpen([pr('a')])).toBe(true); // never closed
  await makeEvent(root, 'b', { ...done, name: 'close', prAction: 'closed' });
  expect(await prIsOpen([pr('b')])).toBe(false);
  await makeEvent(root, 'c', { ...done, name: 'close', prAction: 'closed' });
  await makeEvent(root, 'c', { ...done, name: 'reopen', prAction: 'reopened', at: RECENT });
  expect(await prIsOpen([pr('c')])).toBe(true);
  await makeEvent(root, 'd', { ...done, name: 'close', prAction: 'closed', at: RECENT });
  await makeEvent(root, 'd', { ...done, name: 'c1', job: 'running' });
  expect(await prIsOpen([pr('d')])).toBe(true); // closed, but a job is still active
  await makeEvent(root, 'e', { ...done, name: 'close', prAction: 'closed' });
  await makeEvent(root, 'e', { ...done, name: 'c2', stage: 'received' });
  expect(await prIsOpen([pr('e')])).toBe(true); // an event not handled yet
});

test('dry run reports per category, a real run removes exactly that; open PRs and unfinished work stay', async () => {
  const { config, file } = setUp();
  const root = config.jobdirs;
  const jobdirs = new JobDirs(root);
  await jobdirs.ensureBaseDirs();

  // An open PR whose history is old and finished: nothing of it goes (the old gc removed it).
  const openPr = await makeEvent(root, 'repo', {
    scope: 'pr_1',
    name: 'old-build',
    stage: 'done',
    at: OLD,
    job: 'finished',
  });
  // A closed PR whose dirs are still here, all final.
  const closedPr = await makeEvent(root, 'closed-repo', {
    scope: 'pr_2',
    name: 'close',
    stage: 'done',
    at: OLD,
    prAction: 'closed',
  });
  // Repository-level events: old and final, recent, and pending.
  const oldRepoEvent = await makeEvent(root, 'repo', { scope: '_repo', name: 'old', stage: 'done', at: OLD });
  const recentRepoEvent = await makeEvent(root, 'repo', {
    scope: '_repo',
    name: 'new',
    stage: 'done',
    at: RECENT,
  });
  const pendingRepoEvent = await makeEvent(root, 'repo', {
    scope: '_repo',
    name: 'p',
    stage: 'ignored',
    at: OLD,
  });
  await jobdirs.enqueue(pendingRepoEvent.event);

  // Trash: an old settled day, a recent day, and an old day that still holds an unfinished job.
  const trashDay = (day: string) => path.join(root, 'trash', 'org', 'repo', day);
  const oldTrash = trashDay('2026.10.01');
  const newTrash = trashDay('2026.11.20');
  const unsettledTrash = trashDay('2026.10.02');
  for (const [d, stage] of [
    [oldTrash, 'finished'],
    [newTrash, 'finished'],
    [unsettledTrash, 'running'],
  ] as const) {
    const job = path.join(d, '2026.09', 'pr_3', 'event_x', 'run_000', 'zen4', 'r');
    mkdirSync(job, { recursive: true });
    await writeState(path.dirname(path.dirname(path.dirname(job))), newState('event', 'done', {}, OLD));
    await writeState(job, newState('job', stage, {}, OLD));
    writeFileSync(path.join(job, 'f'), 'y'.repeat(500));
  }

  // Mirrors: of the open PR's repo (old fetch: kept), of the closed repo (old: removed; recent: kept).
  const openMirror = mirror(root, 'repo', OLD);
  const closedMirror = mirror(root, 'closed-repo', OLD);
  await makeEvent(root, 'recent-closed', {
    scope: 'pr_4',
    name: 'c',
    stage: 'done',
    at: OLD,
    prAction: 'closed',
  });
  const recentMirror = mirror(root, 'recent-closed', RECENT);

  // Delivery claims: 40 days old, 2 days old.
  const claim = (name: string, at: Date) => {
    const f = path.join(jobdirs.deliveriesDir, name);
    writeFileSync(f, 'x\n');
    setAge(f, at);
    return f;
  };
  const oldClaim = claim('old-claim', OLD);
  const youngClaim = claim('young-claim', new Date(NOW.getTime() - 2 * DAY));

  // Local job records: 1 final (old format), 2 running, 3 of a trashed job dir, 4 final but the newest.
  const local = path.join(root, 'local-jobs');
  mkdirSync(local);
  const record = (id: number, rec: object) => {
    const f = path.join(local, `${id}.json`);
    writeFileSync(f, JSON.stringify(rec));
    setAge(f, OLD);
    return f;
  };
  const running = await makeEvent(root, 'repo', {
    scope: 'pr_1',
    name: 'run',
    stage: 'done',
    at: OLD,
    job: 'running',
  });
  const finalRecord = record(1, { job_dir: openPr.job });
  writeFileSync(path.join(local, '1.exit'), '0\n');
  const runningRecord = record(2, { work_tree: path.join(running.job!, 'work') });
  const trashedRecord = record(3, { work_tree: path.join(root, '2026.08', 'gone', 'work') });
  const newestRecord = record(4, { work_tree: path.join(openPr.job!, 'work') });

  const expected = [
    oldTrash,
    oldRepoEvent.event,
    oldClaim,
    closedMirror,
    finalRecord,
    path.join(local, '1.exit'),
    trashedRecord,
  ];
  const dry = await collectGarbage(config, 30 * DAY, true, NOW);
  expect(dry.removed.map((r) => r.path).sort()).toEqual([...expected].sort());
  expect(dry.byCategory).toEqual({
    trash: { count: 1, bytes: expect.any(Number) },
    'repo-events': { count: 1, bytes: expect.any(Number) },
    deliveries: { count: 1, bytes: 2 },
    mirrors: { count: 1, bytes: 304 },
    'local-jobs': { count: 3, bytes: expect.any(Number) },
  });
  expect(dry.byCategory.trash.bytes).toBeGreaterThan(500);
  expect(dry.byCategory['repo-events'].bytes).toBeGreaterThan(1000);
  for (const p of expected) expect(existsSync(p)).toBe(true);
  const report = formatGcReport(dry, true);
  expect(report).toContain(`would remove ${closedMirror} (304 bytes)\n`);
  expect(report).toContain('deliveries: 1 entry, 2 bytes\n');
  expect(report).toContain('local-jobs: 3 entries, ');
  expect(report).toMatch(new RegExp(`would free ${dry.bytes} bytes in 7 entries\\n$`));
  expect(report).not.toContain(oldClaim); // claims are counted, not listed

  // The CLI prints the same report (its clock is now, so everything of 2026 is old).
  const cli = await runCli(['gc', '--config', file, '--older-than', '30d', '--dry-run']);
  expect(cli.code).toBe(0);
  expect(cli.stdout).toContain('mirrors: ');
  expect(cli.stdout).toMatch(/^would free \d+ bytes in \d+ entries$/m);

  const real = await collectGarbage(config, 30 * DAY, false, NOW);
  expect(real.bytes).toBe(dry.bytes);
  for (const p of expected) expect(existsSync(p)).toBe(false);
  const kept = [
    openPr.event,
    openPr.job!,
    closedPr.event, // a PR's event dirs go to the trash when it closes, never through gc
    running.job!,
    recentRepoEvent.event,
    pendingRepoEvent.event,
    newTrash,
    unsettledTrash,
    openMirror,
    recentMirror,
    youngClaim,
    runningRecord,
    newestRecord,
  ];
  for (const p of kept) expect(existsSync(p)).toBe(true);
  await expect(collectGarbage(config, 30 * DAY, true, NOW)).resolves.toMatchObject({ removed: [] });
});

test('delivery claims stay for the redelivery window whatever --older-than says', async () => {
  const { config } = setUp();
  const jobdirs = new JobDirs(config.jobdirs);
  await jobdirs.ensureBaseDirs();
  const claim = (name: string, ageMs: number) => {
    const f = path.join(jobdirs.deliveriesDir, name);
    writeFileSync(f, 'x\n');
    setAge(f, new Date(NOW.getTime() - ageMs));
    return f;
  };
  const inside = claim('inside', REDELIVERY_WINDOW_MS - 3_600_000);
  const outside = claim('outside', REDELIVERY_WINDOW_MS + 3_600_000);
  const r = await collectGarbage(config, 60_000, false, NOW);
  expect(r.removed.map((x) => x.path)).toEqual([outside]);
  expect(existsSync(inside)).toBe(true);
});

test('the trash of a PR that was closed and then reopened stays while it is open; other PRs of that trash day go', async () => {
  const { config } = setUp();
  const root = config.jobdirs;
  await new JobDirs(root).ensureBaseDirs();
  // PR 5 was closed (its dirs went to the trash 40 days ago) and reopened: its new dirs hold the reopen.
  await makeEvent(root, 'repo', {
    scope: 'pr_5',
    name: 'reopen',
    stage: 'done',
    at: OLD,
    prAction: 'reopened',
  });
  // PR 6 was closed the same day and stays closed (no dirs outside the trash).
  const day = path.join(root, 'trash', 'org', 'repo', '2026.10.01');
  const trashed = (pr: string) => {
    const event = path.join(day, '2026.09', pr, 'event_close');
    mkdirSync(event, { recursive: true });
    writeFileSync(path.join(event, 'payload-bytes'), 'z'.repeat(700));
    return event;
  };
  const reopened = trashed('pr_5');
  const reopenedAgain = trashed('pr_5.1'); // a second move of the same PR on that day
  const closed = trashed('pr_6');
  for (const e of [reopened, reopenedAgain, closed]) await writeState(e, newState('event', 'done', {}, OLD));

  const r = await collectGarbage(config, 30 * DAY, false, NOW);
  expect(r.removed.map((x) => x.path)).toEqual([path.dirname(closed)]);
  expect(existsSync(reopened)).toBe(true);
  expect(existsSync(reopenedAgain)).toBe(true);
  expect(existsSync(closed)).toBe(false);

  // Closed again: now nothing of PR 5 is open, and its old trash goes.
  await makeEvent(root, 'repo', {
    scope: 'pr_5',
    name: 'reclose',
    stage: 'done',
    at: RECENT,
    prAction: 'closed',
  });
  const again = await collectGarbage(config, 30 * DAY, false, NOW);
  expect(again.removed.map((x) => x.path)).toEqual([day]);
});
