/**
 * Support for tests against the real single-node Slurm of `scripts/slurm-dev-cluster.sh`.
 *
 * `describeSlurm` is `describe` when Slurm answers. When it does not, the block fails in CI
 * (`CI` set) and is skipped with a loud warning elsewhere. The wrappers run the Slurm clients
 * with execFile and argument arrays, never through a shell.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import type { JobData } from '../../src/store/job.js';
import { workTreeOf } from '../../src/store/workTree.js';
import { stageOf, stateOf, tickUntil, type Harness } from './botHarness.js';
import { runCli } from './spawn.js';

const execFileAsync = promisify(execFile);

export const START_HINT = 'run scripts/slurm-dev-cluster.sh start';

/** Run a Slurm client and return its stdout; rejects on a non-zero exit or after `timeoutMs`. */
export async function slurm(cmd: string, args: readonly string[], timeoutMs = 30_000): Promise<string> {
  const { stdout } = await execFileAsync(cmd, args, { timeout: timeoutMs, encoding: 'utf8' });
  return stdout;
}

let reachable: boolean | undefined;
let unreachableBecause = '';

/**
 * Whether `sinfo` answers. Checked once per test file, synchronously because `describe` bodies
 * are. Without a config file the clients retry for 60 s and with slurmctld down they take ~9 s
 * to give up, hence the file check and the timeout.
 */
export function slurmReachable(): boolean {
  if (reachable === undefined) {
    const conf = process.env.SLURM_CONF ?? '/etc/slurm/slurm.conf';
    try {
      if (!existsSync(conf)) throw new Error(`${conf} does not exist`);
      execFileSync('sinfo', ['--noheader', '--format=%T'], { timeout: 15_000, stdio: 'pipe' });
      reachable = true;
    } catch (err) {
      reachable = false;
      const e = err as { stderr?: Buffer; message?: string };
      unreachableBecause = (e.stderr?.toString().trim() || e.message || String(err)).split('\n').pop() ?? '';
    }
  }
  return reachable;
}

function ciIsSet(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== '' && ci !== '0' && ci.toLowerCase() !== 'false';
}

/** `describe` for tests that need the Slurm dev cluster. */
export function describeSlurm(name: string, fn: () => void): void {
  if (slurmReachable()) {
    describe(name, fn);
  } else if (ciIsSet()) {
    describe(name, () => {
      test('Slurm is available', () => {
        throw new Error(`Slurm is not available but CI is set; ${START_HINT} (${unreachableBecause})`);
      });
    });
  } else {
    const line = '!'.repeat(78);
    console.warn(
      `${line}\n!! SKIPPING Slurm tests "${name}": Slurm is not available\n` +
        `!!   (${unreachableBecause})\n` +
        `!! To run them, ${START_HINT} (as root). With CI set they fail instead.\n${line}`,
    );
    describe.skip(name, fn);
  }
}

/** `sbatch --parsable ARGS...`; returns the job id. */
export async function sbatch(args: readonly string[]): Promise<string> {
  const out = (await slurm('sbatch', ['--parsable', ...args])).trim();
  const id = out.split(';')[0] ?? ''; // "<id>" or "<id>;<cluster>"
  if (!/^\d+$/.test(id)) throw new Error(`sbatch printed no job id: ${JSON.stringify(out)}`);
  return id;
}

export interface QueueEntry {
  id: string;
  /** compact state: PD, R, CG, CD, F, CA, TO ... */
  state: string;
  reason: string;
  name: string;
  comment: string;
  /** expected or actual start (`%S`), local time without zone, or N/A */
  start: string;
}

/**
 * The job as squeue sees it (`--states=all` also lists jobs that ended less than MinJobAge ago),
 * or undefined when squeue does not know it.
 */
