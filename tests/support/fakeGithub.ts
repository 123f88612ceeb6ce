/**
 * A fake GitHub for tests: a loopback HTTP server (node:http) that speaks the REST subset the bot
 * uses, records every call, stores comments so reads see writes, injects faults on demand, and
 * serves bare git repositories over smart HTTP through the real `git http-backend`.
 *
 *   const gh = new FakeGitHub({ gitRoot: dir });
 *   const url = await gh.start();          // use as github.api_url; cloneUrl() → `${url}/o/r.git`
 *   ...
 *   await gh.stop();
 *
 * Routes:
 *   GET   /app                                       (JWT; the App itself)
 *   POST  /app/installations/:id/access_tokens       (JWT: "Bearer a.b.c", RS256, iss = app id)
 *   GET   /user                                      (the token's user)
 *   GET   /repos/:o/:r/installation                  (JWT; see setRepoInstallation)
 *   GET   /repos/:o/:r/issues/:n/comments            (per_page/page, Link header)
 *   POST  /repos/:o/:r/issues/:n/comments
 *   GET   /repos/:o/:r/issues/comments/:id
 *   PATCH /repos/:o/:r/issues/comments/:id
 *   GET   /repos/:o/:r/pulls/:n                      (see addPullRequest)
 *   GET   /orgs/:org/teams/:slug/memberships/:user   (see addTeamMember)
 *   POST  /repos/:o/:r/check-runs                    (installation tokens only, as on GitHub)
 *   PATCH /repos/:o/:r/check-runs/:id                (installation tokens only)
 *   GET   /repos/:o/:r/commits/:ref/check-runs       (check_name, status, filter, per_page/page, Link header)
 *   POST  /repos/:o/:r/statuses/:sha
 *   GET/POST /:owner/:repo.git/...                   (git smart HTTP, fetch only)
 *   GET   /app/hook/deliveries                       (JWT signed by appPublicKey; newest first,
 *                                                    per_page + cursor, Link rel="next"; see addDelivery)
 *   GET   /app/hook/deliveries/:id                   (JWT signed by appPublicKey; with request headers, payload)
 *   POST  /app/hook/deliveries/:id/attempts          (JWT signed by appPublicKey; a redelivery, same guid)
 *
 * Tokens: installation tokens (`ghs_…`) are issued here and checked on later calls (unknown → 401);
 * any other `token X` is taken as a personal access token of `patLogin` (only those in `patTokens`, if given).
 */
import { spawn } from 'node:child_process';
import { createPublicKey, randomUUID, verify as verifySignature, type KeyObject } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { checkRequest, checkResponse } from './openapiContract.js';

export interface RecordedCall {
  method: string;
  /** Path without the query string, e.g. `/repos/o/r/issues/1/comments`. */
  path: string;
  query: Record<string, string>;
  /** Parsed JSON body, or undefined. */
  body: unknown;
  /** The Authorization header as sent, or undefined. */
  auth: string | undefined;
  /** The status the fake answered. */
  status: number;
  /** When the fake had read the request (Date.now()); bookkeeping for benchmarks, never sent. */
  at: number;
}

/** A request, or the fake's answer to it, that GitHub's OpenAPI description does not allow. */
export interface ContractViolation {
  kind: 'request' | 'response';
  method: string;
  path: string;
  /** The operation, e.g. `POST /repos/{owner}/{repo}/check-runs`; undefined for an unknown route. */
  route: string | undefined;
  status: number;
  problems: string[];
}

export interface RecordedGitCall {
  method: string;
  path: string;
  query: string;
  auth: string | undefined;
  status: number;
}

export interface IssuedToken {
  installationId: number;
  appId: number;
  token: string;
}

export interface FakeComment {
  id: number;
  owner: string;
  repo: string;
  issue: number;
  body: string;
  user: string;
  created_at: string;
  updated_at: string;
}

/** A check run as stored; the answers add GitHub's other fields. */
export interface FakeCheckRun {
  id: number;
  owner: string;
  repo: string;
  app_id: number;
  name: string;
  head_sha: string;
  external_id: string | null;
  details_url: string | null;
  status: 'queued' | 'in_progress' | 'completed';
  conclusion: string | null;
  started_at: string | null;
  completed_at: string | null;
  output: { title: string | null; summary: string | null; text: string | null };
}

export interface FakeCommitStatus {
  id: number;
  owner: string;
  repo: string;
  sha: string;
  state: 'error' | 'failure' | 'pending' | 'success';
  target_url: string | null;
  description: string | null;
  context: string;
  creator: string;
  created_at: string;
}

export interface FakePullRequest {
  number: number;
  title?: string;
  state?: 'open' | 'closed';
  merged?: boolean;
  author?: string;
  headSha: string;
  headRef?: string;
  /** `owner/repo` of the head; null for a deleted fork; default: the base repo. */
  headRepoFullName?: string | null;
  baseSha: string;
  baseRef?: string;
}

/**
 * What an injected fault answers:
 * - 500 / 502: a server error;
 * - 'rate-limit': 403 with `x-ratelimit-remaining: 0` and a reset `resetInSeconds` (default 1) ahead;
 * - 'secondary-rate-limit': 403 with GitHub's documented message and `retry-after` (default 1);
 * - 429: too many requests with `retry-after` (default 1);
 * - 'hang': never answer (the connection is dropped by stop());
 * - any other number: that status with a generic message.
 */
export type FaultKind = 500 | 502 | 'rate-limit' | 'secondary-rate-limit' | 429 | 'hang' | number;

interface Fault {
  method: string;
  path: RegExp;
  kind: FaultKind;
  remaining: number;
  seconds: number;
}

/** A delivery of the App's webhook, as GitHub keeps it for GET /app/hook/deliveries. */
export interface FakeDelivery {
  id: number;
  guid: string;
  delivered_at: string;
  redelivery: boolean;
  event: string;
  action: string | null;
  installation_id: number | null;
  repository_id: number | null;
  status_code: number;
  payload: Record<string, unknown>;
}

export interface FakeGitHubOptions {
  /** Directory holding bare repositories as `<owner>/<repo>.git`; enables git smart HTTP. */
  gitRoot?: string;
  /** Login of comments written with an installation token (default `hpcbot-test[bot]`). */
  botLogin?: string;
  /** Login of comments written with any other token (default `pat-user`). */
  patLogin?: string;
  /** If given, the only personal tokens accepted; any other answers 401 Bad credentials. */
  patTokens?: string[];
  /** Require Basic auth with an issued token (or `gitPasswords`) for git over HTTP. */
  requireGitAuth?: boolean;
  gitPasswords?: string[];
  /** If given, JWTs must carry a valid RS256 signature by this key (else only their shape is checked). */
  appPublicKey?: string | KeyObject;
}

