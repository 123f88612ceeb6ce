/**
 * The Octokit client: plugin-retry (5xx, network errors, plain 429) and plugin-throttling (primary and
 * secondary rate limits), both with bounded retries, and a timeout on every request.
 */
import { retry } from '@octokit/plugin-retry';
import { throttling } from '@octokit/plugin-throttling';
import { Octokit } from '@octokit/rest';
import type { Logger } from '../../log.js';

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
  /** Told of each call's answer, after retries (the poller's metrics). */
  onResponse?: (call: GitHubCall) => void;
}

/** One answered call: its route template, e.g. `GET /repos/{owner}/{repo}/pulls/{pull_number}`. */
export interface GitHubCall {
  route: string;
  /** The HTTP status; 0 when there was no answer. */
  status: number;
  /** `x-ratelimit-remaining` of the answer. */
  rateLimitRemaining?: number;
}

const DEFAULTS: Required<GitHubOptions> = {
  retryBaseMs: 1000,
  retries: 3,
  rateLimitRetries: 2,
  maxRateLimitWaitSeconds: 60,
  requestTimeoutMs: 30_000,
  throttle: true,
  onResponse: () => {},
};

const BotOctokit = Octokit.plugin(retry, throttling);
export type BotOctokit = InstanceType<typeof BotOctokit>;

/** Makes an Octokit with the given auth options (`auth`, or `authStrategy` + `auth`) and everything else fixed. */
export type NewOctokit = (authOptions: Record<string, unknown>) => BotOctokit;

/**
 * `github.api_url` (without trailing slashes) is the base URL of every request, including the App's token
 * requests. plugin-throttling also paces writes, one at a time: 1 s apart, and 3 s apart for those that
 * notify people (new comments). We keep that pace on purpose: it stays below GitHub's documented
 * secondary limits (80 new contents a minute, mutative requests 1 s apart), and once one is hit GitHub
 * refuses the bot's writes for a minute or more, job comments included. The poller bounds the replies of
 * a tick (`poller.max_replies_per_tick`) and advances jobs before events, so the pace never holds up job
 * tracking. A call that still fails throws; the caller leaves its stage pending and the next tick tries again.
 */
export function octokitFactory(apiUrl: string, log: Logger, options: GitHubOptions): NewOctokit {
  const opts = { ...DEFAULTS, ...options };

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

  const noted = (octokit: BotOctokit): BotOctokit => {
    octokit.hook.wrap('request', async (request, options) => {
      const note = (status: number, headers?: Record<string, unknown>) => {
        const remaining = Number(headers?.['x-ratelimit-remaining']);
        opts.onResponse({
          route: `${options.method} ${options.url}`,
          status,
          ...(Number.isFinite(remaining) && { rateLimitRemaining: remaining }),
        });
      };
      try {
        const response = await request(options);
        note(response.status, response.headers);
        return response;
      } catch (err) {
        const e = err as { status?: number; response?: { headers?: Record<string, unknown> } };
        note(e.status ?? 0, e.response?.headers);
        throw err;
      }
    });
    return octokit;
  };

  return (authOptions) =>
    noted(
      new BotOctokit({
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
      }),
    );
}
