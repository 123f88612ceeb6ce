/**
 * The tick cache (src/store/pendingIndex.ts): a waiting or running job whose scheduler answer did not
 * change is not read, and the cache is only ever an optimisation: lost, stale or corrupt, it changes
 * nothing the bot does. Real poller ticks on a real jobdirs; GitHub in dry-run; a stub scheduler.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { createGitHub } from '../src/adapters/github/index.js';
import { JobAccount } from '../src/adapters/jobUser.js';
import type { Backend, JobObservation } from '../src/adapters/schedulers/types.js';
import { siteSchema } from '../src/config/config.js';
import { runTick } from '../src/poller.js';
import type { StageDeps } from '../src/stages/context.js';
import type { JobData } from '../src/store/job.js';
import { JobDirs } from '../src/store/jobdirs.js';
import { indexPath, readPendingIndex } from '../src/store/pendingIndex.js';
import { newState, readState, transition, writeState } from '../src/store/state.js';

class StubScheduler implements Backend {
  readonly kind = 'local' as const;
  readonly calls: string[] = [];
  answers = new Map<string, JobObservation>();
  async submit(): Promise<{ jobId: string }> {
    throw new Error('not used');
  }
  async findBySubmitId(): Promise<string | undefined> {
    return undefined;
  }
  async release(jobId: string): Promise<boolean> {
    this.calls.push(`release ${jobId}`);
    return true;
  }
  async observe(jobs: Array<{ jobId: string }>): Promise<Map<string, JobObservation>> {
    this.calls.push(`observe ${jobs.map((j) => j.jobId).join(',')}`);
    return new Map([...this.answers].filter(([id]) => jobs.some((j) => j.jobId === id)));
  }
  async cancel(jobId: string): Promise<void> {
    this.calls.push(`cancel ${jobId}`);
  }
  answer(jobId: string, state: string, final = false, exitCode?: string): void {
    this.answers.set(jobId, { jobId, state, final, ...(exitCode ? { exitCode } : {}) });
  }
}

let tmp: string;
beforeEach(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'hpcbot-index-'));
});
afterEach(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

async function setup(root: string) {
  const jobdirs = new JobDirs(root);
  await jobdirs.ensureBaseDirs();
  const config = {
    ...siteSchema.parse({
      instance: 'test',
      jobdirs: root,
      github: { dry_run: true },
      permissions: { command: ['alice'] },
      build: {
        infra_retries: 0,
        node_types: { zen4: { cpu_subdir: 'x86_64/amd/zen4', repo_targets: ['r'] } },
      },
    }),
    source: path.join(tmp, 'site.yaml'),
  };
  const logger = pino({ level: 'silent' });
  const scheduler = new StubScheduler();
  const deps: StageDeps = {
    config,
    logger,
    jobdirs,
    github: createGitHub(config, logger),
    backend: scheduler,
    account: new JobAccount(undefined),
    now: () => new Date('2026-11-28T00:00:00Z'),
  };
  const jobs: string[] = [];
  for (const n of [1, 2, 3]) {
    const dir = path.join(root, '2026.11', 'o', 'r', `pr_${n}`, 'event_e', 'run_000', 'zen4', 'r');
    await fs.mkdir(path.join(dir, 'work'), { recursive: true });
    const data: JobData = {
      pr: { owner: 'o', repo: 'r', number: n, installation_id: null },
      instance: 'test',
      target: {
        nodeType: 'zen4',
        repoId: 'r',
        os: 'linux',
        onArch: 'x86_64/amd/zen4',
        forArch: 'x86_64/amd/zen4',
        slurmParams: [],
      },
      exportVariables: [],
      backend: 'local',
      submit_id: `s${n}`,
      job_id: String(10 + n),
      rows: [],
    };
    let state = newState<JobData>('job', 'prepared', data, deps.now());
    for (const stage of ['submitting', 'submitted', 'released']) state = transition(state, stage, deps.now());
    await writeState(dir, state);
    await jobdirs.enqueue(dir);
    jobs.push(dir);
  }
  return { deps, scheduler, jobs };
}

/** What the bot did to each job: stage and rows, in order. */
async function outcome(jobs: string[]) {
  return Promise.all(
    jobs.map(async (dir) => {
      const s = (await readState<JobData>(dir))!;
      return { stage: s.stage, rows: s.data.rows.map((r) => `${r.key}:${r.status}`), exit: s.data.exit_code };
    }),
  );
}

