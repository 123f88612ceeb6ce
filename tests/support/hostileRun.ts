/**
 * One run of the hostile PR (tests/support/hostilePr.ts) through the in-process bot: first another PR of
 * another repository is built and deployed (so there is a finished job dir and an upload log to attack),
 * then the hostile PR is built and deployed. Returns the attack report; asserts what must hold.
 */
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Config } from '../../src/config/config.js';
import { checkSite } from '../../src/config/siteCheck.js';
import { createGitHub } from '../../src/adapters/github/index.js';
import type { JobData } from '../../src/store/job.js';
import { workTreeOf } from '../../src/store/workTree.js';
import { hostileBot, makeSecrets, secretsYaml } from './hostilePr.js';
import { payloads } from './payloads.js';
import { createPrRepo, PASSING_BOT } from './prRepo.js';
import {
  INSTALLATION,
  nextDelivery,
  openPr,
  OWNER,
  PR,
  REPO,
  REVIEWER,
  startHarness,
  stateOf,
  stageOf,
  storeRaw,
  tickUntil,
  type Harness,
} from './botHarness.js';

const OTHER_REPO = 'other-layer';
const OTHER_PR = 8;

async function comment(h: Harness, repo: string, pr: number, body: string) {
  const p = payloads.commentOnPr();
  p.repository!.owner.login = OWNER;
  p.repository!.name = repo;
  p.issue!.number = pr;
  p.installation = { id: INSTALLATION, node_id: `I_fake${INSTALLATION}` };
  (p.comment as { body: string; user: { login: string } }).body = body;
  (p.comment as { body: string; user: { login: string } }).user.login = REVIEWER;
  (p.sender as { login: string }).login = REVIEWER;
  return await storeRaw(h, 'issue_comment', p, nextDelivery());
}

async function buildAndDeploy(h: Harness, repo: string, pr: number): Promise<string> {
  await comment(h, repo, pr, 'bot: build for:arch=x86_64/amd/zen4');
  const jobsOf = () => h.deps.jobdirs.prJobDirs(OWNER, repo, pr);
  await tickUntil(
    h,
    async () => {
      const dirs = await jobsOf();
      return (
        dirs.length === 1 && ['finished', 'failed', 'cancelled', 'lost'].includes((await stageOf(dirs[0]!))!)
      );
    },
    120_000,
  );
  const [dir] = await jobsOf();
  await comment(h, repo, pr, 'bot: deploy');
  await tickUntil(h, async () => (await h.deps.jobdirs.pending()).length === 0, 60_000);
  return dir!;
}

function filesUnder(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name));
}

