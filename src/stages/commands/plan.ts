/**
 * `bot: plan ...` and `bot: build ... --dry-run`: the exact jobs a `bot: build` with these arguments
 * would prepare on this instance (target, node type, repo) and what each would do to an active job of
 * the same target (build.on_overlap), or why nothing would be built. Nothing is written or submitted.
 */
import type { Config } from '../../config/config.js';
import type { CommandArgs } from '../../domain/commands.js';
import { codeSpan } from '../../domain/markdown.js';
import { hasPermission } from '../../domain/permissions.js';
import { describeTargets, selectBuildTargets, type BuildTarget } from '../../domain/targets.js';
import { ACTIVE_JOB_STAGES } from '../../store/job.js';
import { sameTarget } from '../buildRun.js';
import { describeClosure, prClosure } from '../cleanup.js';
import { prJobs } from '../job.js';
import type { CommandContext, CommandHandler } from './types.js';

/** What building a target would do, given the active jobs of the same target (relative job dirs). */
export type PlannedAction = { kind: 'new' } | { kind: 'supersede' | 'queue' | 'refuse'; activeDir: string };

/** Pure: the action build.on_overlap takes for a target with these active jobs. */
export function plannedAction(overlapping: string[], policy: Config['build']['on_overlap']): PlannedAction {
  if (overlapping.length === 0) return { kind: 'new' };
  const kind = policy === 'supersede' ? 'supersede' : policy === 'queue' ? 'queue' : 'refuse';
  return { kind, activeDir: overlapping[0]! };
}

export function describeAction(a: PlannedAction): string {
  switch (a.kind) {
    case 'new':
      return 'new job';
    case 'supersede':
      return `new job, supersedes (cancels) the active job in ${codeSpan(a.activeDir, 400)}`;
    case 'queue':
      return `new job, queued behind the active job in ${codeSpan(a.activeDir, 400)}`;
    case 'refuse':
      return `refused: a job of this target is active in ${codeSpan(a.activeDir, 400)} (build.on_overlap: refuse)`;
  }
}

/** `<for-arch>[, <accel>]`, and where it runs when that differs. */
export function describeTarget(t: BuildTarget): string {
  const forWhat = `${t.forArch}${t.forAccel ? `, ${t.forAccel}` : ''}`;
  const onWhat = `${t.onArch}${t.onAccel ? `, ${t.onAccel}` : ''}`;
  return codeSpan(forWhat) + (onWhat !== forWhat ? ` on ${codeSpan(onWhat)}` : '');
}

/**
 * The targets `bot: build` with `args` selects, or the reply that says why there are none (shared by
 * build, plan and rebuild so that they refuse alike).
 */
export function selectOrExplain(
  args: CommandArgs,
  config: Config,
  what: string,
): { targets: BuildTarget[]; exportVariables: CommandArgs['exportVariables'] } | { reply: string } {
  const selection = selectBuildTargets(args, config);
  if (!selection.ok) return { reply: `${what}: ${selection.reason}` };
  if (selection.targets.length > 0) return selection;
  const available = describeTargets(config);
  return {
    reply: [
      `${what}: no node type of instance ${codeSpan(config.instance)} matches.`,
      available.length ? 'Available targets:' : 'This instance has no node types configured.',
      ...available.map((t) => `- ${t}`),
    ].join('\n'),
  };
}

export const plan: CommandHandler = async (ctx) => renderPlan(ctx);

export async function renderPlan(ctx: CommandContext): Promise<string> {
  const { config, github, jobdirs } = ctx.work.deps;
  const head = `dry run on instance ${codeSpan(config.instance)}, nothing was submitted`;
  const closure = await prClosure(ctx.work.deps, ctx.pr);
  if (closure) return `${head}: no jobs would be submitted, ${describeClosure(closure)}`;
  const selected = selectOrExplain(ctx.args, config, `${head}; no jobs would be submitted`);
  if ('reply' in selected) return selected.reply;
  const active = (await prJobs(ctx.work.deps, ctx.pr)).filter((j) => ACTIVE_JOB_STAGES.has(j.state.stage));
  const permitted = await hasPermission(github, ctx.pr.repo, ctx.sender, config.permissions.build);
  const rows = selected.targets.map((t) => {
    const action = permitted
      ? describeAction(
          plannedAction(
            sameTarget(active, t).map((d) => jobdirs.relative(d)),
            config.build.on_overlap,
          ),
        )
      : `refused: account ${codeSpan(ctx.sender)} has NO permission to submit build jobs`;
    return `|${describeTarget(t)}|${codeSpan(t.nodeType)}|${codeSpan(t.repoId)}|${action}|`;
  });
  const vars = selected.exportVariables.map((e) => codeSpan(`${e.name}=${e.value}`));
  return [
    `${head}; \`bot: build\` would prepare ${selected.targets.length} job(s)${vars.length ? ` with ${vars.join(', ')}` : ''}:`,
    '',
    '|target|node type|repo|action|',
    '|---|---|---|---|',
    ...rows,
  ].join('\n');
}
