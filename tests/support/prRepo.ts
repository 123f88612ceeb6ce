/**
 * Real git repositories for job tests: a bare repository `<gitRoot>/<owner>/<repo>.git` with a base
 * branch and `refs/pull/<N>/head`, as GitHub has them, served by FakeGitHub's git http-backend.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 'Test Author',
  GIT_AUTHOR_EMAIL: 'author@example.com',
  GIT_COMMITTER_NAME: 'Test Author',
  GIT_COMMITTER_EMAIL: 'author@example.com',
};

function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, env: ENV, encoding: 'utf8' }).trim();
}

/** Job scripts for the PR: build.sh succeeds or fails, check-build.sh writes the result file. */
export const PASSING_BOT = {
  'bot/build.sh': [
    '#!/bin/bash',
    'echo "building for $(grep software_subdir cfg/job.cfg)"',
    'echo "SKIP_TESTS=${SKIP_TESTS}" > build-env.txt',
    'tar czf "eessi-2023.06-software-linux-x86_64-amd-zen4-17000000${SLURM_JOB_ID}.tar.gz" cfg/job.cfg',
    'exit 0',
  ].join('\n'),
  'bot/check-build.sh': [
    '#!/bin/bash',
    'art=$(ls eessi-*.tar.gz | head -1)',
    'printf "[RESULT]\\ncomment_description = <details><summary>:grin: SUCCESS</summary><ul><li>built <code>%s</code></li></ul></details>\\nstatus = SUCCESS\\nartefacts =\\n    %s\\n" "$art" "$art" > "_bot_job${SLURM_JOB_ID}.result"',
  ].join('\n'),
  'bot/test.sh': '#!/bin/bash\necho testing\n',
  'bot/check-test.sh':
    '#!/bin/bash\nprintf "[TEST]\\ncomment_description = :grin: SUCCESS tests passed\\nstatus = SUCCESS\\n" > "_bot_job${SLURM_JOB_ID}.test"\n',
};

/** PASSING_BOT whose build waits (at most a minute) for a file `go` in its work tree, so it is seen running. */
export const WAITING_BOT = {
  ...PASSING_BOT,
  'bot/build.sh': PASSING_BOT['bot/build.sh'].replace(
    '#!/bin/bash',
    '#!/bin/bash\nfor i in $(seq 1 600); do [ -e go ] && break; sleep 0.1; done',
  ),
};

export interface PrRepo {
  bare: string;
  headSha: string;
  baseSha: string;
}

/** Create the bare repo with `main` and PR `number` whose head adds `files`. */
export function createPrRepo(
  gitRoot: string,
  owner: string,
  repo: string,
  number: number,
  files: Record<string, string>,
  baseFiles: Record<string, string> = { 'README.md': 'base\n' },
): PrRepo {
  const bare = path.join(gitRoot, owner, `${repo}.git`);
  mkdirSync(path.dirname(bare), { recursive: true });
  execFileSync('git', ['init', '--quiet', '--bare', '--initial-branch=main', bare]);
  const work = mkdtempSync(path.join(os.tmpdir(), 'hpcbot-prrepo-'));
  git(work, 'init', '--quiet', '--initial-branch=main');
  writeAll(work, baseFiles);
  git(work, 'add', '-A');
  git(work, 'commit', '--quiet', '-m', 'base');
  const baseSha = git(work, 'rev-parse', 'HEAD');
  git(work, 'checkout', '--quiet', '-b', 'feature');
  writeAll(work, files);
  git(work, 'add', '-A');
  git(work, 'commit', '--quiet', '-m', 'the PR');
  const headSha = git(work, 'rev-parse', 'HEAD');
  git(work, 'push', '--quiet', bare, 'main:refs/heads/main', `feature:refs/pull/${number}/head`);
  return { bare, headSha, baseSha };
}

/** Push another commit on the base branch (to make the merge a real merge or a conflict). */
export function advanceBase(bare: string, files: Record<string, string>): string {
  const work = mkdtempSync(path.join(os.tmpdir(), 'hpcbot-prrepo-'));
  execFileSync('git', ['clone', '--quiet', '--branch', 'main', bare, work], { env: ENV });
  writeAll(work, files);
  git(work, 'add', '-A');
  git(work, 'commit', '--quiet', '-m', 'base moves on');
  git(work, 'push', '--quiet', 'origin', 'main');
  return git(work, 'rev-parse', 'HEAD');
}

function writeAll(dir: string, files: Record<string, string>): void {
  for (const [name, content] of Object.entries(files)) {
    const file = path.join(dir, name);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, content);
    if (name.endsWith('.sh')) chmodSync(file, 0o755);
  }
}
