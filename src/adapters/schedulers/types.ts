/** What the stages need from a batch system. Three implementations: slurm, pbs and local. */

export interface SubmitRequest {
  /** Working directory of the job: the job dir's work tree (see src/store/workTree.ts). */
  workTree: string;
  /** Job script to run; it gets no arguments and relies on its cwd, as EESSI's bot-build.slurm does. */
  script: string;
  /** Name shared by all jobs of this bot instance (squeue --name). */
  jobName: string;
  /** Unique per job dir; lets a crashed submission be found instead of repeated. */
  submitId: string;
  /** Site and node-type parameters (sbatch arguments for slurm, qsub arguments for pbs; ignored by local). */
  params: string[];
}

/** One observation of a job. `final` states come from sacct (slurm) or the exit-status file (local). */
export interface JobObservation {
  jobId: string;
  /** PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, ... */
  state: string;
  final: boolean;
  /** `exit:signal`, as sacct prints it. */
  exitCode?: string;
  /** squeue's reason, e.g. JobHeldUser or BeginTime. */
  reason?: string;
  held?: boolean;
}

/** The scheduler could not be asked; the tick must change no job state. */
export class BackendUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BackendUnavailableError';
  }
}

export interface Backend {
  readonly kind: 'local' | 'slurm' | 'pbs';
  /** Local jobs are always submitted held; Slurm jobs with `handover: hold_release`. */
  submit(req: SubmitRequest): Promise<{ jobId: string }>;
  /** Find a job submitted with this submitId, e.g. after a crash between sbatch and saving its id. */
  findBySubmitId(submitId: string, workTree: string): Promise<string | undefined>;
  /** Let a held job run. False means "not now" (the local backend at max_parallel); try next tick. */
  release(jobId: string, workTree: string): Promise<boolean>;
  /** Observe many jobs at once (one squeue and one sacct call for slurm). Jobs not found are absent. */
  observe(jobs: Array<{ jobId: string; workTree: string }>): Promise<Map<string, JobObservation>>;
  cancel(jobId: string, workTree: string): Promise<void>;
  /** The state of these partitions (slurm only): one `sinfo` call. */
  partitionStates?(partitions: string[]): Promise<PartitionState[]>;
}

export interface PartitionState {
  partition: string;
  /** up, down, drain, drained, inact, ... (lower case) */
  state: string;
}
