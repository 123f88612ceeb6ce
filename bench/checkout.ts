/**
 * Checkout benchmark: `npm run bench:checkout` (options after `--`).
 *
 * What 8 targets of one PR cost to prepare, against 8 naive clones. The PR repository stands for
 * EESSI's software-layer: a base branch of `--files` files (default 400, ~1.5 KB each, in a few
 * directories) and a PR that changes two of them and adds the bot scripts, served over git smart
 * HTTP by the test suite's FakeGitHub.
 *
 * Ours: one `bot: build` comment with 8 `for:` lines (8 node types) on the local backend; the poller
 * tick that takes the 8 prepared jobs through checkout (one fetch into the bare mirror, one merge,
 * 8 work trees borrowing the mirror's objects), job.cfg and submission. Submission is counted too, so
 * the figure is an upper bound on preparing alone. Naive: for each target, `git clone` of the base
 * branch over HTTP, `git fetch` of the PR head and `git merge`, one after another.
 *
 * Each round uses a new bot instance (a cold mirror: the worst case for us) and new naive clones.
 * Options: --rounds N (default 5), --files N (default 400).
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { runTick } from '../src/poller.js';
import { readState } from '../src/store/state.js';
import {
  OWNER,
  REPO,
  PR,
  jobDirsOf,
  openPr,
  startHarness,
  storeComment,
} from '../tests/support/botHarness.js';
import { PASSING_BOT } from '../tests/support/prRepo.js';

const execFileAsync = promisify(execFile);
const TARGETS = ['zen2', 'zen3', 'zen4', 'icelake', 'sapphirerapids', 'neoverse_v1', 'generic', 'a64fx'];
const SUBDIRS: Record<string, string> = {
  zen2: 'x86_64/amd/zen2',
  zen3: 'x86_64/amd/zen3',
  zen4: 'x86_64/amd/zen4',
  icelake: 'x86_64/intel/icelake',
  sapphirerapids: 'x86_64/intel/sapphirerapids',
  neoverse_v1: 'aarch64/neoverse_v1',
  generic: 'x86_64/generic',
  a64fx: 'aarch64/a64fx',
};

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

function baseFiles(count: number): Record<string, string> {
  const files: Record<string, string> = { 'README.md': 'software layer\n' };
  const dirs = ['easystacks/2023.06', 'easystacks/2023.06/rebuilds', 'scripts', 'eb_hooks', 'tests'];
  for (let i = 0; i < count - 1; i++) {
    const line = `- name: package-${i}\n  version: ${i % 17}.${i % 5}.0\n  options: {from-pr: ${10_000 + i}}\n`;
    files[`${dirs[i % dirs.length]}/file-${String(i).padStart(4, '0')}.yml`] = line.repeat(20);
  }
  return files;
}

/** 7 node types beside the harness's zen4, appended under `build.node_types`. */
function nodeTypesYaml(): string {
  return TARGETS.filter((t) => t !== 'zen4')
    .map(
      (t) => `    ${t}:\n      os: linux\n      cpu_subdir: ${SUBDIRS[t]}\n      repo_targets: [eessi-test]`,
    )
    .join('\n');
}

async function gitCmd(cwd: string, ...args: string[]): Promise<void> {
  await execFileAsync('git', args, {
    cwd,
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: 'b',
      GIT_AUTHOR_EMAIL: 'b@x',
      GIT_COMMITTER_NAME: 'b',
      GIT_COMMITTER_EMAIL: 'b@x',
    },
  });
}

