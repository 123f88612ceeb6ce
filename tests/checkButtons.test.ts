/**
 * The buttons of a job's check run (issue 13, item 2): Rebuild on runs that ended badly, Cancel on
 * active ones, GitHub's "Re-run" as Rebuild. Real check_run payloads from @octokit/webhooks-examples,
 * adjusted to our PR, go through classifyEvent, the event store and the real poller, with the fake
 * GitHub and App auth.
 */
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { createGitHub, type CheckRunBody } from '../src/adapters/github/index.js';
import { CHECK_ACTIONS, checkRunActions } from '../src/domain/checkRun.js';
import { classifyEvent } from '../src/ingest/eventStore.js';
import type { JobData } from '../src/store/job.js';
import { readState } from '../src/store/state.js';
import {
  INSTALLATION,
  jobDirsOf,
  releaseWaitingJobs,
  nextDelivery,
  openPr,
  OWNER,
  PR,
  REPO,
  REVIEWER,
  startHarness,
  stageOf,
  stateOf,
  storeComment,
  storeRaw,
  tickUntil,
  type Harness,
} from './support/botHarness.js';
import type { FakeCheckRun } from './support/fakeGithub.js';
import { payloads } from './support/payloads.js';
import { WAITING_BOT } from './support/prRepo.js';
import { killAll } from './support/spawn.js';

const APP_ID = 77;
const REBUILD = {
  label: 'Rebuild',
  description: 'Build this target again at the PR head',
  identifier: 'rebuild',
};
const CANCEL = { label: 'Cancel', description: 'Cancel this build job', identifier: 'cancel' };

describe('checkRunActions', () => {
  test.each<[Parameters<typeof checkRunActions>[0], Parameters<typeof checkRunActions>[1], unknown[]]>([
    ['queued', undefined, [CANCEL]],
    ['in_progress', undefined, [CANCEL]],
    ['completed', 'failure', [REBUILD]],
    ['completed', 'cancelled', [REBUILD]],
    ['completed', 'timed_out', [REBUILD]],
    ['completed', 'action_required', [REBUILD]],
    ['completed', 'success', []],
    ['completed', 'neutral', []],
  ])('%s %s', (status, conclusion, actions) => {
    expect(checkRunActions(status, conclusion)).toEqual(actions);
  });

  test("every button fits GitHub's limits (label and identifier 20, description 40)", () => {
    expect(Object.values(CHECK_ACTIONS)).toEqual([REBUILD, CANCEL]);
    for (const a of Object.values(CHECK_ACTIONS)) {
      expect(a.label.length).toBeLessThanOrEqual(20);
      expect(a.identifier.length).toBeLessThanOrEqual(20);
      expect(a.description.length).toBeLessThanOrEqual(40);
    }
  });
});

/** The real example, turned into a press on `run` of our PR by `sender`. */
function pressPayload(
  run: Pick<FakeCheckRun, 'id' | 'name' | 'head_sha' | 'app_id'> & { external_id: string | null },
  how: { action: 'requested_action'; identifier: string } | { action: 'rerequested' },
  sender: string,
  pullRequests: number[] = [PR],
): Record<string, unknown> {
  const p =
    how.action === 'rerequested' ? payloads.checkRunRerequested() : payloads.checkRunRequestedAction();
  if (how.action === 'requested_action') p.requested_action = { identifier: how.identifier };
  p.repository!.owner.login = OWNER;
  p.repository!.name = REPO;
  p.installation = { id: INSTALLATION, node_id: `I_fake${INSTALLATION}` };
  (p.sender as { login: string }).login = sender;
  const cr = p.check_run as Record<string, unknown> & { app: { id: number } };
  Object.assign(cr, {
    id: run.id,
    name: run.name,
    external_id: run.external_id,
    head_sha: run.head_sha,
    pull_requests: pullRequests.map((number) => ({
      number,
      id: number,
      url: `https://api.github.com/repos/${OWNER}/${REPO}/pulls/${number}`,
      head: { ref: 'feature', sha: run.head_sha, repo: { id: 1, name: REPO, url: '' } },
      base: { ref: 'main', sha: '0'.repeat(40), repo: { id: 1, name: REPO, url: '' } },
    })),
  });
  cr.app.id = run.app_id;
  return p;
}

