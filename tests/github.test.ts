import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import pino from 'pino';
import { siteSchema, type Config } from '../src/config/config.js';
import {
  cloneUrlFor,
  createGitHub,
  GitHubConfigError,
  GitHubError,
  type GitHubApi,
  type GitHubOptions,
  type RepoRef,
} from '../src/adapters/github/index.js';
import { FakeGitHub } from './support/fakeGithub.js';

const run = promisify(execFile);

/** Back-off shrunk to milliseconds so retries are quick; the counts stay those of production. */
const FAST: GitHubOptions = { retryBaseMs: 1, requestTimeoutMs: 10_000 };
const REPO: RepoRef = { owner: 'octo', repo: 'stack', installationId: null };

let tmp: string;
let fake: FakeGitHub;
let apiUrl: string;
let logLines: string[];

beforeEach(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'hpcbot-gh-'));
  await fs.mkdir(path.join(tmp, 'git'));
  fake = new FakeGitHub({ gitRoot: path.join(tmp, 'git') });
  apiUrl = await fake.start();
  logLines = [];
});

afterEach(async () => {
  await fake.stop();
  await fs.rm(tmp, { recursive: true, force: true });
});

function makeConfig(github: Record<string, unknown> = {}): Config {
  const parsed = siteSchema.parse({
    instance: 'test',
    jobdirs: path.join(tmp, 'jobdirs'),
    github: { api_url: apiUrl, ...github },
  });
  return { ...parsed, source: path.join(tmp, 'site.yaml') };
}

function makeLogger() {
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logLines.push(chunk.toString());
      cb();
    },
  });
  return pino({ level: 'debug' }, sink);
}

function patGitHub(extra: Record<string, unknown> = {}, options: GitHubOptions = FAST): GitHubApi {
  return createGitHub(
    makeConfig({ token_env: 'HPCBOT_TEST_TOKEN', ...extra }),
    makeLogger(),
    { HPCBOT_TEST_TOKEN: 'pat-secret-123456' },
    options,
  );
}

async function appKeyFile(): Promise<{ file: string; publicKey: string; privateKey: string }> {
  // GitHub hands out PKCS#1 PEM keys ("BEGIN RSA PRIVATE KEY"); use the same format.
  const { privateKey, publicKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  const file = path.join(tmp, 'app-key.pem');
  await fs.writeFile(file, privateKey, { mode: 0o600 });
  return { file, publicKey, privateKey };
}

describe('comments', () => {
  test('create, update and get send exactly the expected requests', async () => {
    const gh = patGitHub();
    const created = await gh.createComment(REPO, 5, 'hello <!-- hpcbot:test:k1 -->');
    expect(created).toEqual({
      id: expect.any(Number),
      body: 'hello <!-- hpcbot:test:k1 -->',
      user: 'pat-user',
    });

    await gh.updateComment(REPO, created.id, 'edited');
    const read = await gh.getComment(REPO, created.id);
    expect(read).toEqual({ id: created.id, body: 'edited', user: 'pat-user' });

    expect(fake.calls.map((c) => [c.method, c.path, c.body, c.auth])).toEqual([
      [
        'POST',
        '/repos/octo/stack/issues/5/comments',
        { body: 'hello <!-- hpcbot:test:k1 -->' },
        'token pat-secret-123456',
      ],
      [
        'PATCH',
        `/repos/octo/stack/issues/comments/${created.id}`,
        { body: 'edited' },
        'token pat-secret-123456',
      ],
      ['GET', `/repos/octo/stack/issues/comments/${created.id}`, undefined, 'token pat-secret-123456'],
    ]);
    expect(fake.commentsOf('octo', 'stack', 5).map((c) => c.body)).toEqual(['edited']);
  });

  test('findComment follows the Link header across 3 pages', async () => {
    for (let i = 0; i < 250; i++) fake.addComment('octo', 'stack', 9, `comment ${i}`);
    const target = fake.addComment(
      'octo',
      'stack',
      9,
      'status <!-- hpcbot:test:build-1 -->',
      'hpcbot-test[bot]',
    );
    const gh = patGitHub();

    const found = await gh.findComment(REPO, 9, '<!-- hpcbot:test:build-1 -->');
    expect(found).toEqual({ id: target.id, body: target.body, user: 'hpcbot-test[bot]' });
    const pages = fake.callsTo('GET', '/repos/octo/stack/issues/9/comments');
    expect(pages.map((c) => [c.query.per_page, c.query.page])).toEqual([
      ['100', undefined],
      ['100', '2'],
      ['100', '3'],
    ]);

    expect(await gh.findComment(REPO, 9, '<!-- hpcbot:test:absent -->')).toBeUndefined();
    expect(fake.callsTo('GET', '/repos/octo/stack/issues/9/comments')).toHaveLength(6);
  });

  test('findComment stops at the first page with a hit and can insist on an author', async () => {
    const marker = '<!-- hpcbot:test:k -->';
    fake.addComment('octo', 'stack', 3, `copied ${marker}`, 'mallory');
    const mine = fake.addComment('octo', 'stack', 3, `real ${marker}`, 'hpcbot-test[bot]');
    const gh = patGitHub();
    expect((await gh.findComment(REPO, 3, marker))?.user).toBe('mallory');
    expect(await gh.findComment(REPO, 3, marker, { author: 'hpcbot-test[bot]' })).toEqual({
      id: mine.id,
      body: mine.body,
      user: 'hpcbot-test[bot]',
    });
    expect(fake.callsTo('GET', '/repos/octo/stack/issues/3/comments')).toHaveLength(2);
  });

  test('getComment of a missing comment throws a non-transient GitHubError 404', async () => {
    const gh = patGitHub();
    const err = await gh.getComment(REPO, 424242).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GitHubError);
    expect(err).toMatchObject({ status: 404, transient: false });
    expect((err as Error).message).toMatch(/octo\/stack/);
  });

  test('rejects hostile repository names before any request', async () => {
    const gh = patGitHub();
    await expect(gh.createComment({ owner: '..', repo: 'x', installationId: null }, 1, 'b')).rejects.toThrow(
      GitHubError,
    );
    await expect(gh.getPullRequest({ owner: 'o', repo: 'a/b', installationId: null }, 1)).rejects.toThrow(
      /invalid repository name/,
    );
    expect(fake.calls).toHaveLength(0);
  });
});