const SECONDARY_MESSAGE =
  'You have exceeded a secondary rate limit. Please wait a few minutes before you try again. ' +
  'If you reach out to GitHub Support for help, please include the request ID FAKE:0000.';
const SAFE_NAME = /^[A-Za-z0-9._-]+$/;

export class FakeGitHub {
  readonly calls: RecordedCall[] = [];
  /**
   * Requests and answers that break GitHub's OpenAPI description (tests/support/openapiContract.ts).
   * stop() fails while any are left: a test that breaks the contract on purpose removes its own.
   */
  readonly contractViolations: ContractViolation[] = [];
  readonly gitCalls: RecordedGitCall[] = [];
  readonly tokens: IssuedToken[] = [];
  private readonly comments: FakeComment[] = [];
  private readonly checkRuns: FakeCheckRun[] = [];
  private readonly statuses: FakeCommitStatus[] = [];
  private readonly pulls = new Map<string, FakePullRequest>();
  private readonly teams = new Map<string, 'active' | 'pending'>();
  private readonly installations = new Map<string, number>();
  private readonly faults: Fault[] = [];
  private readonly server: http.Server;
  private nextCommentId = 1000;
  private nextCheckRunId = 5000;
  private nextStatusId = 9000;
  private nextToken = 1;
  private readonly deliveries: FakeDelivery[] = [];
  private nextDeliveryId = 70_000_000_001;
  private base = '';
  private readonly publicKey: KeyObject | undefined;

