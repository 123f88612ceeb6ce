/**
 * `hpcbot status` on a real jobdirs tree: events stored by the ingest code, state files written by
 * the state module, heartbeats written by the heartbeat module (and one of a process that is gone).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { jest } from '@jest/globals';
import { collectStatus, formatStatus, liveness, locate, type StatusReport } from '../src/cli/status.js';
import { storeEvent } from '../src/ingest/eventStore.js';
import { writeFileAtomic } from '../src/store/fsutil.js';
import { heartbeatPath, writeHeartbeat, type Heartbeat } from '../src/store/heartbeat.js';
import { JobDirs } from '../src/store/jobdirs.js';
import { newState, recordFailure, transition, writeState, type DirState } from '../src/store/state.js';
import { payloads } from './support/payloads.js';
import { killAll, runCli, tempDir, writeSiteYaml } from './support/spawn.js';

jest.setTimeout(60_000);

const T0 = new Date('2026-03-01T10:00:00Z');
const NOW = new Date('2026-03-01T12:00:00Z');
const at = (minutes: number) => new Date(T0.getTime() + minutes * 60_000);

let tmp: string;
let site: string;
let jobdirs: JobDirs;
const dirs: Record<string, string> = {};

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0']);
  await new Promise((resolve) => child.on('close', resolve));
  return child.pid!;
}

async function store(delivery: string, event: string, payload: unknown, pr: number, minutes: number) {
  const { eventDir } = await storeEvent(jobdirs, {
    delivery,
    event,
    rawBody: JSON.stringify(payload),
    action: (payload as { action?: string }).action ?? null,
    installationId: 1,
    headers: {},
    owner: 'acme',
    repo: 'software',
    scope: { kind: 'pr', number: pr },
    receivedAt: at(minutes),
  });
  // Claims are ordered by mtime: give each the time of its delivery.
  await fs.utimes(path.join(jobdirs.deliveriesDir, delivery), at(minutes), at(minutes));
  return eventDir;
}

async function job(eventDir: string, node: string, repo: string, state: DirState<unknown>): Promise<string> {
  const dir = path.join(eventDir, 'run_001', node, repo);
  await fs.mkdir(dir, { recursive: true });
  await writeState(dir, state);
  return dir;
}

const jobState = (created: Date, ...stages: Array<[string, Date]>) =>
  stages.reduce<DirState<unknown>>(
    (s, [stage, when]) => transition(s, stage, when),
    newState('job', 'prepared', { submit_id: 'x' }, created),
  );

beforeAll(async () => {
  tmp = await tempDir('hpcbot-status-');
  site = await writeSiteYaml(tmp, 4321);
  jobdirs = new JobDirs(path.join(tmp, 'jobdirs'));
  await jobdirs.ensureBaseDirs();

  // Three deliveries: a build comment (taken up, done), a PR opened (parked as failed), and a
  // comment that the poller has not taken up yet.
  const comment = payloads.commentOnPr();
  dirs.build = await store('d-build', 'issue_comment', comment, 1, 0);
  dirs.opened = await store('d-opened', 'pull_request', payloads.prOpened(), 2, 10);
  dirs.fresh = await store('d-fresh', 'issue_comment', comment, 1, 100);
  const eventState = (event: string, action: string) =>
    newState('event', 'received', { event, action, generation: 1 }, T0) as DirState<unknown>;
  await writeState(dirs.build, transition(eventState('issue_comment', 'created'), 'done', at(1)));
  let opened = eventState('pull_request', 'opened');
  for (let i = 0; i < 3; i++) opened = recordFailure(opened, 'GitHub answered 502', at(20 + i), 3);
  await writeState(dirs.opened, opened);

  // Jobs of the build: one running since long, one submitted later, one finished, one finished whose
  // comment edit was given up on, one waiting for a retry.
  dirs.running = await job(
    dirs.build,
    'zen2',
    'eessi',
    jobState(at(2), ['submitted', at(3)], ['running', at(5)]),
  );
  dirs.submitted = await job(dirs.build, 'zen4', 'eessi', jobState(at(30), ['submitted', at(31)]));
  dirs.finished = await job(dirs.build, 'zen3', 'eessi', jobState(at(2), ['finished', at(40)]));
  let gaveUp = jobState(at(2), ['finished', at(41)]);
  for (let i = 0; i < 2; i++) gaveUp = recordFailure(gaveUp, 'cannot edit the comment', at(50 + i), 2);
  dirs.gaveUp = await job(dirs.build, 'zen1', 'eessi', gaveUp);
  dirs.retrying = await job(
    dirs.build,
    'zen5',
    'eessi',
    recordFailure(jobState(at(60)), 'sbatch: Socket timed out', at(61), 10),
  );

  // The poller runs (this process); the server ran once and is gone.
  const text = await fs.readFile(site, 'utf8');
  const digest = createHash('sha256').update(text).digest('hex');
  await writeHeartbeat(
    jobdirs.root,
    'poller',
    {
      startedAt: at(0).toISOString(),
      config: { source: site, digest },
      lastTick: { at: at(119).toISOString(), ms: 42, report: { advanced: 3, failed: 1 } },
      backend: {
        lastOk: at(119).toISOString(),
        lastError: { at: at(90).toISOString(), message: 'squeue: timeout' },
      },
    },
    NOW,
  );
  const server: Heartbeat = {
    process: 'server',
    pid: await deadPid(),
    host: os.hostname(),
    startedAt: at(0).toISOString(),
    updatedAt: at(30).toISOString(),
    config: { source: site, digest },
    extra: { url: 'http://127.0.0.1:4321/webhook' },
  };
  await writeFileAtomic(heartbeatPath(jobdirs.root, 'server'), JSON.stringify(server));
});
afterEach(killAll);
afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

const rel = (d: string) => jobdirs.relative(d);

describe('collectStatus', () => {
  let report: StatusReport;
  beforeAll(async () => {
    report = await collectStatus(await locate(site), NOW);
  });

  test('instance, config and processes', () => {
    expect(report.instance).toBe('test');
    expect(report.jobdirs).toBe(jobdirs.root);
    expect(report.config).toMatchObject({ source: site, valid: true });
    expect(report.processes.poller).toMatchObject({ liveness: 'alive', pid: process.pid });
    expect(report.processes.server.liveness).toBe('stopped');
    expect(report.lastTick).toEqual({
      at: at(119).toISOString(),
      ms: 42,
      report: { advanced: 3, failed: 1 },
    });
    expect(report.backend?.lastError?.message).toBe('squeue: timeout');
  });

  test('queue, jobs and events by stage, the oldest active job', () => {
    expect(report.queue).toBe(3); // storeEvent indexed the three deliveries
    expect(report.jobs.byStage).toEqual({ running: 1, submitted: 1, finished: 2, prepared: 1 });
    expect(report.jobs.total).toBe(5);
    expect(report.jobs.oldestActive).toEqual({
      dir: rel(dirs.running!),
      kind: 'job',
      stage: 'running',
      since: at(5).toISOString(),
    });
    // The event not taken up yet has no state file: not counted.
    expect(report.events.byStage).toEqual({ done: 1, failed: 1 });
  });

  test('parked (given up) and retrying directories with their last error, newest first', () => {
    expect(report.parked.map((p) => [p.dir, p.stage, p.error?.message])).toEqual([
      [rel(dirs.gaveUp!), 'finished', 'cannot edit the comment'],
      [rel(dirs.opened!), 'failed', 'GitHub answered 502'],
    ]);
    expect(report.retrying.map((p) => [p.dir, p.error?.message])).toEqual([
      [rel(dirs.retrying!), 'sbatch: Socket timed out'],
    ]);
  });

  test('the last deliveries, newest first, with what the poller made of them', () => {
    expect(report.deliveries).toEqual([
      { id: 'd-fresh', at: at(100).toISOString(), dir: rel(dirs.fresh!), pr: 'acme/software#1' },
      {
        id: 'd-opened',
        at: at(10).toISOString(),
        dir: rel(dirs.opened!),
        pr: 'acme/software#2',
        event: 'pull_request',
        action: 'opened',
        stage: 'failed',
      },
      {
        id: 'd-build',
        at: at(0).toISOString(),
        dir: rel(dirs.build!),
        pr: 'acme/software#1',
        event: 'issue_comment',
        action: 'created',
        stage: 'done',
      },
    ]);
  });

  test('the text, one screen', () => {
    const text = formatStatus(report, NOW);
    const lines = text.split('\n');
    expect(lines.slice(0, 9)).toEqual([
      'instance  test',
      `config    ${site}: valid, in use`,
      `jobdirs   ${jobdirs.root}`,
      `server    stopped: pid ${report.processes.server.pid}, heartbeat 1h 30m ago, http://127.0.0.1:4321/webhook`,
      `poller    alive: pid ${process.pid}, up 2h 0m, heartbeat 0s ago`,
      'last tick 1m ago, took 42 ms: advanced 3, failed 1',
      'scheduler last answer 1m ago; last error 30m ago: squeue: timeout',
      'queue     3 pending',
      'jobs      5: 2 finished, 1 prepared, 1 running, 1 submitted',
    ]);
    expect(text).toContain(`          oldest active: ${rel(dirs.running!)} (running for 1h 55m)\n`);
    expect(text).toContain('events    2: 1 done, 1 failed\n');
    expect(text).toContain(
      `parked    2\n  ${rel(dirs.gaveUp!)} (job, finished, 1h 9m ago): cannot edit the comment\n`,
    );
    expect(text).toContain(
      `retrying  1\n  ${rel(dirs.retrying!)} (job, prepared, 59m ago): sbatch: Socket timed out\n`,
    );
    expect(text).toContain(
      `deliveries (last 10)\n  ${at(100).toISOString()}  d-fresh  acme/software#1  not taken up yet\n`,
    );
    expect(text).toContain(
      `  ${at(10).toISOString()}  d-opened  acme/software#2  pull_request.opened, failed\n`,
    );
    expect(lines.length).toBeLessThan(40);
  });
});

describe('the config as the running processes see it', () => {
  test('a file a running process rejects is invalid, since when it says; the last good one stays', async () => {
    const d = await tempDir('hpcbot-status-');
    const file = await writeSiteYaml(d, 1);
    const root = path.join(d, 'jobdirs');
    await writeHeartbeat(
      root,
      'poller',
      {
        config: {
          source: file,
          digest: 'an-older-file',
          error: {
            message: `${file}:3: poller.schedule: invalid cron expression`,
            since: at(10).toISOString(),
          },
        },
      },
      NOW,
    );
    const report = await collectStatus(await locate(file), NOW);
    expect(report.config).toMatchObject({
      valid: false,
      invalidSince: at(10).toISOString(),
      problem: `${file}:3: poller.schedule: invalid cron expression`,
    });
    expect(formatStatus(report, NOW)).toContain(
      `config    ${file}: INVALID since ${at(10).toISOString()} (1h 50m ago), the last good one stays in use: ${file}:3: poller.schedule: invalid cron expression\n`,
    );
    await fs.rm(d, { recursive: true, force: true });
  });

  test('with no process running, status checks the file itself and says nothing uses it', async () => {
    const d = await tempDir('hpcbot-status-');
    const file = await writeSiteYaml(d, 1);
    const report = await collectStatus(await locate(file), NOW);
    expect(report.config).toMatchObject({ valid: true, inUse: false });
    expect(formatStatus(report, NOW)).toContain(
      `config    ${file}: valid, not in use by a running process\n`,
    );
    expect(report.processes).toEqual({
      server: { liveness: 'never ran' },
      poller: { liveness: 'never ran' },
    });
    expect(report.queue).toBe(0);
    expect(formatStatus(report, NOW)).toContain('deliveries (last 10)\n  none\n');
    await fs.rm(d, { recursive: true, force: true });
  });
});

describe('a site.yaml that does not validate while no process runs', () => {
  const badCron = (file: string) =>
    fs.appendFile(file, 'poller:\n  schedule: "every minute"\n').then(() => file);

  test('status says it is invalid, with the error, not that nothing uses it', async () => {
    const d = await tempDir('hpcbot-status-');
    const file = await badCron(await writeSiteYaml(d, 1));
    const report = await collectStatus(await locate(file), NOW);
    expect(report.config.valid).toBe(false);
    expect(report.config.inUse).toBe(false);
    expect(report.config.problem).toMatch(new RegExp(`^${file}:\\d+: poller\\.schedule: `));
    const text = formatStatus(report, NOW);
    expect(text).toContain(
      `config    ${file}: INVALID, not in use by a running process (a start would refuse it): ${report.config.problem}\n`,
    );
    expect(text).not.toContain('hpcbot config check validates it');
    await fs.rm(d, { recursive: true, force: true });
  });

  test('as a user runs it: exit 0, the config line names the error', async () => {
    const d = await tempDir('hpcbot-status-');
    const file = await badCron(await writeSiteYaml(d, 1));
    const { code, stdout, stderr } = await runCli(['status', '--config', file]);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toMatch(
      new RegExp(
        `^config {4}${file}: INVALID, not in use by a running process \\(a start would refuse it\\): ${file}:\\d+: poller\\.schedule: [^\\n]+$`,
        'm',
      ),
    );
    await fs.rm(d, { recursive: true, force: true });
  });

  test('a stopped process that accepted exactly this text vouches for it (no validation needed)', async () => {
    const d = await tempDir('hpcbot-status-');
    const file = await writeSiteYaml(d, 1);
    const located = await locate(file);
    await writeHeartbeat(
      path.join(d, 'jobdirs'),
      'poller',
      { config: { source: file, digest: located.digest } },
      NOW,
    );
    const hb = JSON.parse(
      await fs.readFile(heartbeatPath(path.join(d, 'jobdirs'), 'poller'), 'utf8'),
    ) as Heartbeat;
    await fs.writeFile(
      heartbeatPath(path.join(d, 'jobdirs'), 'poller'),
      JSON.stringify({ ...hb, pid: await deadPid() }),
    );
    const report = await collectStatus(located, NOW);
    expect(report.processes.poller.liveness).toBe('stopped');
    expect(report.config).toMatchObject({ valid: true, inUse: false });
    await fs.rm(d, { recursive: true, force: true });
  });
});

test('locate reads instance and jobdirs of simple lines without the YAML parser, the same as YAML', async () => {
  const { simpleTopLevel } = await import('../src/cli/status.js');
  expect(simpleTopLevel('instance: test\njobdirs: "/srv/bot jobs" # here\n')).toEqual({
    instance: 'test',
    jobdirs: '/srv/bot jobs',
  });
  // Anything not plainly a string is left to the YAML parser.
  for (const text of [
    'jobdirs: 123\n',
    'jobdirs: x\njobdirs: y\n',
    '{jobdirs: x}\n',
    'jobdirs: a: b\n',
    'jobdirs: *x\n',
  ])
    expect(simpleTopLevel(text)).toBeUndefined();
});

test('liveness: alive, stale, stopped, on another host, never ran', () => {
  const hb = { pid: 1, host: 'h', updatedAt: NOW.toISOString() } as Heartbeat;
  const yes = () => true;
  expect(liveness(hb, NOW, 'h', yes)).toBe('alive');
  expect(liveness(hb, new Date(NOW.getTime() + 10 * 60_000), 'h', yes)).toBe('stale');
  expect(liveness(hb, NOW, 'h', () => false)).toBe('stopped');
  expect(liveness(hb, NOW, 'other', yes)).toBe('other host');
  expect(liveness(undefined, NOW)).toBe('never ran');
});

test('`hpcbot status --json` and the text, as a user runs them', async () => {
  const json = await runCli(['status', '--json', '--config', site]);
  expect(json.stderr).toBe('');
  expect(json.code).toBe(0);
  const report = JSON.parse(json.stdout) as StatusReport;
  expect(report.queue).toBe(3);
  expect(report.jobs.byStage).toEqual({ running: 1, submitted: 1, finished: 2, prepared: 1 });
  expect(report.deliveries.map((d) => d.id)).toEqual(['d-fresh', 'd-opened', 'd-build']);
  expect(report.processes.server.liveness).toBe('stopped');

  const text = await runCli(['status', '--config', site]);
  expect(text.code).toBe(0);
  expect(text.stdout).toMatch(/^instance {2}test\n/);
  expect(text.stdout).toContain('jobs      5: 2 finished, 1 prepared, 1 running, 1 submitted\n');
});
