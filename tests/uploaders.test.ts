/**
 * The uploaders against real destinations: a staging directory, a real S3-compatible server (s3rver on
 * loopback) and a real executable standing in for eessi-upload-to-staging.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { parseConfig } from '../src/config/config.js';
import { provenancePath, sha256File } from '../src/domain/provenance.js';
import { verifyFile } from '../src/adapters/signing.js';
import {
  createDirectoryUploader,
  createScriptUploader,
  createUploader,
  deployArtefact,
  legacyAwsPath,
  resolveDestination,
  type UploadItem,
} from '../src/adapters/uploaders/index.js';
import { createS3Uploader } from '../src/adapters/uploaders/s3.js';
import { DEPLOY_JOB } from './support/deployFixtures.js';
import { S3RVER_CREDENTIALS, startS3Server, type S3TestServer } from './support/s3server.js';

// The SDK's notice that Node 20 support ends is not news in test output.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const NAME = 'eessi-2023.06-software-linux-x86_64-amd-zen4-1700000000.tar.zst';
const LEGACY = '2023.06/software/linux/x86_64/amd/zen4/1700000000';

let dir: string;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'hpcbot-upload-test-'));
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

/** An artefact plus the five companion files, each with distinct content, in a fresh job dir. */
async function makeItem(name = NAME, overrides: Partial<UploadItem> = {}): Promise<UploadItem> {
  const jobDir = await fs.mkdtemp(path.join(dir, 'job-'));
  const artefact = path.join(jobDir, name);
  const write = async (file: string, text: string) => {
    await fs.writeFile(file, text);
    return file;
  };
  await write(artefact, `artefact ${name}\n`);
  return {
    artefact,
    artefactSig: await write(`${artefact}.sig`, 'sig of artefact\n'),
    provenance: await write(provenancePath(artefact), '{"provenance":true}\n'),
    provenanceSig: await write(`${provenancePath(artefact)}.sig`, 'sig of provenance\n'),
    metadata: await write(`${artefact}.meta.txt`, '{"metadata":true}\n'),
    metadataSig: await write(`${artefact}.meta.txt.sig`, 'sig of metadata\n'),
    artefactName: name,
    repoId: 'eessi.io-2023.06-software',
    githubRepository: 'EESSI/software-layer',
    prNumber: 42,
    prCommentId: 777,
    ...overrides,
  };
}

