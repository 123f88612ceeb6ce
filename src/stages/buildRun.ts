/**
 * Creating the job directories of one build command: `event_<id>/run_NNN/<node_type>/<repo_id>/`.
 * The run name is recorded in the event's state before any directory exists, so a retry after a
 * crash fills in the same run instead of starting a second one.
 */
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { ExportVariable } from '../domain/commands.js';
import { mkdirDurable } from '../store/fsutil.js';
import { ACTIVE_JOB_STAGES, type JobData } from '../store/job.js';
import { newState, readState, writeState } from '../store/state.js';
import type { BuildTarget } from '../domain/targets.js';
import type { PullRequestRef, WorkDir } from './context.js';
import { cancelJob, prJobs, type PrJob } from './job.js';
import { jobFields, prName, targetName } from '../log.js';
import type { EventData } from './event.js';

export interface PreparedJob {
  /** Undefined when build.on_overlap = refuse turned the target down. */
  dir?: string;
  target: BuildTarget;
  /** An active job for the same PR, node type and repo that this one overlaps with, and what was done. */
  overlap?: { dir: string; action: 'superseded' | 'queued behind' | 'refused because of' };
}

/** The directories of `active` jobs for the same node type and repo target as `target`. */
export function sameTarget(active: PrJob[], target: BuildTarget): string[] {
  return active
    .filter(
      ({ state: { data } }) =>
        data.target.nodeType === target.nodeType && data.target.repoId === target.repoId,
    )
    .map((j) => j.dir);
}

export async function nextRunName(eventDir: string): Promise<string> {
  const names = await fs.readdir(eventDir).catch(() => [] as string[]);
  const used = names.map((n) => /^run_(\d{3,})$/.exec(n)?.[1]).filter((n): n is string => n !== undefined);
  const next = used.length ? Math.max(...used.map(Number)) + 1 : 0;
  return `run_${String(next).padStart(3, '0')}`;
}

export async function createBuildRun(
  work: WorkDir<EventData>,
  key: string,
  pr: PullRequestRef,
  targets: BuildTarget[],
  exportVariables: ExportVariable[],
  jobOwner?: string,
  /** `after:#N`: the jobs wait until PR N is deployed or closed. */
  afterPr?: number,
): Promise<PreparedJob[]> {
  const { config, jobdirs, now } = work.deps;
  const runs = (work.state.data.runs ?? {}) as Record<string, string>;
  let runName = runs[key];
  if (!runName) {
    runName = await nextRunName(work.dir);
    const name = runName;
    await work.update((s) => ({ ...s, data: { ...s.data, runs: { ...runs, [key]: name } } }));
  }
  // Active jobs of the PR outside this event: the jobs of the same event (earlier runs of a replay)
  // are never touched. Cancelling one (supersede) leaves it active, so one look serves every target.
  const active = (await prJobs(work.deps, pr)).filter(
    (j) => !j.dir.startsWith(work.dir + path.sep) && ACTIVE_JOB_STAGES.has(j.state.stage),
  );
  const jobs: PreparedJob[] = [];
  for (const target of targets) {
    const runDir = path.join(work.dir, runName);
    const dir = path.join(runDir, target.nodeType, target.repoId);
    let overlap: PreparedJob['overlap'];
    let waitFor: string[] = [];
    if (!(await readState(dir))) {
      const overlapping = sameTarget(active, target);
      if (overlapping.length > 0) {
        const policy = config.build.on_overlap;
        if (policy === 'refuse') {
          work.deps.logger.info(
            { pr: prName(pr), target: targetName(target), active: jobdirs.relative(overlapping[0]!) },
            'job not prepared: a job of the same target is active (build.on_overlap: refuse)',
          );
          jobs.push({ target, overlap: { dir: overlapping[0]!, action: 'refused because of' } });
          continue;
        }
        if (policy === 'supersede') {
          for (const old of overlapping)
            await cancelJob(work.deps, old, `superseded by ${jobdirs.relative(dir)}`);
        } else {
          waitFor = overlapping.map((d) => jobdirs.relative(d));
        }
        overlap = { dir: overlapping[0]!, action: policy === 'supersede' ? 'superseded' : 'queued behind' };
      }
      await mkdirDurable(dir);
      const data: JobData = {
        pr: {
          owner: pr.repo.owner,
          repo: pr.repo.repo,
          number: pr.number,
          installation_id: pr.repo.installationId,
        },
        instance: config.instance,
        target,
        exportVariables,
        ...(jobOwner ? { job_owner: jobOwner } : {}),
        backend: config.backend.kind,
        ...(config.digest ? { config_digest: config.digest } : {}),
        submit_id: randomUUID(),
        rows: [],
        ...(waitFor.length ? { wait_for: waitFor } : {}),
        ...(afterPr !== undefined ? { after_pr: afterPr } : {}),
      };
      await writeState(dir, newState('job', 'prepared', data, now()));
      work.deps.logger.info(
        { ...jobFields(data), dir: jobdirs.relative(dir), ...(overlap ? { overlap: overlap.action } : {}) },
        'job prepared',
      );
    }
    await jobdirs.enqueue(dir);
    jobs.push({ dir, target, ...(overlap ? { overlap } : {}) });
  }
  return jobs;
}
