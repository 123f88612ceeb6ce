/**
 * `hpcbot config check` refuses each secret the bot holds (the webhook secret, the App private key, the
 * signing key) where a job could reach it: under jobdirs, under build.site_config.shared_fs_path (also
 * when either is reached through a symbolic link), readable by backend.run_as, or in a directory the
 * job user can write (it could replace the file). Each case: the exact line, and exit 2.
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describeWithJobUser, JOB_USER } from './support/jobUser.js';
import { runCli, tempDir } from './support/spawn.js';

type Secret = 'webhook' | 'app' | 'signing';

const KEY: Record<Secret, { key: string; keyPath: string; what: string; name: string }> = {
  webhook: {
    key: 'webhook_secret_file',
    keyPath: 'github.webhook_secret_file',
    what: 'the webhook secret',
    name: 'webhook-secret',
  },
  app: {
    key: 'private_key_file',
    keyPath: 'github.private_key_file',
    what: 'the App private key',
    name: 'app.pem',
  },
  signing: { key: 'key_file', keyPath: 'deploy.signing.key_file', what: 'the signing key', name: 'bot_key' },
};
const SECRETS = Object.keys(KEY) as Secret[];

let dir: string;
beforeEach(async () => {
  dir = await tempDir('hpcbot-secretplace-');
  await fs.chmod(dir, 0o755); // the job user reaches jobdirs (and so every secret's directory)
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

/** Write `secret` into `where` (created mode 755 unless it exists), mode 600 unless said otherwise. */
async function writeSecret(secret: Secret, where: string, mode = 0o600): Promise<string> {
  await fs.mkdir(where, { recursive: true, mode: 0o755 });
  const file = path.join(where, KEY[secret].name);
  if (secret === 'signing') {
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'hpcbot@test', '-f', file]);
  } else {
    const text =
      secret === 'app'
        ? generateKeyPairSync('rsa', {
            modulusLength: 2048,
            publicKeyEncoding: { type: 'spki', format: 'pem' },
            privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
          }).privateKey
        : 'whsec-placement\n';
    await fs.writeFile(file, text);
  }
  await fs.chmod(file, mode);
  return file;
}

interface Site {
  file: string;
  /** The line of site.yaml that names each secret. */
  line: Record<Secret, number>;
  jobdirs: string;
  shared: string;
}

/** site.yaml with the three secrets at `files`, and run_as when asked. */
async function site(
  files: Record<Secret, string>,
  opts: { runAs?: boolean; jobdirs?: string; shared?: string } = {},
) {
  const jobdirs = opts.jobdirs ?? path.join(dir, 'jobdirs');
  const shared = opts.shared ?? path.join(dir, 'shared');
  const lines = [
    'instance: test',
    `jobdirs: ${jobdirs}`,
    'github:',
    '  app_id: 1',
    `  private_key_file: ${files.app}`,
    '  webhook_secret_env: HPCBOT_TEST_UNSET_WEBHOOK_SECRET',
    `  webhook_secret_file: ${files.webhook}`,
    'deploy:',
    '  signing:',
    `    key_file: ${files.signing}`,
    'build:',
    '  site_config:',
    `    shared_fs_path: ${shared}`,
    'backend:',
    '  kind: local',
    ...(opts.runAs ? [`  run_as: ${JOB_USER}`] : []),
  ];
  const file = path.join(dir, 'site.yaml');
  await fs.writeFile(file, lines.join('\n') + '\n');
  const lineOf = (s: Secret) => lines.findIndex((l) => l.trimStart().startsWith(`${KEY[s].key}:`)) + 1;
  return {
    file,
    line: { webhook: lineOf('webhook'), app: lineOf('app'), signing: lineOf('signing') },
    jobdirs,
    shared,
  };
}

/** The three secrets in a safe place, then `secret` moved to `where` with `mode`. */
async function secretsWithOneAt(secret: Secret, where: string, mode = 0o600) {
  const files = {} as Record<Secret, string>;
  for (const s of SECRETS) files[s] = await writeSecret(s, path.join(dir, 'secrets'));
  await fs.rm(files[secret]);
  await fs.rm(`${files[secret]}.pub`, { force: true });
  files[secret] = await writeSecret(secret, where, mode);
  return files;
}

