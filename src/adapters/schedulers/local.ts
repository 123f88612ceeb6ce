/**
 * The local backend: runs the job script as a detached child in the job's work tree, for `npm start`
 * without a cluster. The job contract is the same as under Slurm (cwd = work tree, SLURM_JOB_ID set,
 * output in `slurm-<id>.out`). With `backend.run_as` the runner starts through sudo as the job user.
 *
 *   jobdirs/local-jobs/<id>.json        the bot's record {work_tree, submit_id, state: held|started|cancelled}
 *   <work>/.hpcbot-local-<id>.started   written by scripts/local-job-runner.sh when it really starts
 *   <work>/.hpcbot-local-<id>.exit      the job's exit status, written by the runner at the end
 *
 * A start is recorded (`started`) before the runner is spawned; the runner's exclusive marker makes a
 * repeated spawn after a crash a no-op, so a job never runs twice.
 */
import { spawn } from 'node:child_process';
import { closeSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { createFileExclusive, mkdirDurable, readJsonIfExists, writeFileAtomic } from '../../store/fsutil.js';
import { crashPoint } from '../../store/crashPoint.js';
import { openJobFile, readHead } from '../../store/jobFile.js';
import { openTreeOutputSync } from '../../store/workTree.js';
import type { JobAccount } from '../jobUser.js';
import { LOCAL_RUNNER } from '../jobScripts.js';
import { processIdentity, run, type ProcessIdentity } from '../process.js';
import type { Backend, JobObservation, SubmitRequest } from './types.js';

interface LocalJobRecord {
  work_tree: string;
  submit_id: string;
  script: string;
  state: 'held' | 'started' | 'cancelled';
  submitted_at: string;
  started_at?: string;
}

/** How long a spawned runner may take to write its start marker before the job counts as failed to start. */
const START_GRACE_MS = 30_000;

/** The kernel's boot time is in whole seconds, so a start time read from /proc may look up to 1 s early. */
const START_CLOCK_SLACK_MS = 2000;
/** The markers hold a pid and pgid, or an exit status: anything longer is not the runner's. */
const MARKER_LIMIT = 64;

export class LocalBackend implements Backend {
  readonly kind = 'local' as const;

  constructor(
    private readonly dir: string,
    private readonly maxParallel: number,
    /** The job's environment when it runs as the bot (see jobEnvironment); sudo replaces it otherwise. */
    private readonly env: NodeJS.ProcessEnv,
    private readonly account: JobAccount,
    private readonly now: () => number = Date.now,
  ) {}

  private recordFile(jobId: string) {
    return path.join(this.dir, `${jobId}.json`);
  }

  private async ids(): Promise<string[]> {
    const names = await fs.readdir(this.dir).catch(() => [] as string[]);
    return names.map((n) => /^(\d+)\.json$/.exec(n)?.[1]).filter((n): n is string => n !== undefined);
  }

  async submit(req: SubmitRequest): Promise<{ jobId: string }> {
    await mkdirDurable(this.dir);
    const record: LocalJobRecord = {
      work_tree: req.workTree,
      submit_id: req.submitId,
      script: req.script,
      state: 'held',
      submitted_at: new Date(this.now()).toISOString(),
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

  async release(jobId: string): Promise<boolean> {
    const rec = await readJsonIfExists<LocalJobRecord>(this.recordFile(jobId));
    if (!rec) throw new Error(`local job ${jobId} does not exist`);
    if (rec.state === 'cancelled') return true;
    if (rec.state === 'started') {
      // A crash may have come between recording the start and spawning: spawn again (a no-op if it ran).
      if (!(await this.progress(jobId, rec)).marker) this.spawnRunner(jobId, rec);
      return true;
    }
    if ((await this.activeCount()) >= this.maxParallel) return false;
    const started: LocalJobRecord = {
      ...rec,
      state: 'started',
      started_at: new Date(this.now()).toISOString(),
    };
    await writeFileAtomic(this.recordFile(jobId), JSON.stringify(started) + '\n');
    crashPoint('local-start-recorded');
    this.spawnRunner(jobId, started);
    crashPoint('local-runner-spawned');
    return true;
  }

  private spawnRunner(jobId: string, rec: LocalJobRecord): void {
    // The PR may have committed `slurm-<id>.out` as a link (to the bot's state.json, say): never followed.
    const out = openTreeOutputSync(rec.work_tree, `slurm-${jobId}.out`);
    try {
      const [command, args] = this.account.argv(LOCAL_RUNNER, [jobId, rec.script]);
      const child = spawn(command, args, {
        cwd: rec.work_tree,
        detached: true,
        stdio: ['ignore', out, out],
        env: { ...this.env, HOME: rec.work_tree },
      });
      child.on('error', () => undefined); // reported by observe: the job never starts
      child.unref();
    } finally {
      closeSync(out);
    }
  }

  /**
   * What the runner has written into the work tree so far. The markers are in the job's tree, so the job
   * can replace them: they are read through openJobFile (no links, no fifos, regular files only) and
   * only their first bytes. A marker that is there but not a plain file is `tampered`.
   */
  private async progress(jobId: string, rec: LocalJobRecord) {
    const read = async (suffix: string) => {
      const opened = await openJobFile(rec.work_tree, `.hpcbot-local-${jobId}.${suffix}`);
      if (!opened.ok)
        return opened.missing ? { text: undefined } : { text: undefined, tampered: opened.reason };
      try {
        return { text: (await readHead(opened.handle, MARKER_LIMIT)).toString('utf8') };
      } finally {
        await opened.handle.close();
      }
    };
    const started = await read('started');
    const exit = await read('exit');
    const marker = started.text;
    const runner = await this.runnerProcess(rec, Number((marker ?? '').trim().split(/\s+/)[0]));
    const exitText = exit.text?.trim();
    return {
      marker: marker !== undefined || started.tampered !== undefined,
      alive: runner !== undefined,
      pgid: runner && runner.pgid > 1 ? runner.pgid : undefined,
      exit: exitText === undefined || !/^\d{1,3}$/.test(exitText) ? undefined : Number(exitText),
      tampered:
        started.tampered !== undefined
          ? `its start marker ${started.tampered}`
          : exit.tampered !== undefined
            ? `its exit status file ${exit.tampered}`
            : exitText !== undefined && !/^\d{1,3}$/.test(exitText)
              ? 'its exit status file does not hold a number'
              : undefined,
    };
  }

  /**
   * The runner named by the start marker, if it really is one: the job can write any pid into its
   * marker (pid 1, say, to be seen running for ever, or a process group of the bot's to have it killed on
   * cancel). So the process must run as the job's user and have started after this job did, and its
   * process group is the kernel's, not the marker's.
   */
  private async runnerProcess(rec: LocalJobRecord, pid: number): Promise<ProcessIdentity | undefined> {
    if (!Number.isInteger(pid) || pid <= 1) return undefined;
    const identity = await processIdentity(pid);
    if (!identity) return undefined;
    const uid = (await this.account.user().catch(() => undefined))?.uid ?? process.getuid?.();
    const startedAt = Date.parse(rec.started_at ?? rec.submitted_at);
    const ours = identity.uid === uid && identity.startedAtMs >= startedAt - START_CLOCK_SLACK_MS;
    return ours ? identity : undefined;
  }

  private async activeCount(): Promise<number> {
    let n = 0;
    for (const id of await this.ids()) {
      const rec = await readJsonIfExists<LocalJobRecord>(this.recordFile(id));
      if (rec?.state !== 'started') continue;
      const obs = await this.observeOne(id, rec);
      if (!obs.final) n++;
    }
    return n;
  }

  async observe(jobs: Array<{ jobId: string }>): Promise<Map<string, JobObservation>> {
    const seen = new Map<string, JobObservation>();
    for (const { jobId } of jobs) {
      const rec = await readJsonIfExists<LocalJobRecord>(this.recordFile(jobId));
      if (rec) seen.set(jobId, await this.observeOne(jobId, rec));
    }
    return seen;
  }

  private async observeOne(jobId: string, rec: LocalJobRecord): Promise<JobObservation> {
    if (rec.state === 'held')
      return { jobId, state: 'PENDING', final: false, held: true, reason: 'JobHeldUser' };
    const p = await this.progress(jobId, rec);
    if (rec.state === 'cancelled') {
      if (p.alive && p.pgid) await this.killGroup(p.pgid); // started just as it was cancelled
      return {
        jobId,
        state: 'CANCELLED',
        final: true,
        exitCode: p.exit !== undefined ? `${p.exit}:0` : '0:15',
      };
    }
    if (p.exit !== undefined)
      return { jobId, state: p.exit === 0 ? 'COMPLETED' : 'FAILED', final: true, exitCode: `${p.exit}:0` };
    if (p.alive) return { jobId, state: 'RUNNING', final: false };
    if (p.tampered)
      // The job replaced the runner's files (a fifo, a link to /dev/zero): it ends, failed, saying so.
      return {
        jobId,
        state: 'FAILED',
        final: true,
        exitCode: '0:0',
        reason: `the job tampered with ${p.tampered}`,
      };
    const startedAt = Date.parse(rec.started_at ?? rec.submitted_at);
    if (!p.marker && this.now() - startedAt < START_GRACE_MS)
      return { jobId, state: 'PENDING', final: false, reason: 'Starting' };
    // The runner died without an exit status (a reboot), or never started (see slurm-<id>.out).
    return { jobId, state: 'NODE_FAIL', final: true, exitCode: '0:0' };
  }

  async cancel(jobId: string): Promise<void> {
    const rec = await readJsonIfExists<LocalJobRecord>(this.recordFile(jobId));
    if (!rec || rec.state === 'cancelled') return;
    await writeFileAtomic(this.recordFile(jobId), JSON.stringify({ ...rec, state: 'cancelled' }) + '\n');
    const p = await this.progress(jobId, rec);
    if (p.alive && p.pgid) await this.killGroup(p.pgid);
  }

  /** SIGTERM to the job's process group: the runner, bash and the build. */
  private async killGroup(pgid: number): Promise<void> {
    if (this.account.name === undefined) {
      try {
        process.kill(-pgid, 'SIGTERM');
      } catch {
        /* already gone */
      }
      return;
    }
    const [command, args] = this.account.argv(LOCAL_RUNNER, ['--cancel', String(pgid)]);
    await run(command, args, { timeoutMs: 30_000 }).catch(() => undefined);
  }
}
