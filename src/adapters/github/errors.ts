/**
 * What a GitHub call throws: GitHubError, both for input refused before any call (names and numbers come
 * from webhooks) and for Octokit's failures, mapped to a message that says what to do and holds no secret.
 */
import { isValidOwner, isValidRepoName } from '../../store/jobdirs.js';
import type { Auth } from './auth.js';
import type { RepoRef } from './types.js';

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

/** Names come from webhooks and end up in paths and URLs: GitHub's naming rules, from jobdirs.ts. */
export function checkRepo(owner: string, repo: string): void {
  if (!isValidOwner(owner) || !isValidRepoName(repo))
    throw new GitHubError(`invalid repository name ${JSON.stringify(`${owner}/${repo}`)}`, undefined, false);
}

export function checkNumber(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n <= 0) throw new GitHubError(`invalid ${what} ${n}`, undefined, false);
}

export const ref = (repo: RepoRef) => `${repo.owner}/${repo.repo}`;

export function statusOf(err: unknown): number | undefined {
  const s = (err as { status?: unknown } | null)?.status;
  return typeof s === 'number' ? s : undefined;
}

interface ErrorResponse {
  headers?: Record<string, string | undefined>;
  data?: unknown;
}

/** Turns Octokit's errors into GitHubError with a message that says what to do about it. */
export class ErrorMapper {
  constructor(
    private readonly apiUrl: string,
    private readonly auth: Auth,
  ) {}

  async wrap<T>(what: string, repo: RepoRef | undefined, fn: () => Promise<T>): Promise<T> {
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

  private accessHint(repo: RepoRef | undefined): string {
    if (!repo) return this.authHint();
    return this.auth.kind === 'app'
      ? `is the App installed on ${ref(repo)} with the needed permissions (issues, pull requests and checks: write, members: read)?`
      : this.auth.kind === 'token'
        ? `can the token in $${this.auth.envName} see ${ref(repo)} with the needed scopes?`
        : `without credentials only public data is visible; ${this.authHint()}`;
  }

  map(err: unknown, what: string, repo: RepoRef | undefined): Error {
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
