/**
 * The GitHub adapter: the only module that talks to the GitHub REST API.
 *
 * - Auth: a GitHub App (one Octokit per installation id, each with @octokit/auth-app, which caches the
 *   installation token for 59 of its 60 minutes and then requests a new one), a personal token from an
 *   env var, or nothing.
 * - Octokit with plugin-retry (5xx, network errors, plain 429) and plugin-throttling (primary and
 *   secondary rate limits), both with bounded retries. plugin-throttling also paces writes, one at a
 *   time: 1 s apart, and 3 s apart for those that notify people (new comments). We keep that pace on
 *   purpose: it stays below GitHub's documented secondary limits (80 new contents a minute, mutative
 *   requests 1 s apart), and once one is hit GitHub refuses the bot's writes for a minute or more,
 *   job comments included. The poller bounds the replies of a tick (`poller.max_replies_per_tick`) and advances jobs
 *   before events, so the pace never holds up job tracking. `github.api_url` is the base URL of every
 *   request, including the App's token requests. A call that still fails throws `GitHubError`; the
 *   caller leaves its stage pending and the next poller tick tries again.
 * - Dry run: reads still go to the API; comments are written to (and read from)
 *   `<jobdirs>/dry-run/<owner>/<repo>/issue_<N>/comment_<id>.md` and never posted.
 * - Secrets (private key, tokens) never reach the logger or an error message.
 */
