/**
 * A build job's data, kept in its directory's state file (`run_NNN/<node_type>/<repo_id>/state.json`).
 * Job stages: prepared → submitting → submitted → (released) → running → finished | cancelled | lost | failed.
 */
import type { ExportVariable } from '../domain/commands.js';
import type { BuildTarget } from '../domain/targets.js';

export interface JobRow {
  /** Idempotency key: a row is added once per key. */
  key: string;
  at: string;
  status: string;
  comment: string;
}

export interface ResultSummary {
  status: 'SUCCESS' | 'FAILURE' | 'UNKNOWN';
  description: string;
  artefacts: string[];
}

export interface JobData {
  pr: { owner: string; repo: string; number: number; installation_id: number | null };
  instance: string;
  target: BuildTarget;
  exportVariables: ExportVariable[];
  /** Who asked for the build (the login of the `bot: build` comment); EESSI's `job_owner`. */
  job_owner?: string;
  head_sha?: string;
  base_sha?: string;
  merge_sha?: string;
  backend: 'local' | 'slurm' | 'pbs';
  /** sha256 of the site.yaml the job was prepared with (the config can change while the bot runs). */
  config_digest?: string;
  /** Unique id given to the scheduler (sbatch --comment) so a crashed submission can be found. */
  submit_id: string;
  /**
   * Counted before each sbatch; set to 0 when the job reaches `submitting`. Only 0 lets the first
   * submission skip the look-up for an earlier one (jobs from older versions have none: look up).
   */
  submit_attempts?: number;
  job_id?: string;
  scheduler_state?: string;
  exit_code?: string;
  /** The build node's CPU model, from `_bot_job<ID>.lscpu` (whose copy is in the job dir's `node/`). */
  node_cpu_model?: string;
  result?: ResultSummary;
  test?: Omit<ResultSummary, 'artefacts'>;
  rows: JobRow[];
  stale?: { superseded_by: string };
  missing_ticks?: number;
  /** Resubmissions after infrastructure failures so far (build.infra_retries), and the job ids they replaced. */
  infra_retries?: number;
  infra_failed_job_ids?: string[];
  /** build.on_overlap = queue: job dirs (relative to jobdirs) that must end before this one starts. */
  wait_for?: string[];
  /** `after:#N`: waits (before its checkout) until PR N of the same repository is deployed or closed. */
  after_pr?: number;
  /** Why a cancel was asked for; the job ends as `cancelled`. */
  cancel_requested?: string;
  /** The job comment as last posted, so it is edited only when it changes. */
  comment_body?: string;
  /** The job's check run or commit status on its head commit. */
  check?: CheckRecord;
  /** The job comment id (or '') that `_bot_job<ID>.metadata` and job.json were last written with. */
  metadata_written_for?: string;
  submitted_at?: string;
  started_at?: string;
  finished_at?: string;
}

/**
 * A check run is created once: the intent is saved before the call and the id after; a retry that finds
 * an intent without an id looks the run up (name and external_id) instead of creating a second one.
 */
export interface CheckRecord {
  /** A check run (App) or a commit status (personal token); a record of the other kind starts over. */
  surface: 'checks' | 'statuses';
  intent_at?: string;
  /** sha256 of the body being created, so that a run found after a crash is not written again for nothing. */
  creating?: string;
  id?: number;
  /** sha256 of the body last written (or refused for good): it is written again only when it changes. */
  sent?: string;
  /** The `sent` for which the deploy gate was last evaluated (src/stages/deployGate.ts). */
  gated?: string;
}

export const ACTIVE_JOB_STAGES = new Set([
  'prepared',
  'queued',
  'submitting',
  'submitted',
  'released',
  'running',
]);

/** Pure: add a row unless one with the same key exists. */
export function addRow(rows: JobRow[], row: JobRow): JobRow[] {
  return rows.some((r) => r.key === row.key) ? rows : [...rows, row];
}
