/**
 * What the status page shows, read from jobdirs alone, like `hpcbot status` (whose report it
 * includes): the PRs with their build targets, the jobs, the deploys and one job's details. Reads
 * state.json files through src/store/stateScan.ts; a PR's title comes from one event.json per PR.
 * Everything here is hostile text to the renderer (titles, branch names, result descriptions).
 */
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { collectStatus, type Located, type StatusReport } from '../cli/status.js';
import type { DeployRecord } from '../store/deployRecords.js';
import { UPLOADS_DIR } from '../store/deployRecords.js';
import { openJobFile, readHead } from '../store/jobFile.js';
import { ACTIVE_JOB_STAGES, type JobData } from '../store/job.js';
import { JobDirs } from '../store/jobdirs.js';
import { readSelfUpdateLog, type SelfUpdateEntry } from '../selfUpdate/log.js';
import { listEntries, scanStates } from '../store/stateScan.js';
import { STATE_FILE, type DirState, type Transition } from '../store/state.js';
import { workTreeOf } from '../store/workTree.js';

const RECENT_FINISHED = 20;
const RECENT_DEPLOYS = 20;
const MAX_EVENT_BYTES = 4 * 1024 * 1024;
export const LOG_TAIL_BYTES = 8 * 1024;
const MAX_SHOWN_FILE_BYTES = 64 * 1024;

/** One job, as the overview and the metrics need it. */
export interface JobBrief {
  /** Relative to jobdirs. */
  dir: string;
  /** `owner/repo#N`. */
  pr: string;
  target: string;
  nodeType: string;
  backend: string;
  stage: string;
  outcome?: string;
  created: string;
  since?: string;
  submittedAt?: string;
  startedAt?: string;
  finishedAt?: string;
  error?: string;
}

export interface PrView {
  pr: string;
  title?: string;
  /** The newest job of each build target, by target. */
  cells: Record<string, JobBrief>;
}

export interface DeployView {
  pr: string;
  target: string;
  status: DeployRecord['status'];
  at: string;
  jobDir: string;
  uploaded: number;
  refused: number;
}

export interface Overview {
  status: StatusReport;
  prs: PrView[];
  targets: string[];
  active: JobBrief[];
  finished: JobBrief[];
  deploys: DeployView[];
  selfUpdates: SelfUpdateEntry[];
}

/** Pure: a job's state as the overview needs it; undefined for an event dir. */
export function jobBrief(state: DirState, rel: string): JobBrief | undefined {
  if (state.kind !== 'job') return undefined;
  const d = state.data as unknown as JobData;
  const pr = `${d.pr.owner}/${d.pr.repo}#${d.pr.number}`;
  return {
    dir: rel,
    pr,
    target: `${d.target.nodeType}/${d.target.repoId}`,
    nodeType: d.target.nodeType,
    backend: d.backend,
    stage: state.stage,
    ...(d.result && { outcome: d.result.status }),
    created: state.history[0]?.at ?? '',
    since: state.history.at(-1)?.at,
    ...(d.submitted_at && { submittedAt: d.submitted_at }),
    ...(d.started_at && { startedAt: d.started_at }),
    ...(d.finished_at && { finishedAt: d.finished_at }),
    ...(state.last_error && { error: state.last_error.message }),
  };
}

export function scanJobs(root: string): JobBrief[] {
  const jobdirs = new JobDirs(root);
  return [...scanStates(root, (state, dir) => jobBrief(state, jobdirs.relative(dir))).values()];
}

/** Pure: the PRs that have jobs, each with the newest job per target, newest PR first. */
export function prMatrix(jobs: JobBrief[]): { prs: PrView[]; targets: string[] } {
  const prs = new Map<string, PrView & { newest: string }>();
  const targets = new Set<string>();
  for (const job of jobs) {
    targets.add(job.target);
    const view = prs.get(job.pr) ?? { pr: job.pr, cells: {}, newest: '' };
    const cell = view.cells[job.target];
    if (!cell || job.created > cell.created) view.cells[job.target] = job;
    if (job.created > view.newest) view.newest = job.created;
    prs.set(job.pr, view);
  }
  const sorted = [...prs.values()].sort((a, b) => b.newest.localeCompare(a.newest));
  return { prs: sorted.map(({ newest: _n, ...v }) => v), targets: [...targets].sort() };
}

/** The PR's title from the event.json of one of its jobs (the event that started the run). */
function prTitle(root: string, jobDir: string): string | undefined {
  const eventFile = path.join(root, jobDir, '..', '..', '..', 'event.json');
  try {
    if (statSync(eventFile).size > MAX_EVENT_BYTES) return undefined;
    const payload = (JSON.parse(readFileSync(eventFile, 'utf8')) as { payload?: Record<string, unknown> })
      .payload;
    const about = (payload?.pull_request ?? payload?.issue) as { title?: unknown } | undefined;
    return typeof about?.title === 'string' ? about.title : undefined;
  } catch {
    return undefined;
  }
}

