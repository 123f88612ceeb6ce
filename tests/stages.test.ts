/**
 * The poller's stages in-process: real payloads (from @octokit/webhooks-examples) stored with
 * storeEvent, one `runTick`, then the exact GitHub calls the fake recorded, the state files and the
 * pending-work index. GitHub is the fake (through the real adapter); the batch system is a stub.
 */
import { JobAccount } from '../src/adapters/jobUser.js';
import { jest } from '@jest/globals';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import type { Backend, JobObservation } from '../src/adapters/schedulers/types.js';
import { COMMAND_LINE_RE } from '../src/domain/commands.js';
import { siteSchema, type Config } from '../src/config/config.js';
import { storeEvent } from '../src/ingest/eventStore.js';
import type { JobData } from '../src/store/job.js';
import { JobDirs, monthDir } from '../src/store/jobdirs.js';
import { acquireLock, isStale, LockBusyError } from '../src/store/lock.js';
import { MAX_COMMENT_CHARS } from '../src/domain/markdown.js';
import { renderConfig, renderHelp } from '../src/domain/render.js';
import { BOT_VERSION } from '../src/stages/commands/ping.js';
import { newState, readState, writeState, type DirState } from '../src/store/state.js';
import type { StageDeps } from '../src/stages/context.js';
import type { EventData } from '../src/stages/event.js';
import type { BuildTarget } from '../src/domain/targets.js';
import { FakeGitHub } from './support/fakeGithub.js';
import { payloads } from './support/payloads.js';

// plugin-throttling spaces comment creation 3 s apart in a process (GitHub's advice for requests that
// notify people). That pacing is the adapter's concern and tested with it; here it would only make
// this file take minutes, so the plugin is replaced by a no-op. Everything else is the real adapter.
jest.unstable_mockModule('@octokit/plugin-throttling', () => ({ throttling: () => ({}) }));
const { createGitHub } = await import('../src/adapters/github/index.js');
const { replayEvent, runTick } = await import('../src/poller.js');

const OWNER = 'Codertocat';
const REPO = 'Hello-World';
const BOT = 'hpcbot-test';
const T0 = new Date('2026-03-14T12:00:00.000Z');
const MONTH = monthDir(T0);

// ---- harness ------------------------------------------------------------------------------------

class StubBackend implements Backend {
  readonly kind = 'local' as const;
  readonly calls: string[] = [];
  observations = new Map<string, JobObservation>();
  constructor(private readonly jobdirs: JobDirs) {}
  submit(): Promise<{ jobId: string; held: boolean }> {
    throw new Error('no test here submits a job');
  }
  async findBySubmitId(submitId: string): Promise<string | undefined> {
    this.calls.push(`find ${submitId}`);
    return undefined;
  }
  async release(jobId: string): Promise<boolean> {
    this.calls.push(`release ${jobId}`);
    return true;
  }
  async observe(jobs: Array<{ jobId: string }>): Promise<Map<string, JobObservation>> {
    this.calls.push(`observe ${jobs.map((j) => j.jobId).join(',')}`);
    return this.observations;
  }
  async cancel(jobId: string, workTree: string): Promise<void> {
    this.calls.push(`cancel ${jobId} ${this.jobdirs.relative(path.dirname(workTree))}`);
  }
}

let tmp: string;
let fake: FakeGitHub;
let jobdirs: JobDirs;
let backend: StubBackend;
let clock: Date;

beforeEach(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'hpcbot-stages-'));
  fake = new FakeGitHub({ patLogin: BOT });
  await fake.start();
  jobdirs = new JobDirs(path.join(tmp, 'jobdirs'));
  await jobdirs.ensureBaseDirs();
  backend = new StubBackend(jobdirs);
  clock = T0;
  fake.addTeamMember('org', 'builders', 'bob');
});

afterEach(async () => {
  // Whatever a test did: no comment the bot posted may contain a line that parses as a command.
  for (const body of postedBodies()) {
    expect(body.split(/\r?\n/).filter((l) => COMMAND_LINE_RE.test(l.trim()))).toEqual([]);
    expect(body.length).toBeLessThanOrEqual(MAX_COMMENT_CHARS);
  }
  await fake.stop();
  await fs.rm(tmp, { recursive: true, force: true });
});

function makeConfig(over: Record<string, unknown> = {}): Config {
  const parsed = siteSchema.parse({
    instance: 'test',
    jobdirs: jobdirs.root,
    github: { api_url: fake.url, token_env: 'HPCBOT_TEST_TOKEN', bot_login: BOT },
    poller: { max_attempts: 3 },
    permissions: { command: ['alice', 'org/builders'], build: ['alice'], deploy: ['alice'] },
    build: {
      node_types: {
        zen4: { cpu_subdir: 'x86_64/amd/zen4', repo_targets: ['eessi-test'] },
        gpu: { cpu_subdir: 'x86_64/amd/zen4', accel: 'nvidia/cc90', repo_targets: ['eessi-test'] },
      },
    },
    ...over,
  });
  return { ...parsed, source: path.join(tmp, 'site.yaml') };
}

function makeDeps(over: Record<string, unknown> = {}): StageDeps {
  const config = makeConfig(over);
  const logger = pino({ level: process.env.HPCBOT_TEST_LOG ?? 'silent' });
  return {
    config,
    logger,
    jobdirs,
    backend,
    account: new JobAccount(undefined),
    now: () => clock,
    github: createGitHub(
      config,
      logger,
      { HPCBOT_TEST_TOKEN: 'pat-token' },
      { retryBaseMs: 1, retries: 1, requestTimeoutMs: 10_000 },
    ),
  };
}

type Payload = Record<string, unknown> & Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