describe('classifyEvent for check_run', () => {
  const run = {
    id: 5000,
    name: 'hpcbot/test: eessi-test x86_64/amd/zen4',
    head_sha: 'a'.repeat(40),
    app_id: APP_ID,
    external_id: `2025.01/${OWNER}/${REPO}/pr_${PR}/event_d/run_000/zen4/eessi-test`,
  };
  const rebuild = { action: 'requested_action', identifier: 'rebuild' } as const;

  test('a press on one of our runs is stored under the PR of its job', () => {
    expect(classifyEvent('check_run', pressPayload(run, rebuild, REVIEWER), { appId: APP_ID })).toEqual({
      store: true,
      owner: OWNER,
      repo: REPO,
      scope: { kind: 'pr', number: PR },
    });
  });

  test('without a job dir of this repository: pull_requests[0], else the repository (_repo)', () => {
    const odd = { ...run, external_id: `2025.01/someone/else/pr_99/event_d/run_000/zen4/eessi-test` };
    expect(classifyEvent('check_run', pressPayload(odd, rebuild, REVIEWER, [12]))).toMatchObject({
      scope: { kind: 'pr', number: 12 },
    });
    expect(
      classifyEvent('check_run', pressPayload({ ...run, external_id: null }, rebuild, REVIEWER, [])),
    ).toMatchObject({
      store: true,
      scope: { kind: 'repo' },
    });
  });

  test('a check run of another app is not stored', () => {
    const other = { ...run, app_id: 12345 };
    expect(classifyEvent('check_run', pressPayload(other, rebuild, REVIEWER), { appId: APP_ID })).toEqual({
      store: false,
      reason: 'a check run of another app',
    });
    // With no app id configured, only runs named hpcbot/...: the example's own run is dropped.
    expect(classifyEvent('check_run', payloads.checkRunRequestedAction())).toEqual({
      store: false,
      reason: 'a check run of another app',
    });
    expect(classifyEvent('check_run', payloads.checkRunRerequested())).toMatchObject({ store: false });
  });

  test('other check_run actions are not stored', () => {
    const created = { ...pressPayload(run, rebuild, REVIEWER), action: 'created' };
    expect(classifyEvent('check_run', created, { appId: APP_ID })).toMatchObject({ store: false });
  });
});

// ---- through the poller ----------------------------------------------------------------------

let appKey: string;
beforeAll(() => {
  appKey = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  }).privateKey;
});

let h: Harness | undefined;
afterEach(async () => {
  await killAll();
  if (h) await releaseWaitingJobs(h);
  await h?.stop();
  h = undefined;
});

async function appHarness(): Promise<Harness> {
  const harness = await startHarness();
  const keyFile = path.join(harness.root, 'app.pem');
  writeFileSync(keyFile, appKey, { mode: 0o600 });
  const config = {
    ...harness.config,
    github: { ...harness.config.github, app_id: APP_ID, private_key_file: keyFile },
  };
  harness.config = config;
  harness.deps.config = config;
  harness.deps.github = createGitHub(
    config,
    harness.deps.logger,
    {},
    { retryBaseMs: 1, retries: 1, throttle: false },
  );
  return harness;
}

const FAILING_BOT = {
  'bot/build.sh': '#!/bin/bash\nexit 1\n',
  'bot/check-build.sh':
    '#!/bin/bash\nprintf "[RESULT]\\ncomment_description = :cry: FAILURE\\nstatus = FAILURE\\nartefacts =\\n" > "_bot_job${SLURM_JOB_ID}.result"\n',
};

/** The body last sent for check run `id` (the fake keeps no actions; the request shows them). */
function lastBodySent(harness: Harness, id: number): CheckRunBody {
  const writes = harness.fake.calls.filter(
    (c) =>
      (c.method === 'PATCH' && c.path.endsWith(`/check-runs/${id}`)) ||
      (c.method === 'POST' && c.path.endsWith('/check-runs')),
  );
  const mine = writes.filter(
    (c) => c.method === 'PATCH' || (c.body as CheckRunBody).name === runOf(harness, id).name,
  );
  return mine.at(-1)!.body as CheckRunBody;
}

function runOf(harness: Harness, id: number): FakeCheckRun {
  return harness.fake.checkRunsOf(OWNER, REPO).find((r) => r.id === id)!;
}

/** Replies of event dirs (not job comments): what a refused press posts. */
const replies = (harness: Harness) =>
  harness.fake.commentsOf(OWNER, REPO, PR).filter((c) => !c.body.includes('#job -->'));

async function oneJobAt(harness: Harness, ...stages: string[]): Promise<string> {
  await tickUntil(harness, async () => {
    const dirs = await jobDirsOf(harness);
    return dirs.length === 1 && stages.includes((await stageOf(dirs[0]!)) ?? '');
  });
  return (await jobDirsOf(harness))[0]!;
}

/** Store the press and tick until its event dir is done or ignored; returns that final stage. */
async function press(
  harness: Harness,
  payload: Record<string, unknown>,
): Promise<{ stage: string; reason?: string }> {
  const eventDir = await storeRaw(harness, 'check_run', payload, nextDelivery());
  await tickUntil(harness, async () => ['done', 'ignored'].includes((await stageOf(eventDir)) ?? ''));
  const state = await readState(eventDir);
  const last = state!.history.at(-1);
  return { stage: state!.stage, ...(last?.note ? { reason: last.note } : {}) };
}

async function failedJob(harness: Harness): Promise<{ dir: string; run: FakeCheckRun }> {
  openPr(harness, FAILING_BOT);
  await storeComment(harness, 'bot: build for:arch=zen4 exportvariable:SKIP_TESTS=yes');
  const dir = await oneJobAt(harness, 'finished');
  const id = (await stateOf<JobData>(dir)).data.check!.id!;
  return { dir, run: runOf(harness, id) };
}

