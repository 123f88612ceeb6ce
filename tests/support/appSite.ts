/**
 * A bot set up as a GitHub App against the fake GitHub, for the pull-ingest tests: a fresh RSA key
 * (the fake only accepts JWTs signed by it), a site.yaml with app_id/private_key_file and `ingest:`
 * settings, PR 1 of Codertocat/Hello-World (the examples' repository) as a real git repo, and real
 * issue_comment payloads from @octokit/webhooks-examples.
 */
import { generateKeyPairSync } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { FakeGitHub } from './fakeGithub.js';
import { payloads } from './payloads.js';
import { createPrRepo, PASSING_BOT } from './prRepo.js';
import { tempDir } from './spawn.js';

export const APP_ID = 4711;
export const OWNER = 'Codertocat';
export const REPO = 'Hello-World';
export const PR = 1;
export const INSTALLATION = 99;
export const REVIEWER = 'alice';

export interface AppSite {
  tmp: string;
  fake: FakeGitHub;
  siteYaml: string;
  jobdirs: string;
  stop(): Promise<void>;
}

/** `ingestYaml`/`extraYaml` are appended (e.g. `ingest:\n  mode: pull\n`). */
export async function startAppSite(ingestYaml: string, extraYaml = ''): Promise<AppSite> {
  const tmp = await tempDir('hpcbot-app-');
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyFile = path.join(tmp, 'app.pem');
  await fs.writeFile(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  const gitRoot = path.join(tmp, 'git');
  const fake = new FakeGitHub({ gitRoot, appPublicKey: publicKey });
  const url = await fake.start();
  const repo = createPrRepo(gitRoot, OWNER, REPO, PR, PASSING_BOT);
  fake.addPullRequest(OWNER, REPO, { number: PR, headSha: repo.headSha, baseSha: repo.baseSha });
  fake.setRepoInstallation(OWNER, REPO, INSTALLATION);
  await fs.mkdir(path.join(tmp, 'repos_cfg'));
  await fs.writeFile(
    path.join(tmp, 'repos_cfg', 'repos.cfg'),
    '[eessi-test]\nrepo_name = software.eessi.io\nrepo_version = 2023.06\ncontainer = docker://x\n',
  );
  const siteYaml = path.join(tmp, 'site.yaml');
  await fs.writeFile(
    siteYaml,
    [
      'instance: test',
      'jobdirs: jobdirs',
      'github:',
      `  api_url: ${url}`,
      `  app_id: ${APP_ID}`,
      `  private_key_file: ${keyFile}`,
      '  bot_login: hpcbot-test[bot]',
      'poller:',
      "  schedule: '*/1 * * * * *'",
      'permissions:',
      `  command: [${REVIEWER}]`,
      `  build: [${REVIEWER}]`,
      'backend:',
      '  kind: local',
      'build:',
      '  repos_cfg_dir: repos_cfg',
      '  node_types:',
      '    zen4:',
      '      cpu_subdir: x86_64/amd/zen4',
      '      repo_targets: [eessi-test]',
      ingestYaml.trimEnd(),
      extraYaml.trimEnd(),
      '',
    ].join('\n'),
  );
  return {
    tmp,
    fake,
    siteYaml,
    jobdirs: path.join(tmp, 'jobdirs'),
    async stop() {
      await fake.stop();
      await fs.rm(tmp, { recursive: true, force: true });
    },
  };
}

/** A real issue_comment.created payload: `body` by `login` on PR 1, from our App's installation. */
export function commentPayload(body: string, login = REVIEWER): Record<string, unknown> {
  const p = payloads.commentOnPr() as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  p.comment.body = body;
  p.comment.user.login = login;
  p.sender.login = login;
  p.issue.number = PR;
  p.installation = {
    node_id: 'MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uOTk=',
    ...p.installation,
    id: INSTALLATION,
  };
  return p;
}
