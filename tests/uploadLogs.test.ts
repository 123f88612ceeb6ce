/**
 * `deploy.upload_logs`: the job's Slurm output goes up as `<artefact>.log` next to the artefact, read
 * only as a plain file from the work tree and with secrets scrubbed, before the metadata.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { ConfigError, parseConfig } from '../src/config/config.js';
import type { JobData } from '../src/store/job.js';
import { createUploader, deployArtefact, legacyAwsPath } from '../src/adapters/uploaders/index.js';
import { DEPLOY_JOB } from './support/deployFixtures.js';
import { S3RVER_CREDENTIALS, startS3Server, type S3TestServer } from './support/s3server.js';
import { PASSING_BOT } from './support/prRepo.js';
import { killAll } from './support/spawn.js';
import {
  jobDirsOf,
  OWNER,
  openPr,
  PR,
  REPO,
  stageOf,
  startHarness,
  stateOf,
  storeComment,
  tickUntil,
  type Harness,
} from './support/botHarness.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const NAME = 'eessi-2023.06-software-linux-x86_64-amd-zen4-1700000000.tar.gz';
const LEGACY = legacyAwsPath(NAME);
const SECRET = 'site-webhook-secret-value-42';
const TOKEN = `ghp_${'a1B2'.repeat(9)}`;
const LOG = `== building\nexport WEBHOOK=${SECRET}\ncurl -H "Authorization: Bearer ${TOKEN}"\n== done\n`;

const job = DEPLOY_JOB;

let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'hpcbot-uploadlogs-'));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

/** A work tree with the artefact and `slurm-1234.out` (or whatever `writeLog` puts there). */
async function workTreeWith(writeLog: (file: string) => Promise<void>): Promise<string> {
  const tree = await fs.mkdtemp(path.join(dir, 'work-'));
  await fs.writeFile(path.join(tree, NAME), 'artefact bytes\n');
  await writeLog(path.join(tree, 'slurm-1234.out'));
  return tree;
}

/** The deploy input for NAME in `workTree`, with the job's log if given. */
function artefactIn(workTree: string, log?: { name: string; secrets: string[] }) {
  const outDir = path.join(workTree, '..', `${path.basename(workTree)}-deploy`);
  return { name: NAME, workTree, outDir, job, repoId: job.target.repoId, ...(log ? { log } : {}) };
}

function siteYaml(deploy: string): { cfgDir: Promise<string>; yaml: string } {
  return { cfgDir: fs.mkdtemp(path.join(dir, 'cfg-')), yaml: `instance: test-bot\njobdirs: jd\n${deploy}` };
}

test('upload_logs defaults to false and must be a boolean (error names the key)', async () => {
  const { cfgDir, yaml } = siteYaml('');
  const file = path.join(await cfgDir, 'site.yaml');
  expect(parseConfig(yaml, file).deploy.upload_logs).toBe(false);
  expect(parseConfig(`${yaml}deploy:\n  upload_logs: true\n`, file).deploy.upload_logs).toBe(true);
  expect(() => parseConfig(`${yaml}deploy:\n  upload_logs: yes please\n`, file)).toThrow(ConfigError);
  expect(() => parseConfig(`${yaml}deploy:\n  upload_logs: yes please\n`, file)).toThrow(
    /deploy\.upload_logs/,
  );
});

describe('directory uploader', () => {
  test('stages <artefact>.log next to the artefact, scrubbed, before the metadata', async () => {
    const { cfgDir, yaml } = siteYaml('deploy:\n  upload_logs: true\n');
    const base = await cfgDir;
    const cfg = parseConfig(yaml, path.join(base, 'site.yaml'));
    const workTree = await workTreeWith((f) => fs.writeFile(f, LOG));
    const r = await deployArtefact(
      cfg,
      await createUploader(cfg),
      artefactIn(workTree, { name: 'slurm-1234.out', secrets: [SECRET] }),
    );
    expect(r).toMatchObject({ uploaded: true });
    expect(r.logProblem).toBeUndefined();
    const keys = r.objects.map((o) => o.key);
    expect(keys).toContain(`${LEGACY}/${NAME}.log`);
    expect(keys.indexOf(`${LEGACY}/${NAME}.log`)).toBeLessThan(keys.indexOf(`${LEGACY}/${NAME}.meta.txt`));
    const staged = await fs.readFile(path.join(base, 'jd', 'staging', LEGACY, `${NAME}.log`), 'utf8');
    expect(staged).toContain('== building');
    expect(staged).toContain('== done');
    expect(staged).not.toContain(SECRET);
    expect(staged).not.toContain(TOKEN);
    expect(staged).toContain('[secret]');
    // The work tree's log is untouched.
    expect(await fs.readFile(path.join(workTree, 'slurm-1234.out'), 'utf8')).toBe(LOG);
  });

  test('a symlinked or missing log is not read; the artefact still goes up and the problem is said', async () => {
    const { cfgDir, yaml } = siteYaml('deploy:\n  upload_logs: true\n');
    const base = await cfgDir;
    const cfg = parseConfig(yaml, path.join(base, 'site.yaml'));
    const botFile = path.join(dir, 'bot-private-key');
    await fs.writeFile(botFile, 'BOT PRIVATE MATERIAL\n');
    const uploader = await createUploader(cfg);
    for (const [writeLog, problem] of [
      [(f: string) => fs.symlink(botFile, f), 'slurm-1234.out is a symbolic link'],
      [async () => {}, 'slurm-1234.out does not exist'],
    ] as const) {
      const workTree = await workTreeWith(writeLog);
      const r = await deployArtefact(
        cfg,
        uploader,
        artefactIn(workTree, { name: 'slurm-1234.out', secrets: [] }),
      );
      expect(r).toMatchObject({ uploaded: true, logProblem: problem });
      expect(r.objects.map((o) => o.key)).not.toContain(`${LEGACY}/${NAME}.log`);
    }
    await expect(fs.access(path.join(base, 'jd', 'staging', LEGACY, `${NAME}.log`))).rejects.toThrow();
  });

  test('without upload_logs (no log input) no log is staged', async () => {
    const { cfgDir, yaml } = siteYaml('');
    const base = await cfgDir;
    const cfg = parseConfig(yaml, path.join(base, 'site.yaml'));
    const workTree = await workTreeWith((f) => fs.writeFile(f, LOG));
    const r = await deployArtefact(cfg, await createUploader(cfg), artefactIn(workTree));
    expect(r).toMatchObject({ uploaded: true });
    expect(await fs.readdir(path.join(base, 'jd', 'staging', LEGACY))).not.toContain(`${NAME}.log`);
  });
});