async function store(event: string, payload: Payload, delivery: string): Promise<string> {
  const pr = (payload.pull_request?.number ?? payload.issue?.number) as number | undefined;
  const { eventDir } = await storeEvent(jobdirs, {
    delivery,
    event,
    rawBody: JSON.stringify(payload),
    action: (payload.action as string | undefined) ?? null,
    installationId: (payload.installation?.id as number | undefined) ?? null,
    headers: { 'x-github-event': event, 'x-github-delivery': delivery },
    owner: OWNER,
    repo: REPO,
    scope: pr === undefined ? { kind: 'repo' } : { kind: 'pr', number: pr },
    receivedAt: clock,
  });
  return eventDir;
}

/** A real `issue_comment.created` payload on PR 1, with this body and author. */
function commentPayload(body: string, sender = 'alice', action = 'created'): Payload {
  const p = payloads.commentOnPr() as Payload;
  p.action = action;
  p.comment.body = body;
  p.comment.user.login = sender;
  p.sender.login = sender;
  return p;
}

async function comment(body: string, delivery: string, sender = 'alice'): Promise<string> {
  return store('issue_comment', commentPayload(body, sender), delivery);
}

function prPayload(
  action: 'opened' | 'labeled' | 'closed' | 'synchronize',
  over: (p: Payload) => void = () => {},
) {
  const fn = {
    opened: payloads.prOpened,
    labeled: payloads.prLabeled,
    closed: payloads.prClosed,
    synchronize: payloads.prSynchronize,
  }[action];
  const p = fn() as Payload;
  over(p);
  return p;
}

const commentsPath = (n: number) => `/repos/${OWNER}/${REPO}/issues/${n}/comments`;

function callList(): string[] {
  return fake.calls.map((c) => `${c.method} ${c.path}`);
}

function postedBodies(): string[] {
  return fake.calls
    .filter((c) => c.method === 'POST' && c.path.endsWith('/comments'))
    .map((c) => (c.body as { body: string }).body);
}

function marker(eventDir: string, key: string): string {
  return `<!-- hpcbot:test:${path.basename(eventDir)}#${key} -->`;
}

const indent = (text: string) =>
  text
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');

/** The reply format of the spec, written out independently of src/render.ts. */
function reply(sender: string, items: Array<[line: string, expanded: string | undefined, result: string]>) {
  return [
    '<details>',
    '<summary>Updates by the bot instance <code>test</code> <em>(click for details)</em></summary>',
    '',
    ...items.map(
      ([line, expanded]) =>
        `- received bot command \`${line}\` from \`${sender}\`` +
        (expanded === undefined ? '' : `\n  - expanded format: \`${expanded}\``),
    ),
    '',
    ...items.map(([line, , result]) => `- handling command \`${line}\` resulted in:\n${indent(result)}`),
    '',
    '</details>',
  ].join('\n');
}

async function state(dir: string): Promise<DirState<EventData>> {
  const s = await readState<EventData>(dir);
  if (!s) throw new Error(`no state in ${dir}`);
  return s;
}

const rel = (dir: string) => jobdirs.relative(dir);

const TARGETS: Record<string, BuildTarget> = {
  zen4: {
    nodeType: 'zen4',
    repoId: 'eessi-test',
    os: 'linux',
    onArch: 'x86_64/amd/zen4',
    forArch: 'x86_64/amd/zen4',
    slurmParams: [],
  },
  gpu: {
    nodeType: 'gpu',
    repoId: 'eessi-test',
    os: 'linux',
    onArch: 'x86_64/amd/zen4',
    onAccel: 'nvidia/cc90',
    forArch: 'x86_64/amd/zen4',
    forAccel: 'nvidia/cc90',
    slurmParams: [],
  },
};

/** A job directory as a build command would have left it, at `stage`. */
async function makeJob(
  pr: number,
  event: string,
  run: string,
  node: 'zen4' | 'gpu',
  stage: string,
  data: Partial<JobData> = {},
  at: Date = clock,
): Promise<string> {
  const dir = path.join(jobdirs.prDir(MONTH, OWNER, REPO, pr), `event_${event}`, run, node, 'eessi-test');
  await fs.mkdir(dir, { recursive: true });
  const full: JobData = {
    pr: { owner: OWNER, repo: REPO, number: pr, installation_id: 1 },
    instance: 'test',
    target: TARGETS[node]!,
    exportVariables: [],
    backend: 'local',
    submit_id: `submit-${event}-${run}-${node}`,
    rows: [],
    ...data,
  };
  await writeState(dir, newState('job', stage, full, at));
  return dir;
}

// ---- comments with commands -------------------------------------------------------------------

/** What `bot: status` says first about this instance when no poller has written a heartbeat. */
const HEALTH = `- instance \`test\` (hpc-build-bot ${BOT_VERSION}): no poller heartbeat yet\n`;

