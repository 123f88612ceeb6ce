/**
 * The PBS backend (OpenPBS / PBS Professional, and Torque): qsub, qstat, qselect, qrls and qdel, each
 * through execFile.
 *
 * - qsub submits the bundled wrapper PBS_JOB_WRAPPER, which gives the job script the Slurm contract:
 *   it changes to $PBS_O_WORKDIR (qsub runs in the job's work tree; PBS Pro has no -d, so one way for
 *   both), sets SLURM_JOB_ID to $PBS_JOBID (EESSI's scripts read SLURM_JOB_ID) and writes the output
 *   to slurm-<id>.out, then runs the job script (HPCBOT_JOB_SCRIPT).
 * - Exactly once: qsub's stdout goes straight into a file in the job dir (not a pipe), so a bot killed
 *   while or after qsub runs still finds the id there; failing that, `qselect -u <owner> -N <name>` and
 *   qstat find the job by its HPCBOT_SUBMIT_ID variable.
 * - Tracking: one qstat call per tick for all active jobs: `qstat -x -f -F json` (PBS Pro, finished jobs
 *   included) or `qstat -f` (Torque). Unknown job ids are absent; any other failure raises
 *   BackendUnavailableError, so that tick changes no job state.
 * - With `backend.run_as`, qsub, qrls and qdel run through sudo as the job user; qstat and qselect as the bot.
 */