  constructor(private readonly opts: FakeGitHubOptions = {}) {
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ message: `fake github crashed: ${(err as Error).message}` }));
      });
    });
    this.publicKey =
      opts.appPublicKey === undefined
        ? undefined
        : typeof opts.appPublicKey === 'string'
          ? createPublicKey(opts.appPublicKey)
          : opts.appPublicKey;
  }

  /** Listen on 127.0.0.1 (random port); returns the base URL, e.g. `http://127.0.0.1:40123`. */
  async start(): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => resolve());
    });
    const { port } = this.server.address() as AddressInfo;
    this.base = `http://127.0.0.1:${port}`;
    return this.base;
  }

  get url(): string {
    return this.base;
  }

  /** Stop listening; fails with every contract violation seen (see contractViolations). */
  async stop(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    if (this.contractViolations.length) throw new Error(describeViolations(this.contractViolations));
  }

  // ---- fixtures -------------------------------------------------------------------------------

  addPullRequest(owner: string, repo: string, pr: FakePullRequest): void {
    this.pulls.set(`${owner}/${repo}#${pr.number}`, pr);
  }

  addTeamMember(org: string, team: string, login: string, state: 'active' | 'pending' = 'active'): void {
    this.teams.set(`${org}/${team}/${login}`.toLowerCase(), state);
  }

  /** Answer for GET /repos/:o/:r/installation. */
  setRepoInstallation(owner: string, repo: string, installationId: number): void {
    this.installations.set(`${owner}/${repo}`.toLowerCase(), installationId);
  }

  /** Seed a comment as if someone had written it (not recorded as a call). */
  addComment(owner: string, repo: string, issue: number, body: string, user = 'someone'): FakeComment {
    const now = new Date().toISOString();
    const c = { id: this.nextCommentId++, owner, repo, issue, body, user, created_at: now, updated_at: now };
    this.comments.push(c);
    return c;
  }

  /** The stored comments of an issue, oldest first. */
  commentsOf(owner: string, repo: string, issue: number): FakeComment[] {
    return this.comments.filter((c) => c.owner === owner && c.repo === repo && c.issue === issue);
  }

  /** Seed a check run as if an App had created it (not recorded as a call). */
  addCheckRun(
    owner: string,
    repo: string,
    run: Pick<FakeCheckRun, 'name' | 'head_sha'> & Partial<Omit<FakeCheckRun, 'id' | 'owner' | 'repo'>>,
  ): FakeCheckRun {
    const stored: FakeCheckRun = {
      app_id: 1,
      external_id: null,
      details_url: null,
      status: 'queued',
      conclusion: null,
      started_at: null,
      completed_at: null,
      output: { title: null, summary: null, text: null },
      ...run,
      id: this.nextCheckRunId++,
      owner,
      repo,
    };
    this.checkRuns.push(stored);
    return stored;
  }

  /** The check runs of a repository (of one commit, if given), oldest first. */
  checkRunsOf(owner: string, repo: string, sha?: string): FakeCheckRun[] {
    return this.checkRuns.filter(
      (r) => r.owner === owner && r.repo === repo && (sha === undefined || r.head_sha === sha),
    );
  }

  /** Every status posted on a commit, oldest first (GitHub shows the latest of each context). */
  statusesOf(owner: string, repo: string, sha: string): FakeCommitStatus[] {
    return this.statuses.filter((x) => x.owner === owner && x.repo === repo && x.sha === sha);
  }

  /**
   * Record a delivery of the App's webhook as GitHub would (listed newest first). `statusCode` is what
   * the bot's endpoint answered (GitHub lists failed deliveries too; 0 when it could not connect).
   */
  addDelivery(
    event: string,
    payload: Record<string, unknown>,
    opts: { guid?: string; statusCode?: number; deliveredAt?: Date } = {},
  ): FakeDelivery {
    const p = payload as { action?: unknown; installation?: { id?: unknown }; repository?: { id?: unknown } };
    const d: FakeDelivery = {
      id: this.nextDeliveryId++,
      guid: opts.guid ?? randomUUID(),
      delivered_at: (opts.deliveredAt ?? new Date()).toISOString(),
      redelivery: false,
      event,
      action: typeof p.action === 'string' ? p.action : null,
      installation_id: typeof p.installation?.id === 'number' ? p.installation.id : null,
      repository_id: typeof p.repository?.id === 'number' ? p.repository.id : null,
      status_code: opts.statusCode ?? 0,
      payload: structuredClone(payload),
    };
    this.deliveries.push(d);
    return d;
  }

  /** Every delivery recorded so far, oldest first. */
  deliveriesList(): FakeDelivery[] {
    return [...this.deliveries];
  }

  /** Make the next `times` requests whose method and path match answer with `kind` instead. */
  failNext(method: string, path: RegExp, kind: FaultKind, times = 1, seconds = 1): void {
    this.faults.push({ method: method.toUpperCase(), path, kind, remaining: times, seconds });
  }

  /** Recorded API calls matching method and path. */
  callsTo(method: string, path: RegExp | string): RecordedCall[] {
    return this.calls.filter(
      (c) =>
        c.method === method.toUpperCase() && (typeof path === 'string' ? c.path === path : path.test(c.path)),
    );
  }

  /** Which installation an issued token belongs to (undefined for a PAT or unknown token). */
  installationOf(auth: string | undefined): number | undefined {
    const token = /^token (.+)$/i.exec(auth ?? '')?.[1];
    return this.tokens.find((t) => t.token === token)?.installationId;
  }

  // ---- dispatch -------------------------------------------------------------------------------

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake.invalid');
    const path = url.pathname;
    if (/^\/[^/]+\/[^/]+\.git(\/|$)/.test(path)) return this.handleGit(req, res, url);

    const raw = await readBody(req);
    let body: unknown;
    if (raw.length > 0) {
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        body = raw.toString('utf8');
      }
    }
    const call: RecordedCall = {
      method: req.method ?? 'GET',
      path,
      query: Object.fromEntries(url.searchParams),
      body,
      auth: req.headers.authorization,
      status: 0,
      at: Date.now(),
    };
    this.calls.push(call);
    const contract = checkRequest(call);
    const answer = (status: number, data: unknown, headers: Record<string, string> = {}) => {
      call.status = status;
      res.writeHead(status, {
        'content-type': 'application/json; charset=utf-8',
        'x-github-request-id': `FAKE:${this.calls.length}`,
        ...headers,
      });
      res.end(data === undefined ? '' : JSON.stringify(data));
    };
    if (contract.problems.length) {
      // GitHub answers 404 for an unknown route and 422 for a request its description refuses.
      const status = contract.route ? 422 : 404;
      const { method, path: where } = call;
      this.contractViolations.push({ kind: 'request', method, path: where, status, ...contract });
      return answer(status, {
        message: `Request breaks GitHub's OpenAPI description: ${contract.problems.join('; ')}`,
        documentation_url: 'https://docs.github.com/rest',
      });
    }

    const fault = this.faults.find((f) => f.remaining > 0 && f.method === call.method && f.path.test(path));
    if (fault) {
      fault.remaining--;
      if (fault.kind === 'hang') return;
      const [status, data, headers] = faultAnswer(fault);
      return answer(status, data, headers);
    }
    const [status, data, headers] = this.route(call, url);
    const problems = checkResponse(contract.route!, status, data);
    if (problems.length)
      this.contractViolations.push({
        kind: 'response',
        method: call.method,
        path,
        status,
        route: contract.route,
        problems,
      });
    answer(status, data, headers);
  }

  private route(call: RecordedCall, url: URL): [number, unknown, Record<string, string>?] {
    const { method, path } = call;
    let m: RegExpExecArray | null;

    if (method === 'POST' && (m = /^\/app\/installations\/(\d+)\/access_tokens$/.exec(path))) {
      const appId = this.checkJwt(call.auth);
      if (appId === undefined) return [401, { message: 'A JSON web token could not be decoded' }];
      const installationId = Number(m[1]);
      const token = `ghs_fake${String(this.nextToken++).padStart(4, '0')}inst${installationId}`;
      this.tokens.push({ installationId, appId, token });
      const expires = new Date(Date.now() + 3600_000).toISOString().replace(/\.\d+Z$/, 'Z');
      return [
        201,
        {
          token,
          expires_at: expires,
          permissions: { issues: 'write', pull_requests: 'write', members: 'read', contents: 'read' },
          repository_selection: 'all',
        },
      ];
    }

    if (method === 'GET' && path === '/app') {
      const appId = this.checkJwt(call.auth);
      if (appId === undefined) return [401, { message: 'A JSON web token could not be decoded' }];
      return [200, appJson(this.base, appId)];
    }

    if (method === 'GET' && (m = /^\/repos\/([^/]+)\/([^/]+)\/installation$/.exec(path))) {
      const appId = this.checkJwt(call.auth);
      if (appId === undefined) return [401, { message: 'A JSON web token could not be decoded' }];
      const id = this.installations.get(`${m[1]}/${m[2]}`.toLowerCase());
      return id === undefined ? notFound() : [200, installationJson(this.base, id, appId, m[1]!)];
    }

    if (path === '/app/hook/deliveries' || path.startsWith('/app/hook/deliveries/')) {
      // Only the App itself, with a JWT signed by its key: installation tokens and PATs get 401.
      if (!this.publicKey || this.checkJwt(call.auth) === undefined)
        return [401, { message: 'A JSON web token could not be decoded' }];
      if (method === 'GET' && path === '/app/hook/deliveries') return this.listDeliveries(url);
      const one = /^\/app\/hook\/deliveries\/(\d+)(\/attempts)?$/.exec(path);
      const d = one && this.deliveries.find((x) => x.id === Number(one[1]));
      if (!d) return notFound();
      if (method === 'GET' && !one[2]) return [200, deliveryDetail(d)];
      if (method === 'POST' && one[2]) {
        this.deliveries.push({
          ...d,
          id: this.nextDeliveryId++,
          redelivery: true,
          delivered_at: new Date().toISOString(),
        });
        return [202, {}];
      }
      return notFound();
    }

    // Everything else authenticates as an installation token, a PAT, or nobody.
    const who = this.identify(call.auth);
    if (who === 'bad') return [401, { message: 'Bad credentials' }];

    if (method === 'GET' && path === '/user') {
      if (who === undefined) return [401, { message: 'Requires authentication' }];
      return [200, authenticatedUserJson(this.base, who)];
    }

    if ((m = /^\/repos\/([^/]+)\/([^/]+)\/issues\/(\d+)\/comments$/.exec(path))) {
      const [owner, repo, issue] = [m[1]!, m[2]!, Number(m[3])];
      if (method === 'GET') return this.listComments(owner, repo, issue, url);
      if (method === 'POST') {
        if (who === undefined) return [401, { message: 'Requires authentication' }];
        const text = (call.body as { body?: unknown } | undefined)?.body;
        if (typeof text !== 'string') return [422, { message: 'Invalid request. "body" wasn\'t supplied.' }];
        const c = this.addComment(owner, repo, issue, text, who);
        return [201, this.commentJson(c)];
      }
    }

    if ((m = /^\/repos\/([^/]+)\/([^/]+)\/issues\/comments\/(\d+)$/.exec(path))) {
      const c = this.comments.find((x) => x.owner === m![1] && x.repo === m![2] && x.id === Number(m![3]));
      if (!c) return notFound();
      if (method === 'GET') return [200, this.commentJson(c)];
      if (method === 'PATCH') {
        if (who === undefined) return [401, { message: 'Requires authentication' }];
        const text = (call.body as { body?: unknown } | undefined)?.body;
        if (typeof text !== 'string') return [422, { message: 'Invalid request. "body" wasn\'t supplied.' }];
        c.body = text;
        c.updated_at = new Date().toISOString();
        return [200, this.commentJson(c)];
      }
    }

    if ((m = /^\/repos\/([^/]+)\/([^/]+)\/check-runs(?:\/(\d+))?$/.exec(path))) {
      const [owner, repo, id] = [m[1]!, m[2]!, m[3]];
      if ((method === 'POST' && id === undefined) || (method === 'PATCH' && id !== undefined)) {
        // Only GitHub Apps may write checks.
        if (who === undefined) return [401, { message: 'Requires authentication' }];
        const appId = this.tokens.find((t) => `token ${t.token}` === call.auth)?.appId;
        if (appId === undefined) return forbidden('Resource not accessible by personal access token');
        if (method === 'POST') return this.createCheckRun(owner, repo, appId, call.body);
        const run = this.checkRunsOf(owner, repo).find((r) => r.id === Number(id));
        return run ? this.updateCheckRun(run, call.body) : notFound();
      }
    }

    if (method === 'GET' && (m = /^\/repos\/([^/]+)\/([^/]+)\/commits\/([^/]+)\/check-runs$/.exec(path)))
      return this.listCheckRuns(m[1]!, m[2]!, decodeURIComponent(m[3]!), url);

    if (method === 'POST' && (m = /^\/repos\/([^/]+)\/([^/]+)\/statuses\/([^/]+)$/.exec(path))) {
      if (who === undefined) return [401, { message: 'Requires authentication' }];
      return this.createStatus(m[1]!, m[2]!, m[3]!, who, call.body);
    }

    if (method === 'GET' && (m = /^\/repos\/([^/]+)\/([^/]+)\/pulls\/(\d+)$/.exec(path))) {
      const pr = this.pulls.get(`${m[1]}/${m[2]}#${Number(m[3])}`);
      return pr ? [200, this.pullJson(m[1]!, m[2]!, pr)] : notFound();
    }

    if (method === 'GET' && (m = /^\/orgs\/([^/]+)\/teams\/([^/]+)\/memberships\/([^/]+)$/.exec(path))) {
      const [org, slug, user] = [m[1]!, m[2]!, decodeURIComponent(m[3]!)];
      const state = this.teams.get(`${org}/${slug}/${user}`.toLowerCase());
      if (!state) return notFound();
      return [200, { url: `${this.base}${path}`, role: 'member', state }];
    }

    return notFound();
  }

  private listComments(owner: string, repo: string, issue: number, url: URL): Answer {
    const [slice, links] = this.page(this.commentsOf(owner, repo, issue), url);
    return [200, slice.map((c) => this.commentJson(c)), links];
  }

  // ---- checks and statuses, as docs.github.com/rest/checks/runs and /rest/commits/statuses describe them

  private createCheckRun(owner: string, repo: string, appId: number, body: unknown): Answer {
    const b = (body ?? {}) as Record<string, unknown>;
    const problem =
      unknownKeys(b, [...CHECK_RUN_KEYS, 'head_sha']) ??
      (typeof b.name !== 'string' || b.name === '' ? '"name" wasn\'t supplied.' : undefined) ??
      (typeof b.head_sha !== 'string' || !/^[0-9a-f]{40}$/.test(b.head_sha)
        ? `No commit found for SHA: ${String(b.head_sha)}`
        : undefined) ??
      checkRunFieldProblem(b, undefined);
    if (problem) return unprocessable(problem);
    const run = this.addCheckRun(owner, repo, {
      app_id: appId,
      name: b.name as string,
      head_sha: b.head_sha as string,
    });
    applyCheckRunFields(run, b);
    return [201, this.checkRunJson(run)];
  }

  private updateCheckRun(run: FakeCheckRun, body: unknown): Answer {
    const b = (body ?? {}) as Record<string, unknown>;
    const problem =
      unknownKeys(b, CHECK_RUN_KEYS) ??
      (b.name !== undefined && (typeof b.name !== 'string' || b.name === '')
        ? 'Invalid "name".'
        : undefined) ??
      checkRunFieldProblem(b, run);
    if (problem) return unprocessable(problem);
    applyCheckRunFields(run, b);
    return [200, this.checkRunJson(run)];
  }

  private listCheckRuns(owner: string, repo: string, ref: string, url: URL): Answer {
    const q = url.searchParams;
    const filter = q.get('filter') ?? 'latest';
    const status = q.get('status');
    if (!['latest', 'all'].includes(filter)) return unprocessable(`Invalid filter: ${filter}`);
    if (status !== null && !['queued', 'in_progress', 'completed'].includes(status))
      return unprocessable(`Invalid status: ${status}`);
    let runs = this.checkRunsOf(owner, repo, ref).filter(
      (r) =>
        (q.get('check_name') === null || r.name === q.get('check_name')) &&
        (status === null || r.status === status) &&
        (q.get('app_id') === null || r.app_id === Number(q.get('app_id'))),
    );
    if (filter === 'latest') runs = runs.filter((r) => !runs.some((o) => o.name === r.name && o.id > r.id));
    runs = [...runs].reverse(); // newest first
    const [slice, links] = this.page(runs, url);
    return [200, { total_count: runs.length, check_runs: slice.map((r) => this.checkRunJson(r)) }, links];
  }

  private createStatus(owner: string, repo: string, sha: string, who: string, body: unknown): Answer {
    const b = (body ?? {}) as Record<string, unknown>;
    const problem =
      unknownKeys(b, ['state', 'target_url', 'description', 'context']) ??
      (!/^[0-9a-f]{40}$/.test(sha) ? `No commit found for SHA: ${sha}` : undefined) ??
      (!['error', 'failure', 'pending', 'success'].includes(b.state as string)
        ? 'State is not included in the list'
        : undefined) ??
      (b.description != null && (typeof b.description !== 'string' || b.description.length > 140)
        ? 'Description is too long (maximum is 140 characters)'
        : undefined) ??
      (b.context !== undefined && typeof b.context !== 'string' ? 'Invalid "context".' : undefined);
    if (problem) return unprocessable(problem);
    const status: FakeCommitStatus = {
      id: this.nextStatusId++,
      owner,
      repo,
      sha,
      state: b.state as FakeCommitStatus['state'],
      target_url: (b.target_url as string | undefined) ?? null,
      description: (b.description as string | undefined) ?? null,
      context: (b.context as string | undefined) ?? 'default',
      creator: who,
      created_at: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    };
    this.statuses.push(status);
    return [
      201,
      {
        url: `${this.base}/repos/${owner}/${repo}/statuses/${sha}`,
        avatar_url: null,
        id: status.id,
        node_id: `SC_fake${status.id}`,
        state: status.state,
        description: status.description,
        target_url: status.target_url,
        context: status.context,
        created_at: status.created_at,
        updated_at: status.created_at,
        creator: userJson(this.base, who),
      },
      { location: `${this.base}/repos/${owner}/${repo}/statuses/${sha}` },
    ];
  }

  private checkRunJson(r: FakeCheckRun): Record<string, unknown> {
    const url = `${this.base}/repos/${r.owner}/${r.repo}/check-runs/${r.id}`;
    return {
      id: r.id,
      head_sha: r.head_sha,
      node_id: `CR_fake${r.id}`,
      external_id: r.external_id,
      url,
      html_url: `https://github.invalid/${r.owner}/${r.repo}/runs/${r.id}`,
      details_url: r.details_url,
      status: r.status,
      conclusion: r.conclusion,
      started_at: r.started_at,
      completed_at: r.completed_at,
      output: { ...r.output, annotations_count: 0, annotations_url: `${url}/annotations` },
      name: r.name,
      check_suite: { id: 1 },
      app: appJson(this.base, r.app_id),
      pull_requests: [],
    };
  }

  /** One page of `all` (per_page ≤ 100, default 30) and its Link header. */
  private page<T>(all: T[], url: URL): [T[], Record<string, string>] {
    const perPage = Math.min(Math.max(Number(url.searchParams.get('per_page') ?? 30) || 30, 1), 100);
    const page = Math.max(Number(url.searchParams.get('page') ?? 1) || 1, 1);
    const last = Math.max(Math.ceil(all.length / perPage), 1);
    const link = (p: number, rel: string) => {
      const u = new URL(`${this.base}${url.pathname}${url.search}`);
      u.searchParams.set('per_page', String(perPage));
      u.searchParams.set('page', String(p));
      return `<${u.toString()}>; rel="${rel}"`;
    };
    const links: string[] = [];
    if (page > 1) links.push(link(page - 1, 'prev'), link(1, 'first'));
    if (page < last) links.push(link(page + 1, 'next'), link(last, 'last'));
    return [all.slice((page - 1) * perPage, page * perPage), links.length ? { link: links.join(', ') } : {}];
  }

  private commentJson(c: FakeComment): Record<string, unknown> {
    return {
      id: c.id,
      node_id: `IC_fake${c.id}`,
      url: `${this.base}/repos/${c.owner}/${c.repo}/issues/comments/${c.id}`,
      html_url: `https://github.invalid/${c.owner}/${c.repo}/issues/${c.issue}#issuecomment-${c.id}`,
      issue_url: `${this.base}/repos/${c.owner}/${c.repo}/issues/${c.issue}`,
      body: c.body,
      user: userJson(this.base, c.user),
      created_at: c.created_at,
      updated_at: c.updated_at,
      author_association: 'NONE',
    };
  }

  private pullJson(owner: string, repo: string, pr: FakePullRequest): Record<string, unknown> {
    const headRepo = pr.headRepoFullName === undefined ? `${owner}/${repo}` : pr.headRepoFullName;
    const merged = pr.merged ?? false;
    const state = pr.state ?? 'open';
    const api = `${this.base}/repos/${owner}/${repo}`;
    const self = `${api}/pulls/${pr.number}`;
    const issue = `${api}/issues/${pr.number}`;
    const html = `https://github.invalid/${owner}/${repo}/pull/${pr.number}`;
    const author = userJson(this.base, pr.author ?? 'contributor');
    const closedAt = state === 'closed' || merged ? new Date().toISOString().replace(/\.\d+Z$/, 'Z') : null;
    const side = (full: string | null, ref: string, sha: string) => ({
      label: `${full?.split('/')[0] ?? 'unknown'}:${ref}`,
      ref,
      sha,
      // A deleted fork's head repository is null (GitHub's description says otherwise; see openapiContract.ts).
      repo: full === null ? null : repositoryJson(this.base, full),
      user: full === null ? author : userJson(this.base, full.split('/')[0]!),
    });
    const link = (href: string) => ({ href });
    return {
      url: self,
      id: 2_000_000 + pr.number,
      node_id: `PR_fake${pr.number}`,
      html_url: html,
      diff_url: `${html}.diff`,
      patch_url: `${html}.patch`,
      issue_url: issue,
      commits_url: `${self}/commits`,
      review_comments_url: `${self}/comments`,
      review_comment_url: `${api}/pulls/comments{/number}`,
      comments_url: `${issue}/comments`,
      statuses_url: `${api}/statuses/${pr.headSha}`,
      number: pr.number,
      state,
      locked: false,
      title: pr.title ?? `PR ${pr.number}`,
      user: author,
      body: null,
      labels: [],
      milestone: null,
      created_at: FIXED_DATE,
      updated_at: FIXED_DATE,
      closed_at: closedAt,
      merged_at: merged ? closedAt : null,
      merge_commit_sha: null,
      assignee: null,
      assignees: [],
      requested_reviewers: [],
      requested_teams: [],
      head: side(headRepo, pr.headRef ?? 'feature', pr.headSha),
      base: side(`${owner}/${repo}`, pr.baseRef ?? 'main', pr.baseSha),
      _links: {
        self: link(self),
        html: link(html),
        issue: link(issue),
        comments: link(`${issue}/comments`),
        review_comments: link(`${self}/comments`),
        review_comment: link(`${api}/pulls/comments{/number}`),
        commits: link(`${self}/commits`),
        statuses: link(`${api}/statuses/${pr.headSha}`),
      },
      author_association: 'CONTRIBUTOR',
      auto_merge: null,
      draft: false,
      merged,
      mergeable: null,
      mergeable_state: 'unknown',
      merged_by: null,
      comments: 0,
      review_comments: 0,
      maintainer_can_modify: false,
      commits: 1,
      additions: 0,
      deletions: 0,
      changed_files: 0,
    };
  }

  /** GitHub's cursor pagination: `cursor` is where the page starts, the next one is in the Link header. */
  private listDeliveries(url: URL): [number, unknown, Record<string, string>?] {
    const perPage = Number(url.searchParams.get('per_page') ?? 30);
    if (!Number.isInteger(perPage) || perPage < 1 || perPage > 100)
      return [422, { message: 'per_page must be between 1 and 100' }];
    const newestFirst = [...this.deliveries].reverse();
    const cursor = url.searchParams.get('cursor');
    let start = 0;
    if (cursor !== null) {
      const m = /^v1_(\d+)$/.exec(cursor);
      if (!m) return [400, { message: 'Invalid cursor' }];
      start = newestFirst.findIndex((d) => d.id <= Number(m[1]));
      if (start < 0) start = newestFirst.length;
    }
    const page = newestFirst.slice(start, start + perPage);
    const after = newestFirst[start + perPage];
    const headers: Record<string, string> = {};
    if (after)
      headers.link = `<${this.base}/app/hook/deliveries?per_page=${perPage}&cursor=v1_${after.id}>; rel="next"`;
    return [200, page.map(deliverySummary), headers];
  }

  /** The app id of a well-formed App JWT (`Bearer h.p.s`), else undefined. */
  private checkJwt(auth: string | undefined): number | undefined {
    const m = /^bearer ([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/i.exec(auth ?? '');
    if (!m) return undefined;
    try {
      const header = JSON.parse(Buffer.from(m[1]!, 'base64url').toString('utf8')) as { alg?: string };
      const payload = JSON.parse(Buffer.from(m[2]!, 'base64url').toString('utf8')) as {
        iss?: unknown;
        iat?: unknown;
        exp?: unknown;
      };
      if (header.alg !== 'RS256' || typeof payload.iat !== 'number' || typeof payload.exp !== 'number')
        return undefined;
      if (this.publicKey) {
        const ok = verifySignature(
          'RSA-SHA256',
          Buffer.from(`${m[1]}.${m[2]}`),
          this.publicKey,
          Buffer.from(m[3]!, 'base64url'),
        );
        if (!ok) return undefined;
      }
      const appId = Number(payload.iss);
      return Number.isSafeInteger(appId) && appId > 0 ? appId : undefined;
    } catch {
      return undefined;
    }
  }

  /** Login behind an Authorization header: undefined = anonymous, 'bad' = unknown installation token. */
  private identify(auth: string | undefined): string | undefined | 'bad' {
    if (!auth) return undefined;
    const token = /^token (\S+)$/i.exec(auth)?.[1];
    if (!token) return 'bad';
    if (token.startsWith('ghs_'))
      return this.tokens.some((t) => t.token === token) ? (this.opts.botLogin ?? 'hpcbot-test[bot]') : 'bad';
    if (this.opts.patTokens && !this.opts.patTokens.includes(token)) return 'bad';
    return this.opts.patLogin ?? 'pat-user';
  }

  // ---- git smart HTTP -------------------------------------------------------------------------

  private handleGit(req: http.IncomingMessage, res: http.ServerResponse, url: URL): void {
    const record: RecordedGitCall = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query: url.search.replace(/^\?/, ''),
      auth: req.headers.authorization,
      status: 0,
    };
    this.gitCalls.push(record);
    const fail = (status: number, text: string, headers: Record<string, string> = {}) => {
      record.status = status;
      req.resume();
      res.writeHead(status, { 'content-type': 'text/plain', ...headers });
      res.end(`${text}\n`);
    };
    const parts = url.pathname.split('/');
    if (!this.opts.gitRoot || parts.slice(1, 3).some((p) => !SAFE_NAME.test(p) || p === '..' || p === '.'))
      return fail(404, 'not found');

    let remoteUser: string | undefined;
    if (this.opts.requireGitAuth) {
      const basic = /^basic (.+)$/i.exec(req.headers.authorization ?? '')?.[1];
      const [user, ...rest] = basic ? Buffer.from(basic, 'base64').toString('utf8').split(':') : [];
      const password = rest.join(':');
      const known =
        this.tokens.some((t) => t.token === password) || this.opts.gitPasswords?.includes(password);
      if (!user || !known)
        return fail(401, 'authentication required', { 'www-authenticate': 'Basic realm="fake"' });
      remoteUser = user;
    }

    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      GIT_PROJECT_ROOT: this.opts.gitRoot,
      GIT_HTTP_EXPORT_ALL: '1',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      PATH_INFO: url.pathname,
      QUERY_STRING: url.search.replace(/^\?/, ''),
      REQUEST_METHOD: req.method ?? 'GET',
      CONTENT_TYPE: req.headers['content-type'] ?? '',
      REMOTE_ADDR: req.socket.remoteAddress ?? '127.0.0.1',
      SERVER_PROTOCOL: `HTTP/${req.httpVersion}`,
      GATEWAY_INTERFACE: 'CGI/1.1',
    };
    if (req.headers['content-length']) env.CONTENT_LENGTH = req.headers['content-length'];
    if (req.headers['content-encoding']) env.HTTP_CONTENT_ENCODING = req.headers['content-encoding'];
    if (typeof req.headers['git-protocol'] === 'string') env.GIT_PROTOCOL = req.headers['git-protocol'];
    if (remoteUser) env.REMOTE_USER = remoteUser;

    const child = spawn('git', ['http-backend'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    req.pipe(child.stdin);
    child.stdin.on('error', () => undefined);
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));

    // CGI answer: header lines, a blank line, then the body.
    let head = Buffer.alloc(0);
    let headersDone = false;
    child.stdout.on('data', (chunk: Buffer) => {
      if (headersDone) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const text = head.toString('latin1');
      const end = /\r?\n\r?\n/.exec(text);
      if (!end) return;
      headersDone = true;
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of text.slice(0, end.index).split(/\r?\n/)) {
        const i = line.indexOf(':');
        if (i < 0) continue;
        const name = line.slice(0, i).trim();
        const value = line.slice(i + 1).trim();
        if (name.toLowerCase() === 'status') status = parseInt(value, 10) || 200;
        else headers[name] = value;
      }
      record.status = status;
      res.writeHead(status, headers);
      res.write(head.subarray(end.index + end[0].length));
    });
    child.on('error', (err) => {
      if (!res.headersSent) fail(500, `cannot run git http-backend: ${err.message}`);
    });
    child.on('close', (code) => {
      if (!headersDone) {
        if (!res.headersSent) fail(500, `git http-backend exited ${code}: ${stderr}`);
        return;
      }
      res.end();
    });
  }
}