describe('issue_comment.created on a PR', () => {
  test('help and status: one reply with both results; state done; queue empty', async () => {
    const deps = makeDeps();
    const dir = await comment('Hi bot!\nbot: help\nbot: status\n', 'd-help');
    expect(await jobdirs.pending()).toEqual([dir]);

    expect(await runTick(deps)).toEqual({ advanced: 1, failed: 0, skipped: 0, unchanged: 0, young: 0 });

    const status = `${HEALTH}\nno build jobs of instance \`test\` for this PR yet`;
    const body = reply('alice', [
      ['help', 'help', renderHelp()],
      ['status', 'status', status],
    ]);
    expect(callList()).toEqual([`POST ${commentsPath(1)}`]);
    expect(fake.calls[0]!.body).toEqual({ body: `${body}\n${marker(dir, 'g0:reply')}` });
    const id = fake.commentsOf(OWNER, REPO, 1)[0]!.id;
    expect(await state(dir)).toEqual({
      kind: 'event',
      stage: 'done',
      history: [
        { stage: 'received', at: T0.toISOString() },
        { stage: 'done', at: T0.toISOString() },
      ],
      attempts: 0,
      comments: { 'g0:reply': { intent_at: T0.toISOString(), id } },
      data: {
        event: 'issue_comment',
        action: 'created',
        generation: 0,
        results: { 'g0:cmd0': renderHelp(), 'g0:cmd1': status },
      },
    });
    expect(await jobdirs.pending()).toEqual([]);

    // A second tick has nothing to do and calls nothing.
    expect(await runTick(deps)).toEqual({ advanced: 0, failed: 0, skipped: 0, unchanged: 0, young: 0 });
    expect(fake.calls).toHaveLength(1);
  });

  test('build: a job directory per target is prepared and queued; the reply names it', async () => {
    const deps = makeDeps();
    const dir = await comment('bot: build for:arch=zen4', 'd-build');
    await runTick(deps);

    const jobDir = path.join(dir, 'run_000', 'zen4', 'eessi-test');
    const body = reply('alice', [
      [
        'build for:arch=zen4',
        'build for:architecture=zen4',
        `- job for \`eessi-test\` on node type \`zen4\` (for \`x86_64/amd/zen4\`) prepared in \`${rel(jobDir)}\`; its progress is reported in a comment of its own`,
      ],
    ]);
    expect(postedBodies()).toEqual([`${body}\n${marker(dir, 'g0:reply')}`]);
    expect(callList()).toEqual([`POST ${commentsPath(1)}`]);

    const job = await readState<JobData>(jobDir);
    expect(job).toEqual({
      kind: 'job',
      stage: 'prepared',
      history: [{ stage: 'prepared', at: T0.toISOString() }],
      attempts: 0,
      comments: {},
      data: {
        pr: { owner: OWNER, repo: REPO, number: 1, installation_id: 1 },
        instance: 'test',
        target: TARGETS.zen4,
        exportVariables: [],
        job_owner: 'alice',
        backend: 'local',
        submit_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
        rows: [],
      },
    });
    // Only zen4: the GPU node is not used for a CPU-only build.
    expect(await fs.readdir(path.join(dir, 'run_000'))).toEqual(['zen4']);
    const ev = await state(dir);
    expect(ev.stage).toBe('done');
    expect(ev.data.runs).toEqual({ 'g0:cmd0': 'run_000' });
    // The event left the queue; the job is queued for the next tick.
    expect(await jobdirs.pending()).toEqual([jobDir]);
  });

  test('mistakes: each gets what was wrong and the correct syntax, in one reply', async () => {
    const deps = makeDeps({ chatlevel: 'minimal' });
    const dir = await comment(
      ['bot: frobnicate', 'bot: build', 'bot: build for:arch=zen4 flavour:x', 'bot: cancel for:arch=x'].join(
        '\n',
      ),
      'd-bad',
    );
    await runTick(deps);
    const oneOf =
      'one of: `bot: help [inst:<instance>]`, `bot: show_config [inst:<instance>]`, `bot: status [last_build] [inst:<instance>]`, ' +
      '`bot: build [on:arch=<cpu>[,accel=<gpu>]] for:arch=<cpu>[,accel=<gpu>[+<gpu>...]]|for:set=<name> [repo:<repo_id>] [inst:<instance>] [exportvariable:NAME=value] [after:#<PR>] [--dry-run]`, ' +
      '`bot: plan [on:arch=<cpu>[,accel=<gpu>]] for:arch=<cpu>[,accel=<gpu>]|for:set=<name> [repo:<repo_id>] [inst:<instance>] [exportvariable:NAME=value]`, ' +
      '`bot: rebuild failed [inst:<instance>]  or  bot: rebuild for:arch=<cpu>[,accel=<gpu>]|for:set=<name> [on:arch=<cpu>[,accel=<gpu>]] [repo:<repo_id>] [inst:<instance>]`, ' +
      '`bot: cancel [job:<job id>] [repo:<repo_id>] [arch:<cpu>] [accel:<gpu>] [inst:<instance>]`, `bot: deploy [inst:<instance>]`, ' +
      '`bot: ping [inst:<instance>]`';
    const buildSyntax =
      '`bot: build [on:arch=<cpu>[,accel=<gpu>]] for:arch=<cpu>[,accel=<gpu>[+<gpu>...]]|for:set=<name> [repo:<repo_id>] [inst:<instance>] [exportvariable:NAME=value] [after:#<PR>] [--dry-run]`';
    const body = reply('alice', [
      ['frobnicate', undefined, `unknown command \`frobnicate\`\n\ncorrect syntax: ${oneOf}`],
      [
        'build',
        undefined,
        'no `for:` argument was given, so no build jobs are submitted; say what to build for, e.g. `for:arch=x86_64/amd/zen4`' +
          `\n\ncorrect syntax: ${buildSyntax}`,
      ],
      [
        'build for:arch=zen4 flavour:x',
        undefined,
        'unknown filter key `flavour`; use one of `accel`, `arch`, `exportvariable`, `inst`, `job`, `repo` (or another prefix of at least 3 letters)' +
          `\n\ncorrect syntax: ${buildSyntax}`,
      ],
      [
        'cancel for:arch=x',
        undefined,
        '`cancel` takes only `job:`, `repo:`, `arch:`, `accel:` and `inst:` filters' +
          '\n\ncorrect syntax: `bot: cancel [job:<job id>] [repo:<repo_id>] [arch:<cpu>] [accel:<gpu>] [inst:<instance>]`',
      ],
    ]);
    expect(postedBodies()).toEqual([`${body}\n${marker(dir, 'g0:reply')}`]);
    expect((await state(dir)).stage).toBe('done');
    expect(await jobdirs.prJobDirs(OWNER, REPO, 1)).toEqual([]);
  });

  test('a sender without command permission is told so; nothing else happens', async () => {
    const deps = makeDeps();
    const dir = await comment('bot: build for:arch=zen4', 'd-denied', 'mallory');
    await runTick(deps);
    expect(callList()).toEqual([
      'GET /orgs/org/teams/builders/memberships/mallory',
      `POST ${commentsPath(1)}`,
    ]);
    expect(postedBodies()).toEqual([
      `account \`mallory\` has NO permission to send commands to bot instance \`test\`\n${marker(dir, 'g0:reply')}`,
    ]);
    expect((await state(dir)).stage).toBe('done');
    expect(await jobdirs.prJobDirs(OWNER, REPO, 1)).toEqual([]);
  });

  test('a team member may send commands, but building needs the build permission', async () => {
    const deps = makeDeps();
    const dir = await comment('bot: build for:arch=zen4', 'd-team', 'bob');
    await runTick(deps);
    expect(callList()).toEqual(['GET /orgs/org/teams/builders/memberships/bob', `POST ${commentsPath(1)}`]);
    const body = reply('bob', [
      [
        'build for:arch=zen4',
        'build for:architecture=zen4',
        'account `bob` has NO permission to submit build jobs',
      ],
    ]);
    expect(postedBodies()).toEqual([`${body}\n${marker(dir, 'g0:reply')}`]);
    expect(await jobdirs.prJobDirs(OWNER, REPO, 1)).toEqual([]);
  });

  test('no node type matches: the reply lists what this instance offers', async () => {
    const deps = makeDeps();
    const dir = await comment('bot: build for:arch=aarch64/neoverse_v1', 'd-nomatch');
    await runTick(deps);
    const body = reply('alice', [
      [
        'build for:arch=aarch64/neoverse_v1',
        'build for:architecture=aarch64/neoverse_v1',
        [
          'no jobs were submitted: no node type of instance `test` matches.',
          'Available targets:',
          '- `zen4`: on:arch=x86_64/amd/zen4 (repositories: eessi-test)',
          '- `gpu`: on:arch=x86_64/amd/zen4,accel=nvidia/cc90 (repositories: eessi-test)',
        ].join('\n'),
      ],
    ]);
    expect(postedBodies()).toEqual([`${body}\n${marker(dir, 'g0:reply')}`]);
  });

  test('status [last_build] is built from the job directories', async () => {
    const deps = makeDeps();
    const early = new Date('2026-03-14T10:00:00.000Z');
    const old = await makeJob(
      1,
      'a-old',
      'run_000',
      'zen4',
      'finished',
      {
        job_id: '11',
        result: { status: 'SUCCESS', description: '', artefacts: [] },
      },
      early,
    );
    const newer = await makeJob(1, 'b-new', 'run_000', 'zen4', 'running', { job_id: '12' });
    const dir = await comment('bot: status\nbot: status last_build', 'd-status');
    await runTick(deps);
    const head = [
      'This is the status of all the `bot: build` jobs of instance `test` for this PR:',
      '',
      '|on|for|repo|result|date|status|job dir|',
      '|---|---|---|---|---|---|---|',
    ];
    const rowOld = `|\`x86_64/amd/zen4\`|\`x86_64/amd/zen4\`|\`eessi-test\`|:grin: SUCCESS|${early.toISOString()}|finished|\`${rel(old)}\`|`;
    const rowNew = `|\`x86_64/amd/zen4\`|\`x86_64/amd/zen4\`|\`eessi-test\`||${T0.toISOString()}|running|\`${rel(newer)}\`|`;
    const body = reply('alice', [
      ['status', 'status', [HEALTH, ...head, rowOld, rowNew].join('\n')],
      ['status last_build', 'status last_build', [HEALTH, ...head, rowNew].join('\n')],
    ]);
    expect(postedBodies()).toEqual([`${body}\n${marker(dir, 'g0:reply')}`]);
  });

  test('cancel filters: only the matching active jobs of this PR are cancelled', async () => {
    const deps = makeDeps();
    const gpu = await makeJob(1, 'a-build', 'run_000', 'gpu', 'submitted', { job_id: '4242' });
    const done = await makeJob(1, 'a-build', 'run_000', 'zen4', 'finished', { job_id: '4141' });
    const otherPr = await makeJob(2, 'x-build', 'run_000', 'gpu', 'running', { job_id: '4343' });
    const dir = await comment(
      'bot: cancel arch:zen2\nbot: cancel job:4141\nbot: cancel accel:cc90',
      'd-cancel',
    );
    await runTick(deps);
    const none = 'no active jobs matched, nothing was cancelled';
    const body = reply('alice', [
      ['cancel arch:zen2', 'cancel architecture:zen2', none],
      ['cancel job:4141', 'cancel job:4141', none],
      ['cancel accel:cc90', 'cancel accelerator:cc90', `cancelled:\n- job \`4242\` in \`${rel(gpu)}\``],
    ]);
    expect(postedBodies()).toEqual([`${body}\n${marker(dir, 'g0:reply')}`]);
    expect(backend.calls).toEqual([`cancel 4242 ${rel(gpu)}`]);
    expect((await readState<JobData>(gpu))!.data.cancel_requested).toBe('cancelled by alice');
    expect((await readState<JobData>(done))!.data.cancel_requested).toBeUndefined();
    expect((await readState<JobData>(otherPr))!.data.cancel_requested).toBeUndefined();
    // The cancelled job is queued so that the poller follows it to `cancelled`.
    expect(await jobdirs.pending()).toEqual([gpu]);
  });

  test('a cancel of a prepared job is not lost (the job continues from its file)', async () => {
    const deps = makeDeps();
    const job = await makeJob(1, 'zz-build', 'run_000', 'zen4', 'prepared');
    await jobdirs.enqueue(job);
    const dir = await comment('bot: cancel', 'aa-cancel');
    expect(await jobdirs.pending()).toEqual([dir, job]);

    // Only the event advances first (a tick advances jobs before events, so this is how a cancel meets a
    // job that has not advanced since), then the job follows its file.
    expect(await runTick(deps, [dir])).toEqual({
      advanced: 1,
      failed: 0,
      skipped: 0,
      unchanged: 0,
      young: 0,
    });
    expect(await runTick(deps)).toEqual({ advanced: 1, failed: 0, skipped: 0, unchanged: 0, young: 0 });

    const js = (await readState<JobData>(job))!;
    expect(js.stage).toBe('cancelled');
    expect(js.data.cancel_requested).toBe('cancelled by alice');
    expect(js.data.rows.map((r) => [r.status, r.comment])).toEqual([
      ['cancelled', 'cancelled before submission by `alice` (`bot: cancel`)'],
    ]);
    expect(backend.calls).toEqual([]); // never submitted, so nothing to scancel
    const bodies = postedBodies();
    expect(bodies).toHaveLength(2);
    expect(bodies[0]).toContain(`cancelled:\n  - unsubmitted job in \`${rel(job)}\``);
    expect(bodies[1]).toContain('cancelled before submission by `alice` (`bot: cancel`)');
    expect(bodies[1]).toContain(`<!-- hpcbot:test:event_zz-build/run_000/zen4/eessi-test#job -->`);
    expect(await jobdirs.pending()).toEqual([]);
  });

  test('a job checked out but not yet submitted (`submitting`) is active: cancel reaches it', async () => {
    const deps = makeDeps();
    const job = await makeJob(1, 'zz-build', 'run_000', 'zen4', 'submitting');
    await jobdirs.enqueue(job);
    const dir = await comment('bot: cancel', 'aa-cancel');

    expect(await runTick(deps, [dir])).toEqual({
      advanced: 1,
      failed: 0,
      skipped: 0,
      unchanged: 0,
      young: 0,
    });
    expect(await runTick(deps)).toEqual({ advanced: 1, failed: 0, skipped: 0, unchanged: 0, young: 0 });

    const js = (await readState<JobData>(job))!;
    expect(js.stage).toBe('cancelled');
    expect(js.data.cancel_requested).toBe('cancelled by alice');
    // Asked whether a crashed attempt had submitted it; it had not, so nothing to scancel.
    expect(backend.calls).toEqual(['find submit-zz-build-run_000-zen4']);
    expect(postedBodies()[0]).toContain(`cancelled:\n  - unsubmitted job in \`${rel(job)}\``);
  });

  test('50 commands in a 60 kB comment with unicode oddities: one reply, cut to the limit with a note', async () => {
    const deps = makeDeps();
    for (let i = 0; i < 30; i++)
      await makeJob(1, `j${String(i).padStart(2, '0')}`, 'run_000', 'zen4', 'running');
    const lines: string[] = [];
    for (let i = 0; i < 50; i++) {
      lines.push(
        i % 5 === 4 ? `bot: h\u200belp\u202e🤖${i}` : 'bot: status',
        `filler ${i} ${'ü∑ʼ\u0301 '.repeat(250)}`,
      );
    }
    const body = lines.join('\n');
    expect(body.length).toBeGreaterThan(60_000);
    const dir = await comment(body, 'd-big');
    await runTick(deps);
    const [posted, ...more] = postedBodies();
    expect(more).toEqual([]);
    expect(posted!.length).toBeLessThanOrEqual(MAX_COMMENT_CHARS);
    expect(posted).toContain('- 30 more command line(s) were ignored: at most 20 are handled per comment');
    expect(posted).toContain(
      `… (cut: this comment exceeded GitHub's limit of ${MAX_COMMENT_CHARS} characters)`,
    );
    expect(posted).toContain('- received bot command `h\u200belp\u202e🤖4` from `alice`');
    expect(posted!.endsWith(marker(dir, 'g0:reply'))).toBe(true);
    expect((await state(dir)).stage).toBe('done');
  });
});