/** The error lines of `config check` (those naming site.yaml) and its exit code. */
async function check(s: Site): Promise<{ errors: string[]; code: number | null }> {
  const { code, stderr } = await runCli(['config', 'check', '--config', s.file]);
  return { errors: stderr.split('\n').filter((l) => l.startsWith(`${s.file}:`)), code };
}

describe.each(SECRETS)('%s', (secret) => {
  const { keyPath, what } = KEY[secret];

  test('under jobdirs', async () => {
    const files = await secretsWithOneAt(secret, path.join(dir, 'jobdirs', 'keys'));
    const s = await site(files);
    expect(await check(s)).toEqual({
      errors: [
        `${s.file}:${s.line[secret]}: ${keyPath}: ${what} (${files[secret]}) is under jobdirs (${s.jobdirs}), where jobs can reach it; move it out`,
      ],
      code: 2,
    });
  });

  test('under build.site_config.shared_fs_path', async () => {
    const files = await secretsWithOneAt(secret, path.join(dir, 'shared', 'keys'));
    const s = await site(files);
    expect(await check(s)).toEqual({
      errors: [
        `${s.file}:${s.line[secret]}: ${keyPath}: ${what} (${files[secret]}) is under build.site_config.shared_fs_path (${s.shared}), where jobs can reach it; move it out`,
      ],
      code: 2,
    });
  });
});

describeWithJobUser('with backend.run_as', () => {
  describe.each(SECRETS)('%s', (secret) => {
    const { keyPath, what } = KEY[secret];

    test('readable by the job user', async () => {
      const files = await secretsWithOneAt(secret, path.join(dir, 'readable'), 0o644);
      const s = await site(files, { runAs: true });
      expect(await check(s)).toEqual({
        errors: [
          `${s.file}:${s.line[secret]}: ${keyPath}: ${what} (${files[secret]}) is readable by the job user ${JOB_USER}; chmod 600 it (and 700 its directory)`,
        ],
        code: 2,
      });
    });

    test('in a directory the job user can write (a job could replace it)', async () => {
      const open = path.join(dir, 'open');
      const files = await secretsWithOneAt(secret, open);
      await fs.chmod(open, 0o777);
      const s = await site(files, { runAs: true });
      expect(await check(s)).toEqual({
        errors: [
          `${s.file}:${s.line[secret]}: ${keyPath}: ${what} (${files[secret]}) is in ${open}, which the job user ${JOB_USER} can write, so a job could replace it; make that directory writable by the bot's user only`,
        ],
        code: 2,
      });
    });
  });

  test('all three mode 600 in a directory the job user can enter but not write: accepted', async () => {
    const files = {} as Record<Secret, string>;
    for (const s of SECRETS) files[s] = await writeSecret(s, path.join(dir, 'secrets'));
    const s = await site(files, { runAs: true });
    const { code, stdout } = await runCli(['config', 'check', '--config', s.file]);
    expect(stdout.split('\n')[0]).toBe(`# ${s.file}: OK`);
    expect(code).toBe(0);
  });
});

test('all three outside jobdirs and shared_fs_path, mode 600: accepted', async () => {
  const files = {} as Record<Secret, string>;
  for (const s of SECRETS) files[s] = await writeSecret(s, path.join(dir, 'secrets'));
  const s = await site(files);
  const { code, stdout } = await runCli(['config', 'check', '--config', s.file]);
  expect(stdout.split('\n')[0]).toBe(`# ${s.file}: OK`);
  expect(code).toBe(0);
});

test.each([
  ['jobdirs', 'jobdirs'],
  ['shared_fs_path', 'build.site_config.shared_fs_path'],
])('a %s reached through a symbolic link does not hide a secret inside it', async (which, name) => {
  const real = path.join(dir, 'real-place');
  const link = path.join(dir, 'linked-place');
  await fs.mkdir(real);
  await fs.symlink(real, link);
  const files = await secretsWithOneAt('signing', path.join(real, 'keys'));
  const s = await site(files, which === 'jobdirs' ? { jobdirs: link } : { shared: link });
  expect(await check(s)).toEqual({
    errors: [
      `${s.file}:${s.line.signing}: deploy.signing.key_file: the signing key (${files.signing}) is under ${name} (${link}), where jobs can reach it; move it out`,
    ],
    code: 2,
  });
});
