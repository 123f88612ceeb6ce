/**
 * The event router: a stored event goes to the one handler that owns it (Prow's hook/plugins split).
 * `routeEvent` is pure; `advanceEvent` runs the handler once. Handlers are safe to re-run after a
 * crash, because every effect they have is keyed (see WorkDir).
 */
import { readEventFile, type StoredEvent } from '../ingest/eventStore.js';
import type { RepoRef } from '../adapters/github/index.js';
import { transition } from '../store/state.js';
import type { PullRequestRef, WorkDir } from './context.js';
import { handleCheckRunAction } from './checkRunActions.js';
import { handleCommentCommands } from './commentCommands.js';
import { handleClosed } from './cleanup.js';
import { handleLabeled, handleOpened, handleSynchronize } from './pullRequest.js';

export interface EventData {
  event: string;
  action: string | null;
  /** Bumped by `hpcbot poll --replay`; comment keys and build runs of a generation are its own. */
  generation: number;
  [key: string]: unknown;
}

export interface EventContext {
  work: WorkDir<EventData>;
  event: StoredEvent;
  pr: PullRequestRef;
  /** Key prefix for this generation's effects. */
  gen: string;
}

/**
 * A handler returns nothing when it is done, `{ ignored: why }` when the event needed nothing,
 * `{ wait: why }` to be called again next tick, or `{ finalized: true }` when it recorded its own end.
 */
export type EventHandler = (
  ctx: EventContext,
) => Promise<{ ignored: string } | { wait: string } | { finalized: true } | void>;

const HANDLERS: Record<string, EventHandler> = {
  'issue_comment.created': handleCommentCommands,
  'pull_request.opened': handleOpened,
  'pull_request.labeled': handleLabeled,
  'pull_request.synchronize': handleSynchronize,
  'pull_request.closed': handleClosed,
  'check_run.requested_action': handleCheckRunAction,
  'check_run.rerequested': handleCheckRunAction,
};

export function routeEvent(event: string, action: string | null): EventHandler | { ignore: string } {
  const handler = HANDLERS[`${event}.${action}`];
  if (handler) return handler;
  if (event === 'issue_comment')
    return { ignore: `comment ${action ?? 'event'}: only new comments are read` };
  return { ignore: `the bot does not act on ${event}${action ? `.${action}` : ''}` };
}

export function pullRequestRefOf(event: StoredEvent): PullRequestRef {
  const p = event.payload as {
    repository: { name: string; owner: { login: string } };
    pull_request?: { number: number };
    issue?: { number: number };
  };
  const repo: RepoRef = {
    owner: p.repository.owner.login,
    repo: p.repository.name,
    installationId: event.installation_id,
  };
  return { repo, number: p.pull_request?.number ?? p.issue?.number ?? 0 };
}

export async function advanceEvent(work: WorkDir<EventData>): Promise<void> {
  const now = work.deps.now;
  const event = await readEventFile(work.dir);
  if (!work.state.data.event)
    work.state = { ...work.state, data: { ...work.state.data, event: event.event, action: event.action } };
  const route = routeEvent(event.event, event.action);
  if ('ignore' in route) {
    await work.update((s) => transition(s, 'ignored', now(), route.ignore));
    return;
  }
  const ctx: EventContext = {
    work,
    event,
    pr: pullRequestRefOf(event),
    gen: `g${work.state.data.generation}`,
  };
  const outcome = await route(ctx);
  if (outcome && 'finalized' in outcome) return;
  if (outcome && 'wait' in outcome) {
    await work.update((s) => ({ ...s, data: { ...s.data, waiting: outcome.wait } }));
    return;
  }
  await work.update((s) =>
    outcome ? transition(s, 'ignored', now(), outcome.ignored) : transition(s, 'done', now()),
  );
}