export async function runHostileBuild(
  backendYaml: string,
  opts: { expectLeaks?: boolean } = {},
): Promise<{ report: string; h: Harness }> {
  const saved = { ...process.env };
  let h: Harness | undefined;
  try {
    const secrets = makeSecrets(mkdtempSync(path.join(os.tmpdir(), 'hpcbot-secrets-')));
    // In the bot's environment before the backend is made (it takes the job's environment from it):
    // a token, a marker, an agent and an askpass program, none of which may reach the job.
    process.env.HPCBOT_TEST_ENV_MARKER = secrets.envMarker;
    process.env.HARNESS_GITHUB_TOKEN = 'ghp_harness';
    process.env.SSH_AUTH_SOCK = '/tmp/hpcbot-test-agent.sock';
    process.env.GIT_ASKPASS = '/bin/echo';
    h = await startHarness(secretsYaml(secrets), backendYaml);
    chmodSync(h.root, 0o755); // the job user must reach jobdirs; mkdtemp made it 700
    // The bot uses these secrets for real: it authenticates as a GitHub App with the App key (the job
    // runs while the bot reads it), names the webhook secret file, and signs with the signing key.
    const withSecrets: Config = {
      ...h.config,
      github: {
        ...h.config.github,
        webhook_secret_env: 'HPCBOT_TEST_UNSET_WEBHOOK_SECRET',
        webhook_secret_file: secrets.webhookSecret,
        app_id: 1,
        private_key_file: secrets.appKey,
      },
    };
    h.config = withSecrets;
    h.deps.config = withSecrets;
    h.deps.github = createGitHub(
      withSecrets,
      h.deps.logger,
      {},
      { retryBaseMs: 1, retries: 1, throttle: false },
    );
    const placement = await checkSite(withSecrets, { PATH: process.env.PATH });
    expect(
      placement.errors.filter((e) =>
        ['github.webhook_secret_file', 'github.private_key_file', 'deploy.signing.key_file'].includes(
          e.keyPath,
        ),
      ),
    ).toEqual([]);

    const other = createPrRepo(h.gitRoot, OWNER, OTHER_REPO, OTHER_PR, PASSING_BOT);
    h.fake.addPullRequest(OWNER, OTHER_REPO, {
      number: OTHER_PR,
      headSha: other.headSha,
      baseSha: other.baseSha,
      baseRef: 'main',
    });
    const otherDir = await buildAndDeploy(h, OTHER_REPO, OTHER_PR);
    expect((await stateOf<JobData>(otherDir)).data.result?.status).toBe('SUCCESS');
    const otherState = readFileSync(path.join(otherDir, 'state.json'), 'utf8');

    openPr(h, hostileBot(secrets, opts.expectLeaks === true));
    const dir = await buildAndDeploy(h, REPO, PR);
    const tree = workTreeOf(dir);
    const report = readFileSync(path.join(tree, 'attack.txt'), 'utf8');
    // The bot did use the App key while the job ran: installation tokens were made with it.
    expect(
      h.fake.calls.filter((c) => /\/app\/installations\/\d+\/access_tokens$/.test(c.path)).length,
    ).toBeGreaterThan(0);
    const state = await stateOf<JobData>(dir);

    // The normal build succeeded and its good artefact was signed and staged.
    expect(state.stage).toBe('finished');
    expect(state.data.result?.status).toBe('SUCCESS');
    const staged = filesUnder(path.join(h.root, 'staging'));
    const names = staged.map((f) => path.basename(f));
    expect(names).toEqual(
      expect.arrayContaining([`good-${process.pid}.tar.gz`, `good-${process.pid}.tar.gz.sig`]),
    );
    // No planted link was followed: nothing of a secret or of the outside file is in staging.
    expect(names.filter((n) => n.startsWith('leak-'))).toEqual([]);
    for (const f of staged) {
      const text = readFileSync(f, 'latin1');
      expect(text).not.toContain('OPENSSH PRIVATE KEY');
      expect(text).not.toContain('whsec-0123456789abcdef');
      expect(text).not.toContain('outside the tree');
    }
    const jobComment = h.fake.commentsOf(OWNER, REPO, PR).find((c) => c.id === state.comments.job!.id)!.body;
    for (const leak of ['leak-sym.tar.gz', 'leak-hard2.tar.gz'])
      expect(jobComment).toContain(`|not uploaded|transfer of \`${leak}\` not done`);

    if (opts.expectLeaks) {
      // The control: the same reads succeed when the job is the bot, so each check above can fail.
      for (const name of ['read-webhook-secret', 'read-app-key', 'read-signing-key', 'read-poller-environ'])
        expect(report).toMatch(new RegExp(`^${name}: LEAKED`, 'm'));
      return { report, h };
    }

    const lines = report.trim().split('\n');
    expect(lines.filter((l) => !l.endsWith(': denied'))).toEqual([]);
    for (const name of [
      'read-webhook-secret',
      'read-app-key',
      'read-signing-key',
      'read-poller-environ',
      'find-marker-in-any-environ',
      'forge-event-dir',
      'forge-queue-entry',
      'edit-own-state',
      'replace-own-state',
      'edit-own-job-json',
      'edit-upload-log',
      'read-dry-run-store',
      'hardlink-secret',
    ])
      expect(lines).toContain(`${name}: denied`);
    // The walk tried every directory and file of the other PR's job dir, its work tree included.
    expect(lines.some((l) => l.startsWith(`plant-in ${otherDir}:`))).toBe(true);
    expect(lines.some((l) => l.startsWith(`write ${path.join(otherDir, 'state.json')}:`))).toBe(true);
    expect(readFileSync(path.join(otherDir, 'state.json'), 'utf8')).toBe(otherState);

    // Nothing of the bot's environment reached the job.
    const env = readFileSync(path.join(tree, 'job-env.txt'), 'utf8');
    expect(env).not.toContain(secrets.envMarker);
    expect(env).not.toMatch(/^(SSH_AUTH_SOCK|GIT_ASKPASS|HARNESS_GITHUB_TOKEN|HPCBOT_TEST_ENV_MARKER)=/m);
    expect(env).not.toContain('ghp_harness');
    expect(env).not.toMatch(new RegExp(`^HOME=${saved.HOME ?? '/root'}$`, 'm'));
    expect(env).toMatch(/^USER=hpcbot-job$/m);
    return { report, h };
  } finally {
    process.env = saved;
    await h?.stop();
  }
}