describe('s3 uploader', () => {
  let s3: S3TestServer;
  let client: S3Client;
  beforeAll(async () => {
    s3 = await startS3Server(['staging']);
    client = new S3Client({
      endpoint: s3.endpoint,
      forcePathStyle: true,
      region: 'us-east-1',
      credentials: S3RVER_CREDENTIALS,
    });
  });
  afterAll(async () => {
    client?.destroy();
    await s3?.close();
  });

  test('the log object lands under the artefact prefix before the metadata, scrubbed', async () => {
    const { cfgDir, yaml } = siteYaml(
      `deploy:\n  upload_logs: true\n  uploader:\n    kind: s3\n    endpoint_url: ${s3.endpoint}\n    bucket: staging\n    artefact_prefix: pr/\${pull_request_number}\n    metadata_prefix: meta\n`,
    );
    const cfg = parseConfig(yaml, path.join(await cfgDir, 'site.yaml'));
    const workTree = await workTreeWith((f) => fs.writeFile(f, LOG));
    const before = s3.created.length;
    const uploader = await createUploader(cfg, { s3: { clientConfig: { credentials: S3RVER_CREDENTIALS } } });
    const r = await deployArtefact(
      cfg,
      uploader,
      artefactIn(workTree, { name: 'slurm-1234.out', secrets: [SECRET] }),
    );
    expect(r).toMatchObject({ uploaded: true });
    expect(s3.created.slice(before)).toEqual([
      `staging/pr/42/${NAME}`,
      `staging/pr/42/${NAME}.provenance.json`,
      `staging/pr/42/${NAME}.log`,
      `staging/meta/${NAME}.meta.txt`,
    ]);
    const got = await client.send(new GetObjectCommand({ Bucket: 'staging', Key: `pr/42/${NAME}.log` }));
    const body = await got.Body!.transformToString();
    expect(body).toContain('== done');
    expect(body).not.toContain(SECRET);
    expect(body).not.toContain(TOKEN);
  });
});

describe('deploy stage', () => {
  let h: Harness | undefined;
  const saved = process.env.HARNESS_GITHUB_TOKEN;
  afterEach(async () => {
    await killAll();
    await h?.stop();
    if (saved === undefined) delete process.env.HARNESS_GITHUB_TOKEN;
    else process.env.HARNESS_GITHUB_TOKEN = saved;
  });

  test('with upload_logs, bot: deploy stages the slurm-<jobid>.out of the job, with the bot token scrubbed', async () => {
    // The value of the bot's token env var (deploy reads it as a secret to scrub).
    const token = 'site-token-value-0123456789';
    process.env.HARNESS_GITHUB_TOKEN = token;
    h = await startHarness(
      'deploy:\n  policy: all\n  upload_logs: true\n  uploader:\n    kind: directory\n    directory: staging\n',
    );
    const build = PASSING_BOT['bot/build.sh'].replace(
      'exit 0',
      `echo "leaked ${token}"\necho build-log-end\nexit 0`,
    );
    openPr(h, { ...PASSING_BOT, 'bot/build.sh': build });
    await storeComment(h, 'bot: build for:arch=zen4');
    await tickUntil(h, async () => {
      const dirs = await jobDirsOf(h!);
      return dirs.length === 1 && (await stageOf(dirs[0]!)) === 'finished';
    });
    const jobDir = (await jobDirsOf(h))[0]!;
    const data = (await stateOf<JobData>(jobDir)).data;
    const artefact = data.result!.artefacts[0]!;
    const replies = () =>
      h!.fake.commentsOf(OWNER, REPO, PR).filter((c) => c.body.includes('deploy with policy'));
    await storeComment(h, 'bot: deploy');
    await tickUntil(h, async () => replies().length === 1 && (await h!.deps.jobdirs.pending()).length === 0);
    expect(replies()[0]!.body).toContain(`\`${artefact}\`: uploaded`);
    const stagedDir = path.join(h.root, 'staging', legacyAwsPath(artefact));
    const log = await fs.readFile(path.join(stagedDir, `${artefact}.log`), 'utf8');
    expect(log).toContain('build-log-end');
    expect(log).toContain('leaked [secret]');
    expect(log).not.toContain(token);
    expect(data.job_id).toBeDefined();
  });
});