import { createPrivateKey } from 'node:crypto';
import { existsSync, readFileSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { createAppAuth } from '@octokit/auth-app';
import { retry } from '@octokit/plugin-retry';
import { throttling } from '@octokit/plugin-throttling';
import { Octokit } from '@octokit/rest';
import type { Config } from '../config/config.js';
import { createFileExclusive, mkdirDurable, writeFileAtomic } from '../store/fsutil.js';
import { isValidOwner, isValidRepoName } from '../store/jobdirs.js';
import type { Logger } from '../log.js';

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

export interface GitHubApi {
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
  getPullRequest(repo: RepoRef, prNumber: number): Promise<PullRequestInfo>;
  /** Team membership via GET /orgs/{org}/teams/{team_slug}/memberships/{username}: active → true, 404 → false. */
  isTeamMember(repo: RepoRef, org: string, teamSlug: string, login: string): Promise<boolean>;
  /** HTTPS clone URL derived from github.api_url. */
  cloneUrl(owner: string, repo: string): string;
  /** Credentials for `git fetch` over HTTPS (installation token or PAT), or undefined when unauthenticated. Never log them. */
  gitCredentials(repo: RepoRef): Promise<{ username: string; password: string } | undefined>;
}

/** Tuning knobs; production uses the defaults, tests shrink the waits. */
export interface GitHubOptions {
  /** Milliseconds per second of back-off in plugin-retry and plugin-throttling (default 1000; tests pass 1). */
  retryBaseMs?: number;
  /** Retries of 5xx, network errors and plain 429 (default 3; waits 1, 4, 9 × retryBaseMs). */
  retries?: number;
  /** Retries after a primary or secondary rate limit (default 2). */
  rateLimitRetries?: number;
  /** A rate limit that lifts later than this is not waited for: the call fails (default 60 s). */
  maxRateLimitWaitSeconds?: number;
  /** Space out writes as GitHub asks (default true); tests against the fake turn it off. */
  throttle?: boolean;
  /** Timeout of each HTTP request (default 30 s). */
  requestTimeoutMs?: number;
}

/** A GitHub call that failed for good (after the retries). The message says what to do; it holds no secret. */
export class GitHubError extends Error {
  override readonly name = 'GitHubError';
  constructor(
    message: string,
    /** HTTP status, or undefined when GitHub was not reached (network error, timeout). */
    readonly status: number | undefined,
    /** True when trying again later may succeed (5xx, rate limit, network); false for 401/403/404/422. */
    readonly transient: boolean,
    /** GitHub's x-github-request-id, for support requests. */
    readonly requestId?: string,
  ) {
    super(message);
  }
}

/** The github section of site.yaml or its environment is unusable (missing env var, unreadable key). */
export class GitHubConfigError extends Error {
  override readonly name = 'GitHubConfigError';
}

const DEFAULTS: Required<GitHubOptions> = {
  retryBaseMs: 1000,
  retries: 3,
  rateLimitRetries: 2,
  maxRateLimitWaitSeconds: 60,
  requestTimeoutMs: 30_000,
  throttle: true,
};

/** Username for HTTPS git with an installation token; GitHub accepts it for personal tokens too. */
const GIT_USERNAME = 'x-access-token';

const BotOctokit = Octokit.plugin(retry, throttling);
type BotOctokit = InstanceType<typeof BotOctokit>;

type Auth =
  | { kind: 'app'; appId: number; privateKey: string }
  | { kind: 'token'; token: string; envName: string }
  | { kind: 'none' };

export function createGitHub(
  config: Config,
  logger: Logger,
  env: NodeJS.ProcessEnv = process.env,
  options: GitHubOptions = {},
): GitHubApi {
  const opts = { ...DEFAULTS, ...options };
  const gh = config.github;
  const apiUrl = gh.api_url.replace(/\/+$/, '');
  const log = logger.child({ component: 'github' });
  const auth = resolveAuth(config, env);
  const errors = new ErrorMapper(apiUrl, auth, gh);

  const octokitLog = {
    debug: (msg: string) => log.debug(String(msg)),
    info: (msg: string) => log.info(String(msg)),
    warn: (msg: string) => log.warn(String(msg)),
    error: (msg: string) => log.error(String(msg)),
  };

  const timeoutFetch: typeof fetch = (input, init) =>
    fetch(input, { ...init, signal: init?.signal ?? AbortSignal.timeout(opts.requestTimeoutMs) });

  const onLimit =
    (kind: string) =>
    (retryAfter: number, o: { method: string; url: string }, _octokit: unknown, retryCount: number) => {
      const retrying = retryCount < opts.rateLimitRetries && retryAfter <= opts.maxRateLimitWaitSeconds;
      log.warn({ method: o.method, route: o.url, retryAfter, retryCount, retrying }, `GitHub ${kind}`);
      return retrying;
    };

  function newOctokit(authOptions: Record<string, unknown>): BotOctokit {
    return new BotOctokit({
      ...authOptions,
      // With an authStrategy, @octokit/core hands auth-app this Octokit's own `request`, so the token
      // requests use the same baseUrl, timeout and user agent as every other call.
      baseUrl: apiUrl,
      userAgent: 'hpc-build-bot',
      log: octokitLog,
      request: { fetch: timeoutFetch },
      retry: { retries: opts.retries, retryAfterBaseValue: opts.retryBaseMs },
      throttle: {
        enabled: opts.throttle,
        retryAfterBaseValue: opts.retryBaseMs,
        onRateLimit: onLimit('rate limit exhausted'),
        onSecondaryRateLimit: onLimit('secondary rate limit'),
      },
    });
  }

  // One Octokit per installation (App auth), or one for everything (token / none).
  const installationClients = new Map<number, BotOctokit>();
  const repoInstallations = new Map<string, Promise<number>>();
  let sharedClient: BotOctokit | undefined;
  let appClient: BotOctokit | undefined;

  function appAuthOptions(installationId?: number): Record<string, unknown> {
    if (auth.kind !== 'app') throw new Error('not an App');
    return {
      authStrategy: createAppAuth,
      auth: { appId: auth.appId, privateKey: auth.privateKey, ...(installationId ? { installationId } : {}) },
    };
  }

  async function installationIdFor(repo: RepoRef): Promise<number> {
    if (repo.installationId !== null) return repo.installationId;
    const key = `${repo.owner}/${repo.repo}`;
    let pending = repoInstallations.get(key);
    if (!pending) {
      appClient ??= newOctokit(appAuthOptions());
      const client = appClient;
      pending = errors
        .wrap(`look up the App installation of ${key}`, repo, async () => {
          const { data } = await client.rest.apps.getRepoInstallation({ owner: repo.owner, repo: repo.repo });
          return data.id;
        })
        .catch((err: unknown) => {
          repoInstallations.delete(key);
          throw err;
        });
      repoInstallations.set(key, pending);
    }
    return pending;
  }

  async function client(repo: RepoRef): Promise<BotOctokit> {
    checkRepo(repo.owner, repo.repo);
    if (auth.kind !== 'app') {
      sharedClient ??= newOctokit(auth.kind === 'token' ? { auth: auth.token } : {});
      return sharedClient;
    }
    const id = await installationIdFor(repo);
    if (!Number.isSafeInteger(id) || id <= 0)
      throw new GitHubError(`invalid installation id ${id}`, undefined, false);
    let c = installationClients.get(id);
    if (!c) {
      c = newOctokit(appAuthOptions(id));
      installationClients.set(id, c);
      log.debug({ installationId: id }, 'new installation client');
    }
    return c;
  }

  const dryRun = gh.dry_run ? new DryRunComments(config, log) : undefined;
  const call = <T>(what: string, repo: RepoRef, fn: (c: BotOctokit) => Promise<T>): Promise<T> =>
    errors.wrap(what, repo, async () => fn(await client(repo)));

  const api: GitHubApi = {
    async createComment(repo, issueNumber, body) {
      checkNumber(issueNumber, 'issue number');
      if (dryRun) return dryRun.create(repo, issueNumber, body);
      return call(`comment on ${ref(repo)}#${issueNumber}`, repo, async (c) => {
        const { data } = await c.rest.issues.createComment({
          owner: repo.owner,
          repo: repo.repo,
          issue_number: issueNumber,
          body,
        });
        return toComment(data);
      });
    },

    async updateComment(repo, commentId, body) {
      checkNumber(commentId, 'comment id');
      if (dryRun) return dryRun.update(repo, commentId, body);
      await call(`update comment ${commentId} in ${ref(repo)}`, repo, (c) =>
        c.rest.issues.updateComment({ owner: repo.owner, repo: repo.repo, comment_id: commentId, body }),
      );
    },

    async getComment(repo, commentId) {
      checkNumber(commentId, 'comment id');
      if (dryRun) return dryRun.get(repo, commentId);
      return call(`read comment ${commentId} in ${ref(repo)}`, repo, async (c) => {
        const { data } = await c.rest.issues.getComment({
          owner: repo.owner,
          repo: repo.repo,
          comment_id: commentId,
        });
        return toComment(data);
      });
    },

    async findComment(repo, issueNumber, marker, options = {}) {
      checkNumber(issueNumber, 'issue number');
      if (!marker) throw new Error('findComment: empty marker');
      const matches = (cm: IssueComment) =>
        cm.body.includes(marker) && (options.author === undefined || cm.user === options.author);
      if (dryRun) return (await dryRun.list(repo, issueNumber)).find(matches);
      return call(`list the comments of ${ref(repo)}#${issueNumber}`, repo, async (c) => {
        const pages = c.paginate.iterator(c.rest.issues.listComments, {
          owner: repo.owner,
          repo: repo.repo,
          issue_number: issueNumber,
          per_page: 100,
        });
        for await (const page of pages) {
          const hit = page.data.map(toComment).find(matches);
          if (hit) return hit;
        }
        return undefined;
      });
    },

    async getPullRequest(repo, prNumber) {
      checkNumber(prNumber, 'pull request number');
      const local = await dryRun?.pullRequest(repo, prNumber);
      if (local) return local;
      return call(`read pull request ${ref(repo)}#${prNumber}`, repo, async (c) => {
        const { data } = await c.rest.pulls.get({
          owner: repo.owner,
          repo: repo.repo,
          pull_number: prNumber,
        });
        return {
          number: data.number,
          state: data.state === 'open' ? 'open' : 'closed',
          merged: data.merged ?? data.merged_at != null,
          title: data.title,
          headSha: data.head.sha,
          headRef: data.head.ref,
          headRepoFullName: data.head.repo?.full_name ?? null,
          baseSha: data.base.sha,
          baseRef: data.base.ref,
          author: data.user?.login ?? '',
        };
      });
    },

    async isTeamMember(repo, org, teamSlug, login) {
      if (!org || !teamSlug || !login) return false;
      return call(`check whether ${login} is in team ${org}/${teamSlug}`, repo, async (c) => {
        try {
          const { data } = await c.rest.teams.getMembershipForUserInOrg({
            org,
            team_slug: teamSlug,
            username: login,
          });
          return data.state === 'active';
        } catch (err) {
          if (statusOf(err) === 404) return false;
          throw err;
        }
      });
    },

    cloneUrl(owner, repo) {
      checkRepo(owner, repo);
      return dryRun?.localRepo(owner, repo) ?? cloneUrlFor(apiUrl, owner, repo);
    },

    async gitCredentials(repo) {
      if (auth.kind === 'none' || dryRun?.localRepo(repo.owner, repo.repo)) return undefined;
      if (auth.kind === 'token') return { username: GIT_USERNAME, password: auth.token };
      return call(`get an installation token for ${ref(repo)}`, repo, async (c) => {
        const a = (await c.auth({ type: 'installation' })) as { token?: unknown };
        if (typeof a.token !== 'string')
          throw new GitHubError('auth-app returned no token', undefined, false);
        return { username: GIT_USERNAME, password: a.token };
      });
    },
  };
  return api;
}

/** `https://api.github.com` → github.com; `https://HOST/api/v3` (GHES) → HOST; anything else: below api_url. */
export function cloneUrlFor(apiUrl: string, owner: string, repo: string): string {
  checkRepo(owner, repo);
  const base = apiUrl.replace(/\/+$/, '');
  const u = new URL(base);
  const suffix = `/${owner}/${repo}.git`;
  if (u.hostname === 'api.github.com') return `https://github.com${suffix}`;
  // GitHub Enterprise Cloud with data residency: api.SUBDOMAIN.ghe.com → SUBDOMAIN.ghe.com
  const ghe = /^api\.([a-z0-9-]+\.ghe\.com)$/i.exec(u.hostname);
  if (ghe && (u.pathname === '/' || u.pathname === '')) return `https://${ghe[1]}${suffix}`;
  if (/^\/api\/v3\/?$/.test(u.pathname)) return `${u.protocol}//${u.host}${suffix}`;
  return `${base}${suffix}`;
}

function resolveAuth(config: Config, env: NodeJS.ProcessEnv): Auth {
  const gh = config.github;
  if (gh.app_id !== undefined || gh.private_key_file !== undefined) {
    if (gh.app_id === undefined)
      throw new GitHubConfigError(
        `${config.source}: github.private_key_file is set but github.app_id is not`,
      );
    if (gh.private_key_file === undefined)
      throw new GitHubConfigError(
        `${config.source}: github.app_id is set but github.private_key_file is not`,
      );
    let pem: string;
    try {
      pem = readFileSync(gh.private_key_file, 'utf8');
    } catch (err) {
      throw new GitHubConfigError(
        `cannot read github.private_key_file ${gh.private_key_file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    }
    try {
      createPrivateKey(pem);
    } catch {
      // The parser's message is not included: it could quote part of the file.
      throw new GitHubConfigError(
        `github.private_key_file ${gh.private_key_file} is not a PEM private key (download a new one from the App's settings)`,
      );
    }
    return { kind: 'app', appId: gh.app_id, privateKey: pem };
  }
  if (gh.token_env !== undefined) {
    const token = env[gh.token_env]?.trim();
    if (!token)
      throw new GitHubConfigError(
        `github.token_env names the environment variable ${gh.token_env}, but it is not set (or empty)`,
      );
    return { kind: 'token', token, envName: gh.token_env };
  }
  return { kind: 'none' };
}

/** Names come from webhooks and end up in paths and URLs: GitHub's naming rules, from jobdirs.ts. */
function checkRepo(owner: string, repo: string): void {
  if (!isValidOwner(owner) || !isValidRepoName(repo))
    throw new GitHubError(`invalid repository name ${JSON.stringify(`${owner}/${repo}`)}`, undefined, false);
}

function checkNumber(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n <= 0) throw new GitHubError(`invalid ${what} ${n}`, undefined, false);
}

const ref = (repo: RepoRef) => `${repo.owner}/${repo.repo}`;

function toComment(data: {
  id: number;
  body?: string | null;
  user?: { login: string } | null;
}): IssueComment {
  return { id: data.id, body: data.body ?? '', user: data.user?.login ?? '' };
}

function statusOf(err: unknown): number | undefined {
  const s = (err as { status?: unknown } | null)?.status;
  return typeof s === 'number' ? s : undefined;
}

interface ErrorResponse {
  headers?: Record<string, string | undefined>;
  data?: unknown;
}

/** Turns Octokit's errors into GitHubError with a message that says what to do about it. */
class ErrorMapper {
  constructor(
    private readonly apiUrl: string,
    private readonly auth: Auth,
    private readonly gh: Config['github'],
  ) {}

  async wrap<T>(what: string, repo: RepoRef, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.map(err, what, repo);
    }
  }

  private authHint(): string {
    switch (this.auth.kind) {
      case 'app':
        return `check github.app_id (${this.auth.appId}) and github.private_key_file (is the key current?)`;
      case 'token':
        return `check the token in $${this.auth.envName} (expired or revoked?)`;
      default:
        return 'configure github.app_id + github.private_key_file or github.token_env';
    }
  }

  private accessHint(repo: RepoRef): string {
    return this.auth.kind === 'app'
      ? `is the App installed on ${ref(repo)} with the needed permissions (issues and pull requests: write, members: read)?`
      : this.auth.kind === 'token'
        ? `can the token in $${this.auth.envName} see ${ref(repo)} with the needed scopes?`
        : `without credentials only public data is visible; ${this.authHint()}`;
  }

  map(err: unknown, what: string, repo: RepoRef): Error {
    if (err instanceof GitHubError) return err;
    const status = statusOf(err);
    const response = (err as { response?: ErrorResponse } | null)?.response;
    if (status === undefined || !response) {
      // No HTTP answer: network error, timeout, or an exception in our code.
      const reason = err instanceof Error ? err.message : String(err);
      return new GitHubError(
        `cannot reach GitHub at ${this.apiUrl} to ${what}: ${redact(reason)}; check github.api_url and the network (will try again)`,
        undefined,
        true,
      );
    }
    const headers = response.headers ?? {};
    const requestId = headers['x-github-request-id'];
    const ghMessage = redact(githubMessage(response.data));
    const idNote = requestId ? ` [request id ${requestId}]` : '';
    const said = ghMessage ? ` GitHub said: "${ghMessage}".` : '';
    const make = (msg: string, transient: boolean) =>
      new GitHubError(`${msg}${said}${idNote}`, status, transient);

    if ((status === 403 || status === 429) && /secondary rate limit/i.test(ghMessage)) {
      return make(
        `GitHub secondary rate limit (${status}) while trying to ${what}; will try again later.`,
        true,
      );
    }
    if ((status === 403 || status === 429) && headers['x-ratelimit-remaining'] === '0') {
      const reset = Number(headers['x-ratelimit-reset']);
      const when = Number.isFinite(reset) && reset > 0 ? new Date(reset * 1000).toISOString() : 'soon';
      return make(`GitHub API rate limit exhausted while trying to ${what}; it resets at ${when}.`, true);
    }
    if (status === 429)
      return make(`GitHub answered 429 (too many requests) to ${what}; will try again.`, true);
    if (status === 401)
      return make(`GitHub rejected the credentials (401) to ${what}: ${this.authHint()}.`, false);
    if (status === 403) return make(`GitHub refused (403) to ${what}: ${this.accessHint(repo)}`, false);
    if (status === 404)
      return make(`GitHub found nothing (404) trying to ${what}: ${this.accessHint(repo)}`, false);
    if (status === 422) return make(`GitHub rejected the request (422) to ${what}.`, false);
    if (status >= 500)
      return make(
        `GitHub server error ${status} while trying to ${what}, even after retries; will try again.`,
        true,
      );
    return make(`GitHub answered ${status} to ${what}.`, false);
  }
}

