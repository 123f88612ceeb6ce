/** Deploy as a stage: permission, refusals, policies, hostile artefacts, rows, signing, crash-resume. */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { JobData } from '../src/store/job.js';
import { selectJobs } from '../src/stages/deploy.js';
import type { DirState } from '../src/store/state.js';
import { verifyFile } from '../src/adapters/signing.js';
import { workTreeOf } from '../src/store/workTree.js';
import { PASSING_BOT } from './support/prRepo.js';
import { killAll, runCli } from './support/spawn.js';
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
afterEach(async () => {
  await killAll();
  await h?.stop();
});

const tmpName = (what: string) =>
  path.join(os.tmpdir(), `hpcbot-deploy-${what}-${process.pid}-${Math.random().toString(16).slice(2)}`);

/** A second node type, so that two jobs have different build targets. */
const ZEN3 =
  '    zen3:\n      os: linux\n      cpu_subdir: x86_64/amd/zen3\n      repo_targets: [eessi-test]\n';

async function setUp(policy: string, bot: Record<string, string> = PASSING_BOT, nodeTypes = '') {
  const key = tmpName('key');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'hpcbot@test', '-f', key]);
  h = await startHarness(
    `${nodeTypes}deploy:\n  policy: ${policy}\n  uploader:\n    kind: directory\n    directory: staging\n  signing:\n    key_file: ${key}\n`,
  );
  const repo = openPr(h, bot);
  return { key, repo };
}

async function buildOnce(arch = 'zen4'): Promise<string> {
  const before = (await jobDirsOf(h)).length;
  await storeComment(h, `bot: build for:arch=${arch}`);
  await tickUntil(h, async () => {
    const dirs = await jobDirsOf(h);
    return dirs.length === before + 1 && (await stageOf(dirs[before]!)) === 'finished';
  });
  return (await jobDirsOf(h))[before]!;
}

const replies = () => h.fake.commentsOf(OWNER, REPO, PR).filter((c) => c.body.startsWith('<details>'));

/** Tick until the reply after the first `n` is there and nothing is pending; returns it. */
async function nextReply(n: number): Promise<string> {
  await tickUntil(h, async () => replies().length === n + 1 && (await h.deps.jobdirs.pending()).length === 0);
  return replies()[n]!.body;
}

async function deploy(): Promise<string> {
  const n = replies().length;
  await storeComment(h, 'bot: deploy');
  return await nextReply(n);
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
  // Signature, provenance and metadata are kept in the job dir's deploy/ (the bot's), not in the work
  // tree (the build's); the verified copy of the artefact that was signed and uploaded is gone.
  expect(readdirSync(path.join(dir, 'deploy')).sort()).toEqual(
    [
      `${artefact}.meta.txt`,
      `${artefact}.meta.txt.sig`,
      `${artefact}.provenance.json`,
      `${artefact}.provenance.json.sig`,
      `${artefact}.sig`,
    ].sort(),
  );
  expect(readFileSync(stagedArtefact)).toEqual(readFileSync(path.join(workTreeOf(dir), artefact)));
  const provenance = JSON.parse(
    readFileSync(path.join(dir, 'deploy', `${artefact}.provenance.json`), 'utf8'),
  );
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

test('once: killed while signing job 2, the re-run reports job 1, which it had uploaded, as uploaded', async () => {
  await setUp('once', PASSING_BOT, ZEN3);
  const first = await buildOnce('zen4');
  const second = await buildOnce('zen3');
  const [art1, art2] = await Promise.all(
    [first, second].map(async (d) => (await stateOf<JobData>(d)).data.result!.artefacts[0]!),
  );
  const n = replies().length;
  await storeComment(h, 'bot: deploy');
  // The real poller as a child process, SIGKILLed by its crash point just before it signs job 2's artefact.
  const crashed = await runCli(['poll', '--config', path.join(h.root, 'site.yaml'), '--once'], {
    env: { HARNESS_GITHUB_TOKEN: 'ghp_harness', HPCBOT_CRASH_POINT: `deploy-signing:${art2}` },
  });
  expect(crashed.code).toBeNull();
  expect(replies()).toHaveLength(n);
  const logDir = path.join(h.config.jobdirs, 'uploads', OWNER, REPO, `pr_${PR}`);
  const logged = readdirSync(logDir).map((f) => JSON.parse(readFileSync(path.join(logDir, f), 'utf8')));
  expect(logged.map((l) => [l.job_dir, l.status]).sort()).toEqual(
    [
      [h.deps.jobdirs.relative(first), 'uploaded'],
      [h.deps.jobdirs.relative(second), 'uploading'],
    ].sort(),
  );

  const reply = await nextReply(n);
  expect(reply).toContain(`- \`${art1}\`: uploaded (signed to file://`);
  expect(reply).toContain(`- \`${art2}\`: uploaded (signed to file://`);
  expect(reply).not.toContain('deployed before');
  for (const dir of [first, second]) {
    expect((await jobComment(dir)).match(/\|uploaded\|transfer of /g)).toHaveLength(1);
  }
  // And a later deploy is refused for both targets.
  expect((await deploy()).match(/not uploaded \(this target was deployed before/g)).toHaveLength(2);
});

test('a symlink or hard link to a file outside the work tree is refused; its content is never copied', async () => {
  const secret = tmpName('secret');
  writeFileSync(secret, 'TOP-SECRET-KEY-MATERIAL\n');
  const hostile = {
    ...PASSING_BOT,
    'bot/build.sh': `#!/bin/bash\nln -s ${secret} soft.tar.gz\nln ${secret} hard.tar.gz\necho fine > ok.tar.gz\n`,
    'bot/check-build.sh':
      '#!/bin/bash\nprintf "[RESULT]\\ncomment_description = ok\\nstatus = SUCCESS\\nartefacts =\\n  soft.tar.gz\\n  hard.tar.gz\\n  ok.tar.gz\\n" > "_bot_job${SLURM_JOB_ID}.result"\n',
  };
  await setUp('all', hostile);
  const dir = await buildOnce();
  const reply = await deploy();
  expect(reply).toContain('- `soft.tar.gz`: not uploaded (soft.tar.gz is a symbolic link)');
  expect(reply).toContain('- `hard.tar.gz`: not uploaded (hard.tar.gz has 2 hard links)');
  expect(reply).toContain('- `ok.tar.gz`: uploaded (signed to ');
  expect(await jobComment(dir)).toContain(
    '|not uploaded|transfer of `hard.tar.gz` not done: `hard.tar.gz has 2 hard links`|',
  );
  // Nothing of the secret anywhere the bot wrote: staging, the job's deploy dir.
  const written = [
    ...staged().map((f) => path.join(h.root, 'staging', f)),
    ...readdirSync(path.join(dir, 'deploy')).map((f) => path.join(dir, 'deploy', f)),
  ];
  expect(written.map((f) => path.basename(f))).toContain('ok.tar.gz.sig');
  for (const f of written) expect(readFileSync(f, 'utf8')).not.toContain('TOP-SECRET');
  expect(staged().filter((f) => /(soft|hard)\.tar\.gz/.test(f))).toEqual([]);
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