export function readDeploys(root: string): DeployView[] {
  const found: DeployView[] = [];
  for (const owner of listEntries(path.join(root, UPLOADS_DIR)))
    for (const repo of listEntries(owner))
      for (const prDir of listEntries(repo, /^pr_\d+$/))
        for (const file of listEntries(prDir, /^[0-9a-f]{32}\.json$/)) {
          try {
            const r = JSON.parse(readFileSync(file, 'utf8')) as DeployRecord;
            const outcomes = r.outcomes ?? [];
            found.push({
              pr: `${path.basename(owner)}/${path.basename(repo)}#${path.basename(prDir).slice(3)}`,
              target: r.target,
              status: r.status,
              at: r.at,
              jobDir: r.job_dir,
              uploaded: outcomes.filter((o) => o.uploaded).length,
              refused: outcomes.filter((o) => !o.uploaded).length,
            });
          } catch {
            /* being written or removed */
          }
        }
  return found.sort((a, b) => b.at.localeCompare(a.at));
}

export async function collectOverview(located: Located, now = new Date()): Promise<Overview> {
  const status = await collectStatus(located, now);
  const root = status.jobdirs;
  const jobs = scanJobs(root);
  const { prs, targets } = prMatrix(jobs);
  for (const pr of prs) {
    const anyJob = Object.values(pr.cells)[0];
    if (anyJob) pr.title = prTitle(root, anyJob.dir);
  }
  const active = jobs
    .filter((j) => ACTIVE_JOB_STAGES.has(j.stage))
    .sort((a, b) => a.created.localeCompare(b.created));
  const finished = jobs
    .filter((j) => !ACTIVE_JOB_STAGES.has(j.stage))
    .sort((a, b) => (b.finishedAt ?? b.since ?? '').localeCompare(a.finishedAt ?? a.since ?? ''))
    .slice(0, RECENT_FINISHED);
  return {
    status,
    prs,
    targets,
    active,
    finished,
    deploys: readDeploys(root).slice(0, RECENT_DEPLOYS),
    selfUpdates: (await readSelfUpdateLog(root)).slice(-10).reverse(),
  };
}

// ---- one job -----------------------------------------------------------------------------------

/** `<YYYY.MM>/<owner>/<repo>/pr_<N>/event_<id>/run_<NNN>/<node_type>/<repo_id>`. */
const JOB_DIR_RE =
  /^\d{4}\.\d{2}\/[A-Za-z0-9-]+\/[A-Za-z0-9._-]+\/pr_\d+\/event_[A-Za-z0-9-]+\/run_\d+\/[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/;

/** A file of the job, or why it is not shown. */
export type Shown = { text: string; truncated: boolean } | { problem: string };

export interface JobDetail {
  dir: string;
  title?: string;
  state: DirState<JobData>;
  history: Transition[];
  resultFile?: Shown;
  logTail?: Shown;
  provenance: Array<{ name: string; text: string }>;
}

/**
 * Read a file the job wrote (hostile: a link to a bot secret, a fifo) through src/store/jobFile.ts;
 * `tail` reads its end instead of its start.
 */
async function showJobFile(tree: string, name: string, limit: number, tail = false): Promise<Shown> {
  const opened = await openJobFile(tree, name);
  if (!opened.ok) return { problem: opened.problem };
  try {
    const size = opened.stat.size;
    if (!tail || size <= limit) {
      const head = await readHead(opened.handle, limit);
      return { text: head.toString('utf8'), truncated: size > limit };
    }
    const buf = Buffer.alloc(limit);
    const { bytesRead } = await opened.handle.read(buf, 0, limit, size - limit);
    return { text: buf.subarray(0, bytesRead).toString('utf8'), truncated: true };
  } finally {
    await opened.handle.close();
  }
}

/** The job at `rel` (relative to jobdirs), or undefined when `rel` names no job dir. */
export async function collectJobDetail(root: string, rel: string): Promise<JobDetail | undefined> {
  if (!JOB_DIR_RE.test(rel) || rel.split('/').some((part) => part === '.' || part === '..')) return undefined;
  const jobdirs = new JobDirs(root);
  let dir: string;
  try {
    dir = jobdirs.resolve(rel);
  } catch {
    return undefined;
  }
  let state: DirState<JobData>;
  try {
    state = JSON.parse(readFileSync(path.join(dir, STATE_FILE), 'utf8')) as DirState<JobData>;
  } catch {
    return undefined;
  }
  if (state.kind !== 'job') return undefined;
  const tree = workTreeOf(dir);
  const jobId = state.data.job_id;
  const provenance: Array<{ name: string; text: string }> = [];
  for (const file of listEntries(path.join(dir, 'deploy'), /\.provenance\.json$/).sort()) {
    try {
      provenance.push({
        name: path.basename(file),
        text: readFileSync(file, 'utf8').slice(0, MAX_SHOWN_FILE_BYTES),
      });
    } catch {
      /* removed meanwhile */
    }
  }
  return {
    dir: rel,
    title: prTitle(root, rel),
    state,
    history: state.history,
    ...(jobId && {
      resultFile: await showJobFile(tree, `_bot_job${jobId}.result`, MAX_SHOWN_FILE_BYTES),
      logTail: await showJobFile(tree, `slurm-${jobId}.out`, LOG_TAIL_BYTES, true),
    }),
    provenance,
  };
}