describe('the buttons, through the poller', () => {
  test('Rebuild from a permitted user resubmits exactly that target as a new job, and says nothing', async () => {
    h = await appHarness();
    const { dir, run } = await failedJob(h);
    expect(run.conclusion).toBe('failure');
    expect(lastBodySent(h, run.id).actions).toEqual([REBUILD]);
    const before = replies(h).length;

    const outcome = await press(
      h,
      pressPayload(run, { action: 'requested_action', identifier: 'rebuild' }, REVIEWER),
    );
    expect(outcome.stage).toBe('done');
    const dirs = await jobDirsOf(h);
    expect(dirs).toHaveLength(2);
    const fresh = dirs.find((d) => d !== dir)!;
    const [old, now] = [(await stateOf<JobData>(dir)).data, (await stateOf<JobData>(fresh)).data];
    expect(now.target).toEqual(old.target);
    expect(now.exportVariables).toEqual([{ name: 'SKIP_TESTS', value: 'yes' }]);
    expect(path.basename(path.dirname(path.dirname(path.dirname(fresh))))).toMatch(/^event_/);
    expect(replies(h)).toHaveLength(before);

    // GitHub's own "Re-run" of the new run is a Rebuild too.
    await tickUntil(h, async () => (await stageOf(fresh)) === 'finished');
    const rerun = runOf(h, (await stateOf<JobData>(fresh)).data.check!.id!);
    expect(rerun.name).toBe(run.name);
    expect((await press(h, pressPayload(rerun, { action: 'rerequested' }, REVIEWER))).stage).toBe('done');
    expect(await jobDirsOf(h)).toHaveLength(3);
  });

  test('Rebuild from another user is refused with one reply, once an hour, and builds nothing', async () => {
    h = await appHarness();
    const { run } = await failedJob(h);
    const before = replies(h).length;
    const rebuild = { action: 'requested_action', identifier: 'rebuild' } as const;

    expect((await press(h, pressPayload(run, rebuild, 'mallory'))).stage).toBe('done');
    const said = replies(h).slice(before);
    expect(said).toHaveLength(1);
    expect(said[0]!.body).toContain('account `mallory` has NO permission to submit build jobs');
    const again = await press(h, pressPayload(run, rebuild, 'mallory'));
    expect(again.stage).toBe('ignored');
    expect(replies(h).slice(before)).toHaveLength(1);
    expect(await jobDirsOf(h)).toHaveLength(1);
  });

  test('Cancel on an active job cancels it; its run then offers Rebuild', async () => {
    h = await appHarness();
    openPr(h, WAITING_BOT);
    await storeComment(h, 'bot: build for:arch=zen4');
    const dir = await oneJobAt(h, 'running');
    const id = (await stateOf<JobData>(dir)).data.check!.id!;
    await tickUntil(h, async () => runOf(h!, id).status === 'in_progress');
    expect(lastBodySent(h, id).actions).toEqual([CANCEL]);
    const before = replies(h).length;

    const outcome = await press(
      h,
      pressPayload(runOf(h, id), { action: 'requested_action', identifier: 'cancel' }, REVIEWER),
    );
    expect(outcome.stage).toBe('done');
    await tickUntil(
      h,
      async () => (await stageOf(dir)) === 'cancelled' && runOf(h!, id).status === 'completed',
    );
    expect((await stateOf<JobData>(dir)).data.cancel_requested).toBe(`cancelled by ${REVIEWER}`);
    expect(runOf(h, id).conclusion).toBe('cancelled');
    expect(lastBodySent(h, id).actions).toEqual([REBUILD]);
    expect(replies(h)).toHaveLength(before);
  });

  test('a hostile external_id is refused without effect', async () => {
    h = await appHarness();
    const { dir, run } = await failedJob(h);
    const state = JSON.stringify(await readState(dir));
    const before = { replies: replies(h).length, calls: h.fake.calls.length };
    const rebuild = { action: 'requested_action', identifier: 'rebuild' } as const;
    const rel = h.deps.jobdirs.relative(dir);
    for (const externalId of [
      '../../etc',
      `${rel}/../../../../../../../../../etc`,
      '/etc/passwd',
      `${rel.split('/').slice(0, 4).join('/')}/event_x/run_000/zen4/eessi-test`,
    ]) {
      const outcome = await press(h, pressPayload({ ...run, external_id: externalId }, rebuild, REVIEWER));
      expect(outcome).toMatchObject({ stage: 'ignored' });
    }
    // The right job dir, but a run that is not the one this job reports.
    const forged = await press(h, pressPayload({ ...run, id: run.id + 1 }, rebuild, REVIEWER));
    expect(forged.stage).toBe('ignored');
    expect(forged.reason).toContain('is not the one the job');
    expect(await jobDirsOf(h)).toEqual([dir]);
    expect(JSON.stringify(await readState(dir))).toBe(state);
    expect(replies(h)).toHaveLength(before.replies);
    expect(h.fake.calls.slice(before.calls).filter((c) => c.method !== 'GET')).toEqual([]);
  });
});