function deliverySummary(d: FakeDelivery): Record<string, unknown> {
  return {
    id: d.id,
    guid: d.guid,
    delivered_at: d.delivered_at,
    redelivery: d.redelivery,
    duration: 0.03,
    status:
      d.status_code === 0
        ? 'failed to connect to host'
        : d.status_code < 300
          ? 'OK'
          : 'Invalid HTTP Response',
    status_code: d.status_code,
    event: d.event,
    action: d.action,
    installation_id: d.installation_id,
    repository_id: d.repository_id,
    throttled_at: null,
  };
}

function deliveryDetail(d: FakeDelivery): Record<string, unknown> {
  return {
    ...deliverySummary(d),
    url: '',
    request: {
      headers: {
        Accept: '*/*',
        'User-Agent': 'GitHub-Hookshot/fake',
        'X-GitHub-Delivery': d.guid,
        'X-GitHub-Event': d.event,
        'X-GitHub-Hook-ID': '1',
        'X-GitHub-Hook-Installation-Target-ID': '1',
        'X-GitHub-Hook-Installation-Target-Type': 'integration',
        'content-type': 'application/json',
      },
      payload: d.payload,
    },
    response: { headers: null, payload: null },
  };
}

// ---- GitHub's objects, with every field its OpenAPI description requires --------------------------