// ---- events that need nothing -----------------------------------------------------------------

test('events that need nothing are recorded as ignored, without a single GitHub call', async () => {
  const deps = makeDeps();
  const edited = await store('issue_comment', commentPayload('bot: help', 'alice', 'edited'), 'i-edited');
  const deleted = await store('issue_comment', commentPayload('bot: help', 'alice', 'deleted'), 'i-deleted');
  const app = await comment('bot: help', 'i-app', 'someapp[bot]');
  const self = await comment('bot: help', 'i-self', 'HPCBOT-test');
  const chat = await comment('Looks good to me, bot helped. bot : help', 'i-nocmd');
  const plain = payloads.commentOnIssue() as Payload;
  plain.comment.body = 'bot: help';
  plain.comment.user.login = 'alice';
  const issue = await store('issue_comment', plain, 'i-plain');
  const reopened = await store(
    'pull_request',
    prPayload('opened', (p) => (p.action = 'reopened')),
    'i-reopened',
  );
  const label = await store('pull_request', prPayload('labeled'), 'i-label');
  const renamed = await store('repository', payloads.repositoryRenamed() as Payload, 'i-renamed');
  const review = await store(
    'pull_request_review',
    { ...prPayload('opened'), action: 'submitted' },
    'i-review',
  );
  const sync = await store('pull_request', prPayload('synchronize'), 'i-sync');

  expect(await runTick(deps)).toEqual({ advanced: 11, failed: 0, skipped: 0, unchanged: 0, young: 0 });
  expect(fake.calls).toEqual([]);
  expect(backend.calls).toEqual([]);
  const notes: Record<string, string> = {};
  for (const dir of [edited, deleted, app, self, chat, issue, reopened, label, renamed, review, sync]) {
    const s = await state(dir);
    expect(s.stage).toBe('ignored');
    notes[path.basename(dir)] = s.history.at(-1)!.note!;
  }
  expect(notes).toEqual({
    'event_i-edited': 'comment edited: only new comments are read',
    'event_i-deleted': 'comment deleted: only new comments are read',
    'event_i-app': 'comment by the bot account someapp[bot]',
    'event_i-self': 'comment by the bot account HPCBOT-test',
    'event_i-nocmd': 'no bot: command in the comment',
    'event_i-plain': 'comment on a plain issue, not a pull request',
    'event_i-reopened': 'the bot does not act on pull_request.reopened',
    'event_i-label': 'label bug means nothing to the bot',
    'event_i-renamed': 'the bot does not act on repository.renamed',
    'event_i-review': 'the bot does not act on pull_request_review.submitted',
    'event_i-sync': 'no jobs from older heads',
  });
  expect(await jobdirs.pending()).toEqual([]);
});