describe('pull requests and teams', () => {
  test('getPullRequest maps the REST answer', async () => {
    fake.addPullRequest('octo', 'stack', {
      number: 12,
      title: 'Add GROMACS',
      author: 'alice',
      headSha: 'a'.repeat(40),
      headRef: 'gromacs',
      headRepoFullName: 'alice/stack',
      baseSha: 'b'.repeat(40),
      baseRef: 'main',
    });
    fake.addPullRequest('octo', 'stack', {
      number: 13,
      state: 'closed',
      merged: true,
      headSha: 'c'.repeat(40),
      headRepoFullName: null,
      baseSha: 'd'.repeat(40),
    });
    const gh = patGitHub();
    expect(await gh.getPullRequest(REPO, 12)).toEqual({
      number: 12,
      state: 'open',
      merged: false,
      title: 'Add GROMACS',
      headSha: 'a'.repeat(40),
      headRef: 'gromacs',
      headRepoFullName: 'alice/stack',
      baseSha: 'b'.repeat(40),
      baseRef: 'main',
      author: 'alice',
    });
    expect(await gh.getPullRequest(REPO, 13)).toMatchObject({
      state: 'closed',
      merged: true,
      headRepoFullName: null,
    });
    expect(fake.callsTo('GET', /^\/repos\/octo\/stack\/pulls\/1[23]$/)).toHaveLength(2);
  });

  test('isTeamMember: active → true, pending or 404 → false', async () => {
    fake.addTeamMember('eessi', 'maintainers', 'alice');
    fake.addTeamMember('eessi', 'maintainers', 'bob', 'pending');
    const gh = patGitHub();
    expect(await gh.isTeamMember(REPO, 'eessi', 'maintainers', 'alice')).toBe(true);
    expect(await gh.isTeamMember(REPO, 'eessi', 'maintainers', 'bob')).toBe(false);
    expect(await gh.isTeamMember(REPO, 'eessi', 'maintainers', 'mallory')).toBe(false);
    expect(fake.calls.map((c) => `${c.method} ${c.path} ${c.status}`)).toEqual([
      'GET /orgs/eessi/teams/maintainers/memberships/alice 200',
      'GET /orgs/eessi/teams/maintainers/memberships/bob 200',
      'GET /orgs/eessi/teams/maintainers/memberships/mallory 404',
    ]);
  });

  test('isTeamMember propagates errors other than 404', async () => {
    fake.failNext('GET', /memberships/, 401, 1);
    const gh = patGitHub();
    await expect(gh.isTeamMember(REPO, 'eessi', 'maintainers', 'alice')).rejects.toMatchObject({
      name: 'GitHubError',
      status: 401,
      message: expect.stringContaining('$HPCBOT_TEST_TOKEN'),
    });
  });
});