test('a job whose scheduler answer did not change is not read; a changed answer is', async () => {
  const { deps, scheduler, jobs } = await setup(path.join(tmp, 'jobdirs'));
  for (const id of ['11', '12', '13']) scheduler.answer(id, 'PENDING');
  const first = await runTick(deps);
  expect(first).toMatchObject({ advanced: 3, unchanged: 0 });
  const second = await runTick(deps);
  expect(second).toMatchObject({ advanced: 0, unchanged: 3, failed: 0 });
  // The one question to the scheduler is still asked, for all three.
  expect(scheduler.calls.filter((c) => c.startsWith('observe'))).toEqual([
    'observe 11,12,13',
    'observe 11,12,13',
  ]);

  scheduler.answer('12', 'RUNNING');
  const third = await runTick(deps);
  expect(third).toMatchObject({ advanced: 1, unchanged: 2 });
  expect((await readState(jobs[1]!))!.stage).toBe('running');
  expect((await readState(jobs[0]!))!.stage).toBe('released');
});

test('a state written behind the cache (an operator run, another tick that crashed) is read again', async () => {
  const { deps, scheduler, jobs } = await setup(path.join(tmp, 'jobdirs'));
  for (const id of ['11', '12', '13']) scheduler.answer(id, 'PENDING');
  await runTick(deps);
  // `hpcbot poll --dir` advances one job without touching the cache.
  scheduler.answer('11', 'RUNNING');
  await runTick(deps, [jobs[0]!]);
  expect((await readState(jobs[0]!))!.stage).toBe('running');
  // Its answer is RUNNING both times from now on; the cache still says PENDING for its old state file.
  const report = await runTick(deps);
  expect(report).toMatchObject({ advanced: 1, unchanged: 2 });
  const rows = (await readState<JobData>(jobs[0]!))!.data.rows.filter((r) => r.key === 'running');
  expect(rows).toHaveLength(1);
});

test('lost, stale or corrupt, the cache changes nothing the bot does', async () => {
  const script: Array<(s: StubScheduler) => void> = [
    (s) => ['11', '12', '13'].forEach((id) => s.answer(id, 'PENDING')),
    (s) => s.answer('11', 'RUNNING'),
    () => undefined,
    (s) => {
      s.answer('12', 'RUNNING');
      s.answer('11', 'COMPLETED', true, '0:0');
    },
    () => undefined,
    (s) => s.answers.delete('13'),
    (s) => s.answer('12', 'FAILED', true, '1:0'),
    () => undefined,
  ];
  const runs: Record<string, unknown> = {};
  for (const mode of ['kept', 'lost', 'stale', 'corrupt'] as const) {
    const root = path.join(tmp, mode);
    const { deps, scheduler, jobs } = await setup(root);
    const history: Array<string | undefined> = [];
    for (const step of script) {
      step(scheduler);
      const file = indexPath(root);
      await fs.mkdir(path.dirname(file), { recursive: true });
      if (mode === 'lost') await fs.rm(file, { force: true });
      // Two ticks behind: what a poller killed before writing the cache (twice) leaves.
      const behind = history.at(-2);
      if (mode === 'stale' && behind !== undefined) await fs.writeFile(file, behind);
      if (mode === 'corrupt') await fs.writeFile(file, '{"version":1,"entries":{"x":');
      await runTick(deps);
      history.push(await fs.readFile(file, 'utf8').catch(() => undefined));
    }
    runs[mode] = {
      outcome: await outcome(jobs),
      calls: scheduler.calls,
      pending: await deps.jobdirs.pending(),
    };
    (runs[mode] as { pending: string[] }).pending = (runs[mode] as { pending: string[] }).pending.map((d) =>
      path.relative(root, d),
    );
  }
  expect(runs.lost).toEqual(runs.kept);
  expect(runs.stale).toEqual(runs.kept);
  expect(runs.corrupt).toEqual(runs.kept);
  // And the script did move the jobs: one completed, one failed, one vanished from the scheduler.
  expect((runs.kept as { outcome: Array<{ stage: string }> }).outcome.map((o) => o.stage)).toEqual([
    'finished',
    'finished',
    'lost',
  ]);
});

test('the cache file is rewritten only when something changed', async () => {
  const root = path.join(tmp, 'jobdirs');
  const { deps, scheduler } = await setup(root);
  for (const id of ['11', '12', '13']) scheduler.answer(id, 'PENDING');
  await runTick(deps);
  const before = await fs.stat(indexPath(root), { bigint: true });
  await runTick(deps);
  const after = await fs.stat(indexPath(root), { bigint: true });
  expect(after.ino).toBe(before.ino);
  expect((await readPendingIndex(root)).size).toBe(3);
});