// ---- pull_request events ----------------------------------------------------------------------

describe('pull_request events', () => {
  test('labeled bot:build with the default `hint`: the reply says to use the command', async () => {
    const deps = makeDeps();
    const dir = await store(
      'pull_request',
      prPayload('labeled', (p) => (p.label.name = 'bot:build')),
      'l-hint',
    );
    await runTick(deps);
    expect(callList()).toEqual([`POST ${commentsPath(2)}`]);
    expect(postedBodies()).toEqual([
      "Handling the label 'bot:build' is disabled on this instance. Use the command `bot: build [FILTER]*` instead.\n" +
        marker(dir, 'g0:reply'),
    ]);
    expect(await jobdirs.prJobDirs(OWNER, REPO, 2)).toEqual([]);
  });

  test('labeled bot:build with build_defaults builds the default command (with or without `bot:`)', async () => {
    const deps = makeDeps({
      labels: { build: 'build_defaults', default_build_command: 'bot: build for:arch=zen4,accel=cc90' },
    });
    const dir = await store(
      'pull_request',
      prPayload('labeled', (p) => {
        p.label.name = 'bot:build';
        p.sender.login = 'alice';
      }),
      'l-build',
    );
    await runTick(deps);
    const jobDir = path.join(dir, 'run_000', 'gpu', 'eessi-test');
    const body = reply('alice', [
      [
        'build for:arch=zen4,accel=cc90',
        'build for:architecture=zen4,accelerator=cc90',
        `- job for \`eessi-test\` on node type \`gpu\` (for \`x86_64/amd/zen4, nvidia/cc90\`) prepared in \`${rel(jobDir)}\`; its progress is reported in a comment of its own`,
      ],
    ]);
    expect(postedBodies()).toEqual([`${body}\n${marker(dir, 'g0:reply')}`]);
    expect((await readState<JobData>(jobDir))!.stage).toBe('prepared');
    expect(await jobdirs.pending()).toEqual([jobDir]);
  });

  test('labeled bot:deploy checks the deploy permission', async () => {
    const deps = makeDeps();
    const denied = await store(
      'pull_request',
      prPayload('labeled', (p) => (p.label.name = 'bot:deploy')),
      'l-deploy1',
    );
    const allowed = await store(
      'pull_request',
      prPayload('labeled', (p) => {
        p.label.name = 'bot:deploy';
        p.sender.login = 'alice';
      }),
      'l-deploy2',
    );
    await runTick(deps);
    expect(postedBodies()).toEqual([
      `account \`Codertocat\` has NO permission to deploy\n${marker(denied, 'g0:reply')}`,
      `deploy: this PR has no successful build jobs on this instance, nothing to upload\n${marker(allowed, 'g0:reply')}`,
    ]);
  });

  test.each([
    ['chatty', 1],
    ['basic', 0],
  ])('opened at chatlevel %s: %d config comment(s)', async (chatlevel, n) => {
    const deps = makeDeps({ chatlevel });
    const dir = await store('pull_request', prPayload('opened'), 'o-open');
    await runTick(deps);
    expect(postedBodies()).toEqual(n ? [`${renderConfig(deps.config)}\n${marker(dir, 'g0:config')}`] : []);
    expect((await state(dir)).stage).toBe('done');
  });

  test('synchronize: jobs from older heads become stale; active ones are cancelled', async () => {
    const deps = makeDeps();
    const head = prPayload('synchronize').pull_request.head.sha as string;
    const active = await makeJob(2, 'a', 'run_000', 'zen4', 'submitted', { job_id: '111', head_sha: 'aaaa' });
    const current = await makeJob(2, 'a', 'run_000', 'gpu', 'submitted', { job_id: '222', head_sha: head });
    const finished = await makeJob(2, 'b', 'run_000', 'zen4', 'finished', {
      job_id: '100',
      head_sha: 'aaaa',
    });
    const prepared = await makeJob(2, 'c', 'run_000', 'zen4', 'prepared');
    const before = await readState(current);
    const dir = await store('pull_request', prPayload('synchronize'), 's-sync');
    await runTick(deps);

    expect(fake.calls).toEqual([]);
    expect(backend.calls).toEqual([`cancel 111 ${rel(active)}`]);
    const a = (await readState<JobData>(active))!.data;
    expect(a.stale).toEqual({ superseded_by: head });
    expect(a.cancel_requested).toBe(`superseded by ${head.slice(0, 10)}`);
    const f = (await readState<JobData>(finished))!.data;
    expect(f.stale).toEqual({ superseded_by: head });
    expect(f.cancel_requested).toBeUndefined();
    expect(await readState(current)).toEqual(before);
    expect((await readState<JobData>(prepared))!.data.stale).toBeUndefined();
    expect((await state(dir)).stage).toBe('done');
    // Both touched jobs are queued to re-render their comments.
    expect((await jobdirs.pending()).sort()).toEqual([active, finished].sort());
  });

  // The rest of closing (moving the PR's directories away once no job is active) is src/stages/cleanup.ts's
  // and tested with it; here: the jobs are cancelled and the PR is told, subject to chatlevel.
  test('closed: active jobs are cancelled and the PR is told', async () => {
    const deps = makeDeps();
    const prepared = await makeJob(2, 'a', 'run_000', 'zen4', 'prepared');
    const running = await makeJob(2, 'a', 'run_000', 'gpu', 'running', { job_id: '333' });
    const finished = await makeJob(2, 'b', 'run_000', 'zen4', 'finished', { job_id: '300' });
    const dir = await store('pull_request', prPayload('closed'), 'c-closed');
    expect(await runTick(deps)).toEqual({ advanced: 1, failed: 0, skipped: 0, unchanged: 0, young: 0 });
    expect(backend.calls).toEqual([`cancel 333 ${rel(running)}`]);
    expect((await readState<JobData>(prepared))!.data.cancel_requested).toBe('PR closed');
    expect((await readState<JobData>(running))!.data.cancel_requested).toBe('PR closed');
    expect((await readState<JobData>(finished))!.data.cancel_requested).toBeUndefined();
    const [body, ...more] = postedBodies();
    expect(more).toEqual([]);
    expect(body).toMatch(/^PR closed without merging: cancelled 2 active job\(s\) of (this )?instance/);
    expect(body).toContain(`\`${rel(running)}\``);
    expect(body).toContain(`\`${rel(prepared)}\``);
    expect(body!.endsWith(marker(dir, 'g0:closed'))).toBe(true);
    // Both cancelled jobs are queued, so the poller follows them to `cancelled`.
    const pending = await jobdirs.pending();
    expect(pending).toEqual(expect.arrayContaining([prepared, running]));
    expect(pending).not.toContain(finished);
  });

  test('closed (merged) with nothing to cancel says so only when chatty', async () => {
    const quiet = makeDeps();
    await store(
      'pull_request',
      prPayload('closed', (p) => (p.pull_request.merged = true)),
      'c-m1',
    );
    expect(await runTick(quiet)).toEqual({ advanced: 1, failed: 0, skipped: 0, unchanged: 0, young: 0 });
    expect(postedBodies()).toEqual([]);
    expect(backend.calls).toEqual([]);

    const chatty = makeDeps({ chatlevel: 'chatty' });
    const d2 = await store(
      'pull_request',
      prPayload('closed', (p) => (p.pull_request.merged = true)),
      'c-m2',
    );
    await runTick(chatty);
    const [body, ...more] = postedBodies();
    expect(more).toEqual([]);
    expect(body).toMatch(/^PR merged: no active jobs of (this )?instance/);
    expect(body!.endsWith(marker(d2, 'g0:closed'))).toBe(true);
  });
});