const FIXED_DATE = '2024-01-01T00:00:00Z';
const APP_PERMISSIONS = {
  checks: 'write',
  contents: 'read',
  issues: 'write',
  members: 'read',
  metadata: 'read',
  pull_requests: 'write',
  statuses: 'write',
};

/** A stable numeric id for a name (GitHub's ids are numbers; tests only need them stable). */
function idOf(name: string): number {
  let h = 7;
  for (const c of name) h = (h * 31 + c.charCodeAt(0)) % 100_000_000;
  return h + 1;
}

/** GitHub's "simple-user". */
function userJson(base: string, login: string, type = login.endsWith('[bot]') ? 'Bot' : 'User') {
  const api = `${base}/users/${encodeURIComponent(login)}`;
  const id = idOf(login);
  return {
    login,
    id,
    node_id: `U_fake${id}`,
    avatar_url: `https://avatars.github.invalid/u/${id}`,
    gravatar_id: '',
    url: api,
    html_url: `https://github.invalid/${encodeURIComponent(login)}`,
    followers_url: `${api}/followers`,
    following_url: `${api}/following{/other_user}`,
    gists_url: `${api}/gists{/gist_id}`,
    starred_url: `${api}/starred{/owner}{/repo}`,
    subscriptions_url: `${api}/subscriptions`,
    organizations_url: `${api}/orgs`,
    repos_url: `${api}/repos`,
    events_url: `${api}/events{/privacy}`,
    received_events_url: `${api}/received_events`,
    type,
    site_admin: false,
  };
}

