/**
 * The GitHub adapter, the only module that talks to the GitHub REST API: one file per concern, put
 * together here. Callers import this file only. In dry run, reads still go to the API; writes never do.
 */
import type { Config } from '../../config/config.js';
import type { Logger } from '../../log.js';
import { createClients, resolveAuth } from './auth.js';
import { octokitFactory, type GitHubOptions } from './client.js';
import { checksApi } from './checks.js';
import { commentsApi } from './comments.js';
import { DryRunChecks, DryRunComments } from './dryRun.js';
import { pullsApi } from './pulls.js';
import type { GitHubApi } from './types.js';

export { GitHubConfigError } from './auth.js';
export type { GitHubOptions } from './client.js';
export { GitHubError } from './errors.js';
export { cloneUrlFor } from './pulls.js';
export type {
  CheckRunAction,
  CheckRunBody,
  CheckRunConclusion,
  CheckRunStatus,
  CheckSurface,
  CommitStatusBody,
  FindCommentOptions,
  GitHubApi,
  IssueComment,
  ListedCheckRun,
  ListedCheckRuns,
  PullRequestInfo,
  RepoRef,
} from './types.js';

export function createGitHub(
  config: Config,
  logger: Logger,
  env: NodeJS.ProcessEnv = process.env,
  options: GitHubOptions = {},
): GitHubApi {
  const apiUrl = config.github.api_url.replace(/\/+$/, '');
  const log = logger.child({ component: 'github' });
  const auth = resolveAuth(config, env);
  const clients = createClients(auth, apiUrl, octokitFactory(apiUrl, log, options), log);
  const dryRun = config.github.dry_run ? new DryRunComments(config, log) : undefined;
  const dryRunChecks = config.github.dry_run ? new DryRunChecks(config, log) : undefined;
  return {
    ...commentsApi(clients, dryRun),
    ...pullsApi(apiUrl, auth, clients, dryRun),
    ...checksApi(auth, clients, dryRunChecks),
  };
}
