/** `bot: status [last_build]`: built from this instance's job directories, never by scraping comments. */
import path from 'node:path';
import type { JobData } from '../../store/job.js';
import { codeSpan } from '../../domain/markdown.js';
import { buildTargetKey } from '../../domain/targets.js';
import type { DirState } from '../../store/state.js';
import { describeClosure, prClosure } from '../cleanup.js';
import { prJobs } from '../job.js';
import type { CommandHandler } from './types.js';

export const status: CommandHandler = async (ctx) => {
  const { jobdirs, config } = ctx.work.deps;
  const jobs = await prJobs(ctx.work.deps, ctx.pr);
  const selected = ctx.args.general.includes('last_build') ? lastPerTarget(jobs) : jobs;
  const closure = await prClosure(ctx.work.deps, ctx.pr);
  const closed = closure
    ? `${describeClosure(closure)}: no new jobs start, and its job directories go to the trash.\n\n`
    : '';
  if (selected.length === 0)
    return `${closed}no build jobs of instance ${codeSpan(config.instance)} for this PR yet`;
  return (
    closed +
    renderStatusTable(
      selected.map(({ dir, state }) => ({ dir: jobdirs.relative(dir), state })),
      config.instance,
    )
  );
};

/** The newest job per (for-arch, accelerator, repo), by directory order (run and event names sort by time). */
function lastPerTarget<T extends { dir: string; state: DirState<JobData> }>(jobs: T[]): T[] {
  const newest = new Map<string, T>();
  for (const job of jobs) {
    const key = buildTargetKey(job.state.data.target);
    const prev = newest.get(key);
    if (!prev || firstTime(job.state) >= firstTime(prev.state)) newest.set(key, job);
  }
  return [...newest.values()];
}

function firstTime(state: DirState<unknown>): string {
  return state.history[0]?.at ?? '';
}

export function renderStatusTable(
  jobs: Array<{ dir: string; state: DirState<JobData> }>,
  instance: string,
): string {
  const lines = [
    `This is the status of all the \`bot: build\` jobs of instance ${codeSpan(instance)} for this PR:`,
    '',
    '|on|for|repo|result|date|status|job dir|',
    '|---|---|---|---|---|---|---|',
  ];
  for (const { dir, state } of jobs) {
    const d = state.data;
    const t = d.target;
    const on = `${t.onArch}${t.onAccel ? `, ${t.onAccel}` : ''}`;
    const forTarget = `${t.forArch}${t.forAccel ? `, ${t.forAccel}` : ''}`;
    const result = d.result ? resultEmoji(d.result.status) : '';
    const stale = d.stale ? ` (stale: superseded by ${d.stale.superseded_by.slice(0, 10)})` : '';
    const date = state.history[state.history.length - 1]?.at ?? '';
    lines.push(
      `|${codeSpan(on)}|${codeSpan(forTarget)}|${codeSpan(t.repoId)}|${result}|${date}|${state.stage}${stale}|${codeSpan(path.normalize(dir))}|`,
    );
  }
  return lines.join('\n');
}

export function resultEmoji(status: string): string {
  if (status === 'SUCCESS') return ':grin: SUCCESS';
  if (status === 'FAILURE') return ':cry: FAILURE';
  return ':shrug: UNKNOWN';
}