/** GET /user answers the "private-user" view: the token's own account. */
function authenticatedUserJson(base: string, login: string) {
  return {
    ...userJson(base, login),
    name: null,
    company: null,
    blog: '',
    location: null,
    email: null,
    hireable: null,
    bio: null,
    public_repos: 0,
    public_gists: 0,
    followers: 0,
    following: 0,
    created_at: FIXED_DATE,
    updated_at: FIXED_DATE,
    private_gists: 0,
    total_private_repos: 0,
    owned_private_repos: 0,
    disk_usage: 0,
    collaborators: 0,
    two_factor_authentication: true,
  };
}

/** GitHub's "integration": a GitHub App. */
function appJson(base: string, appId: number) {
  return {
    id: appId,
    slug: `fake-app-${appId}`,
    node_id: `A_fake${appId}`,
    owner: userJson(base, 'fake-org', 'Organization'),
    name: `Fake App ${appId}`,
    description: null,
    external_url: 'https://example.invalid',
    html_url: `https://github.invalid/apps/fake-app-${appId}`,
    created_at: FIXED_DATE,
    updated_at: FIXED_DATE,
    permissions: APP_PERMISSIONS,
    events: [],
  };
}

function installationJson(base: string, id: number, appId: number, account: string) {
  return {
    id,
    account: userJson(base, account, 'Organization'),
    repository_selection: 'all',
    access_tokens_url: `${base}/app/installations/${id}/access_tokens`,
    repositories_url: `${base}/installation/repositories`,
    html_url: `https://github.invalid/organizations/${account}/settings/installations/${id}`,
    app_id: appId,
    app_slug: `fake-app-${appId}`,
    target_id: idOf(account),
    target_type: 'Organization',
    permissions: APP_PERMISSIONS,
    events: [],
    created_at: FIXED_DATE,
    updated_at: FIXED_DATE,
    single_file_name: null,
    suspended_by: null,
    suspended_at: null,
  };
}