describe('authentication', () => {
  test('App auth: one token per installation, cached across calls, JWT signed with the key', async () => {
    const key = await appKeyFile();
    await fake.stop();
    fake = new FakeGitHub({ appPublicKey: key.publicKey });
    apiUrl = await fake.start();
    fake.addPullRequest('octo', 'stack', { number: 1, headSha: '1'.repeat(40), baseSha: '2'.repeat(40) });
    fake.addPullRequest('other', 'repo', { number: 2, headSha: '3'.repeat(40), baseSha: '4'.repeat(40) });
    const gh = createGitHub(makeConfig({ app_id: 4242, private_key_file: key.file }), makeLogger(), {}, FAST);
    const inst11: RepoRef = { owner: 'octo', repo: 'stack', installationId: 11 };
    const inst22: RepoRef = { owner: 'other', repo: 'repo', installationId: 22 };

    await gh.getPullRequest(inst11, 1);
    await gh.getPullRequest(inst11, 1);
    await gh.findComment(inst11, 1, 'x');
    expect(fake.tokens.map((t) => [t.appId, t.installationId])).toEqual([[4242, 11]]);

    await gh.getPullRequest(inst22, 2);
    expect(fake.tokens.map((t) => t.installationId)).toEqual([11, 22]);

    const tokenRequests = fake.callsTo('POST', /^\/app\/installations\/\d+\/access_tokens$/);
    expect(tokenRequests.map((c) => c.path)).toEqual([
      '/app/installations/11/access_tokens',
      '/app/installations/22/access_tokens',
    ]);
    expect(tokenRequests.every((c) => /^bearer [\w-]+\.[\w-]+\.[\w-]+$/i.test(c.auth ?? ''))).toBe(true);
    const apiCalls = fake.calls.filter((c) => !c.path.startsWith('/app/'));
    expect(apiCalls.map((c) => [c.path, fake.installationOf(c.auth)])).toEqual([
      ['/repos/octo/stack/pulls/1', 11],
      ['/repos/octo/stack/pulls/1', 11],
      ['/repos/octo/stack/issues/1/comments', 11],
      ['/repos/other/repo/pulls/2', 22],
    ]);

    // git gets the cached installation token, without a new token request.
    const creds = await gh.gitCredentials(inst22);
    expect(creds).toEqual({ username: 'x-access-token', password: fake.tokens[1]!.token });
    expect(fake.tokens).toHaveLength(2);

    // Comments are written as the App's bot user.
    expect((await gh.createComment(inst11, 1, 'hi')).user).toBe('hpcbot-test[bot]');

    const logs = logLines.join('');
    for (const t of fake.tokens) expect(logs).not.toContain(t.token);
    expect(logs).not.toContain(key.privateKey.split('\n')[1]);
  });

  test('App auth without an installation id looks it up once per repository', async () => {
    const key = await appKeyFile();
    fake.setRepoInstallation('octo', 'stack', 77);
    fake.addPullRequest('octo', 'stack', { number: 1, headSha: '1'.repeat(40), baseSha: '2'.repeat(40) });
    const gh = createGitHub(makeConfig({ app_id: 4242, private_key_file: key.file }), makeLogger(), {}, FAST);
    await gh.getPullRequest(REPO, 1);
    await gh.getPullRequest(REPO, 1);
    expect(fake.callsTo('GET', '/repos/octo/stack/installation')).toHaveLength(1);
    expect(fake.tokens.map((t) => t.installationId)).toEqual([77]);

    const missing = await gh
      .getPullRequest({ owner: 'nobody', repo: 'here', installationId: null }, 1)
      .catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(GitHubError);
    expect((missing as GitHubError).message).toMatch(/installed/);
  });

  test('a personal token comes from the named env var', async () => {
    fake.addPullRequest('octo', 'stack', { number: 1, headSha: '1'.repeat(40), baseSha: '2'.repeat(40) });
    const gh = patGitHub();
    await gh.getPullRequest(REPO, 1);
    expect(fake.calls[0]?.auth).toBe('token pat-secret-123456');
    expect(await gh.gitCredentials(REPO)).toEqual({
      username: 'x-access-token',
      password: 'pat-secret-123456',
    });
    expect(logLines.join('')).not.toContain('pat-secret-123456');
  });

  test('a missing token env var is a clear error naming the variable', () => {
    const cfg = makeConfig({ token_env: 'HPCBOT_MISSING_TOKEN' });
    expect(() => createGitHub(cfg, makeLogger(), {})).toThrow(GitHubConfigError);
    expect(() => createGitHub(cfg, makeLogger(), {})).toThrow(/HPCBOT_MISSING_TOKEN/);
  });

  test('an unreadable or malformed key file is named, its content never quoted', async () => {
    const missing = path.join(tmp, 'nope.pem');
    expect(() =>
      createGitHub(makeConfig({ app_id: 1, private_key_file: missing }), makeLogger(), {}),
    ).toThrow(missing);
    const bad = path.join(tmp, 'bad.pem');
    await fs.writeFile(
      bad,
      '-----BEGIN RSA PRIVATE KEY-----\nSUPERSECRETGARBAGE\n-----END RSA PRIVATE KEY-----\n',
    );
    let message = '';
    try {
      createGitHub(makeConfig({ app_id: 1, private_key_file: bad }), makeLogger(), {});
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain(bad);
    expect(message).not.toContain('SUPERSECRETGARBAGE');
  });

  test('without credentials reads are anonymous, writes fail with a hint, git gets no credentials', async () => {
    fake.addPullRequest('octo', 'stack', { number: 1, headSha: '1'.repeat(40), baseSha: '2'.repeat(40) });
    const gh = createGitHub(makeConfig(), makeLogger(), {}, FAST);
    await gh.getPullRequest(REPO, 1);
    expect(fake.calls[0]?.auth).toBeUndefined();
    expect(await gh.gitCredentials(REPO)).toBeUndefined();
    await expect(gh.createComment(REPO, 1, 'x')).rejects.toMatchObject({
      status: 401,
      transient: false,
      message: expect.stringContaining('github.token_env'),
    });
  });
});

describe('retries and errors', () => {
  beforeEach(() => {
    fake.addPullRequest('octo', 'stack', { number: 1, headSha: '1'.repeat(40), baseSha: '2'.repeat(40) });
  });
  const prPath = '/repos/octo/stack/pulls/1';

  test('5xx is retried until it succeeds', async () => {
    fake.failNext('GET', /\/pulls\/1$/, 500, 2);
    const pr = await patGitHub().getPullRequest(REPO, 1);
    expect(pr.number).toBe(1);
    expect(fake.callsTo('GET', prPath).map((c) => c.status)).toEqual([500, 500, 200]);
  });

  test('429 with retry-after is retried', async () => {
    fake.failNext('GET', /\/pulls\/1$/, 429, 1);
    await patGitHub().getPullRequest(REPO, 1);
    expect(fake.callsTo('GET', prPath).map((c) => c.status)).toEqual([429, 200]);
  });

  test('primary rate limit (403, x-ratelimit-remaining: 0) is retried after the reset', async () => {
    fake.failNext('GET', /\/pulls\/1$/, 'rate-limit', 1);
    await patGitHub().getPullRequest(REPO, 1);
    expect(fake.callsTo('GET', prPath).map((c) => c.status)).toEqual([403, 200]);
  });

  test('secondary rate limit (403 with the documented message) is retried', async () => {
    fake.failNext('GET', /\/pulls\/1$/, 'secondary-rate-limit', 1);
    await patGitHub().getPullRequest(REPO, 1);
    expect(fake.callsTo('GET', prPath).map((c) => c.status)).toEqual([403, 200]);
  });

  test('a rate limit that persists fails after a bounded number of retries', async () => {
    fake.failNext('GET', /\/pulls\/1$/, 'rate-limit', 100);
    const err = await patGitHub({}, { ...FAST, rateLimitRetries: 2 })
      .getPullRequest(REPO, 1)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GitHubError);
    expect(err).toMatchObject({ status: 403, transient: true, message: expect.stringMatching(/rate limit/) });
    expect(fake.callsTo('GET', prPath)).toHaveLength(3);
  });

  test('a rate limit that lifts too late is not waited for', async () => {
    fake.failNext('GET', /\/pulls\/1$/, 'rate-limit', 1, 3600);
    const err = await patGitHub()
      .getPullRequest(REPO, 1)
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'GitHubError', status: 403, transient: true });
    expect(fake.callsTo('GET', prPath)).toHaveLength(1);
  });

  test('a call that keeps failing throws GitHubError after the retries', async () => {
    fake.failNext('GET', /\/pulls\/1$/, 502, 100);
    const err = await patGitHub()
      .getPullRequest(REPO, 1)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GitHubError);
    expect(err).toMatchObject({ status: 502, transient: true, requestId: undefined });
    expect((err as Error).message).toMatch(/server error 502/);
    expect((err as Error).message).not.toContain('pat-secret');
    expect(fake.callsTo('GET', prPath)).toHaveLength(4); // 1 + 3 retries
  });

  test('a request that hangs times out into a transient GitHubError', async () => {
    fake.failNext('GET', /\/pulls\/1$/, 'hang', 100);
    const err = await patGitHub({}, { ...FAST, requestTimeoutMs: 200, retries: 1 })
      .getPullRequest(REPO, 1)
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'GitHubError', status: undefined, transient: true });
    expect(fake.callsTo('GET', prPath)).toHaveLength(2);
  });

  test('an unreachable API is a transient GitHubError', async () => {
    await fake.stop();
    const err = await patGitHub({}, { ...FAST, retries: 1 })
      .getPullRequest(REPO, 1)
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'GitHubError', status: undefined, transient: true });
    expect((err as Error).message).toContain(apiUrl);
    fake = new FakeGitHub(); // afterEach stops it
    await fake.start();
  });
});

