/**
 * Creating the job directories of one build command: `event_<id>/run_NNN/<node_type>/<repo_id>/`.
 * The run name is recorded in the event's state before any directory exists, so a retry after a
 * crash fills in the same run instead of starting a second one.
 */
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { ExportVariable } from '../commands.js';
import { mkdirDurable } from '../fsutil.js';
import type { JobData } from '../job.js';
import { newState, readState, writeState } from '../state.js';
import type { BuildTarget } from '../targets.js';
import type { PullRequestRef, WorkDir } from './context.js';
import type { EventData } from './event.js';

export interface PreparedJob {
  dir: string;
  target: BuildTarget;
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
): Promise<PreparedJob[]> {
  const { config, jobdirs, now } = work.deps;
  const runs = (work.state.data.runs ?? {}) as Record<string, string>;
  let runName = runs[key];
  if (!runName) {
    runName = await nextRunName(work.dir);
    const name = runName;
    await work.update((s) => ({ ...s, data: { ...s.data, runs: { ...runs, [key]: name } } }));
  }
  const jobs: PreparedJob[] = [];
  for (const target of targets) {
    const dir = path.join(work.dir, runName, target.nodeType, target.repoId);
    if (!(await readState(dir))) {
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
        backend: config.backend.kind,
        submit_id: randomUUID(),
        rows: [],
      };
      await writeState(dir, newState('job', 'prepared', data, now()));
    }
    await jobdirs.enqueue(dir);
    jobs.push({ dir, target });
  }
  return jobs;
}
