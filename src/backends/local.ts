/**
 * The local backend: runs the job script as a detached child in the job dir, for `npm start` without
 * a cluster. The job contract is the same as under Slurm (cwd = job dir, SLURM_JOB_ID set, output in
 * `slurm-<id>.out`). Everything is on disk under `jobdirs/local-jobs/`, so jobs survive a poller restart:
 *
 *   <id>.json   {job_dir, submit_id, state: held|running|cancelled, pid?}
 *   <id>.exit   the exit status, written by scripts/local-job-runner.sh when the script ends
 */
import { spawn } from 'node:child_process';
import { openSync, closeSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { createFileExclusive, mkdirDurable, readJsonIfExists, writeFileAtomic } from '../fsutil.js';
import { pidAlive } from '../process.js';
import type { Backend, JobObservation, SubmitRequest } from './types.js';

interface LocalJobRecord {
  job_dir: string;
  submit_id: string;
  script: string;
  state: 'held' | 'running' | 'cancelled';
  pid?: number;
  submitted_at: string;
}

const RUNNER = path.resolve(import.meta.dirname, '../../scripts/local-job-runner.sh');

export class LocalBackend implements Backend {
  readonly kind = 'local' as const;

  constructor(
    private readonly dir: string,
    private readonly maxParallel: number,
    /** The job's environment (without the bot's secrets; see jobEnvironment). */
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  private recordFile(jobId: string) {
    return path.join(this.dir, `${jobId}.json`);
  }

  private exitFile(jobId: string) {
    return path.join(this.dir, `${jobId}.exit`);
  }

  private async ids(): Promise<string[]> {
    const names = await fs.readdir(this.dir).catch(() => [] as string[]);
    return names.map((n) => /^(\d+)\.json$/.exec(n)?.[1]).filter((n): n is string => n !== undefined);
  }

  async submit(req: SubmitRequest): Promise<{ jobId: string }> {
    await mkdirDurable(this.dir);
    const record: LocalJobRecord = {
      job_dir: req.jobDir,
      submit_id: req.submitId,
      script: req.script,
      state: 'held',
      submitted_at: new Date().toISOString(),
    };
    let next = Math.max(0, ...(await this.ids()).map(Number)) + 1;
    while (!(await createFileExclusive(this.recordFile(String(next)), JSON.stringify(record) + '\n'))) next++;
    return { jobId: String(next) };
  }

  async findBySubmitId(submitId: string): Promise<string | undefined> {
    for (const id of await this.ids()) {
      const rec = await readJsonIfExists<LocalJobRecord>(this.recordFile(id));
      if (rec?.submit_id === submitId) return id;
    }
    return undefined;
  }

  private async running(): Promise<number> {
    let n = 0;
    for (const id of await this.ids()) {
      const rec = await readJsonIfExists<LocalJobRecord>(this.recordFile(id));
      if (rec?.state === 'running' && rec.pid && pidAlive(rec.pid)) n++;
    }
    return n;
  }

  async release(jobId: string): Promise<boolean> {
    const rec = await readJsonIfExists<LocalJobRecord>(this.recordFile(jobId));
    if (!rec) throw new Error(`local job ${jobId} does not exist`);
    if (rec.state !== 'held') return true;
    if ((await this.running()) >= this.maxParallel) return false;
    const out = openSync(path.join(rec.job_dir, `slurm-${jobId}.out`), 'a');
    try {
      const child = spawn('bash', [RUNNER, this.exitFile(jobId), rec.script], {
        cwd: rec.job_dir,
        detached: true,
        stdio: ['ignore', out, out],
        env: { ...this.env, SLURM_JOB_ID: jobId, HPCBOT_JOB_ID: jobId, HPCBOT_BACKEND: 'local' },
      });
      child.unref();
      await writeFileAtomic(
        this.recordFile(jobId),
        JSON.stringify({ ...rec, state: 'running', pid: child.pid }) + '\n',
      );
    } finally {
      closeSync(out);
    }
    return true;
  }

  async observe(jobs: Array<{ jobId: string }>): Promise<Map<string, JobObservation>> {
    const seen = new Map<string, JobObservation>();
    for (const { jobId } of jobs) {
      const rec = await readJsonIfExists<LocalJobRecord>(this.recordFile(jobId));
      if (!rec) continue;
      const exit = await fs.readFile(this.exitFile(jobId), 'utf8').catch(() => undefined);
      if (rec.state === 'cancelled') {
        seen.set(jobId, {
          jobId,
          state: 'CANCELLED',
          final: true,
          exitCode: exit ? `${exit.trim()}:0` : '0:15',
        });
      } else if (exit !== undefined) {
        const rc = Number(exit.trim());
        seen.set(jobId, {
          jobId,
          state: rc === 0 ? 'COMPLETED' : 'FAILED',
          final: true,
          exitCode: `${rc}:0`,
        });
      } else if (rec.state === 'held') {
        seen.set(jobId, { jobId, state: 'PENDING', final: false, held: true, reason: 'JobHeldUser' });
      } else if (rec.pid && pidAlive(rec.pid)) {
        seen.set(jobId, { jobId, state: 'RUNNING', final: false });
      } else {
        // The runner died without recording a status (e.g. the machine rebooted).
        seen.set(jobId, { jobId, state: 'NODE_FAIL', final: true, exitCode: '0:0' });
      }
    }
    return seen;
  }

  async cancel(jobId: string): Promise<void> {
    const rec = await readJsonIfExists<LocalJobRecord>(this.recordFile(jobId));
    if (!rec || rec.state === 'cancelled') return;
    await writeFileAtomic(this.recordFile(jobId), JSON.stringify({ ...rec, state: 'cancelled' }) + '\n');
    if (rec.pid && pidAlive(rec.pid)) {
      try {
        process.kill(-rec.pid, 'SIGTERM'); // the whole process group: runner, bash and the build
      } catch {
        /* already gone */
      }
    }
  }
}
