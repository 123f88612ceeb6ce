/** What the GitHub adapter takes and hands out: repository references, comments, pull requests, check runs, and its API per concern. */

export interface RepoRef {
  owner: string;
  repo: string;
  /** From the event payload (`installation.id`); null makes App auth look it up (GET /repos/{o}/{r}/installation). */
  installationId: number | null;
}

export interface IssueComment {
  id: number;
  body: string;
  /** Login of the author. */
  user: string;
}

export interface PullRequestInfo {
  number: number;
  state: 'open' | 'closed';
  merged: boolean;
  title: string;
  headSha: string;
  headRef: string;
  /** `owner/repo` of the head branch's repository; null when the fork was deleted. */
  headRepoFullName: string | null;
  baseSha: string;
  baseRef: string;
  author: string;
}

export interface FindCommentOptions {
  /** Only comments by this login count (e.g. `config.github.bot_login`), so that nobody can fake a marker. */
  author?: string;
}

export interface CommentsApi {
  createComment(repo: RepoRef, issueNumber: number, body: string): Promise<IssueComment>;
  updateComment(repo: RepoRef, commentId: number, body: string): Promise<void>;
  getComment(repo: RepoRef, commentId: number): Promise<IssueComment>;
  /** Search this issue's comments (all pages, oldest first) for one whose body contains `marker`. */
  findComment(
    repo: RepoRef,
    issueNumber: number,
    marker: string,
    options?: FindCommentOptions,
  ): Promise<IssueComment | undefined>;
}

export interface PullsApi {
  getPullRequest(repo: RepoRef, prNumber: number): Promise<PullRequestInfo>;
  /** Team membership via GET /orgs/{org}/teams/{team_slug}/memberships/{username}: active → true, 404 → false. */
  isTeamMember(repo: RepoRef, org: string, teamSlug: string, login: string): Promise<boolean>;
  /** HTTPS clone URL derived from github.api_url. */
  cloneUrl(owner: string, repo: string): string;
  /** Credentials for `git fetch` over HTTPS (installation token or PAT), or undefined when unauthenticated. Never log them. */
  gitCredentials(repo: RepoRef): Promise<{ username: string; password: string } | undefined>;
  /** Who the credentials are (GET /app for an App, GET /user for a token), or undefined without credentials. */
  whoAmI(): Promise<string | undefined>;
}

/** Where a job's state shows on its commit: check runs need an App; a personal token writes commit statuses. */
export type CheckSurface = 'checks' | 'statuses';

export type CheckRunStatus = 'queued' | 'in_progress' | 'completed';
export type CheckRunConclusion =
  'success' | 'failure' | 'cancelled' | 'timed_out' | 'action_required' | 'neutral';

/** A check run as the bot writes it (GitHub's field names); `conclusion` is given exactly when completed. */
export interface CheckRunBody {
  name: string;
  external_id: string;
  status: CheckRunStatus;
  conclusion?: CheckRunConclusion;
  started_at?: string;
  completed_at?: string;
  output: { title: string; summary: string; text?: string };
  /** The run's buttons; GitHub keeps the last list sent, so an empty one takes them away. */
  actions?: CheckRunAction[];
}

/** A `requested_action` button: label ≤ 20, description ≤ 40, identifier ≤ 20 characters; at most 3. */
export interface CheckRunAction {
  label: string;
  description: string;
  identifier: string;
}

/** A commit status as the bot writes it; the same `context` replaces the previous one, target_url is left out. */
export interface CommitStatusBody {
  context: string;
  state: 'pending' | 'success' | 'failure' | 'error';
  description: string;
}

/** A check run as listed on a commit (GET /repos/{owner}/{repo}/commits/{ref}/check-runs), the fields the bot reads. */
export interface ListedCheckRun {
  id: number;
  name: string;
  status: CheckRunStatus;
  conclusion: CheckRunConclusion | 'skipped' | 'stale' | null;
  /** The run's page on GitHub; undefined in the dry-run store. */
  htmlUrl?: string;
  /** The App that wrote it; undefined in the dry-run store (only this instance writes there). */
  appId?: number;
  title?: string;
  summary?: string;
}

export interface ListedCheckRuns {
  runs: ListedCheckRun[];
  /** False when the commit had more runs than the bounded read took. */
  complete: boolean;
}

export interface ChecksApi {
  /** Check runs with an App (or without credentials, in dry run); commit statuses with a personal token. */
  checkSurface(): CheckSurface;
  createCheckRun(repo: RepoRef, headSha: string, run: CheckRunBody): Promise<{ id: number }>;
  updateCheckRun(repo: RepoRef, checkRunId: number, run: CheckRunBody): Promise<void>;
  /** The run named `name` on `headSha` whose external_id is `externalId` (a bounded number of pages). */
  findCheckRun(repo: RepoRef, headSha: string, name: string, externalId: string): Promise<number | undefined>;
  createCommitStatus(repo: RepoRef, sha: string, status: CommitStatusBody): Promise<void>;
  /** The newest run of each name on `sha` (filter=latest), at most MAX_LIST_PAGES pages of 100. */
  listCheckRuns(repo: RepoRef, sha: string): Promise<ListedCheckRuns>;
}

export interface GitHubApi extends CommentsApi, PullsApi, ChecksApi {}