// ---- chatlevels -------------------------------------------------------------------------------

describe('chatlevel changes what is said, never what is done', () => {
  test.each<[string, string[]]>([
    ['incognito', []],
    ['minimal', ['g-help']],
    ['basic', ['g-build', 'g-help']],
    ['chatty', ['g-build', 'g-help', 'g-open']],
  ])('%s', async (chatlevel, said) => {
    const deps = makeDeps({ chatlevel });
    const build = await comment('bot: build for:arch=zen4', 'g-build');
    const help = await comment('bot: help', 'g-help');
    const open = await store('pull_request', prPayload('opened'), 'g-open');
    expect(await runTick(deps)).toEqual({ advanced: 3, failed: 0, skipped: 0, unchanged: 0, young: 0 });
    const posted = postedBodies().map(
      (b) => /#g0:(?:reply|config) -->$/.test(b) && /event_(g-\w+)#/.exec(b)![1],
    );
    expect([...posted].sort()).toEqual(said);
    for (const dir of [build, help, open]) expect((await state(dir)).stage).toBe('done');
    // The build happened at every level.
    expect(await jobdirs.pending()).toEqual([path.join(build, 'run_000', 'zen4', 'eessi-test')]);
  });
});

// ---- failures, retries, crashes, replays --------------------------------------------------------