/** The `<name>_url` fields of a repository, relative to its API URL. */
const REPO_URLS: [string, string][] = [
  ['archive_url', '/{archive_format}{/ref}'],
  ['assignees_url', '/assignees{/user}'],
  ['blobs_url', '/git/blobs{/sha}'],
  ['branches_url', '/branches{/branch}'],
  ['collaborators_url', '/collaborators{/collaborator}'],
  ['comments_url', '/comments{/number}'],
  ['commits_url', '/commits{/sha}'],
  ['compare_url', '/compare/{base}...{head}'],
  ['contents_url', '/contents/{+path}'],
  ['contributors_url', '/contributors'],
  ['deployments_url', '/deployments'],
  ['downloads_url', '/downloads'],
  ['events_url', '/events'],
  ['forks_url', '/forks'],
  ['git_commits_url', '/git/commits{/sha}'],
  ['git_refs_url', '/git/refs{/sha}'],
  ['git_tags_url', '/git/tags{/sha}'],
  ['hooks_url', '/hooks'],
  ['issue_comment_url', '/issues/comments{/number}'],
  ['issue_events_url', '/issues/events{/number}'],
  ['issues_url', '/issues{/number}'],
  ['keys_url', '/keys{/key_id}'],
  ['labels_url', '/labels{/name}'],
  ['languages_url', '/languages'],
  ['merges_url', '/merges'],
  ['milestones_url', '/milestones{/number}'],
  ['notifications_url', '/notifications{?since,all,participating}'],
  ['pulls_url', '/pulls{/number}'],
  ['releases_url', '/releases{/id}'],
  ['stargazers_url', '/stargazers'],
  ['statuses_url', '/statuses/{sha}'],
  ['subscribers_url', '/subscribers'],
  ['subscription_url', '/subscription'],
  ['tags_url', '/tags'],
  ['teams_url', '/teams'],
  ['trees_url', '/git/trees{/sha}'],
];

/** GitHub's "repository"; clone_url points at the fake's git smart HTTP. */
function repositoryJson(base: string, fullName: string) {
  const [owner = '', name = ''] = fullName.split('/');
  const api = `${base}/repos/${fullName}`;
  const html = `https://github.invalid/${fullName}`;
  const id = idOf(fullName);
  return {
    id,
    node_id: `R_fake${id}`,
    name,
    full_name: fullName,
    owner: userJson(base, owner),
    private: false,
    html_url: html,
    description: null,
    fork: false,
    url: api,
    ...Object.fromEntries(REPO_URLS.map(([key, suffix]) => [key, `${api}${suffix}`])),
    clone_url: `${base}/${fullName}.git`,
    git_url: `git://github.invalid/${fullName}.git`,
    ssh_url: `git@github.invalid:${fullName}.git`,
    svn_url: html,
    mirror_url: null,
    homepage: null,
    language: null,
    forks: 0,
    forks_count: 0,
    stargazers_count: 0,
    watchers: 0,
    watchers_count: 0,
    size: 0,
    open_issues: 0,
    open_issues_count: 0,
    default_branch: 'main',
    has_issues: true,
    has_projects: false,
    has_wiki: false,
    has_pages: false,
    has_downloads: false,
    archived: false,
    disabled: false,
    license: null,
    pushed_at: FIXED_DATE,
    created_at: FIXED_DATE,
    updated_at: FIXED_DATE,
  };
}