describe('dry run', () => {
  test('writes comments to files, never to the API, with unique ids', async () => {
    fake.addPullRequest('octo', 'stack', { number: 5, headSha: '1'.repeat(40), baseSha: '2'.repeat(40) });
    const gh = patGitHub({ dry_run: true, bot_login: 'hpcbot-test[bot]' });
    const repoDir = path.join(tmp, 'jobdirs', 'dry-run', 'octo', 'stack');

    const a = await gh.createComment(REPO, 5, 'first <!-- hpcbot:test:a -->');
    const b = await gh.createComment(REPO, 6, 'second');
    expect(a.user).toBe('hpcbot-test[bot]');
    expect(a.id).not.toBe(b.id);
    expect(await fs.readFile(path.join(repoDir, 'issue_5', `comment_${a.id}.md`), 'utf8')).toBe(
      'first <!-- hpcbot:test:a -->',
    );
    expect(await fs.readFile(path.join(repoDir, 'issue_6', `comment_${b.id}.md`), 'utf8')).toBe('second');

    await gh.updateComment(REPO, a.id, 'first, edited <!-- hpcbot:test:a -->');
    expect(await fs.readFile(path.join(repoDir, 'issue_5', `comment_${a.id}.md`), 'utf8')).toBe(
      'first, edited <!-- hpcbot:test:a -->',
    );
    expect((await gh.getComment(REPO, a.id)).body).toBe('first, edited <!-- hpcbot:test:a -->');
    expect((await gh.findComment(REPO, 5, '<!-- hpcbot:test:a -->'))?.id).toBe(a.id);
    expect(await gh.findComment(REPO, 6, '<!-- hpcbot:test:a -->')).toBeUndefined();
    await expect(gh.getComment(REPO, 99999)).rejects.toMatchObject({ status: 404 });

    // Reads still go to the API; nothing else did.
    await gh.getPullRequest(REPO, 5);
    expect(fake.calls.map((c) => `${c.method} ${c.path}`)).toEqual(['GET /repos/octo/stack/pulls/5']);
    expect(logLines.join('')).toContain(path.join(repoDir, 'issue_5', `comment_${a.id}.md`));
  });

  test('concurrent writers (two processes) never share an id', async () => {
    const one = patGitHub({ dry_run: true });
    const two = patGitHub({ dry_run: true });
    const made = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 ? one : two).createComment(REPO, 1 + (i % 3), `c${i}`)),
    );
    const ids = made.map((c) => c.id);
    expect(new Set(ids).size).toBe(20);
    for (const c of made) expect((await one.getComment(REPO, c.id)).body).toBe(c.body);
    expect(fake.calls).toHaveLength(0);
  });
});

