/**
 * scripts/eessi-upload-to-staging, run by the bot through `deploy.uploader.kind: script`, against the
 * S3-compatible test server with the AWS CLI: the objects land where EESSI's ingestion looks for them
 * (the legacy path or the expanded prefixes), the metadata object last, and the metadata document has
 * the fields ingestion reads, including the `task:` block of deploy.task_metadata.
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseConfig } from '../src/config/config.js';
import {
  createUploader,
  deployArtefact,
  taskBlock,
  type ArtefactMetadata,
} from '../src/adapters/uploaders/index.js';
import type { JobData } from '../src/store/job.js';
import { ROOT } from './support/spawn.js';
import { S3RVER_CREDENTIALS, startS3Server, type S3TestServer } from './support/s3server.js';

const SCRIPT = path.join(ROOT, 'scripts', 'eessi-upload-to-staging');
/** Asynchronous: the S3 server runs in this process, so a synchronous child would wait for it forever. */
const runScript = promisify(execFile);
/** Each AWS CLI call takes seconds to start (Python); a test makes up to six. */
const SLOW = 180_000;
const BUCKET = 'eessi-staging-2023.06';
const REPO_ID = 'eessi.io-2023.06-software';

const job: JobData = {
  pr: { owner: 'EESSI', repo: 'software-layer', number: 42, installation_id: null },
  instance: 'test-bot',
  target: {
    nodeType: 'zen4',
    repoId: REPO_ID,
    os: 'linux',
    onArch: 'x86_64/amd/zen4',
    forArch: 'x86_64/amd/zen4',
    slurmParams: [],
  },
  exportVariables: [],
  job_owner: 'reviewer1',
  head_sha: 'a'.repeat(40),
  backend: 'local',
  submit_id: 'sub-1',
  job_id: '1234',
  rows: [],
};

let s3: S3TestServer;
let dir: string;
const savedEnv = { ...process.env };

beforeAll(async () => {
  s3 = await startS3Server([BUCKET]);
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'hpcbot-upload-script-'));
  // The script inherits the bot's environment: the AWS CLI takes its credentials from there.
  Object.assign(process.env, {
    AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_CONFIG_FILE: path.join(dir, 'no-aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: path.join(dir, 'no-aws-credentials'),
  });
});

afterAll(async () => {
  process.env = savedEnv;
  await s3?.close();
});

/** A job work tree with a real .tar.zst made by tar and zstd. */
async function workTreeWith(name: string): Promise<string> {
  const workTree = await fs.mkdtemp(path.join(dir, 'work-'));
  await fs.writeFile(path.join(workTree, 'hello.txt'), 'hello from the build\n');
  execFileSync('tar', ['-caf', name, 'hello.txt'], { cwd: workTree });
  return workTree;
}

function siteYaml(uploader: string[], extra: string[] = []): string {
  return [
    'instance: test-bot',
    'jobdirs: jd',
    'deploy:',
    '  uploader:',
    '    kind: script',
    `    script: ${SCRIPT}`,
    `    endpoint_url: ${s3.endpoint}`,
    `    bucket: ${BUCKET}`,
    ...uploader.map((l) => `    ${l}`),
    ...extra,
    '',
  ].join('\n');
}

function objectFile(key: string): string {
  // s3rver keeps each object as <dir>/<bucket>/<key>._S3rver_object
  return path.join(s3.dir, BUCKET, `${key}._S3rver_object`);
}

test(
  'legacy paths: the artefact then its metadata, last, with the task block; the bot records the URL',
  async () => {
    const name = 'eessi-2023.06-software-linux-x86_64-amd-zen4-1700000001.tar.zst';
    const cfg = parseConfig(
      siteYaml([], ['  task_metadata:', '    action: add', '    order: 17', '    mode: order']),
      path.join(dir, 'site.yaml'),
    );
    const workTree = await workTreeWith(name);
    const before = s3.created.length;
    const r = await deployArtefact(cfg, await createUploader(cfg), {
      name,
      workTree,
      outDir: path.join(workTree, '..', `out-${path.basename(workTree)}`),
      job,
      repoId: REPO_ID,
      prCommentId: 777,
    });
    const legacy = '2023.06/software/linux/x86_64/amd/zen4/1700000001';
    expect(r).toMatchObject({ uploaded: true, url: `${s3.endpoint}/${BUCKET}/${legacy}/${name}` });
    expect(s3.created.slice(before)).toEqual([
      `${BUCKET}/${legacy}/${name}`,
      `${BUCKET}/${legacy}/${name}.meta.txt`,
    ]);

    const uploaded = readFileSync(objectFile(`${legacy}/${name}`));
    expect(uploaded.subarray(0, 4).toString('hex')).toBe('28b52ffd'); // a zstd frame
    const meta = JSON.parse(
      readFileSync(objectFile(`${legacy}/${name}.meta.txt`), 'utf8'),
    ) as ArtefactMetadata;
    expect(meta).toEqual({
      uploader: { username: os.userInfo().username, hostname: expect.any(String) },
      payload: {
        filename: name,
        size: String(uploaded.length),
        ctime: expect.stringMatching(/^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d UTC \d{4}$/),
        sha256sum: createHash('sha256').update(uploaded).digest('hex'),
        url: `${s3.endpoint}/${BUCKET}/${legacy}/${name}`,
      },
      link2pr: { repo: 'EESSI/software-layer', pr: '42', pr_comment_id: '777' },
      task: { action: 'add', order: '17', mode: 'order' },
    });
  },
  SLOW,
);

