/**
 * `issue_comment.created` on a PR: parse the `bot:` commands, keep those for this instance (`inst:`),
 * check the sender may send commands, run each command's handler, and answer with one reply comment.
 * Results are saved per command, so a retry after a crash neither re-runs a finished command nor posts
 * a second reply.
 */
import { parseBotCommands, UnreadableCommentError } from '../domain/commandLines.js';
import type { Chatlevel } from '../config/config.js';
import { DRY_RUN_FLAG, type CommandName, type ParsedCommand } from '../domain/commands.js';
import { codeSpan } from '../domain/markdown.js';
import { hasPermission, isBotAccount } from '../domain/permissions.js';
import { renderCommandReply, renderSyntaxError, type CommandOutcome } from '../domain/render.js';
import type { EventContext, EventHandler } from './event.js';
import { claimDenialReply } from './denials.js';
import { build } from './commands/build.js';
import { cancel, cancelledAny } from './commands/cancel.js';
import { deploy } from './commands/deploy.js';
import { help } from './commands/help.js';
import { plan } from './commands/plan.js';
import { ping } from './commands/ping.js';
import { rebuild } from './commands/rebuild.js';
import { showConfig } from './commands/showConfig.js';
import { leavesStatusToOthers, status } from './commands/status.js';
import type { CommandHandler } from './commands/types.js';
import { prName } from '../log.js';

const COMMAND_HANDLERS: Record<CommandName, CommandHandler> = {
  help,
  show_config: showConfig,
  status,
  build,
  plan,
  rebuild,
  cancel,
  deploy,
  ping,
};

/** Direct questions are answered at chatlevel minimal; acknowledgements of actions need basic. */
const ANSWER_COMMANDS = new Set<string>(['help', 'show_config', 'status', 'plan', 'ping']);

interface CommentPayload {
  issue?: { pull_request?: unknown };
  comment: { body?: string | null; user: { login: string } };
}

export const handleCommentCommands: EventHandler = async (ctx) => {
  const { config, github } = ctx.work.deps;
  const { comment, issue } = ctx.event.payload as CommentPayload;
  // The server stores no comments on plain issues; an event file put here by other means is no exception.
  if (!issue?.pull_request) return { ignored: 'comment on a plain issue, not a pull request' };
  const sender = comment.user.login;
  if (isBotAccount(sender, config.github.bot_login))
    return { ignored: `comment by the bot account ${sender}` };
  let parsed: ReturnType<typeof parseBotCommands>;
  try {
    parsed = parseBotCommands(comment.body ?? '', config.instance);
  } catch (err) {
    if (err instanceof UnreadableCommentError) return { ignored: `comment not read: ${err.message}` };
    throw err;
  }
  const { dropped, forOtherInstances } = parsed;
  const commands = parsed.commands.filter(
    (c) => !(c.ok && c.name === 'status' && leavesStatusToOthers(config, c.args.filters.instance)),
  );
  if (commands.length === 0) {
    if (parsed.commands.length > 0)
      return { ignored: `reporting.status_responder ${config.reporting.status_responder} answers status` };
    return forOtherInstances > 0
      ? { ignored: `every command is for other instances (inst:), none for ${config.instance}` }
      : { ignored: 'no bot: command in the comment' };
  }

  const replyKey = `${ctx.gen}:reply`;
  // permissions.cancel_own_jobs: a comment of cancels only is let through; cancel.ts limits it to the sender's jobs.
  const ownCancels = config.permissions.cancel_own_jobs && commands.every((c) => c.ok && c.name === 'cancel');
  const mayCommand = await hasPermission(github, ctx.pr.repo, sender, config.permissions.command);
  if (!ownCancels && !mayCommand) {
    const denial = await claimDenialReply(ctx.work, ctx.pr, sender);
    if (!denial.claimed)
      return { ignored: `${sender} may not send commands and was told so at ${denial.told.at}` };
    ctx.work.deps.logger.info(
      { pr: prName(ctx.pr), sender, commands: commands.map((c) => c.line) },
      'commands refused: the sender may not send commands',
    );
    await ctx.work.postComment(
      ctx.pr,
      replyKey,
      `account ${codeSpan(sender)} has NO permission to send commands to bot instance ${codeSpan(config.instance)}`,
      'basic',
    );
    return;
  }

  const outcomes: CommandOutcome[] = [];
  for (const [i, cmd] of commands.entries()) {
    outcomes.push(await runCommand(ctx, cmd, `${ctx.gen}:cmd${i}`, sender));
  }
  // Cancels let through by cancel_own_jobs that cancelled nothing: to someone without permission that
  // answer is a "no permission" reply, and goes out at most once per PR and hour like the others.
  if (!mayCommand && !outcomes.some((o) => cancelledAny(o.result))) {
    const denial = await claimDenialReply(ctx.work, ctx.pr, sender);
    if (!denial.claimed)
      return {
        ignored: `${sender} may cancel only their own jobs, had none, and was told so at ${denial.told.at}`,
      };
  }
  const required: Chatlevel = commands.some(
    (c) => !c.ok || ANSWER_COMMANDS.has(c.name) || c.args.general.includes(DRY_RUN_FLAG),
  )
    ? 'minimal'
    : 'basic';
  await ctx.work.postComment(
    ctx.pr,
    replyKey,
    renderCommandReply(config.instance, sender, outcomes, dropped),
    required,
  );
};

async function runCommand(
  ctx: EventContext,
  cmd: ParsedCommand,
  key: string,
  sender: string,
): Promise<CommandOutcome> {
  if (!cmd.ok) {
    ctx.work.deps.logger.info(
      { pr: prName(ctx.pr), sender, command: cmd.line, error: cmd.error },
      'command not understood',
    );
    return { line: cmd.line, result: renderSyntaxError(cmd.error, cmd.syntax) };
  }
  const saved = (ctx.work.state.data.results as Record<string, string> | undefined)?.[key];
  if (saved !== undefined) return { line: cmd.line, expanded: cmd.expanded, result: saved };
  ctx.work.deps.logger.info({ pr: prName(ctx.pr), sender, command: cmd.line }, 'command received');
  const result = await COMMAND_HANDLERS[cmd.name]({ ...ctx, sender, args: cmd.args, key });
  await ctx.work.update((s) => ({
    ...s,
    data: { ...s.data, results: { ...((s.data.results as Record<string, string>) ?? {}), [key]: result } },
  }));
  return { line: cmd.line, expanded: cmd.expanded, result };
}