describe('cloneUrl', () => {
  test('github.com, GHES and anything else', () => {
    expect(cloneUrlFor('https://api.github.com', 'o', 'r')).toBe('https://github.com/o/r.git');
    expect(cloneUrlFor('https://api.github.com/', 'o', 'r')).toBe('https://github.com/o/r.git');
    expect(cloneUrlFor('https://ghe.example.org/api/v3', 'o', 'r')).toBe('https://ghe.example.org/o/r.git');
    expect(cloneUrlFor('https://ghe.example.org/api/v3/', 'o', 'r')).toBe('https://ghe.example.org/o/r.git');
    expect(cloneUrlFor('https://api.acme.ghe.com', 'o', 'r')).toBe('https://acme.ghe.com/o/r.git');
    expect(cloneUrlFor('http://127.0.0.1:4567', 'o', 'r.x')).toBe('http://127.0.0.1:4567/o/r.x.git');
    expect(patGitHub().cloneUrl('octo', 'stack')).toBe(`${apiUrl}/octo/stack.git`);
    expect(() => cloneUrlFor('https://api.github.com', 'o', '../r')).toThrow(GitHubError);
  });
});

describe('git over the fake', () => {
  const gitEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
    PATH: process.env.PATH,
    HOME: tmp,
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_TERMINAL_PROMPT: '0',
    GIT_AUTHOR_NAME: 't',
    GIT_AUTHOR_EMAIL: 't@example.org',
    GIT_COMMITTER_NAME: 't',
    GIT_COMMITTER_EMAIL: 't@example.org',
    ...extra,
  });
  const git = (args: string[], cwd: string, extra?: Record<string, string>) =>
    run('git', args, { cwd, env: gitEnv(extra) });

  /** A bare repo `octo/stack.git` with main and a PR ref `refs/pull/7/head`; returns the PR head sha. */
  async function makeRepo(): Promise<string> {
    const work = path.join(tmp, 'work');
    await fs.mkdir(work);
    await git(['init', '-q', '-b', 'main'], work);
    await fs.writeFile(path.join(work, 'README'), 'base\n');
    await git(['add', 'README'], work);
    await git(['commit', '-q', '-m', 'base'], work);
    await git(['checkout', '-q', '-b', 'feature'], work);
    await fs.writeFile(path.join(work, 'easystack.yml'), 'easyconfigs: [GROMACS]\n');
    await git(['add', 'easystack.yml'], work);
    await git(['commit', '-q', '-m', 'pr'], work);
    const bare = path.join(tmp, 'git', 'octo', 'stack.git');
    await fs.mkdir(path.dirname(bare), { recursive: true });
    await git(['clone', '-q', '--bare', work, bare], tmp);
    await git(['update-ref', 'refs/pull/7/head', 'refs/heads/feature'], bare);
    return (await git(['rev-parse', 'feature'], work)).stdout.trim();
  }

  test('clone and fetch a PR head from cloneUrl() through git http-backend', async () => {
    const head = await makeRepo();
    const url = patGitHub().cloneUrl('octo', 'stack');
    const dest = path.join(tmp, 'clone');
    await git(['clone', '-q', url, dest], tmp);
    expect(await fs.readFile(path.join(dest, 'README'), 'utf8')).toBe('base\n');
    await git(['fetch', '-q', 'origin', 'refs/pull/7/head'], dest);
    expect((await git(['rev-parse', 'FETCH_HEAD'], dest)).stdout.trim()).toBe(head);
    expect(fake.gitCalls.some((c) => c.method === 'POST' && c.path.endsWith('/git-upload-pack'))).toBe(true);
  });

  test('with requireGitAuth, the App installation token from gitCredentials() opens the repo', async () => {
    const key = await appKeyFile();
    await fake.stop();
    fake = new FakeGitHub({ gitRoot: path.join(tmp, 'git'), requireGitAuth: true });
    apiUrl = await fake.start();
    const head = await makeRepo();
    const gh = createGitHub(makeConfig({ app_id: 9, private_key_file: key.file }), makeLogger(), {}, FAST);
    const repo: RepoRef = { owner: 'octo', repo: 'stack', installationId: 5 };
    const url = gh.cloneUrl('octo', 'stack');

    const dest = path.join(tmp, 'clone');
    await git(['init', '-q', dest], tmp);
    await expect(git(['fetch', '-q', url, 'refs/pull/7/head'], dest)).rejects.toThrow();

    const creds = await gh.gitCredentials(repo);
    if (!creds) throw new Error('expected credentials');
    // The token travels in the environment (never on the command line, where `ps` shows it).
    const header = `Authorization: Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
    await git(['fetch', '-q', url, 'refs/pull/7/head'], dest, {
      GIT_CONFIG_COUNT: '1',
      GIT_CONFIG_KEY_0: 'http.extraHeader',
      GIT_CONFIG_VALUE_0: header,
    });
    expect((await git(['rev-parse', 'FETCH_HEAD'], dest)).stdout.trim()).toBe(head);
    expect(fake.gitCalls.filter((c) => c.status === 401).length).toBeGreaterThan(0);
    expect(fake.gitCalls.at(-1)).toMatchObject({ status: 200, auth: expect.stringMatching(/^Basic /) });
  });
});
