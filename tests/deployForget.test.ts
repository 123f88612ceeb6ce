/**
 * `hpcbot deploy forget`: undoing a `deploy.policy: once` decision. The record goes, the next deploy
 * uploads the target again, and forgotten.log says what was removed and who asked.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { forgetDeploys, targetMatches } from '../src/cli/deployForget.js';
import {
  deployRecordFile,
  deployRecordsDir,
  FORGOTTEN_LOG,
  type DeployRecord,
} from '../src/store/deployRecords.js';
import { PASSING_BOT } from './support/prRepo.js';
import { killAll, runCli, tempDir, writeSiteYaml } from './support/spawn.js';
import {
  jobDirsOf,
  openPr,
  OWNER,
  PR,
  REPO,
  startHarness,
  stageOf,
  storeComment,
  tickUntil,
  type Harness,
} from './support/botHarness.js';

let h: Harness | undefined;
afterEach(async () => {
  await killAll();
  await h?.stop();
  h = undefined;
});

const replies = () => h!.fake.commentsOf(OWNER, REPO, PR).filter((c) => c.body.startsWith('<details>'));

async function deploy(): Promise<string> {
  const n = replies().length;
  await storeComment(h!, 'bot: deploy');
  await tickUntil(
    h!,
    async () => replies().length === n + 1 && (await h!.deps.jobdirs.pending()).length === 0,
  );
  return replies()[n]!.body;
}

test('once: a forgotten target is uploaded again by the next deploy; forgotten.log says who removed what', async () => {
  const key = path.join(await tempDir(), 'key');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'hpcbot@test', '-f', key]);
  h = await startHarness(
    `deploy:\n  policy: once\n  uploader:\n    kind: directory\n    directory: staging\n  signing:\n    key_file: ${key}\n`,
  );
  openPr(h, PASSING_BOT);
  await storeComment(h, 'bot: build for:arch=zen4');
  await tickUntil(h, async () => {
    const [dir] = await jobDirsOf(h!);
    return dir !== undefined && (await stageOf(dir)) === 'finished';
  });
  expect(await deploy()).toContain(': uploaded (signed to ');
  expect(await deploy()).toContain('this target was deployed before');

  const dir = deployRecordsDir(h.config.jobdirs, OWNER, REPO, PR);
  const [recordName] = readdirSync(dir);
  const record = JSON.parse(readFileSync(path.join(dir, recordName!), 'utf8')) as DeployRecord;
  const when = new Date('2026-05-04T03:02:01Z');
  const result = await forgetDeploys(
    h.config.jobdirs,
    PR,
    { target: 'zen4/eessi-test' },
    { user: 'alice', sudoUser: 'bob' },
    when,
  );
  expect(result.repo).toBe(`${OWNER}/${REPO}`);
  expect(result.removed).toEqual([record]);
  expect(readdirSync(dir)).toEqual([FORGOTTEN_LOG]);
  const audit = readFileSync(path.join(dir, FORGOTTEN_LOG), 'utf8').trimEnd().split('\n');
  expect(audit.map((l) => JSON.parse(l))).toEqual([
    {
      at: when.toISOString(),
      user: 'alice',
      sudo_user: 'bob',
      repo: `${OWNER}/${REPO}`,
      pr: PR,
      record_file: recordName,
      record,
    },
  ]);

  expect(await deploy()).toContain(': uploaded (signed to ');
  expect(readdirSync(dir).sort()).toEqual([recordName, FORGOTTEN_LOG].sort());
});

test('--target names a record by node type and repo id, or by its for: architecture', () => {
  const record: DeployRecord = {
    target: 'x86_64/amd/zen4||eessi-test',
    job_dir: '2026.05/o/r/pr_7/event_d1/run_000/zen4/eessi-test',
    status: 'uploaded',
    at: '2026-05-04T03:02:01Z',
  };
  expect(targetMatches(record, 'zen4/eessi-test')).toBe(true);
  expect(targetMatches(record, 'x86_64/amd/zen4')).toBe(true);
  expect(targetMatches(record, 'zen4')).toBe(false);
  expect(targetMatches(record, 'zen3/eessi-test')).toBe(false);
});

describe('the command', () => {
  /** A site.yaml and deploy records of PR 7 in the given repositories. */
  async function withRecords(repos: string[]) {
    const d = await tempDir();
    const site = await writeSiteYaml(d, 1);
    for (const full of repos) {
      const [owner, repo] = full.split('/') as [string, string];
      const dir = deployRecordsDir(path.join(d, 'jobdirs'), owner, repo, 7);
      await fs.mkdir(dir, { recursive: true });
      const record: DeployRecord = {
        target: 'x86_64/amd/zen4||eessi-test',
        job_dir: `2026.05/${owner}/${repo}/pr_7/event_d1/run_000/zen4/eessi-test`,
        status: 'uploaded',
        at: '2026-05-04T03:02:01.000Z',
      };
      await fs.writeFile(deployRecordFile(dir, record.target), JSON.stringify(record));
    }
    return { site, jobdirs: path.join(d, 'jobdirs') };
  }

  test('prints what it removed and who did it; a second run finds nothing (exit 1)', async () => {
    const { site, jobdirs } = await withRecords(['org/one']);
    const first = await runCli(['deploy', 'forget', '7', '--config', site], { env: { SUDO_USER: 'bob' } });
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    const log = path.join(deployRecordsDir(jobdirs, 'org', 'one', 7), FORGOTTEN_LOG);
    expect(first.stdout).toBe(
      'forgot the deploy of org/one#7 zen4/eessi-test (for x86_64/amd/zen4): uploaded 2026-05-04T03:02:01.000Z from 2026.05/org/one/pr_7/event_d1/run_000/zen4/eessi-test\n' +
        `by ${os.userInfo().username} (sudo by bob); recorded in ${log}\n`,
    );
    expect(JSON.parse(readFileSync(log, 'utf8'))).toMatchObject({
      user: os.userInfo().username,
      sudo_user: 'bob',
    });

    const again = await runCli(['deploy', 'forget', '#7', '--config', site]);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe('hpcbot deploy forget: no deploy records of PR #7 in any repository\n');
  });

  test('two repositories with records of the PR: a usage error until --repo says which', async () => {
    const { site, jobdirs } = await withRecords(['org/one', 'org/two']);
    const ambiguous = await runCli(['deploy', 'forget', '7', '--config', site]);
    expect(ambiguous.code).toBe(2);
    expect(ambiguous.stderr).toBe(
      'hpcbot deploy forget: PR #7 has deploy records in org/one, org/two; choose one with --repo\n',
    );
    const chosen = await runCli(['deploy', 'forget', '7', '--repo', 'org/two', '--config', site]);
    expect(chosen.code).toBe(0);
    expect(existsSync(path.join(deployRecordsDir(jobdirs, 'org', 'two', 7), FORGOTTEN_LOG))).toBe(true);
    expect(existsSync(path.join(deployRecordsDir(jobdirs, 'org', 'one', 7), FORGOTTEN_LOG))).toBe(false);
  });

  test('bad arguments are usage errors (exit 2); a target that matches nothing lists what there is', async () => {
    const { site } = await withRecords(['org/one']);
    const notANumber = await runCli(['deploy', 'forget', 'seven', '--config', site]);
    expect(notANumber.code).toBe(2);
    expect(notANumber.stderr).toBe('hpcbot deploy forget: "seven" is not a pull request number\n');
    const badRepo = await runCli(['deploy', 'forget', '7', '--repo', '../etc', '--config', site]);
    expect(badRepo.code).toBe(2);
    expect(badRepo.stderr).toBe('hpcbot deploy forget: --repo "../etc" is not owner/name\n');
    const noMatch = await runCli(['deploy', 'forget', '7', '--target', 'zen3/eessi-test', '--config', site]);
    expect(noMatch.code).toBe(1);
    expect(noMatch.stderr).toBe(
      'hpcbot deploy forget: no deploy record of org/one#7 matches --target zen3/eessi-test; there are: zen4/eessi-test\n',
    );
  });
});