export async function squeueJob(id: string): Promise<QueueEntry | undefined> {
  let out: string;
  try {
    out = await slurm('squeue', ['--noheader', '--states=all', `--jobs=${id}`, '--format=%i|%t|%r|%j|%k|%S']);
  } catch (err) {
    if (/Invalid job id/i.test(String((err as { stderr?: string }).stderr))) return undefined;
    throw err;
  }
  const line = out.split('\n').find((l) => l.startsWith(`${id}|`));
  if (line === undefined) return undefined;
  const [, state = '', reason = '', name = '', comment = '', start = ''] = line.split('|');
  return { id, state, reason, name, comment, start };
}

export const SACCT_FIELDS = [
  'JobID',
  'JobName',
  'State',
  'ExitCode',
  'Comment',
  'Timelimit',
  'Submit',
  'Eligible',
  'Start',
  'End',
] as const;
export type AcctEntry = Record<(typeof SACCT_FIELDS)[number], string>;

/** The job's allocation line in sacct (`-X`), or undefined while sacct does not have it yet. */
export async function sacctJob(id: string): Promise<AcctEntry | undefined> {
  const out = await slurm('sacct', [
    '--noheader',
    '--parsable2',
    '--allocations',
    `--jobs=${id}`,
    `--format=${SACCT_FIELDS.join(',')}`,
  ]);
  const line = out.split('\n').find((l) => l.startsWith(`${id}|`));
  if (line === undefined) return undefined;
  const values = line.split('|');
  return Object.fromEntries(SACCT_FIELDS.map((f, i) => [f, values[i] ?? ''])) as AcctEntry;
}

/**
 * Poll `probe` every `intervalMs` until `done` accepts its value or `timeoutMs` passes; returns
 * the last value either way, so the caller's expect() shows what was seen.
 */
export async function pollUntil<T>(
  probe: () => Promise<T>,
  done: (value: T) => boolean,
  { timeoutMs = 30_000, intervalMs = 200 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (done(value) || Date.now() >= deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/**
 * The accounting lines (`JobID|WorkDir`) of the jobs named `name` that ran in `workDir` in the last
 * hour. sacct learns about a job a few seconds late, so this waits until it lists the dir at all.
 */
export async function jobsRunIn(name: string, workDir: string): Promise<string[]> {
  return pollUntil(
    async () => {
      const out = await slurm('sacct', [
        '--noheader',
        '--parsable2',
        '-X',
        `--name=${name}`,
        '-S',
        'now-1hour',
        '-o',
        'JobID,WorkDir',
      ]);
      return out.split('\n').filter((l) => l.endsWith(`|${workDir}`));
    },
    (lines) => lines.length > 0,
  );
}

/**
 * Exactly once: a real `poll --once` that dies right after it handed the prepared job `dir` to the
 * scheduler (crash point after-submit, before the job id is saved), then ticks until the job finished:
 * the scheduler ran one job in its work tree, the one the state names.
 */
export async function expectOneSubmissionAfterKill(h: Harness, dir: string, jobName: string): Promise<void> {
  const crashed = await runCli(['poll', '--once', '--config', h.config.source], {
    env: { HARNESS_GITHUB_TOKEN: 'ghp_harness', HPCBOT_CRASH_POINT: 'after-submit' },
  });
  expect(crashed.signal).toBe('SIGKILL');
  expect((await stateOf<JobData>(dir)).data.job_id).toBeUndefined();
  expect(await stageOf(dir)).toBe('submitting');
  await tickUntil(h, async () => (await stageOf(dir)) === 'finished', 90_000, 500);
  const mine = await jobsRunIn(jobName, workTreeOf(dir));
  expect(mine).toHaveLength(1);
  expect(mine[0]!.split('|')[0]).toBe((await stateOf<JobData>(dir)).data.job_id);
}

/** Cancel jobs that may still be queued or running (test cleanup); unknown ids are ignored. */
export async function scancelQuietly(ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  await slurm('scancel', [...ids]).catch(() => undefined);
}