describe('destinations', () => {
  test('legacy_aws_path as the EESSI script computes it, for .tar.gz and .tar.zst', () => {
    expect(legacyAwsPath('eessi-2023.06-software-linux-x86_64-amd-zen2-1697812345.tar.gz')).toBe(
      '2023.06/software/linux/x86_64/amd/zen2/1697812345',
    );
    expect(legacyAwsPath(NAME)).toBe(LEGACY);
    // Runs of dashes become one slash (tr -s).
    expect(legacyAwsPath('eessi-2023.06--compat-linux-x86_64-1.tar.gz')).toBe(
      '2023.06/compat/linux/x86_64/1',
    );
  });

  test('prefix variables are expanded; an empty prefix is the legacy path; a map without the repo is refused', () => {
    const target = { artefactName: NAME, repoId: 'r1', githubRepository: 'o/r', prNumber: 7 };
    const r = resolveDestination(
      {
        artefact_prefix: 'staging/${github_repository}/pr$pull_request_number/${legacy_aws_path}',
        metadata_prefix: { r1: '' },
        bucket: { r1: 'b1' },
      },
      target,
    );
    expect(r.ok && r.dest.keys).toEqual({
      artefact: `staging/o/r/pr7/${LEGACY}/${NAME}`,
      artefactSig: `staging/o/r/pr7/${LEGACY}/${NAME}.sig`,
      provenance: `staging/o/r/pr7/${LEGACY}/${NAME}.provenance.json`,
      provenanceSig: `staging/o/r/pr7/${LEGACY}/${NAME}.provenance.json.sig`,
      metadataSig: `${LEGACY}/${NAME}.meta.txt.sig`,
      metadata: `${LEGACY}/${NAME}.meta.txt`,
    });
    expect(resolveDestination({ bucket: { other: 'b' } }, target)).toEqual({
      ok: false,
      reason: 'no bucket for r1',
    });
    expect(resolveDestination({ artefact_prefix: { other: 'x' } }, target)).toEqual({
      ok: false,
      reason: 'no artefact prefix for r1',
    });
  });

  test('names that would climb out of the prefix are refused', () => {
    const base = { repoId: 'r', githubRepository: 'o/r', prNumber: 1 };
    for (const artefactName of [
      'eessi-..-..-etc-passwd.tar.gz',
      '../x.tar.gz',
      '.hidden.tar.gz',
      'a b.tar.gz',
    ]) {
      const r = resolveDestination({}, { ...base, artefactName });
      expect(r.ok).toBe(false);
    }
  });

  test('site.yaml: deploy defaults, path resolution, and errors with key paths', () => {
    const cfg = parseConfig('instance: inst\njobdirs: jd\n', '/etc/hpcbot/site.yaml');
    expect(cfg.deploy.policy).toBe('once');
    expect(cfg.deploy.uploader.kind).toBe('directory');
    expect(cfg.deploy.uploader.directory).toBe('/etc/hpcbot/jd/staging');
    expect(cfg.deploy.signing).toEqual({ namespace: 'inst' });
    const s3 = parseConfig(
      [
        'instance: inst',
        'jobdirs: /var/jd',
        'deploy:',
        '  policy: latest',
        '  uploader:',
        '    kind: s3',
        '    bucket: { eessi.io-2023.06-software: eessi-staging-2023.06 }',
        '    artefact_prefix: "${github_repository}/${pull_request_number}"',
        '  signing:',
        '    key_file: keys/bot',
        '    namespace: eessi-bot',
      ].join('\n'),
      '/etc/hpcbot/site.yaml',
    );
    expect(s3.deploy.signing).toEqual({ key_file: '/etc/hpcbot/keys/bot', namespace: 'eessi-bot' });
    expect(s3.deploy.uploader.bucket).toEqual({ 'eessi.io-2023.06-software': 'eessi-staging-2023.06' });
    expect(() =>
      parseConfig('instance: i\njobdirs: j\ndeploy:\n  uploader:\n    kind: s3\n', 'site.yaml'),
    ).toThrow(/site.yaml:\d+: deploy.uploader.bucket: required/);
    expect(() =>
      parseConfig(
        'instance: i\njobdirs: j\ndeploy:\n  uploader:\n    artefact_prefix: "${HOME}/x"\n',
        'site.yaml',
      ),
    ).toThrow(/deploy.uploader.artefact_prefix: unknown variable "\$\{HOME\}"/);
    expect(() => parseConfig('instance: i\njobdirs: j\ndeploy:\n  polcy: all\n', 'site.yaml')).toThrow(
      /site.yaml:4: deploy.polcy: unknown key "polcy"/,
    );
  });
});