function githubMessage(data: unknown): string {
  if (data && typeof data === 'object' && typeof (data as { message?: unknown }).message === 'string')
    return (data as { message: string }).message.slice(0, 300);
  if (typeof data === 'string') return data.slice(0, 300);
  return '';
}

/** Belt and braces: strip anything that looks like a GitHub token or a bearer/basic credential. */
function redact(text: string): string {
  return text
    .replace(/\b(gh[pousr]_[A-Za-z0-9_]{8,}|github_pat_[A-Za-z0-9_]{8,})/g, '[redacted]')
    .replace(/\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{20,}/gi, '$1 [redacted]');
}

/**
 * Dry-run store. Writes: `<jobdirs>/dry-run/<owner>/<repo>/issue_<N>/comment_<id>.md` holds the body.
 * Reads, where present (so a site.yaml can be tried without GitHub; `hpcbot sample-event` fills them):
 * `pulls/<N>.json` (a PullRequestInfo) answers getPullRequest, and `repo.git` is the clone URL.
 * Ids are allocated per repo by exclusive creation of `comment-ids/<id>` (which names the issue), so
 * concurrent processes never share one and `updateComment(repo, id)` finds the file without a scan.
 */
class DryRunComments {
  private readonly root: string;
  private readonly user: string;

  constructor(
    config: Config,
    private readonly log: Logger,
  ) {
    this.root = path.join(config.jobdirs, 'dry-run');
    this.user = config.github.bot_login ?? `${config.instance}[dry-run]`;
  }

