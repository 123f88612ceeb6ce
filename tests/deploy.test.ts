/** Deploy as a stage: permission, refusals, policies, hostile artefacts, rows, signing, crash-resume. */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { JobData } from '../src/job.js';
import { selectJobs } from '../src/stages/deploy.js';
import type { DirState } from '../src/state.js';
import { verifyFile } from '../src/signing.js';
import { PASSING_BOT } from './support/prRepo.js';
import {
  jobDirsOf,
  openPr,
  OWNER,
  PR,
  REPO,
  startHarness,
  stateOf,
  stageOf,
  storeComment,
  tickUntil,
  type Harness,
} from './support/botHarness.js';

let h: Harness;
afterEach(async () => h?.stop());

async function setUp(policy: string, bot: Record<string, string> = PASSING_BOT) {
  const key = path.join(
    process.env.TMPDIR ?? '/tmp',
    `hpcbot-deploy-key-${process.pid}-${Math.random().toString(16).slice(2)}`,
  );
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'hpcbot@test', '-f', key]);
  h = await startHarness(
    `deploy:\n  policy: ${policy}\n  uploader:\n    kind: directory\n    directory: staging\n  signing:\n    key_file: ${key}\n`,
  );
  const repo = openPr(h, bot);
  return { key, repo };
}

async function buildOnce(): Promise<string> {
  const before = (await jobDirsOf(h)).length;
  await storeComment(h, 'bot: build for:arch=zen4');
  await tickUntil(h, async () => {
    const dirs = await jobDirsOf(h);
    return dirs.length === before + 1 && (await stageOf(dirs[before]!)) === 'finished';
  });
  return (await jobDirsOf(h))[before]!;
}

async function deploy(): Promise<string> {
  const replies = () => h.fake.commentsOf(OWNER, REPO, PR).filter((c) => c.body.startsWith('<details>'));
  const n = replies().length;
  await storeComment(h, 'bot: deploy');
  await tickUntil(h, async () => replies().length === n + 1 && (await h.deps.jobdirs.pending()).length === 0);
  return replies()[n]!.body;
}

function jobComment(dir: string): Promise<string> {
  return stateOf<JobData>(dir).then(
    (s) => h.fake.commentsOf(OWNER, REPO, PR).find((c) => c.id === s.comments.job!.id)!.body,
  );
}

function staged(): string[] {
  const root = path.join(h.root, 'staging');
  if (!existsSync(root)) return [];
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(root, path.join(e.parentPath, e.name)))
    .sort();
}

test('a successful job is signed, described and uploaded; its comment gets an uploaded row', async () => {
  const { key } = await setUp('once');
  const dir = await buildOnce();
  const artefact = (await stateOf<JobData>(dir)).data.result!.artefacts[0]!;
  const reply = await deploy();
  expect(reply).toContain(`- \`${artefact}\`: uploaded (signed to `);
  const files = staged().map((f) => path.basename(f));
  expect(files).toEqual(
    expect.arrayContaining([
      artefact,
      `${artefact}.sig`,
      `${artefact}.provenance.json`,
      `${artefact}.provenance.json.sig`,
      `${artefact}.meta.txt`,
      `${artefact}.meta.txt.sig`,
    ]),
  );
  const stagedArtefact = path.join(
    h.root,
    'staging',
    staged().find((f) => path.basename(f) === artefact)!,
  );
  writeFileSync(
    path.join(h.root, 'allowed_signers'),
    `hpcbot@test namespaces="test" ${readFileSync(`${key}.pub`, 'utf8')}`,
  );
  expect(
    (await verifyFile(stagedArtefact, `${stagedArtefact}.sig`, path.join(h.root, 'allowed_signers'), 'test'))
      .ok,
  ).toBe(true);
  const provenance = JSON.parse(readFileSync(path.join(dir, `${artefact}.provenance.json`), 'utf8'));
  expect(provenance.subject[0].name).toBe(artefact);
  expect(JSON.stringify(provenance)).toContain((await stateOf<JobData>(dir)).data.merge_sha!);
  expect(await jobComment(dir)).toMatch(
    new RegExp(`\\|uploaded\\|transfer of \`${artefact.replaceAll('.', '\\.')}\` succeeded: `),
  );
});

test('once: the same target is never deployed twice, even after a rebuild', async () => {
  await setUp('once');
  await buildOnce();
  await deploy();
  const second = await buildOnce();
  const reply = await deploy();
  expect(reply).toMatch(
    /not uploaded \(this target was deployed before, from .*run_000\/zen4\/eessi-test \(deploy.policy once\)\)/,
  );
  expect(await jobComment(second)).toContain('|not uploaded|');
});

