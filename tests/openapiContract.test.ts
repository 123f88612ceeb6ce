/**
 * The fake GitHub is held to GitHub's OpenAPI description: requests that break it are refused and
 * recorded, answers that break it are recorded, and stop() fails with both. Hand-made webhook
 * payloads are held to the webhooks description.
 */
import { FakeGitHub } from './support/fakeGithub.js';
import { checkRequest, checkResponse, checkWebhookPayload } from './support/openapiContract.js';
import { assertWebhookPayload, makeDelivery, payloads } from './support/payloads.js';

const SHA = 'a'.repeat(40);

async function call(gh: FakeGitHub, method: string, path: string, body?: unknown) {
  const res = await fetch(`${gh.url}${path}`, {
    method,
    headers: { authorization: 'token pat-1', 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as { message?: string } };
}

describe('requests to the fake GitHub', () => {
  let gh: FakeGitHub;
  beforeEach(async () => {
    gh = new FakeGitHub();
    await gh.start();
  });
  afterEach(async () => {
    gh.contractViolations.splice(0);
    await gh.stop();
  });

  it('answers a request that GitHub describes, with an answer that GitHub describes', async () => {
    gh.addPullRequest('o', 'r', { number: 7, headSha: SHA, baseSha: 'b'.repeat(40) });
    const reply = await call(gh, 'GET', '/repos/o/r/pulls/7');
    expect(reply.status).toBe(200);
    const posted = await call(gh, 'POST', '/repos/o/r/issues/7/comments', { body: 'hello' });
    expect(posted.status).toBe(201);
    expect(gh.contractViolations).toEqual([]);
  });

  it('refuses a body with an unknown key or a value outside the enum with 422, and records why', async () => {
    const reply = await call(gh, 'POST', '/repos/o/r/check-runs', {
      name: 'hpcbot/x',
      head_sha: SHA,
      status: 'finished',
      colour: 'green',
    });
    expect(reply.status).toBe(422);
    expect(reply.json.message).toContain('unknown key "colour"');
    expect(gh.contractViolations).toEqual([
      expect.objectContaining({
        kind: 'request',
        route: 'POST /repos/{owner}/{repo}/check-runs',
        problems: expect.arrayContaining([
          'api.github.com: body: unknown key "colour"',
          expect.stringMatching(/^api\.github\.com: body\/status must be equal to one of the allowed values/),
        ]),
      }),
    ]);
    // Nothing behind the contract ran: no check run was stored.
    expect(gh.checkRunsOf('o', 'r')).toEqual([]);
  });

  it('refuses a missing required body, a non-integer path parameter and an undeclared query parameter', async () => {
    expect((await call(gh, 'POST', '/repos/o/r/statuses/' + SHA)).status).toBe(422);
    expect((await call(gh, 'GET', '/repos/o/r/issues/seven/comments')).status).toBe(422);
    expect((await call(gh, 'GET', '/repos/o/r/issues/7/comments?colour=1')).status).toBe(422);
    const problems = gh.contractViolations.map((v) => v.problems[0]);
    expect(problems).toEqual([
      'api.github.com: the request body is required',
      'api.github.com: path parameter /issue_number must be integer',
      'api.github.com: query: unknown key "colour"',
    ]);
  });

  it('answers 404 for a route GitHub does not have, and records it', async () => {
    expect((await call(gh, 'GET', '/repos/o/r/made-up')).status).toBe(404);
    expect(gh.contractViolations).toEqual([
      expect.objectContaining({
        kind: 'request',
        route: undefined,
        problems: [
          'api.github.com: no operation GET /repos/o/r/made-up',
          'ghes-3.17: no operation GET /repos/o/r/made-up',
        ],
      }),
    ]);
  });

  it('records an answer of the fake that does not match the documented response', async () => {
    gh.addCheckRun('o', 'r', { name: 'x', head_sha: SHA, status: 'stuck' as 'queued' });
    expect((await call(gh, 'GET', `/repos/o/r/commits/${SHA}/check-runs`)).status).toBe(200);
    expect(gh.contractViolations).toEqual([
      expect.objectContaining({
        kind: 'response',
        status: 200,
        route: 'GET /repos/{owner}/{repo}/commits/{ref}/check-runs',
        problems: [
          expect.stringMatching(/^response 200 body\/check_runs\/0\/status must be equal to one of/),
        ],
      }),
    ]);
  });

  it('fails stop() with a message naming the route and the schema error', async () => {
    const other = new FakeGitHub();
    await other.start();
    await call(other, 'PATCH', '/repos/o/r/issues/comments/1', { text: 'no body key' });
    await expect(other.stop()).rejects.toThrow(
      /the bot sent PATCH \/repos\/o\/r\/issues\/comments\/1 \(PATCH \/repos\/\{owner\}\/\{repo\}\/issues\/comments\/\{comment_id\}\):\n {4}api\.github\.com: body must have required property 'body'/,
    );
  });
});

describe('the contract checks themselves', () => {
  it('name the operation of a request, preferring literal segments over parameters', () => {
    expect(
      checkRequest({ method: 'GET', path: '/repos/o/r/issues/comments/5', query: {}, body: undefined }),
    ).toEqual({
      route: 'GET /repos/{owner}/{repo}/issues/comments/{comment_id}',
      problems: [],
    });
  });

  it('catch an answer missing required fields', () => {
    expect(checkResponse('GET /repos/{owner}/{repo}/pulls/{pull_number}', 200, { number: 1 })).toEqual(
      expect.arrayContaining(["response 200 body must have required property '_links'"]),
    );
    expect(checkResponse('GET /repos/{owner}/{repo}/pulls/{pull_number}', 204, undefined)).toEqual([
      'status 204 is not a documented answer (200, 304, 404, 406, 500, 503)',
    ]);
  });
});

describe('hand-made webhook payloads', () => {
  it('accept the stored examples and a comment on a PR built from one', () => {
    expect(() => assertWebhookPayload('pull_request', payloads.prLabeled())).not.toThrow();
    expect(checkWebhookPayload('issue_comment', payloads.commentOnPr())).toEqual([]);
  });

  it('refuse a hand-made change that GitHub would never send', () => {
    const p = payloads.commentOnPr();
    (p.issue as Record<string, unknown>).number = 'seven';
    expect(() => makeDelivery('issue_comment', p)).toThrow(
      /issue_comment payload breaks GitHub's webhooks description:\n {2}issue_comment\.created payload\/issue\/number must be integer/,
    );
  });

  it('say nothing about an event the description does not have', () => {
    expect(checkWebhookPayload('zzz_invented_event', {})).toBeUndefined();
  });
});