import { execFile, spawn } from 'node:child_process';
import { open, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { JobAccount } from '../jobUser.js';
import { CommandError, run } from '../process.js';
import {
  observationOf,
  parseQstatJson,
  parseQstatText,
  parseQsubOutput,
  PbsOutputError,
  type PbsFlavour,
  type PbsJob,
} from './pbsParse.js';
import { BackendUnavailableError, type Backend, type JobObservation, type SubmitRequest } from './types.js';

export interface PbsSettings {
  flavour: PbsFlavour;
  handover: 'hold_release' | 'delayed_begin';
  default_walltime: string;
  delay_begin_seconds: number;
  /** Shared by all jobs of this instance (-N). */
  jobName: string;
  /** The script qsub submits (scripts/pbs-job.sh); it runs `req.script`. */
  wrapper: string;
  /** qsub's environment, which the job inherits (-V), when it runs as the bot (see jobEnvironment). */
  env: NodeJS.ProcessEnv;
  account: JobAccount;
  now?: () => Date;
}

/** A variable value qsub -v passes through unchanged on PBS Pro, Torque and Slurm's wrapper. */
const SAFE_VALUE = /^[A-Za-z0-9_./+:@-]+$/;

/** `-a` wants `[[[[CC]YY]MM]DD]hhmm[.SS]` in local time on both PBS Pro and Torque. */
export function pbsDateTime(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}${p(d.getHours())}${p(d.getMinutes())}.${p(d.getSeconds())}`;
}

/** qsub arguments (pure): handover, default walltime, site/node params, name, variables, output, wrapper. */
export function qsubArgs(req: SubmitRequest, s: PbsSettings, now: Date): string[] {
  for (const [what, value] of [
    ['submit id', req.submitId],
    ['job script path', req.script],
  ] as const)
    if (!SAFE_VALUE.test(value))
      throw new Error(
        `the ${what} ${JSON.stringify(value)} cannot be passed to qsub -v; use letters, digits and ./_+:@- only`,
      );
  const params = req.params.filter((p) => p !== '-h');
  const hasWalltime = params.some(
    (p, i) => /walltime=/.test(p) && (i === 0 || params[i - 1] === '-l' || p.startsWith('-l')),
  );
  return [
    ...(s.handover === 'hold_release'
      ? ['-h']
      : ['-a', pbsDateTime(new Date(now.getTime() + s.delay_begin_seconds * 1000))]),
    ...(hasWalltime ? [] : ['-l', `walltime=${s.default_walltime}`]),
    ...params,
    '-N',
    s.jobName,
    '-V',
    '-v',
    `HPCBOT_SUBMIT_ID=${req.submitId},HPCBOT_JOB_SCRIPT=${req.script}`,
    '-j',
    'oe',
    '-o',
    '/dev/null',
    s.wrapper,
  ];
}

/** Where qsub's stdout is kept: the job dir, next to the work tree, written only by the bot's side. */
function qsubOutputFile(workTree: string): string {
  return path.join(path.dirname(workTree), 'qsub.out');
}

export class PbsBackend implements Backend {
  readonly kind = 'pbs' as const;

  constructor(private readonly settings: PbsSettings) {}

  private get jobOwner(): string {
    return this.settings.account.name ?? os.userInfo().username;
  }

  async submit(req: SubmitRequest): Promise<{ jobId: string }> {
    const now = (this.settings.now ?? (() => new Date()))();
    const [command, args] = this.settings.account.argv('qsub', qsubArgs(req, this.settings, now));
    const file = qsubOutputFile(req.workTree);
    const out = await open(file, 'w', 0o600);
    try {
      await runToFile(command, args, out.fd, {
        cwd: req.workTree,
        env: { ...this.settings.env, HOME: req.workTree },
      });
    } finally {
      await out.close();
    }
    const printed = await readFile(file, 'utf8');
    const jobId = parseQsubOutput(printed);
    if (!jobId) throw new Error(`qsub printed no job id: ${JSON.stringify(printed.slice(0, 200))}`);
    return { jobId };
  }

  async findBySubmitId(submitId: string, workTree: string): Promise<string | undefined> {
    const printed = await readFile(qsubOutputFile(workTree), 'utf8').catch(() => '');
    const saved = parseQsubOutput(printed);
    if (saved) return saved;
    // qsub was killed before it printed: ask the server for our jobs by name, then by submit id.
    let ids: string;
    try {
      const history = this.settings.flavour === 'pbspro' ? ['-x'] : [];
      ids = await run('qselect', [...history, '-u', this.jobOwner, '-N', this.settings.jobName], {
        timeoutMs: 30_000,
      });
    } catch (err) {
      // Slurm's Torque wrappers have no qselect: the saved qsub output is all there is.
      if ((err as CommandError).code === 'ENOENT') return undefined;
      throw new BackendUnavailableError((err as Error).message);
    }
    const candidates = ids
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
    if (candidates.length === 0) return undefined;
    const jobs = await this.qstat(candidates);
    return jobs.find((j) => j.variables.HPCBOT_SUBMIT_ID === submitId)?.id;
  }

  async release(jobId: string): Promise<boolean> {
    await run(...this.settings.account.argv('qrls', [jobId]));
    return true;
  }

  async observe(jobs: Array<{ jobId: string }>): Promise<Map<string, JobObservation>> {
    const seen = new Map<string, JobObservation>();
    if (jobs.length === 0) return seen;
    const found = await this.qstat(jobs.map((j) => j.jobId));
    const byId = new Map(found.map((j) => [j.id, j]));
    const bySeq = new Map(found.map((j) => [sequenceOf(j.id), j]));
    for (const { jobId } of jobs) {
      // qstat may print the server's full name where qsub printed a short one (or none).
      const j = byId.get(jobId) ?? bySeq.get(sequenceOf(jobId));
      if (j) seen.set(jobId, observationOf(this.settings.flavour, j, jobId));
    }
    return seen;
  }

  async cancel(jobId: string): Promise<void> {
    await run(...this.settings.account.argv('qdel', [jobId]));
  }

  /** One qstat call for these ids; ids the server does not know are left out (exit 153, PBSE_UNKJOBID). */
  private async qstat(ids: string[]): Promise<PbsJob[]> {
    const args = this.settings.flavour === 'pbspro' ? ['-x', '-f', '-F', 'json', ...ids] : ['-f', ...ids];
    const { stdout, stderr, code } = await execFileOutput('qstat', args);
    const onlyUnknown = stderr
      .split('\n')
      .filter((l) => l.trim() !== '')
      .every((l) => /Unknown Job Id/i.test(l));
    if (code !== 0 && !(code === 153 && onlyUnknown))
      throw new BackendUnavailableError(
        `qstat failed (exit ${code}): ${stderr.trim().split('\n').slice(-2).join(' | ')}`,
      );
    try {
      if (this.settings.flavour === 'torque') return parseQstatText(stdout);
      return stdout.trim() === '' ? [] : parseQstatJson(stdout);
    } catch (err) {
      if (err instanceof PbsOutputError) throw new BackendUnavailableError(err.message);
      throw err;
    }
  }
}

function sequenceOf(id: string): string {
  return id.split('.')[0] ?? id;
}

/** Run a command with its stdout going into an open file; rejects like `run` on failure. */
function runToFile(
  command: string,
  args: string[],
  fd: number,
  opts: { cwd: string; env: NodeJS.ProcessEnv },
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', fd, 'pipe'] });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (s: string) => {
      if (stderr.length < 64 * 1024) stderr += s;
    });
    const timer = setTimeout(() => child.kill('SIGTERM'), 60_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new CommandError(command, (err as NodeJS.ErrnoException).code, err.message));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new CommandError(command, code ?? signal ?? undefined, stderr));
    });
  });
}

/** execFile that keeps stdout on a non-zero exit (qstat prints the jobs it knows and fails for the rest). */
function execFileOutput(
  command: string,
  args: string[],
): Promise<{ stdout: string; stderr: string; code: number }> {
  return new Promise((resolve, reject) => {
    const opts = { env: process.env, timeout: 30_000, maxBuffer: 64 * 1024 * 1024 };
    execFile(command, args, opts, (err, stdout, stderr) => {
      if (!err) return resolve({ stdout, stderr, code: 0 });
      const code = (err as NodeJS.ErrnoException & { code?: unknown }).code;
      if (typeof code === 'number') return resolve({ stdout, stderr, code });
      reject(new BackendUnavailableError(`${command}: ${err.message}`));
    });
  });
}