describe('failures and retries', () => {
  test('a broken directory records its error and backs off; the others still advance', async () => {
    const deps = makeDeps();
    const broken = path.join(jobdirs.prDir(MONTH, OWNER, REPO, 1), 'event_a-broken');
    await fs.mkdir(broken, { recursive: true });
    await fs.writeFile(path.join(broken, 'event.json'), '{"delivery": "a-broken", trunc');
    await jobdirs.enqueue(broken);
    const good = await comment('bot: help', 'b-good');

    expect(await runTick(deps)).toEqual({ advanced: 1, failed: 1, skipped: 0, unchanged: 0, young: 0 });
    expect((await state(good)).stage).toBe('done');
    expect(postedBodies()).toHaveLength(1);
    let s = await state(broken);
    expect(s).toMatchObject({
      stage: 'received',
      attempts: 1,
      last_error: { message: expect.stringMatching(/JSON/), at: T0.toISOString() },
      next_retry_at: new Date(T0.getTime() + 10_000).toISOString(),
    });
    expect(await jobdirs.pending()).toEqual([broken]);

    // Not due yet: skipped, untouched.
    clock = new Date(T0.getTime() + 5_000);
    expect(await runTick(deps)).toEqual({ advanced: 0, failed: 0, skipped: 1, unchanged: 0, young: 0 });
    expect(await state(broken)).toEqual(s);

    // Due: a second attempt, twice the wait.
    clock = new Date(T0.getTime() + 10_000);
    expect(await runTick(deps)).toEqual({ advanced: 0, failed: 1, skipped: 0, unchanged: 0, young: 0 });
    s = await state(broken);
    expect(s.attempts).toBe(2);
    expect(s.next_retry_at).toBe(new Date(clock.getTime() + 20_000).toISOString());

    // max_attempts (3) reached: parked as failed and out of the queue.
    clock = new Date(T0.getTime() + 30_000);
    await runTick(deps);
    s = await state(broken);
    expect(s.stage).toBe('failed');
    expect(s.attempts).toBe(3);
    expect(s.history.at(-1)).toEqual({
      stage: 'failed',
      at: clock.toISOString(),
      note: 'gave up after 3 attempts',
    });
    expect(await jobdirs.pending()).toEqual([]);
    expect(postedBodies()).toHaveLength(1);
  });

  test('a failed reply is retried without re-running the command or posting twice', async () => {
    const deps = makeDeps();
    const dir = await comment('bot: build for:arch=zen4', 'f-retry');
    fake.failNext('POST', /\/comments$/, 422);
    expect(await runTick(deps)).toEqual({ advanced: 0, failed: 1, skipped: 0, unchanged: 0, young: 0 });
    let s = await state(dir);
    expect(s.stage).toBe('received');
    expect(s.comments).toEqual({ 'g0:reply': { intent_at: T0.toISOString() } });
    expect(s.data.runs).toEqual({ 'g0:cmd0': 'run_000' });
    expect(fake.commentsOf(OWNER, REPO, 1)).toEqual([]);

    clock = new Date(T0.getTime() + 10_000);
    await runTick(deps);
    s = await state(dir);
    expect(s.stage).toBe('done');
    expect(s.attempts).toBe(0);
    expect(s.last_error).toBeUndefined();
    // The retry looked for the marker first, then posted once.
    // (the job queued by the first tick also advanced in the second; its calls are not this test's)
    expect(callList().filter((c) => c.endsWith('/comments'))).toEqual([
      `POST ${commentsPath(1)}`,
      `GET ${commentsPath(1)}`,
      `POST ${commentsPath(1)}`,
    ]);
    expect(fake.commentsOf(OWNER, REPO, 1)).toHaveLength(1);
    expect(await fs.readdir(dir)).toEqual(expect.not.arrayContaining(['run_001']));
  });

  test('after a crash that lost the comment id, the marker finds the comment (only the bot’s own)', async () => {
    const deps = makeDeps();
    const dir = await comment('bot: help', 'k-crash');
    // What a crash right after createComment leaves: the intent, no id, and the comment on GitHub.
    const fresh = newState<EventData>('event', 'received', { event: '', action: null, generation: 0 }, T0);
    await writeState(dir, { ...fresh, comments: { 'g0:reply': { intent_at: T0.toISOString() } } });
    const m = marker(dir, 'g0:reply');
    fake.addComment(OWNER, REPO, 1, `I copied your marker ${m}`, 'mallory');
    const mine = fake.addComment(OWNER, REPO, 1, `the reply\n${m}`, BOT);

    await runTick(deps);
    expect(callList()).toEqual([`GET ${commentsPath(1)}`]);
    const s = await state(dir);
    expect(s.stage).toBe('done');
    expect(s.comments['g0:reply']).toEqual({ intent_at: T0.toISOString(), id: mine.id });
  });

  test('replay: a new generation and run; the earlier run is left as it was', async () => {
    const deps = makeDeps();
    const dir = await comment('bot: build for:arch=zen4', 'r-replay');
    await runTick(deps);
    const run0 = path.join(dir, 'run_000', 'zen4', 'eessi-test');
    // The first run's job has finished by the time the operator replays the event.
    const job0 = (await readState<JobData>(run0))!;
    await writeState(run0, { ...job0, stage: 'finished' });
    await jobdirs.dequeue(run0);
    const run0Files = await fs.readdir(run0);
    const run0State = await fs.readFile(path.join(run0, 'state.json'), 'utf8');
    await expect(replayEvent(deps, run0)).rejects.toThrow(/not an event directory/);

    clock = new Date(T0.getTime() + 60_000);
    await replayEvent(deps, dir);
    let s = await state(dir);
    expect(s.stage).toBe('received');
    expect(s.data.generation).toBe(1);
    // replaying again before it ran is refused
    await expect(replayEvent(deps, dir)).rejects.toThrow(/still at stage received/);

    await runTick(deps, [dir]);
    s = await state(dir);
    expect(s.stage).toBe('done');
    expect(s.history.map((h) => [h.stage, h.note])).toEqual([
      ['received', undefined],
      ['done', undefined],
      ['received', 'replay 1'],
      ['done', undefined],
    ]);
    expect(s.data.runs).toEqual({ 'g0:cmd0': 'run_000', 'g1:cmd0': 'run_001' });
    expect(Object.keys(s.comments)).toEqual(['g0:reply', 'g1:reply']);
    expect(await fs.readFile(path.join(run0, 'state.json'), 'utf8')).toBe(run0State);
    expect(await fs.readdir(run0)).toEqual(run0Files);
    const run1 = path.join(dir, 'run_001', 'zen4', 'eessi-test');
    expect((await readState<JobData>(run1))!.stage).toBe('prepared');
    const bodies = postedBodies();
    expect(bodies).toHaveLength(2);
    expect(bodies[1]).toContain(`prepared in \`${rel(run1)}\``);
    expect(bodies[1]!.endsWith(marker(dir, 'g1:reply'))).toBe(true);
  });
});

