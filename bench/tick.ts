/**
 * Tick benchmark: `npm run bench:tick`.
 *
 * Builds synthetic job directories (0, 1,000 and 10,000 active jobs, beside 10,000 finished ones)
 * with the real state-file code, and runs real poller ticks on them in this process. The scheduler
 * is Slurm, answered by PATH shims for squeue and sacct that print a fixed table (every active job
 * RUNNING), so the numbers are the poller's own cost, not Slurm's. Nothing changes between ticks.
 *
 * It prints, per size: the first tick (no cache), then the median of the following ticks, and the
 * files read and written per tick (counted by wrapping node:fs/promises in this process).
 *
 * Options (after `--`): --sizes 0,1000,10000 --finished 10000 --ticks 5 --keep
 */
import { promises as fs } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import { parseConfig } from '../src/config/config.js';
import { renderJobComment } from '../src/domain/jobComment.js';
import type { JobData } from '../src/store/job.js';
import { JobDirs } from '../src/store/jobdirs.js';
import { newState, transition, writeState } from '../src/store/state.js';
import { createDeps, runTick } from '../src/poller.js';

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}
const SIZES = option('sizes', '0,1000,10000').split(',').map(Number);
const FINISHED = Number(option('finished', '10000'));
const TICKS = Number(option('ticks', '5'));
const KEEP = process.argv.includes('--keep');

const counts = { read: 0, written: 0 };
function countFileAccess(): void {
  const p = fs as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  const wrap = (name: string, kind: 'read' | 'written', when: (args: unknown[]) => boolean = () => true) => {
    const original = p[name]!.bind(fs);
    p[name] = (...args: unknown[]) => {
      if (when(args)) counts[kind]++;
      return original(...args);
    };
  };
  wrap('readFile', 'read');
  wrap('writeFile', 'written');
  wrap('rename', 'written');
  // open(2) for writing counts as a write (the atomic writers open a temp file); for reading as a read.
  wrap('open', 'read', (a) => a[1] === undefined || a[1] === 'r');
  wrap('open', 'written', (a) => a[1] !== undefined && a[1] !== 'r');
  syncBuiltinESMExports();
}

async function shim(bin: string, name: string, output: string): Promise<void> {
  const data = path.join(bin, `${name}.out`);
  await fs.writeFile(data, output);
  await fs.writeFile(path.join(bin, name), `#!/bin/sh\nexec cat '${data}'\n`, { mode: 0o755 });
}

function jobData(i: number, stageRows: number): JobData {
  return {
    pr: { owner: 'bench-org', repo: 'software-layer', number: 1 + (i % 200), installation_id: null },
    instance: 'bench',
    target: {
      nodeType: 'zen4',
      repoId: `repo${i}`,
      os: 'linux',
      onArch: 'x86_64/amd/zen4',
      forArch: 'x86_64/amd/zen4',
      slurmParams: [],
    },
    exportVariables: [],
    head_sha: 'a'.repeat(40),
    base_sha: 'b'.repeat(40),
    merge_sha: 'c'.repeat(40),
    backend: 'slurm',
    submit_id: `bench-${i}`,
    job_id: String(100000 + i),
    rows: Array.from({ length: stageRows }, (_, k) => ({
      key: `row${k}`,
      at: 'Nov 28 00:00:00 UTC 2026',
      status: 'submitted',
      comment: `row ${k} of job ${i}`,
    })),
  };
}

async function makeJobs(jobdirs: JobDirs, first: number, n: number, active: boolean): Promise<string[]> {
  const now = new Date();
  const ids: string[] = [];
  const batch = 200;
  for (let start = first; start < first + n; start += batch) {
    await Promise.all(
      Array.from({ length: Math.min(batch, first + n - start) }, async (_, k) => {
        const i = start + k;
        const data = jobData(i, 3);
        const dir = path.join(
          jobdirs.root,
          '2026.11',
          data.pr.owner,
          data.pr.repo,
          `pr_${data.pr.number}`,
          `event_bench-${i}`,
          'run_001',
          'zen4',
          `repo${i}`,
        );
        await fs.mkdir(path.join(dir, 'work'), { recursive: true });
        let state = newState<JobData>('job', 'prepared', data, now);
        for (const stage of ['submitting', 'submitted', 'released', 'running'])
          state = transition(state, stage, now);
        if (!active) state = transition(state, 'finished', now);
        const body = renderJobComment(state.data, jobdirs.relative(dir));
        state = {
          ...state,
          comments: { job: { id: 1_000_000 + i, intent_at: now.toISOString() } },
          data: { ...state.data, comment_body: body, metadata_written_for: String(1_000_000 + i) },
        };
        await writeState(dir, state);
        if (active) {
          await jobdirs.enqueue(dir);
          ids.push(data.job_id!);
        }
      }),
    );
  }
  return ids;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

async function main(): Promise<void> {
  const top = await fs.mkdtemp(path.join(os.tmpdir(), 'hpcbot-bench-tick-'));
  const bin = path.join(top, 'bin');
  await fs.mkdir(bin);
  process.env.PATH = `${bin}:${process.env.PATH}`;
  countFileAccess();
  console.log(
    `# poller tick: Slurm answered by PATH shims (squeue/sacct print a fixed table); load ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  console.log(
    '| active jobs | finished jobs | first tick (no cache) | tick, median of ' +
      `${TICKS} | files read / tick | files written / tick |`,
  );
  console.log('|---:|---:|---:|---:|---:|---:|');
  for (const size of SIZES) {
    const root = path.join(top, `jobdirs-${size}`);
    const jobdirs = new JobDirs(root);
    await jobdirs.ensureBaseDirs();
    await makeJobs(jobdirs, 0, FINISHED, false);
    const ids = await makeJobs(jobdirs, FINISHED, size, true);
    await shim(bin, 'squeue', ids.map((id) => `${id}|RUNNING|None\n`).join(''));
    await shim(bin, 'sacct', '');
    const text = [
      'instance: bench',
      `jobdirs: ${root}`,
      'github:',
      '  dry_run: true',
      'permissions:',
      '  command: [someone]',
      // The synthetic jobs have comments but no check runs; creating 10,000 would swamp the first tick.
      'reporting:',
      '  checks: false',
      'backend:',
      '  kind: slurm',
      'build:',
      `  repos_cfg_dir: ${top}`,
      '  node_types:',
      '    zen4:',
      '      os: linux',
      '      cpu_subdir: x86_64/amd/zen4',
      '      repo_targets: [x]',
    ].join('\n');
    const config = parseConfig(text, path.join(top, 'site.yaml'));
    const deps = createDeps(config, pino({ level: 'silent' }));
    const times: number[] = [];
    let first = 0;
    let read = 0;
    let written = 0;
    for (let t = 0; t <= TICKS; t++) {
      counts.read = 0;
      counts.written = 0;
      const start = performance.now();
      const report = await runTick(deps);
      const ms = performance.now() - start;
      if (report.failed > 0) throw new Error(`tick failed: ${JSON.stringify(report)}`);
      if (t === 0) first = ms;
      else {
        times.push(ms);
        read = counts.read;
        written = counts.written;
      }
    }
    console.log(
      `| ${size} | ${FINISHED} | ${(first / 1000).toFixed(3)} s | ${(median(times) / 1000).toFixed(3)} s | ${read} | ${written} |`,
    );
  }
  if (KEEP) console.log(`kept ${top}`);
  else await fs.rm(top, { recursive: true, force: true });
}

await main();