function describeViolations(violations: ContractViolation[]): string {
  const lines = violations.map(
    (v) =>
      `- ${v.kind === 'request' ? 'the bot sent' : 'the fake answered'} ${v.method} ${v.path}` +
      `${v.route ? ` (${v.route})` : ''}${v.kind === 'response' ? ` with ${v.status}` : ''}:\n` +
      v.problems.map((p) => `    ${p}`).join('\n'),
  );
  return `fake GitHub: ${violations.length} violation(s) of GitHub's OpenAPI description:\n${lines.join('\n')}`;
}

function notFound(): [number, unknown] {
  return [404, { message: 'Not Found', documentation_url: 'https://docs.github.com/rest' }];
}

type Answer = [number, unknown, Record<string, string>?];

function forbidden(message: string): Answer {
  return [403, { message, documentation_url: 'https://docs.github.com/rest', status: '403' }];
}

function unprocessable(message: string): Answer {
  return [
    422,
    { message: `Invalid request.\n\n${message}`, documentation_url: 'https://docs.github.com/rest' },
  ];
}

/** The body fields of "Update a check run" (creating also takes head_sha). */
const CHECK_RUN_KEYS = [
  'name',
  'details_url',
  'external_id',
  'status',
  'started_at',
  'conclusion',
  'completed_at',
  'output',
  'actions',
];
const CHECK_STATUSES = ['queued', 'in_progress', 'completed'];
const CHECK_CONCLUSIONS = [
  'action_required',
  'cancelled',
  'failure',
  'neutral',
  'success',
  'skipped',
  'timed_out',
];
/** GitHub's limit for output.summary and output.text. */
const MAX_OUTPUT = 65535;
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

function unknownKeys(body: Record<string, unknown>, allowed: string[]): string | undefined {
  const extra = Object.keys(body).filter((k) => !allowed.includes(k));
  return extra.length ? `${extra.map((k) => `"${k}"`).join(', ')} is not a permitted key.` : undefined;
}

/** What GitHub would refuse in a check run's fields; `existing` is the run being updated. */
function checkRunFieldProblem(
  b: Record<string, unknown>,
  existing: FakeCheckRun | undefined,
): string | undefined {
  if (b.status !== undefined && !CHECK_STATUSES.includes(b.status as string))
    return `Invalid "status": ${String(b.status)}`;
  if (b.conclusion === 'stale') return 'Conclusion cannot be set to stale; only GitHub can set it.';
  if (b.conclusion !== undefined && !CHECK_CONCLUSIONS.includes(b.conclusion as string))
    return `Invalid "conclusion": ${String(b.conclusion)}`;
  const completing = b.status === 'completed' || b.completed_at !== undefined;
  if (completing && b.conclusion === undefined && !existing?.conclusion)
    return '"conclusion" is required when "status" is completed or "completed_at" is given.';
  for (const k of ['external_id', 'details_url'])
    if (b[k] !== undefined && typeof b[k] !== 'string') return `Invalid "${k}".`;
  for (const k of ['started_at', 'completed_at'])
    if (b[k] !== undefined && (typeof b[k] !== 'string' || !DATE_TIME.test(b[k] as string)))
      return `Invalid "${k}": expected an ISO 8601 date-time.`;
  if (b.output !== undefined) {
    const o = b.output as Record<string, unknown> | null;
    if (!o || typeof o !== 'object') return 'Invalid "output".';
    const extra = unknownKeys(o, ['title', 'summary', 'text', 'annotations', 'images']);
    if (extra) return `output: ${extra}`;
    if (typeof o.summary !== 'string') return 'output: "summary" wasn\'t supplied.';
    if (typeof o.title !== 'string' && !(existing && o.title === undefined))
      return 'output: "title" wasn\'t supplied.';
    for (const k of ['summary', 'text'])
      if (typeof o[k] === 'string' && (o[k] as string).length > MAX_OUTPUT)
        return `output.${k} is too long (maximum is ${MAX_OUTPUT} characters)`;
  }
  return undefined;
}

function applyCheckRunFields(run: FakeCheckRun, b: Record<string, unknown>): void {
  const str = (k: string) => b[k] as string;
  if (b.name !== undefined) run.name = str('name');
  if (b.external_id !== undefined) run.external_id = str('external_id');
  if (b.details_url !== undefined) run.details_url = str('details_url');
  if (b.started_at !== undefined) run.started_at = str('started_at');
  if (b.status !== undefined) run.status = b.status as FakeCheckRun['status'];
  if (b.conclusion !== undefined) {
    // Giving a conclusion completes the run.
    run.conclusion = str('conclusion');
    run.status = 'completed';
  } else if (b.status !== undefined && b.status !== 'completed') run.conclusion = null;
  if (run.status === 'completed')
    run.completed_at =
      (b.completed_at as string | undefined) ??
      run.completed_at ??
      new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  else run.completed_at = null;
  if (run.status !== 'queued' && run.started_at === null)
    run.started_at = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  if (b.output !== undefined) {
    const o = b.output as { title?: string; summary: string; text?: string };
    run.output = { title: o.title ?? run.output.title, summary: o.summary, text: o.text ?? null };
  }
}

function faultAnswer(f: Fault): [number, unknown, Record<string, string>] {
  switch (f.kind) {
    case 'hang':
      throw new Error('unreachable');
    case 'rate-limit':
      return [
        403,
        { message: 'API rate limit exceeded for installation ID 1.' },
        {
          'x-ratelimit-limit': '5000',
          'x-ratelimit-remaining': '0',
          'x-ratelimit-used': '5000',
          'x-ratelimit-reset': String(Math.floor(Date.now() / 1000) + f.seconds),
        },
      ];
    case 'secondary-rate-limit':
      return [403, { message: SECONDARY_MESSAGE }, { 'retry-after': String(f.seconds) }];
    case 429:
      return [429, { message: 'Too Many Requests' }, { 'retry-after': String(f.seconds) }];
    case 500:
      return [500, { message: 'Server Error' }, {}];
    case 502:
      return [502, { message: 'Bad Gateway' }, {}];
    default:
      return [f.kind, { message: `injected ${f.kind}` }, {}];
  }
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