describe('the poller lock', () => {
  test('one holder at a time; a dead holder on this host is stale', async () => {
    const file = path.join(jobdirs.locksDir, 'poller.lock');
    const lock = await acquireLock(file);
    const holder = JSON.parse(await fs.readFile(file, 'utf8')) as { pid: number; host: string };
    expect(holder).toMatchObject({ pid: process.pid, host: os.hostname() });
    await expect(acquireLock(file)).rejects.toBeInstanceOf(LockBusyError);
    await lock.release();

    // A lock left by a process that is gone is broken and taken over.
    await fs.writeFile(
      file,
      JSON.stringify({ pid: 2 ** 22 + 12345, host: os.hostname(), started_at: new Date().toISOString() }),
    );
    const again = await acquireLock(file);
    expect(JSON.parse(await fs.readFile(file, 'utf8'))).toMatchObject({ pid: process.pid });
    await again.release();
    await expect(fs.access(file)).rejects.toThrow();
  });

  test('isStale: another host is trusted until the lock is older than staleMs', () => {
    const now = new Date('2026-03-14T12:00:00Z');
    const other = { pid: process.pid, host: `not-${os.hostname()}`, started_at: '2026-03-14T11:00:00Z' };
    expect(isStale(other, now, 2 * 3600_000)).toBe(false);
    expect(isStale(other, now, 1800_000)).toBe(true);
    expect(isStale({ ...other, host: os.hostname() }, now, 2 * 3600_000)).toBe(false);
  });
});
