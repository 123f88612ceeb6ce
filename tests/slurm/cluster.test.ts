/**
 * The dev cluster (scripts/slurm-dev-cluster.sh) behaves as the Slurm backend expects:
 * held jobs, release, exit codes, cancel, time limits and delayed begin, seen through
 * squeue and sacct.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type AcctEntry,
  describeSlurm,
  pollUntil,
  sacctJob,
  sbatch,
  scancelQuietly,
  slurm,
  squeueJob,
} from '../support/slurm.js';

interface TestJob {
  id: string;
  tag: string;
  out: string;
}

/** Slurm prints times as local time without a zone, e.g. 2026-11-24T23:33:09. */
const slurmTime = (s: string): number => new Date(s).getTime();

const finalState = (id: string, want: RegExp, timeoutMs = 30_000): Promise<AcctEntry | undefined> =>
  pollUntil(
    () => sacctJob(id),
    (e) => e !== undefined && want.test(e.State),
    { timeoutMs },
  );

describeSlurm('the Slurm dev cluster', () => {
  let dir = '';
  const submitted: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hpcbot-slurm-test-'));
  });

  afterAll(async () => {
    await scancelQuietly(submitted);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Write a job script into the temp dir and submit it with a unique name and comment. */
  async function submit(body: string, sbatchArgs: string[] = []): Promise<TestJob> {
    const tag = `hpcbot-test-${randomUUID().slice(0, 8)}`;
    const script = join(dir, `${tag}.sh`);
    const out = join(dir, `${tag}.out`);
    await writeFile(script, `#!/bin/bash\n${body}\n`, { mode: 0o755 });
    const id = await sbatch([
      `--job-name=${tag}`,
      `--comment=${tag}`,
      `--chdir=${dir}`,
      `--output=${out}`,
      ...sbatchArgs,
      script,
    ]);
    submitted.push(id);
    return { id, tag, out };
  }

  test('a held job is PD with a held reason, runs after scontrol release and ends COMPLETED 0:0', async () => {
    const job = await submit('echo "ran $SLURM_JOB_ID"', ['--hold']);

    const held = await squeueJob(job.id);
    expect(held).toMatchObject({ state: 'PD', name: job.tag, comment: job.tag });
    expect(['JobHeldUser', 'JobHeldAdmin']).toContain(held?.reason);

    // A held job stays held: still PD a scheduling cycle later, and it has not run.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect((await squeueJob(job.id))?.state).toBe('PD');
    await expect(readFile(job.out, 'utf8')).rejects.toThrow();

    await slurm('scontrol', ['release', job.id]);
    // For about half a second sacct may show the job under the name "allocation" (its record in
    // slurmdbd is completed later), so wait for the real name too.
    const done = await pollUntil(
      () => sacctJob(job.id),
      (e) => e?.State === 'COMPLETED' && e.JobName === job.tag,
    );
    expect(done).toMatchObject({ JobName: job.tag, State: 'COMPLETED', ExitCode: '0:0', Comment: job.tag });
    expect(await readFile(job.out, 'utf8')).toBe(`ran ${job.id}\n`);
  });

  test('a job that exits 3 is FAILED with exit code 3:0', async () => {
    const job = await submit('exit 3');
    const done = await finalState(job.id, /^(COMPLETED|FAILED|CANCELLED|TIMEOUT)/);
    expect(done).toMatchObject({ State: 'FAILED', ExitCode: '3:0' });
  });

  test('scancel of a running job gives CANCELLED', async () => {
    const job = await submit('sleep 300');
    const running = await pollUntil(
      () => squeueJob(job.id),
      (e) => e?.state === 'R',
    );
    expect(running?.state).toBe('R');

    await slurm('scancel', [job.id]);
    const done = await finalState(job.id, /^(COMPLETED|FAILED|CANCELLED|TIMEOUT)/);
    // sacct says "CANCELLED by <uid>"
    expect(done?.State).toMatch(/^CANCELLED( by \d+)?$/);
  });

  test('--time=00:00:05 on a sleeping job ends in TIMEOUT (limits are whole minutes)', async () => {
    const job = await submit('sleep 300', ['--time=00:00:05']);
    // Slurm rounds the limit up to one minute and checks limits about every 30 s: 60-95 s.
    const done = await finalState(job.id, /^(COMPLETED|FAILED|CANCELLED|TIMEOUT)/, 150_000);
    expect(done).toMatchObject({ State: 'TIMEOUT', Timelimit: '00:01:00' });
  }, 180_000);

  test('--begin=now+5 waits with reason BeginTime, then runs', async () => {
    const submittedAt = Math.floor(Date.now() / 1000) * 1000;
    const job = await submit('true', ['--begin=now+5']);

    const waiting = await squeueJob(job.id);
    expect(waiting).toMatchObject({ state: 'PD', reason: 'BeginTime' });
    const begin = slurmTime(waiting?.start ?? '');
    expect(begin).toBeGreaterThanOrEqual(submittedAt + 5000);
    expect(begin).toBeLessThanOrEqual(submittedAt + 7000);

    const done = await finalState(job.id, /^(COMPLETED|FAILED|CANCELLED|TIMEOUT)/);
    expect(done).toMatchObject({ State: 'COMPLETED', ExitCode: '0:0' });
    expect(slurmTime(done?.Start ?? '')).toBeGreaterThanOrEqual(begin);
    // sched_interval=1 starts it within seconds of its begin time (the default waits up to 30 s).
    expect(slurmTime(done?.Start ?? '')).toBeLessThanOrEqual(begin + 5000);
  }, 60_000);
});
