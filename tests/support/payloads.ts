/**
 * Real webhook payloads (from @octokit/webhooks-examples, GitHub's own examples), signing, and a raw
 * HTTP client that sends exactly the bytes and headers it is given. Shared by tests and bench/.
 */
import { createHmac, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import { checkWebhookPayload } from './openapiContract.js';

interface WebhookDefinition {
  name: string;
  examples: Record<string, unknown>[];
}

type Example = Record<string, unknown> & {
  action?: string;
  installation?: { id: number; node_id?: string };
  repository?: { owner: { login: string }; name: string; html_url: string; url: string };
  issue?: Record<string, unknown> & { number: number; pull_request?: unknown };
};

let definitions: WebhookDefinition[] | undefined;

/** The package's `main` is api.github.com/index.json: one entry per event with a list of examples. */
function allDefinitions(): WebhookDefinition[] {
  if (!definitions) {
    const file = createRequire(import.meta.url).resolve('@octokit/webhooks-examples');
    definitions = JSON.parse(readFileSync(file, 'utf8')) as WebhookDefinition[];
  }
  return definitions;
}

/** A deep copy of the first example of `event` that matches; prefers examples from an App installation. */
export function example(event: string, matches: (e: Example) => boolean = () => true): Example {
  const def = allDefinitions().find((d) => d.name === event);
  if (!def) throw new Error(`@octokit/webhooks-examples has no ${event} examples`);
  const candidates = (def.examples as Example[]).filter(matches);
  const chosen = candidates.find((e) => e.installation) ?? candidates[0];
  if (!chosen) throw new Error(`@octokit/webhooks-examples has no matching ${event} example`);
  return structuredClone(chosen);
}

const prAction = (action: string) => example('pull_request', (e) => e.action === action);

/**
 * The examples package only has issue_comment examples on plain issues. A comment on a pull request is
 * the same payload plus `issue.pull_request`, which GitHub adds when the issue is a PR; we add it to a
 * real example, with the URLs GitHub would put there.
 */
function commentOnPr(): Example {
  const e = example('issue_comment', (x) => x.action === 'created');
  const repo = e.repository!;
  const n = e.issue!.number;
  e.issue!.pull_request = {
    url: `${repo.url}/pulls/${n}`,
    html_url: `${repo.html_url}/pull/${n}`,
    diff_url: `${repo.html_url}/pull/${n}.diff`,
    patch_url: `${repo.html_url}/pull/${n}.patch`,
    merged_at: null,
  };
  assertWebhookPayload('issue_comment', e);
  return e;
}

/**
 * Throw if `payload` breaks GitHub's webhooks description (@octokit/openapi-webhooks) for `event` and
 * its action in a way that none of the stored examples of that event and action does: payloads made
 * or changed by hand must stay real. Some stored examples predate fields the description now
 * requires (e.g. repository.has_discussions); those gaps are the examples', not the test's.
 */
export function assertWebhookPayload(event: string, payload: unknown): void {
  const problems = checkWebhookPayload(event, payload);
  if (!problems?.length) return;
  const action = (payload as { action?: unknown }).action;
  const known = new Set(
    (allDefinitions().find((d) => d.name === event)?.examples ?? [])
      .filter((x) => x.action === action)
      .flatMap((x) => checkWebhookPayload(event, x) ?? []),
  );
  const own = problems.filter((p) => !known.has(p));
  if (own.length)
    throw new Error(
      `hand-made ${event} payload breaks GitHub's webhooks description:\n${own.map((p) => `  ${p}`).join('\n')}`,
    );
}

/** Named real payloads the tests and the bench send. */
export const payloads = {
  prOpened: () => prAction('opened'),
  prLabeled: () => prAction('labeled'),
  prClosed: () => prAction('closed'),
  prSynchronize: () => prAction('synchronize'),
  commentOnPr,
  commentOnIssue: () => example('issue_comment', (x) => x.action === 'created' && !x.issue?.pull_request),
  ping: () => example('ping', (x) => x.repository !== undefined),
  push: () => example('push'),
  repositoryRenamed: () => example('repository', (x) => x.action === 'renamed'),
  /** A press of a check run's button (the example's run is another app's: tests put in the bot's). */
  checkRunRequestedAction: () => example('check_run', (x) => x.action === 'requested_action'),
  checkRunRerequested: () => example('check_run', (x) => x.action === 'rerequested'),
};

export type PayloadName = keyof typeof payloads;

/** X-Hub-Signature-256, computed independently of @octokit/webhooks. */
export function sign(secret: string, body: string | Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

export interface Delivery {
  event: string;
  delivery: string;
  body: Buffer;
  headers: Record<string, string>;
}

export interface DeliveryOptions {
  secret?: string;
  delivery?: string;
  /** Extra headers; a value of undefined removes a default header. */
  headers?: Record<string, string | undefined>;
  /** A payload GitHub would never send, on purpose (hostile-input tests): not held to the description. */
  hostile?: boolean;
}

/**
 * A delivery as GitHub sends it: compact JSON body, X-GitHub-* headers and the signature. A payload
 * given as an object must pass assertWebhookPayload unless `hostile`; bytes and strings are sent as
 * they are.
 */
export function makeDelivery(event: string, payload: unknown, opts: DeliveryOptions = {}): Delivery {
  if (!opts.hostile && payload !== null && typeof payload === 'object' && !Buffer.isBuffer(payload))
    assertWebhookPayload(event, payload);
  const body = Buffer.isBuffer(payload)
    ? payload
    : Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload));
  const delivery = opts.delivery ?? randomUUID();
  const headers: Record<string, string | undefined> = {
    'content-type': 'application/json',
    'user-agent': 'GitHub-Hookshot/test',
    'x-github-event': event,
    'x-github-delivery': delivery,
    'x-github-hook-id': '109948940',
    'x-github-hook-installation-target-type': 'integration',
    'x-github-hook-installation-target-id': '12345',
    ...(opts.secret !== undefined ? { 'x-hub-signature-256': sign(opts.secret, body) } : {}),
    ...opts.headers,
  };
  const clean: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined) clean[k] = v;
  return { event, delivery, body, headers: clean };
}