describe('directory uploader', () => {
  test('copies into the prefixed paths, metadata last, atomically replacing stale files', async () => {
    const staging = path.join(dir, 'staging-1');
    const uploader = createDirectoryUploader({
      directory: staging,
      artefact_prefix: '${github_repository}/pr-${pull_request_number}',
    });
    const item = await makeItem();
    const dest = (k: string) => path.join(staging, k);
    // A stale copy of the artefact from an earlier upload, with a second link that a reader holds open.
    const artefactDest = dest(`EESSI/software-layer/pr-42/${NAME}`);
    await fs.mkdir(path.dirname(artefactDest), { recursive: true });
    await fs.writeFile(artefactDest, 'stale');
    await fs.link(artefactDest, path.join(dir, 'reader-view'));

    const r = await uploader.upload(item);
    expect(r.uploaded).toBe(true);
    if (!r.uploaded) return;
    expect(r.url).toBe(`file://${artefactDest}`);
    expect(r.objects.map((o) => o.key)).toEqual([
      `EESSI/software-layer/pr-42/${NAME}.sig`,
      `EESSI/software-layer/pr-42/${NAME}`,
      `EESSI/software-layer/pr-42/${NAME}.provenance.json`,
      `EESSI/software-layer/pr-42/${NAME}.provenance.json.sig`,
      `${LEGACY}/${NAME}.meta.txt.sig`,
      `${LEGACY}/${NAME}.meta.txt`,
    ]);
    for (const o of r.objects) expect(await fs.readFile(dest(o.key))).toEqual(await fs.readFile(o.file));
    // Replaced by rename, not rewritten in place: the old inode still has the old bytes.
    expect(await fs.readFile(path.join(dir, 'reader-view'), 'utf8')).toBe('stale');
    // No temp files anywhere in the staging tree.
    const all = execFileSync('find', [staging, '-name', '.tmp-*'], { encoding: 'utf8' });
    expect(all).toBe('');

    // A retry finds everything in place and writes nothing.
    const again = await uploader.upload(item);
    expect(again.uploaded && again.objects.map((o) => o.action)).toEqual(Array(6).fill('unchanged'));
  });

  test('a symlinked artefact (pointing at a bot file) is refused and nothing is copied', async () => {
    const staging = path.join(dir, 'staging-2');
    const item = await makeItem();
    const secret = path.join(dir, 'bot-secret');
    await fs.writeFile(secret, 'PRIVATE');
    await fs.rm(item.artefact);
    await fs.symlink(secret, item.artefact);
    const r = await createDirectoryUploader({ directory: staging }).upload(item);
    expect(r).toMatchObject({ uploaded: false, reason: expect.stringMatching(/symbolic link/) });
    await expect(fs.access(staging)).rejects.toThrow();
  });
});

