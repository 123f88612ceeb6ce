/** Handlers for `pull_request` events: opened, labeled, synchronize (a new head) and closed. */
import { isForInstance, parseLabelBuildCommand } from '../domain/commands.js';
import { ACTIVE_JOB_STAGES } from '../store/job.js';
import { codeSpan } from '../domain/markdown.js';
import { renderCommandReply, renderConfig, renderSyntaxError } from '../domain/render.js';
import { writeState } from '../store/state.js';
import { build } from './commands/build.js';
import { startDeploy } from './deploy.js';
import type { EventContext, EventHandler } from './event.js';
import { cancelJob, prJobs } from './job.js';
import { prName } from '../log.js';

interface PullRequestPayload {
  label?: { name: string };
  sender: { login: string };
  pull_request: { head: { sha: string }; merged?: boolean | null };
}

const payloadOf = (ctx: EventContext) => ctx.event.payload as PullRequestPayload;

export const handleOpened: EventHandler = async (ctx) => {
  await ctx.work.postComment(ctx.pr, `${ctx.gen}:config`, renderConfig(ctx.work.deps.config), 'chatty');
};

export const handleLabeled: EventHandler = async (ctx) => {
  const { config } = ctx.work.deps;
  const label = payloadOf(ctx).label?.name;
  const sender = payloadOf(ctx).sender.login;
  const key = `${ctx.gen}:reply`;
  if (label === 'bot:deploy' || label === 'bot:build')
    ctx.work.deps.logger.info({ pr: prName(ctx.pr), sender, label }, 'label received');
  if (label === 'bot:deploy') {
    await ctx.work.postComment(ctx.pr, key, await startDeploy(ctx, sender), 'basic');
    return;
  }
  if (label !== 'bot:build') return { ignored: `label ${label ?? '(none)'} means nothing to the bot` };
  if (config.labels.build === 'hint' || !config.labels.default_build_command) {
    await ctx.work.postComment(
      ctx.pr,
      key,
      "Handling the label 'bot:build' is disabled on this instance. Use the command `bot: build [FILTER]*` instead.",
      'basic',
    );
    return;
  }
  const cmd = parseLabelBuildCommand(config.labels.default_build_command);
  if (!cmd.ok) {
    // `config check` rejects this; a configuration loaded before that check existed still gets here.
    const reply =
      `nothing was built: \`labels.default_build_command\` of instance ${codeSpan(config.instance)} ` +
      `is not a valid build command (its site.yaml needs fixing):\n\n${renderSyntaxError(cmd.error, cmd.syntax)}`;
    await ctx.work.postComment(ctx.pr, key, reply, 'minimal');
    return;
  }
  if (!isForInstance(cmd, config.instance)) {
    return { ignored: `labels.default_build_command is for other instances (inst:), not ${config.instance}` };
  }
  const result = await build({ ...ctx, sender, args: cmd.args, key: `${ctx.gen}:label-build` });
  const reply = renderCommandReply(config.instance, sender, [
    { line: cmd.line, expanded: cmd.expanded, result },
  ]);
  await ctx.work.postComment(ctx.pr, key, reply, 'basic');
};

/** A new head: jobs built from older heads are stale; active ones are cancelled or kept (build.on_new_push). */
export const handleSynchronize: EventHandler = async (ctx) => {
  const { config, jobdirs } = ctx.work.deps;
  const head = payloadOf(ctx).pull_request.head.sha;
  let touched = 0;
  for (const { dir, state } of await prJobs(ctx.work.deps, ctx.pr)) {
    if (!state.data.head_sha || state.data.head_sha === head || state.data.stale) continue;
    await writeState(dir, { ...state, data: { ...state.data, stale: { superseded_by: head } } });
    if (ACTIVE_JOB_STAGES.has(state.stage) && config.build.on_new_push === 'cancel') {
      await cancelJob(ctx.work.deps, dir, `superseded by ${head.slice(0, 10)}`);
    }
    await jobdirs.enqueue(dir); // its comment is re-rendered with the stale note
    touched++;
  }
  if (touched > 0)
    ctx.work.deps.logger.info(
      { pr: prName(ctx.pr), head, jobs: touched, on_new_push: config.build.on_new_push },
      'new push: jobs built from older heads are stale',
    );
  if (touched === 0) return { ignored: 'no jobs from older heads' };
};