export interface Reply {
  status: number;
  text: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  json: any;
}

export interface PostOptions {
  /** Default: false (a new connection per request, so that nothing keeps the test process alive). */
  agent?: http.Agent | false;
  /** Send the body with Transfer-Encoding: chunked instead of Content-Length. */
  chunked?: boolean;
}

/** POST raw bytes with exactly these headers; resolves with the reply (write errors after it are ignored). */
export function post(
  url: string,
  body: Buffer | string,
  headers: Record<string, string>,
  opts: PostOptions = {},
): Promise<Reply> {
  const data = Buffer.isBuffer(body) ? body : Buffer.from(body);
  const all = opts.chunked ? headers : { ...headers, 'content-length': String(data.length) };
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = http.request(url, { method: 'POST', headers: all, agent: opts.agent ?? false }, (res) => {
      answered = true;
      res.on('error', reject);
      collectReply(res, resolve);
    });
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    if (opts.chunked) {
      // Several writes, so that the server sees a stream without a length.
      const step = 1 << 20;
      for (let i = 0; i < data.length; i += step) req.write(data.subarray(i, i + step));
      req.end();
    } else {
      req.end(data);
    }
  });
}

/** Read a response to its end: status, text, and the JSON it holds (undefined if none). */
function collectReply(res: http.IncomingMessage, resolve: (r: Reply) => void): void {
  const chunks: Buffer[] = [];
  res.on('data', (c: Buffer) => chunks.push(c));
  res.on('end', () => {
    const text = Buffer.concat(chunks).toString('utf8');
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    resolve({ status: res.statusCode ?? 0, text, json });
  });
}

/** Send a delivery to a webhook URL. */
export function send(url: string, d: Delivery, opts: PostOptions = {}): Promise<Reply> {
  return post(url, d.body, d.headers, opts);
}

/** GET a URL; resolves with the status and body text. */
export function get(url: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        collectReply(res, resolve);
      })
      .on('error', reject);
  });
}
