/**
 * `hpcbot sample-event`: try the bot without GitHub. It puts a small sample pull request into the
 * dry-run store (`<jobdirs>/dry-run/hpcbot-sample/hello-hpc/`: a git repository with `main` and
 * `refs/pull/1/head`, and `pulls/1.json`), then sends a signed `issue_comment` webhook with a
 * `bot: build` command to the running server, exactly as GitHub would.
 */
import { createHmac, randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { Config } from '../config/config.js';
import { exists, writeFileAtomic } from '../store/fsutil.js';
import { git } from '../adapters/git.js';
import type { PullRequestInfo } from '../adapters/github/index.js';
import { loadWebhookSecret } from '../config/secrets.js';

export const SAMPLE = {
  owner: 'hpcbot-sample',
  repo: 'hello-hpc',
  pr: 1,
  reviewer: 'hpcbot-sample-reviewer',
};

/** The sample PR's job scripts: build a tiny tarball and report SUCCESS, as an EESSI build would. */
const SAMPLE_FILES: Record<string, string> = {
  'README.md': '# hello-hpc\nA sample software layer for trying hpc-build-bot.\n',
  'bot/build.sh': [
    '#!/bin/bash',
    'set -e',
    'echo "building for $(grep software_subdir cfg/job.cfg)"',
    'subdir=$(sed -n "s/^software_subdir = //p" cfg/job.cfg | tr / -)',
    'echo "hello from job $SLURM_JOB_ID" > hello.txt',
    "# As EESSI's build.sh since 2025: .tar.zst when zstd is there, else .tar.gz",
    'name="eessi-2023.06-software-linux-${subdir}-$(date +%s)"',
    'if command -v zstd >/dev/null; then tar --zstd -cf "$name.tar.zst" hello.txt; else tar czf "$name.tar.gz" hello.txt; fi',
  ].join('\n'),
  'bot/check-build.sh': [
    '#!/bin/bash',
    'art=$(ls eessi-*.tar.zst eessi-*.tar.gz 2>/dev/null | head -1)',
    'if [ -n "$art" ]; then status=SUCCESS; text=":grin: SUCCESS"; else status=FAILURE; text=":cry: FAILURE"; fi',
    'printf "[RESULT]\\ncomment_description = <details><summary>%s</summary><ul><li><code>%s</code></li></ul></details>\\nstatus = %s\\nartefacts =\\n    %s\\n" "$text" "$art" "$status" "$art" > "_bot_job${SLURM_JOB_ID}.result"',
  ].join('\n'),
  'bot/check-test.sh':
    '#!/bin/bash\nprintf "[TEST]\\ncomment_description = :grin: SUCCESS (no tests in the sample)\\nstatus = SUCCESS\\n" > "_bot_job${SLURM_JOB_ID}.test"\n',
};

const GIT_IDENTITY = {
  GIT_AUTHOR_NAME: 'Sample Author',
  GIT_AUTHOR_EMAIL: 'sample@example.com',
  GIT_COMMITTER_NAME: 'Sample Author',
  GIT_COMMITTER_EMAIL: 'sample@example.com',
};

/** Create the sample repository and PR record in the dry-run store (once). */
export async function ensureSamplePr(config: Config): Promise<PullRequestInfo> {
  const store = path.join(config.jobdirs, 'dry-run', SAMPLE.owner, SAMPLE.repo);
  const prFile = path.join(store, 'pulls', `${SAMPLE.pr}.json`);
  if (await exists(prFile)) return JSON.parse(await fs.readFile(prFile, 'utf8')) as PullRequestInfo;

  const bare = path.join(store, 'repo.git');
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'hpcbot-sample-'));
  try {
    await git(['init', '--quiet', '--bare', bare]);
    await git(['init', '--quiet', '--initial-branch=main', work]);
    await fs.writeFile(path.join(work, 'README.md'), SAMPLE_FILES['README.md']!);
    await git(['-C', work, 'add', '-A']);
    await git(['-C', work, 'commit', '--quiet', '-m', 'Initial commit'], { env: GIT_IDENTITY });
    const baseSha = (await git(['-C', work, 'rev-parse', 'HEAD'])).trim();
    await git(['-C', work, 'checkout', '--quiet', '-b', 'add-build-scripts']);
    for (const [name, content] of Object.entries(SAMPLE_FILES)) {
      await fs.mkdir(path.dirname(path.join(work, name)), { recursive: true });
      await fs.writeFile(path.join(work, name), content + '\n', {
        mode: name.endsWith('.sh') ? 0o755 : 0o644,
      });
    }
    await git(['-C', work, 'add', '-A']);
    await git(['-C', work, 'commit', '--quiet', '-m', 'Add bot build scripts'], { env: GIT_IDENTITY });
    const headSha = (await git(['-C', work, 'rev-parse', 'HEAD'])).trim();
    await git([
      '-C',
      work,
      'push',
      '--quiet',
      bare,
      'main:refs/heads/main',
      `add-build-scripts:refs/pull/${SAMPLE.pr}/head`,
    ]);
    const info: PullRequestInfo = {
      number: SAMPLE.pr,
      state: 'open',
      merged: false,
      title: 'Add bot build scripts',
      headSha,
      headRef: 'add-build-scripts',
      headRepoFullName: `${SAMPLE.owner}/${SAMPLE.repo}`,
      baseSha,
      baseRef: 'main',
      author: 'sample-author',
    };
    await fs.mkdir(path.dirname(prFile), { recursive: true });
    await writeFileAtomic(prFile, JSON.stringify(info, null, 2) + '\n');
    return info;
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

/** A minimal issue_comment.created payload with the fields GitHub sends and the bot reads. */
export function samplePayload(body: string): Record<string, unknown> {
  const full = `${SAMPLE.owner}/${SAMPLE.repo}`;
  const user = (login: string) => ({ login, id: 1, type: 'User' });
  return {
    action: 'created',
    issue: {
      number: SAMPLE.pr,
      title: 'Add bot build scripts',
      user: user('sample-author'),
      state: 'open',
      pull_request: { url: `https://api.github.com/repos/${full}/pulls/${SAMPLE.pr}` },
    },
    comment: { id: Date.now(), body, user: user(SAMPLE.reviewer), created_at: new Date().toISOString() },
    repository: {
      id: 1,
      name: SAMPLE.repo,
      full_name: full,
      owner: user(SAMPLE.owner),
      default_branch: 'main',
    },
    sender: user(SAMPLE.reviewer),
  };
}

export async function sendSampleEvent(
  config: Config,
  comment: string,
): Promise<{ status: number; body: string }> {
  if (!config.github.dry_run) {
    throw new Error('sample-event only works with github.dry_run: true (it must never reach a real PR)');
  }
  await ensureSamplePr(config);
  const { secret } = await loadWebhookSecret(config);
  const body = JSON.stringify(samplePayload(comment));
  const headers = {
    'content-type': 'application/json',
    'x-github-event': 'issue_comment',
    'x-github-delivery': randomUUID(),
    'x-hub-signature-256': `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`,
  };
  const { host, port, webhook_path } = config.server;
  return await new Promise((resolve, reject) => {
    const req = http.request({ host, port, path: webhook_path, method: 'POST', headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', (err) =>
      reject(
        new Error(
          `cannot reach the server at http://${host}:${port}${webhook_path} (is \`npm start\` running?): ${err.message}`,
        ),
      ),
    );
    req.end(body);
  });
}