describe('s3 uploader', () => {
  let s3: S3TestServer;
  let client: S3Client;
  const clientConfig = () => ({ credentials: S3RVER_CREDENTIALS });

  beforeAll(async () => {
    s3 = await startS3Server(['staging', 'other']);
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

  async function keysIn(bucket: string): Promise<string[]> {
    const out = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
    return (out.Contents ?? []).map((o) => o.Key!).sort();
  }

  async function objectSha256(bucket: string, key: string): Promise<{ size: number; sha256: string }> {
    const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of got.Body as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      size += chunk.length;
    }
    return { size, sha256: hash.digest('hex') };
  }

  test('uploads under the expanded prefixes, with the metadata last, and skips on a retry', async () => {
    const uploader = createS3Uploader({
      endpoint_url: s3.endpoint,
      bucket: { 'eessi.io-2023.06-software': 'staging' },
      artefact_prefix: 'pr/${github_repository}/${pull_request_number}/${legacy_aws_path}',
      metadata_prefix: 'meta/$pull_request_number',
      clientConfig: clientConfig(),
    });
    const item = await makeItem();
    const before = s3.created.length;
    const r = await uploader.upload(item);
    expect(r).toMatchObject({ uploaded: true });
    expect(s3.events.slice(before).every((e) => e.name === 'ObjectCreated:Put')).toBe(true);
    if (!r.uploaded) return;
    const prefix = `pr/EESSI/software-layer/42/${LEGACY}`;
    expect(r.url).toBe(`${s3.endpoint}/staging/${prefix}/${NAME}`);
    // The server's own creation order: signature and artefact first, the metadata last.
    expect(s3.created.slice(before)).toEqual([
      `staging/${prefix}/${NAME}.sig`,
      `staging/${prefix}/${NAME}`,
      `staging/${prefix}/${NAME}.provenance.json`,
      `staging/${prefix}/${NAME}.provenance.json.sig`,
      `staging/meta/42/${NAME}.meta.txt.sig`,
      `staging/meta/42/${NAME}.meta.txt`,
    ]);
    const head = await client.send(
      new HeadObjectCommand({ Bucket: 'staging', Key: `meta/42/${NAME}.meta.txt` }),
    );
    expect(head.Metadata?.sha256).toBe(await sha256File(item.metadata));

    const createdBefore = s3.created.length;
    const again = await uploader.upload(item);
    expect(again.uploaded && again.objects.map((o) => o.action)).toEqual(Array(6).fill('unchanged'));
    expect(s3.created.length).toBe(createdBefore);
  });

  test('deployArtefact: a symlinked or hard-linked artefact is refused; nothing of its target reaches S3', async () => {
    const cfgDir = await fs.mkdtemp(path.join(dir, 'cfg-s3-'));
    const cfg = parseConfig(
      `instance: test-bot\njobdirs: jd\ndeploy:\n  uploader:\n    kind: s3\n    endpoint_url: ${s3.endpoint}\n    bucket: staging\n`,
      path.join(cfgDir, 'site.yaml'),
    );
    const secret = path.join(dir, 'bot-signing-key');
    await fs.writeFile(secret, 'PRIVATE KEY MATERIAL\n');
    const workTree = await fs.mkdtemp(path.join(dir, 'work-'));
    await fs.symlink(secret, path.join(workTree, 'soft.tar.gz'));
    await fs.link(secret, path.join(workTree, 'hard.tar.gz'));
    const outDir = path.join(workTree, '..', `${path.basename(workTree)}-deploy`);
    const before = s3.created.length;
    const uploader = await createUploader(cfg, { s3: { clientConfig: clientConfig() } });
    const input = { workTree, outDir, job: DEPLOY_JOB, repoId: 'r' };
    expect(await deployArtefact(cfg, uploader, { ...input, name: 'soft.tar.gz' })).toMatchObject({
      uploaded: false,
      reason: 'soft.tar.gz is a symbolic link',
    });
    expect(await deployArtefact(cfg, uploader, { ...input, name: 'hard.tar.gz' })).toMatchObject({
      uploaded: false,
      reason: 'hard.tar.gz has 2 hard links',
    });
    expect(s3.created.length).toBe(before);
    expect(await fs.readdir(outDir).catch(() => [])).toEqual([]);
  });

  test('a bucket map without the repo_id uploads nothing and says why', async () => {
    const uploader = createS3Uploader({
      endpoint_url: s3.endpoint,
      bucket: { 'some-other-repo': 'other' },
      clientConfig: clientConfig(),
    });
    const before = s3.created.length;
    const r = await uploader.upload(await makeItem());
    expect(r).toEqual({
      uploaded: false,
      reason: 'no bucket for eessi.io-2023.06-software',
      retryable: false,
      objects: [],
    });
    expect(s3.created.length).toBe(before);
    expect(await keysIn('other')).toEqual([]);
  });

  test('a refusing server (no such bucket) is a retryable failure and nothing is created', async () => {
    const uploader = createS3Uploader({
      endpoint_url: s3.endpoint,
      bucket: 'no-such-bucket',
      clientConfig: clientConfig(),
    });
    const before = s3.created.length;
    const r = await uploader.upload(await makeItem());
    expect(r).toMatchObject({
      uploaded: false,
      retryable: true,
      reason: expect.stringMatching(/NoSuchBucket/),
      objects: [],
    });
    expect(s3.created.length).toBe(before);
  });

  test('a 110 MB artefact goes up as a multipart upload and comes back byte for byte', async () => {
    const jobDir = await fs.mkdtemp(path.join(dir, 'big-'));
    const big = path.join(jobDir, 'eessi-2023.06-software-linux-x86_64-generic-1700000001.tar.gz');
    const size = 110 * 1024 * 1024;
    // Sparse, with a distinct marker in every MiB so that swapped or repeated parts would show.
    const handle = await fs.open(big, 'w');
    try {
      await handle.truncate(size);
      for (let mib = 0; mib < 110; mib++) {
        await handle.write(
          Buffer.from(`MiB ${mib} of the test artefact\n`),
          0,
          undefined,
          mib * 1024 * 1024 + 17,
        );
      }
    } finally {
      await handle.close();
    }
    const metadata = path.join(jobDir, 'meta.txt');
    await fs.writeFile(metadata, '{}\n');
    const expected = await sha256File(big);
    const uploader = createS3Uploader({
      endpoint_url: s3.endpoint,
      bucket: 'staging',
      artefact_prefix: 'big',
      clientConfig: clientConfig(),
      partSize: 16 * 1024 * 1024,
    });
    const r = await uploader.upload({
      artefact: big,
      metadata,
      artefactName: path.basename(big),
      repoId: 'r',
      githubRepository: 'o/r',
      prNumber: 1,
    });
    expect(r).toMatchObject({ uploaded: true });
    const key = `big/${path.basename(big)}`;
    // Completed as a multipart upload (a single PUT would be ObjectCreated:Put).
    expect(s3.events.filter((e) => e.key === `staging/${key}`).map((e) => e.name)).toEqual([
      'ObjectCreated:Post',
    ]);
    expect(await objectSha256('staging', key)).toEqual({ size, sha256: expected });
    await fs.rm(jobDir, { recursive: true, force: true });
  }, 120_000);
});

describe('script uploader', () => {
  async function recordingScript(exitCode = 0): Promise<{ script: string; argvFile: string }> {
    const d = await fs.mkdtemp(path.join(dir, 'script-'));
    const argvFile = path.join(d, 'argv');
    const script = path.join(d, 'eessi-upload-to-staging');
    await fs.writeFile(
      script,
      `#!/bin/sh\nfor a in "$@"; do printf '%s\\n' "$a"; done > '${argvFile}'\necho "uploading..."\nexit ${exitCode}\n`,
      { mode: 0o755 },
    );
    return { script, argvFile };
  }

  test('runs the script with the EESSI flags (prefixes unexpanded, no signing flags)', async () => {
    const { script, argvFile } = await recordingScript();
    const uploader = createScriptUploader({
      script,
      instance: 'test-bot',
      endpoint_url: 'https://s3.example.org',
      bucket: { 'eessi.io-2023.06-software': 'eessi-staging-2023.06' },
      artefact_prefix: '${github_repository}/${pull_request_number}',
      metadata_prefix: 'meta/${legacy_aws_path}',
    });
    const item = await makeItem();
    const r = await uploader.upload(item);
    expect(r).toMatchObject({
      uploaded: true,
      url: `https://s3.example.org/eessi-staging-2023.06/EESSI/software-layer/42/${NAME}`,
    });
    expect((await fs.readFile(argvFile, 'utf8')).split('\n').slice(0, -1)).toEqual([
      '--artefact-prefix',
      '${github_repository}/${pull_request_number}',
      '--bucket-name',
      'eessi-staging-2023.06',
      '--endpoint-url',
      'https://s3.example.org',
      '--metadata-prefix',
      'meta/${legacy_aws_path}',
      '--pr-comment-id',
      '777',
      '--pull-request-number',
      '42',
      '--repository',
      'EESSI/software-layer',
      '--bot-instance',
      'test-bot',
      item.artefact,
    ]);
  });

  test('optional flags are left out; a failing script is not uploaded and its output is the reason', async () => {
    const { script, argvFile } = await recordingScript(3);
    const cfg = parseConfig(
      `instance: bot2\njobdirs: jd\ndeploy:\n  uploader:\n    kind: script\n    script: ${script}\n`,
      path.join(dir, 'site.yaml'),
    );
    const r = await (await createUploader(cfg)).upload(await makeItem(NAME, { prCommentId: undefined }));
    expect(r).toMatchObject({
      uploaded: false,
      retryable: true,
      reason: expect.stringMatching(/exit 3.*uploading/),
    });
    const argv = (await fs.readFile(argvFile, 'utf8')).split('\n').slice(0, -1);
    expect(argv.slice(0, -1)).toEqual([
      '--pr-comment-id',
      'none',
      '--pull-request-number',
      '42',
      '--repository',
      'EESSI/software-layer',
      '--bot-instance',
      'bot2',
    ]);
  });
});

describe('deployArtefact', () => {
  const job = DEPLOY_JOB;

  test('signs the artefact, provenance and metadata, and stages all six files', async () => {
    const keyDir = await fs.mkdtemp(path.join(dir, 'keys-'));
    const key = path.join(keyDir, 'bot');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bot', '-f', key]);
    const allowed = path.join(keyDir, 'allowed_signers');
    await fs.writeFile(allowed, `bot ${(await fs.readFile(`${key}.pub`, 'utf8')).trim()}\n`);
    const cfgDir = await fs.mkdtemp(path.join(dir, 'cfg-'));
    const cfg = parseConfig(
      `instance: test-bot\njobdirs: jd\ndeploy:\n  signing:\n    key_file: ${key}\n`,
      path.join(cfgDir, 'site.yaml'),
    );
    const item = await makeItem();
    const r = await deployArtefact(cfg, await createUploader(cfg), {
      name: NAME,
      workTree: path.dirname(item.artefact),
      outDir: path.join(path.dirname(item.artefact), 'deploy'),
      job,
      repoId: job.target.repoId,
      prCommentId: 99,
    });
    expect(r).toMatchObject({ uploaded: true, signing: 'signed' });
    if (!r.uploaded) return;
    expect(r.objects.map((o) => o.key.split('/').pop())).toEqual([
      `${NAME}.sig`,
      NAME,
      `${NAME}.provenance.json`,
      `${NAME}.provenance.json.sig`,
      `${NAME}.meta.txt.sig`,
      `${NAME}.meta.txt`,
    ]);
    const staged = (k: string) => path.join(cfgDir, 'jd', 'staging', LEGACY, k);
    for (const f of [NAME, `${NAME}.provenance.json`, `${NAME}.meta.txt`]) {
      expect(await verifyFile(staged(f), `${staged(f)}.sig`, allowed, 'test-bot')).toEqual({
        ok: true,
        principal: 'bot',
      });
    }
    const meta = JSON.parse(await fs.readFile(staged(`${NAME}.meta.txt`), 'utf8'));
    expect(meta).toEqual({
      uploader: { username: os.userInfo().username, hostname: os.hostname() },
      payload: {
        filename: NAME,
        size: String((await fs.stat(item.artefact)).size),
        ctime: expect.stringMatching(/^[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d UTC \d{4}$/),
        sha256sum: await sha256File(item.artefact),
        url: r.url,
      },
      link2pr: { repo: 'EESSI/software-layer', pr: '42', pr_comment_id: '99' },
    });
    const prov = JSON.parse(await fs.readFile(staged(`${NAME}.provenance.json`), 'utf8'));
    expect(prov.subject).toEqual([{ name: NAME, digest: { sha256: await sha256File(item.artefact) } }]);
    expect(prov.predicate.runDetails.builder.id).toBe('hpcbot:test-bot');
  });

  test('without a key nothing is signed and the result says so', async () => {
    const cfg = parseConfig('instance: test-bot\njobdirs: jd\n', path.join(dir, 'nokey', 'site.yaml'));
    const item = await makeItem('eessi-2023.06-compat-linux-x86_64-1700000002.tar.gz');
    await Promise.all([item.artefactSig, item.provenanceSig, item.metadataSig].map((f) => fs.rm(f!)));
    const r = await deployArtefact(cfg, await createUploader(cfg), {
      name: item.artefactName,
      workTree: path.dirname(item.artefact),
      outDir: path.join(path.dirname(item.artefact), 'deploy'),
      job,
      repoId: 'r',
    });
    expect(r).toMatchObject({ uploaded: true, signing: 'unsigned' });
    expect(r.objects.map((o) => path.basename(o.key))).toEqual([
      'eessi-2023.06-compat-linux-x86_64-1700000002.tar.gz',
      'eessi-2023.06-compat-linux-x86_64-1700000002.tar.gz.provenance.json',
      'eessi-2023.06-compat-linux-x86_64-1700000002.tar.gz.meta.txt',
    ]);
  });
});