  private repoDir(repo: RepoRef): string {
    checkRepo(repo.owner, repo.repo);
    return path.join(this.root, repo.owner, repo.repo);
  }

  async pullRequest(repo: RepoRef, number: number): Promise<PullRequestInfo | undefined> {
    const file = path.join(this.repoDir(repo), 'pulls', `${number}.json`);
    try {
      return JSON.parse(await fs.readFile(file, 'utf8')) as PullRequestInfo;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  localRepo(owner: string, repo: string): string | undefined {
    const dir = path.join(this.root, owner, repo, 'repo.git');
    return existsSync(dir) ? dir : undefined;
  }

  private file(repo: RepoRef, issue: number, id: number): string {
    return path.join(this.repoDir(repo), `issue_${issue}`, `comment_${id}.md`);
  }

  async create(repo: RepoRef, issue: number, body: string): Promise<IssueComment> {
    const idsDir = path.join(this.repoDir(repo), 'comment-ids');
    await mkdirDurable(idsDir);
    await mkdirDurable(path.dirname(this.file(repo, issue, 1)));
    let id = (await maxNumericName(idsDir)) + 1;
    while (!(await createFileExclusive(path.join(idsDir, String(id)), `${issue}\n`))) id++;
    const file = this.file(repo, issue, id);
    await writeFileAtomic(file, body);
    this.log.info({ path: file, issue, commentId: id }, 'dry run: comment written instead of posted');
    return { id, body, user: this.user };
  }

  private async issueOf(repo: RepoRef, id: number): Promise<number> {
    let text: string;
    try {
      text = await fs.readFile(path.join(this.repoDir(repo), 'comment-ids', String(id)), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new GitHubError(`dry run: no comment ${id} in ${ref(repo)}`, 404, false);
      throw err;
    }
    const issue = Number(text.trim());
    checkNumber(issue, 'issue number');
    return issue;
  }

  async update(repo: RepoRef, id: number, body: string): Promise<void> {
    const file = this.file(repo, await this.issueOf(repo, id), id);
    await writeFileAtomic(file, body);
    this.log.info({ path: file, commentId: id }, 'dry run: comment updated instead of posted');
  }

  async get(repo: RepoRef, id: number): Promise<IssueComment> {
    const file = this.file(repo, await this.issueOf(repo, id), id);
    try {
      return { id, body: await fs.readFile(file, 'utf8'), user: this.user };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new GitHubError(`dry run: comment ${id} in ${ref(repo)} has no file ${file}`, 404, false);
      throw err;
    }
  }

  async list(repo: RepoRef, issue: number): Promise<IssueComment[]> {
    const dir = path.dirname(this.file(repo, issue, 1));
    let names: string[];
    try {
      names = await fs.readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const ids = names
      .map((n) => /^comment_(\d+)\.md$/.exec(n)?.[1])
      .filter((s): s is string => s !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
    const out: IssueComment[] = [];
    for (const id of ids) {
      out.push({ id, body: await fs.readFile(path.join(dir, `comment_${id}.md`), 'utf8'), user: this.user });
    }
    return out;
  }
}

async function maxNumericName(dir: string): Promise<number> {
  let max = 0;
  for (const name of await fs.readdir(dir)) {
    if (/^\d+$/.test(name)) max = Math.max(max, Number(name));
  }
  return max;
}