async function oursOnce(files: Record<string, string>): Promise<number> {
  const h = await startHarness(nodeTypesYaml());
  try {
    const prFiles = {
      ...PASSING_BOT,
      'easystacks/2023.06/file-0001.yml': 'changed\n',
      'scripts/new.yml': 'new\n',
    };
    const repo = openPr(h, prFiles);
    // The base holds the software-layer files; the harness's repo has only a README, so push them.
    const work = await fs.mkdtemp(path.join(os.tmpdir(), 'bench-base-'));
    await gitCmd(work, 'clone', '--quiet', repo.bare, '.');
    for (const [name, content] of Object.entries(files)) {
      await fs.mkdir(path.join(work, path.dirname(name)), { recursive: true });
      await fs.writeFile(path.join(work, name), content);
    }
    await gitCmd(work, 'add', '-A');
    await gitCmd(work, 'commit', '--quiet', '-m', 'software layer');
    await gitCmd(work, 'push', '--quiet', 'origin', 'HEAD:refs/heads/main');
    await fs.rm(work, { recursive: true, force: true });

    await storeComment(h, TARGETS.map((t) => `bot: build for:arch=${SUBDIRS[t]}`).join('\n'));
    await runTick(h.deps); // the event: 8 prepared job directories
    const dirs = await jobDirsOf(h);
    if (dirs.length !== TARGETS.length)
      throw new Error(`expected ${TARGETS.length} jobs, got ${dirs.length}`);
    if (process.env.BENCH_DEBUG) console.log(dirs);
    const start = process.hrtime.bigint();
    await runTick(h.deps); // checkout, job.cfg and submission of all 8
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    for (const dir of dirs) {
      const stage = (await readState(dir))?.stage;
      if (stage === 'prepared' || stage === 'failed') throw new Error(`${dir} is ${stage} after the tick`);
    }
    return seconds;
  } finally {
    await h.stop();
    await fs.rm(h.root, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
  }
}

async function naiveOnce(files: Record<string, string>): Promise<number> {
  const h = await startHarness();
  const scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'bench-naive-'));
  try {
    const repo = openPr(h, { ...PASSING_BOT, 'scripts/new.yml': 'new\n' });
    const work = path.join(scratch, 'seed');
    await gitCmd(scratch, 'clone', '--quiet', repo.bare, work);
    for (const [name, content] of Object.entries(files)) {
      await fs.mkdir(path.join(work, path.dirname(name)), { recursive: true });
      await fs.writeFile(path.join(work, name), content);
    }
    await gitCmd(work, 'add', '-A');
    await gitCmd(work, 'commit', '--quiet', '-m', 'software layer');
    await gitCmd(work, 'push', '--quiet', 'origin', 'HEAD:refs/heads/main');
    const url = h.deps.github.cloneUrl(OWNER, REPO);
    const start = process.hrtime.bigint();
    for (const target of TARGETS) {
      const dir = path.join(scratch, target);
      await gitCmd(scratch, 'clone', '--quiet', '--branch', 'main', url, dir);
      await gitCmd(dir, 'fetch', '--quiet', 'origin', `refs/pull/${PR}/head`);
      await gitCmd(dir, 'merge', '--quiet', '--no-edit', 'FETCH_HEAD');
    }
    return Number(process.hrtime.bigint() - start) / 1e9;
  } finally {
    await h.stop();
    await fs.rm(h.root, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
    await fs.rm(scratch, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const rounds = option('rounds', 5);
  const files = baseFiles(option('files', 400));
  console.log(
    `checkout benchmark: ${Object.keys(files).length} base files, ${TARGETS.length} targets, ${rounds} rounds; load ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  console.log('| round | ours: 8 jobs prepared and submitted (s) | naive: 8 clones + merge (s) | ratio |');
  console.log('|---|---|---|---|');
  const ratios: number[] = [];
  for (let r = 1; r <= rounds; r++) {
    const naive = await naiveOnce(files);
    const ours = await oursOnce(files);
    ratios.push(ours / naive);
    console.log(`| ${r} | ${ours.toFixed(3)} | ${naive.toFixed(3)} | ${(ours / naive).toFixed(2)} |`);
  }
  console.log(`worst ratio ${Math.max(...ratios).toFixed(2)}; load after ${os.loadavg()[0]!.toFixed(2)}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