test(
  'prefixes are expanded by the script (only its three variables), and --sha and --legacy-aws-path work',
  async () => {
    const name = 'eessi-2023.06-software-linux-x86_64-amd-zen4-1700000002.tar.gz';
    const workTree = await workTreeWith(name);
    const cfg = parseConfig(
      siteYaml([
        "artefact_prefix: 'new/${github_repository}/${pull_request_number}'",
        "metadata_prefix: 'meta/${legacy_aws_path}'",
      ]),
      path.join(dir, 'site-prefix.yaml'),
    );
    const before = s3.created.length;
    const r = await deployArtefact(cfg, await createUploader(cfg), {
      name,
      workTree,
      outDir: path.join(workTree, '..', `out-${path.basename(workTree)}`),
      job,
      repoId: REPO_ID,
    });
    expect(r).toMatchObject({ uploaded: true });
    expect(s3.created.slice(before)).toEqual([
      `${BUCKET}/new/EESSI/software-layer/42/${name}`,
      `${BUCKET}/meta/2023.06/software/linux/x86_64/amd/zen4/1700000002/${name}.meta.txt`,
    ]);
    const meta = JSON.parse(
      readFileSync(
        objectFile(`meta/2023.06/software/linux/x86_64/amd/zen4/1700000002/${name}.meta.txt`),
        'utf8',
      ),
    ) as ArtefactMetadata;
    expect(meta.link2pr).toEqual({ repo: 'EESSI/software-layer', pr: '42', pr_comment_id: 'none' });
    expect(meta.task).toBeUndefined();

    // The flags the bot does not pass, used directly: the commit, a given legacy path, a given metadata file.
    const ownMeta = path.join(workTree, 'given.meta.txt');
    await fs.writeFile(ownMeta, '{"given": true}\n');
    const env = { ...process.env };
    await runScript(
      SCRIPT,
      [
        '--endpoint-url',
        s3.endpoint,
        '--bucket-name',
        BUCKET,
        '--legacy-aws-path',
        'custom/place',
        '--sha',
        'c'.repeat(40),
        '--artefact',
        path.join(workTree, name),
      ],
      { env },
    );
    const custom = JSON.parse(
      readFileSync(objectFile(`custom/place/${name}.meta.txt`), 'utf8'),
    ) as ArtefactMetadata;
    expect(custom.link2pr).toEqual({
      repo: 'EESSI/software-layer',
      pr: 'none',
      pr_comment_id: 'none',
      sha: 'c'.repeat(40),
    });
    await runScript(
      SCRIPT,
      [
        '-e',
        s3.endpoint,
        '-n',
        BUCKET,
        '--legacy-aws-path',
        'given',
        '--metadata',
        ownMeta,
        path.join(workTree, name),
      ],
      { env },
    );
    expect(readFileSync(objectFile(`given/${name}.meta.txt`), 'utf8')).toBe('{"given": true}\n');
  },
  SLOW,
);

test(
  'refuses what ingestion would refuse, before uploading anything',
  async () => {
    const workTree = await workTreeWith('eessi-2023.06-software-linux-x86_64-generic-1.tar.zst');
    await fs.writeFile(
      path.join(workTree, 'eessi-2023.06-software-linux-x86_64-generic-2.tar.zst'),
      'not a tar',
    );
    await fs.writeFile(path.join(workTree, 'random-name.tar.gz'), 'x');
    const run = async (args: string[]) => {
      try {
        await runScript(SCRIPT, ['-e', s3.endpoint, '-n', BUCKET, ...args], { cwd: workTree });
        return '';
      } catch (err) {
        return String((err as { stderr: string }).stderr);
      }
    };
    const before = s3.created.length;
    expect(await run(['eessi-2023.06-software-linux-x86_64-generic-2.tar.zst'])).toContain(
      'is not a readable tar archive',
    );
    expect(await run(['random-name.tar.gz'])).toContain('is not an EESSI artefact name');
    expect(await run(['-a', '${HOME}', 'eessi-2023.06-software-linux-x86_64-generic-1.tar.zst'])).toContain(
      'uses an unknown variable',
    );
    expect(await run(['--sign-key', '/k', 'x'])).toContain('this script does not sign');
    expect(s3.created.length).toBe(before);
  },
  SLOW,
);

test('taskBlock: the defaults of the upload script', () => {
  const mtime = new Date(1_700_000_000_000);
  expect(taskBlock({ action: 'add' }, mtime)).toEqual({ action: 'add', order: '', mode: 'timestamp' });
  expect(taskBlock({ action: 'delete', order: 5 }, mtime)).toEqual({
    action: 'delete',
    order: '5',
    mode: 'order',
  });
  expect(taskBlock({ action: 'add', mode: 'order' }, mtime)).toEqual({
    action: 'add',
    order: String(0x7000000000000000n | 1_700_000_000n),
    mode: 'order',
  });
});