test('once: a deploy interrupted after its intent was recorded finishes the same upload on the next run', async () => {
  await setUp('once');
  const dir = await buildOnce();
  const logDir = path.join(h.config.jobdirs, 'uploads', OWNER, REPO, `pr_${PR}`);
  mkdirSync(logDir, { recursive: true });
  const t = (await stateOf<JobData>(dir)).data.target;
  const { createHash } = await import('node:crypto');
  const name = createHash('sha256')
    .update(`${t.forArch}|${t.forAccel ?? ''}|${t.repoId}`)
    .digest('hex')
    .slice(0, 32);
  writeFileSync(
    path.join(logDir, `${name}.json`),
    JSON.stringify({ target: 'x', job_dir: h.deps.jobdirs.relative(dir), status: 'uploading', at: '' }),
  );
  const reply = await deploy();
  expect(reply).toContain(': uploaded (signed');
  expect(JSON.parse(readFileSync(path.join(logDir, `${name}.json`), 'utf8')).status).toBe('uploaded');
  expect(await deploy()).toContain('this target was deployed before');
});

test('all: every successful job is uploaded', async () => {
  await setUp('all');
  await buildOnce();
  await buildOnce();
  expect((await deploy()).match(/: uploaded \(/g)).toHaveLength(2);
});

test('none: nothing is uploaded', async () => {
  await setUp('none');
  await buildOnce();
  expect(await deploy()).toContain('deploy.policy is `none` on instance `test`: nothing is deployed');
  expect(staged()).toEqual([]);
});

test('refused while a build is active, and for artefacts of an older head', async () => {
  const { repo } = await setUp('all', {
    ...PASSING_BOT,
    'bot/build.sh': PASSING_BOT['bot/build.sh'].replace('exit 0', 'sleep 4; exit 0'),
  });
  await storeComment(h, 'bot: build for:arch=zen4');
  await tickUntil(
    h,
    async () => (await jobDirsOf(h)).length === 1 && (await stageOf((await jobDirsOf(h))[0]!)) === 'running',
  );
  expect(await deploy()).toContain('deploy refused: 1 build job(s) of this PR are still active');
  await tickUntil(h, async () => (await stageOf((await jobDirsOf(h))[0]!)) === 'finished');
  h.fake.addPullRequest(OWNER, REPO, {
    number: PR,
    headSha: 'a'.repeat(40),
    baseSha: repo.baseSha,
    baseRef: 'main',
  });
  const reply = await deploy();
  expect(reply).toContain(
    `not deployed, built from ${repo.headSha.slice(0, 12)}, but the PR head is now aaaaaaaaaaaa; rebuild first`,
  );
  expect(staged()).toEqual([]);
});

test('hostile artefact names and files are not uploaded, each with its reason', async () => {
  const hostile = {
    ...PASSING_BOT,
    'bot/build.sh':
      '#!/bin/bash\nln -s /etc/passwd link.tar.gz\nmkfifo pipe.tar.gz\necho ok > "a;b.tar.gz"\n',
    'bot/check-build.sh':
      '#!/bin/bash\nprintf "[RESULT]\\ncomment_description = ok\\nstatus = SUCCESS\\nartefacts =\\n  ../../etc/passwd\\n  /etc/passwd\\n  link.tar.gz\\n  pipe.tar.gz\\n  a;b.tar.gz\\n" > "_bot_job${SLURM_JOB_ID}.result"\n',
  };
  await setUp('all', hostile);
  const dir = await buildOnce();
  expect((await stateOf<JobData>(dir)).data.result!.artefacts).toHaveLength(5);
  const reply = await deploy();
  expect(reply).not.toContain(': uploaded (');
  expect(reply).toContain(
    '`../../etc/passwd`: not uploaded (artefact name "../../etc/passwd" is not a plain file name)',
  );
  expect(reply).toContain(
    '`/etc/passwd`: not uploaded (artefact name "/etc/passwd" is not a plain file name)',
  );
  expect(reply).toMatch(/`link\.tar\.gz`: not uploaded \(.*link\.tar\.gz is a symbolic link\)/);
  expect(reply).toMatch(/`pipe\.tar\.gz`: not uploaded \(.*pipe\.tar\.gz is not a regular file\)/);
  expect(reply).toContain('`a;b.tar.gz`: not uploaded (artefact name "a;b.tar.gz" is not a plain file name)');
  expect(staged()).toEqual([]);
});

describe('selectJobs (pure)', () => {
  const job = (forArch: string, repoId: string, finished_at: string) => ({
    state: { data: { target: { forArch, repoId }, finished_at } } as unknown as DirState<JobData>,
  });
  const a1 = job('x86_64/amd/zen4', 'r', '2026-11-01T00:00:00Z');
  const a2 = job('x86_64/amd/zen4', 'r', '2026-11-02T00:00:00Z');
  const b1 = job('x86_64/amd/zen3', 'r', '2026-11-01T00:00:00Z');
  const c1 = job('x86_64/amd/zen4', 'other', '2026-10-01T00:00:00Z');

  test.each([
    ['all', [a1, a2, b1, c1]],
    ['latest', [a2, b1, c1]],
    ['once', [a2, b1, c1]],
  ] as const)('%s', (policy, expected) => {
    expect(selectJobs([a1, a2, b1, c1], policy)).toEqual(expected);
  });
});
