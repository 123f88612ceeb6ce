/**
 * `config check` (and every start) finds each problem a process would otherwise die on later, and says
 * it in one line: `file:line: key.path: what is wrong, what to do`. Real files, real keys, real
 * ssh-keygen and ssh-agent, a real site.yaml on disk; `--online` against the fake GitHub and s3rver.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ConfigError, configErrorAt, loadConfig, type Config } from '../src/config/config.js';
import { checkOnline } from '../src/config/onlineCheck.js';
import { checkSite, SLURM_COMMANDS, type SiteProblem } from '../src/config/siteCheck.js';
import { FakeGitHub } from './support/fakeGithub.js';
import { S3RVER_CREDENTIALS, startS3Server, type S3TestServer } from './support/s3server.js';
import { LOCAL_RUNNER } from '../src/adapters/jobScripts.js';
import { BIN, ROOT, runCli, tempDir } from './support/spawn.js';

let dir: string;
let env: NodeJS.ProcessEnv;
beforeEach(async () => {
  dir = await tempDir('hpcbot-sitecheck-');
  // A clean environment: nothing from the developer's shell (tokens, AWS_*, an ssh-agent) leaks in.
  env = { PATH: process.env.PATH, HOME: dir, HPCBOT_TEST_WEBHOOK_SECRET: 'hook-secret' };
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

/** Write site.yaml: these lines after `instance` and `jobdirs` (so the first given line is line 3). */
async function site(...lines: string[]): Promise<string> {
  const file = path.join(dir, 'site.yaml');
  await fs.writeFile(file, ['instance: test', 'jobdirs: jobdirs', ...lines].join('\n') + '\n');
  return file;
}

const DRY_RUN = ['github:', '  dry_run: true', '  webhook_secret_env: HPCBOT_TEST_WEBHOOK_SECRET'];

/** The lines `config check` prints for this site.yaml (none when it passes). */
async function problems(file: string): Promise<string[]> {
  const config = loadConfig(file);
  const { errors } = await checkSite(config, env);
  return lines(config, errors);
}

function lines(config: Config, errors: SiteProblem[]): string[] {
  return errors.length === 0 ? [] : configErrorAt(config, errors).message.split('\n');
}

/** The lines the schema rejects this site.yaml with. */
function schemaProblems(file: string): string[] {
  try {
    loadConfig(file);
  } catch (err) {
    if (err instanceof ConfigError) return err.message.split('\n');
    throw err;
  }
  throw new Error(`${file} was accepted`);
}

async function writeKey(name: string, text: string, mode = 0o600): Promise<string> {
  const file = path.join(dir, name);
  await fs.writeFile(file, text, { mode });
  await fs.chmod(file, mode);
  return file;
}

const appKey = () =>
  generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  }).privateKey;

function sshKey(name: string, passphrase = ''): string {
  const file = path.join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', passphrase, '-C', 'hpcbot@test', '-f', file]);
  return file;
}

describe('a config that passes', () => {
  test('the test base config and the shipped config/site.yaml have no problems', async () => {
    expect(await problems(await site(...DRY_RUN))).toEqual([]);
    const shipped = loadConfig(path.join(ROOT, 'config', 'site.yaml'));
    expect((await checkSite(shipped, env)).errors).toEqual([]);
  });
});

describe('environment variables', () => {
  test('a token env var that is not set, or only blanks, is named with what to do', async () => {
    const file = await site(...DRY_RUN, '  token_env: HPCBOT_TEST_TOKEN');
    const expected = [
      `${file}:6: github.token_env: the environment variable HPCBOT_TEST_TOKEN is not set or empty; export the GitHub token in it for the bot's processes`,
    ];
    expect(await problems(file)).toEqual(expected);
    env.HPCBOT_TEST_TOKEN = '  ';
    expect(await problems(file)).toEqual(expected);
    env.HPCBOT_TEST_TOKEN = 'ghp_x';
    expect(await problems(file)).toEqual([]);
  });

  test('posting for real without any credentials is an error', async () => {
    const file = await site(
      'github:',
      '  dry_run: false',
      '  webhook_secret_env: HPCBOT_TEST_WEBHOOK_SECRET',
    );
    expect(await problems(file)).toEqual([
      `${file}:4: github.dry_run: false, but no GitHub credentials are configured; set github.app_id and github.private_key_file (an App) or github.token_env (a token), or dry_run: true`,
    ]);
  });
});

describe('the GitHub App key', () => {
  const app = (key: string) => site(...DRY_RUN, '  app_id: 12', `  private_key_file: ${key}`);

  test('a missing key file', async () => {
    const key = path.join(dir, 'app.pem');
    const file = await app(key);
    expect(await problems(file)).toEqual([
      `${file}:7: github.private_key_file: the App private key ${key} does not exist; download a private key from the GitHub App's settings and save it there, readable by the bot's user only`,
    ]);
  });

  test('a file that is not a private key', async () => {
    const key = await writeKey('app.pem', '-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n');
    const file = await app(key);
    expect(await problems(file)).toEqual([
      `${file}:7: github.private_key_file: the App private key ${key} is not a PEM private key; download a private key from the GitHub App's settings and save it there, readable by the bot's user only`,
    ]);
  });

  test('a real key that group and others can read; mode 600 passes', async () => {
    const key = await writeKey('app.pem', appKey(), 0o644);
    const file = await app(key);
    expect(await problems(file)).toEqual([
      `${file}:7: github.private_key_file: the App private key ${key} is open to group or others (mode 0644); chmod 600 it`,
    ]);
    await fs.chmod(key, 0o600);
    expect(await problems(file)).toEqual([]);
  });

  test('app_id without private_key_file is a schema error at the github section', async () => {
    const file = await site(...DRY_RUN, '  app_id: 12');
    expect(schemaProblems(file)).toEqual([
      `${file}:3: github.private_key_file: required with github.app_id: a GitHub App needs both (or use github.token_env instead)`,
    ]);
  });
});

describe('the webhook secret file', () => {
  test('an empty one (used when the env var is unset) is an error', async () => {
    delete env.HPCBOT_TEST_WEBHOOK_SECRET;
    const secret = await writeKey('hook', '\n');
    const file = await site(...DRY_RUN, `  webhook_secret_file: ${secret}`);
    expect(await problems(file)).toEqual([
      `${file}:6: github.webhook_secret_file: the webhook secret ${secret} is empty; write the App's webhook secret into it, or delete it to have one generated`,
    ]);
  });
});

describe('the signing key', () => {
  const signing = (key: string) => site(...DRY_RUN, 'deploy:', '  signing:', `    key_file: ${key}`);

  test('a key with a passphrase does not work (the bot signs without a terminal)', async () => {
    const key = sshKey('bot_key', 'a passphrase');
    const file = await signing(key);
    expect(await problems(file)).toEqual([
      `${file}:8: deploy.signing.key_file: the signing key ${key} does not work (ssh-keygen -y: Load key "${key}": incorrect passphrase supplied to decrypt private key); give an OpenSSH private key without a passphrase, or a .pub whose key is in ssh-agent`,
    ]);
  });

  test('a key that group and others can read; as ssh-keygen makes it (600) it passes', async () => {
    const key = sshKey('bot_key');
    await fs.chmod(key, 0o640);
    const file = await signing(key);
    expect(await problems(file)).toEqual([
      `${file}:8: deploy.signing.key_file: the signing key ${key} is open to group or others (mode 0640); chmod 600 it`,
    ]);
    await fs.chmod(key, 0o600);
    expect(await problems(file)).toEqual([]);
  });

  test('a missing key', async () => {
    const key = path.join(dir, 'bot_key');
    const file = await signing(key);
    expect(await problems(file)).toEqual([
      `${file}:8: deploy.signing.key_file: the signing key ${key} does not exist; create one with ssh-keygen -t ed25519 -N '' -f KEY, readable by the bot's user only`,
    ]);
  });

  describe('a .pub whose private key is in ssh-agent', () => {
    let agent: ChildProcess | undefined;
    afterEach(() => {
      agent?.kill();
      agent = undefined;
    });

    test('without an agent, then with one that lacks the key, then with the key added', async () => {
      const key = sshKey('bot_key');
      const pub = `${key}.pub`;
      const file = await signing(pub);
      expect(await problems(file)).toEqual([
        `${file}:8: deploy.signing.key_file: the signing key ${pub} is a public key, but SSH_AUTH_SOCK is not set; start ssh-agent and ssh-add its private key for the bot, or name the private key file`,
      ]);

      const sock = path.join(dir, 'agent.sock');
      agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
      for (let i = 0; i < 200 && !(await fs.stat(sock).catch(() => undefined)); i++)
        await new Promise((r) => setTimeout(r, 25));
      env.SSH_AUTH_SOCK = sock;
      expect(await problems(file)).toEqual([
        `${file}:8: deploy.signing.key_file: the signing key ${pub} is not usable through ssh-agent (Agent signature failed for ${pub}: agent refused operation); ssh-add its private key`,
      ]);

      execFileSync('ssh-add', ['-q', key], { env: { ...process.env, SSH_AUTH_SOCK: sock } });
      expect(await problems(file)).toEqual([]);
    });
  });
});

describe('build files', () => {
  test('a job script that does not exist', async () => {
    const script = path.join(dir, 'build.sh');
    const file = await site(...DRY_RUN, 'build:', '  job_script: build.sh');
    expect(await problems(file)).toEqual([
      `${file}:7: build.job_script: the job script ${script} does not exist; fix the path, or remove build.job_script to use the bundled one`,
    ]);
  });

  const nodeType = [
    '  node_types:',
    '    zen4:',
    '      cpu_subdir: x86_64/amd/zen4',
    '      repo_targets: [eessi-test, EESSI]',
  ];

  test('a repos_cfg_dir that does not exist', async () => {
    const file = await site(...DRY_RUN, 'build:', '  repos_cfg_dir: repos', ...nodeType);
    expect(await problems(file)).toEqual([
      `${file}:7: build.repos_cfg_dir: the directory ${path.join(dir, 'repos')} does not exist; create it with a repos.cfg that has a section per repository of build.node_types`,
    ]);
  });

  test('a repository without a section in repos.cfg (EESSI is built in); with the section it passes', async () => {
    await fs.mkdir(path.join(dir, 'repos'));
    const reposCfg = path.join(dir, 'repos', 'repos.cfg');
    await fs.writeFile(reposCfg, '[other]\nrepo_name = other.example.org\n');
    const file = await site(...DRY_RUN, 'build:', '  repos_cfg_dir: repos', ...nodeType);
    expect(await problems(file)).toEqual([
      `${file}:11: build.node_types.zen4.repo_targets: repository eessi-test has no section in ${reposCfg}; add a [eessi-test] section with repo_name, repo_version and container`,
    ]);
    await fs.appendFile(reposCfg, '[eessi-test]\nrepo_name = software.eessi.io\n');
    expect(await problems(file)).toEqual([]);
  });

  test('a repository that needs repos.cfg when repos_cfg_dir is not set', async () => {
    const file = await site(...DRY_RUN, 'build:', ...nodeType);
    expect(await problems(file)).toEqual([
      `${file}:10: build.node_types.zen4.repo_targets: repository eessi-test needs a section in a repos.cfg, but build.repos_cfg_dir is not set; set it to a directory whose repos.cfg has a [eessi-test] section`,
    ]);
  });

  test('jobdirs that is a file', async () => {
    await fs.writeFile(path.join(dir, 'jobdirs'), '');
    const file = await site(...DRY_RUN);
    expect(await problems(file)).toEqual([
      `${file}:2: jobdirs: the jobdirs directory ${path.join(dir, 'jobdirs')} is not a directory; give the bot's user write access there, or pick another directory`,
    ]);
  });
});

describe('checked by the schema, at the line of the key', () => {
  test('an invalid cron expression', async () => {
    const file = await site(...DRY_RUN, 'poller:', "  schedule: '61 * * * *'");
    expect(schemaProblems(file)).toEqual([
      `${file}:7: poller.schedule: invalid cron expression (bad minute field "61"): write 5 fields (minute hour day month weekday) or 6 with seconds first, got "61 * * * *"`,
    ]);
  });

  test('a cron expression with the wrong number of fields', async () => {
    const file = await site(...DRY_RUN, 'poller:', "  schedule: '*/10 * * *'");
    expect(schemaProblems(file)).toEqual([
      `${file}:7: poller.schedule: invalid cron expression (expected 5 or 6 fields but got 4): write 5 fields (minute hour day month weekday) or 6 with seconds first, got "*/10 * * *"`,
    ]);
  });

  test('a default build command that does not parse', async () => {
    const file = await site(
      ...DRY_RUN,
      'labels:',
      '  build: build_defaults',
      "  default_build_command: 'bot: build'",
    );
    expect(schemaProblems(file)).toEqual([
      `${file}:8: labels.default_build_command: no \`for:\` argument was given, so no build jobs are submitted; say what to build for, e.g. \`for:arch=x86_64/amd/zen4\`, got "bot: build"`,
    ]);
  });

  test('per-repo uploader maps that name different repositories', async () => {
    const file = await site(
      ...DRY_RUN,
      'deploy:',
      '  uploader:',
      '    kind: s3',
      '    bucket: { repo-a: bucket-a, repo-b: bucket-b }',
      '    endpoint_url: { repo-a: "https://s3.example.org" }',
    );
    expect(schemaProblems(file)).toEqual([
      `${file}:10: deploy.uploader.endpoint_url: has no entry for repo-b, which bucket has; add one (a repo_id missing from one of these maps is never uploaded)`,
    ]);
  });
});

describe('the uploader', () => {
  test('directory: a staging path that is a file', async () => {
    const staging = path.join(dir, 'staging');
    await fs.writeFile(staging, '');
    const file = await site(...DRY_RUN, 'deploy:', '  uploader:', '    directory: staging');
    expect(await problems(file)).toEqual([
      `${file}:8: deploy.uploader.directory: the staging directory ${staging} is not a directory; give the bot's user write access there, or pick another directory`,
    ]);
  });

  test('script: a script that is not executable', async () => {
    const script = await writeKey('upload.sh', '#!/bin/sh\n', 0o644);
    const file = await site(
      ...DRY_RUN,
      'deploy:',
      '  uploader:',
      '    kind: script',
      '    script: upload.sh',
    );
    expect(await problems(file)).toEqual([
      `${file}:9: deploy.uploader.script: the upload script ${script} is not executable by this user (uid ${process.getuid!()}); fix the path (chmod +x it if it is there)`,
    ]);
  });

  const s3 = (...more: string[]) =>
    site(...DRY_RUN, 'deploy:', '  uploader:', '    kind: s3', '    bucket: staging', ...more);

  test('s3: no credentials in the environment, and no region for AWS', async () => {
    const file = await s3();
    expect(await problems(file)).toEqual([
      `${file}:8: deploy.uploader.kind: s3, but no AWS credentials are set; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the bot's environment (or AWS_PROFILE with ${path.join(dir, '.aws', 'credentials')})`,
      `${file}:7: deploy.uploader.region: not set, and neither AWS_REGION nor ${path.join(dir, '.aws', 'config')} gives one; set it to the bucket's region`,
    ]);
  });

  test('s3: half a key pair; with both and an endpoint it passes', async () => {
    const file = await s3('    endpoint_url: https://s3.example.org');
    env.AWS_ACCESS_KEY_ID = 'AKIAEXAMPLE';
    expect(await problems(file)).toEqual([
      `${file}:8: deploy.uploader.kind: s3, but only AWS_ACCESS_KEY_ID of the pair is set; set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the bot's environment`,
    ]);
    env.AWS_SECRET_ACCESS_KEY = 'secret';
    expect(await problems(file)).toEqual([]);
  });
});

describe('the slurm backend', () => {
  test('names the Slurm commands missing from PATH', async () => {
    env.PATH = path.join(dir, 'empty-bin');
    const file = await site(...DRY_RUN, 'backend:', '  kind: slurm');
    expect(await problems(file)).toEqual([
      `${file}:7: backend.kind: slurm, but ${SLURM_COMMANDS.join(', ')} are not on PATH; install the Slurm client commands, or add their directory to the bot's PATH`,
    ]);
  });
});

describe('hpcbot config check', () => {
  test('prints one line per problem, exits 2, and never a stack trace', async () => {
    const file = await site(...DRY_RUN, '  token_env: HPCBOT_TEST_TOKEN', 'build:', '  job_script: nope.sh');
    const { code, stdout, stderr } = await runCli(['config', 'check', '--config', file], {
      env: { HPCBOT_TEST_WEBHOOK_SECRET: 'hook-secret' },
    });
    expect(stderr.trim().split('\n')).toEqual([
      `${file}:6: github.token_env: the environment variable HPCBOT_TEST_TOKEN is not set or empty; export the GitHub token in it for the bot's processes`,
      `${file}:8: build.job_script: the job script ${path.join(dir, 'nope.sh')} does not exist; fix the path, or remove build.job_script to use the bundled one`,
    ]);
    expect(stderr).not.toContain('    at ');
    expect(stdout).toBe('');
    expect(code).toBe(2);
  });
});

describe('--online', () => {
  let fake: FakeGitHub;
  afterEach(async () => {
    await fake?.stop();
  });

  test('GitHub: a token GitHub rejects is a problem; an accepted one is not', async () => {
    fake = new FakeGitHub({ patTokens: ['ghp_good'] });
    const url = await fake.start();
    const file = await site(
      'github:',
      `  api_url: ${url}`,
      '  token_env: HPCBOT_TEST_TOKEN',
      '  webhook_secret_env: HPCBOT_TEST_WEBHOOK_SECRET',
    );
    const config = loadConfig(file);
    env.HPCBOT_TEST_TOKEN = 'ghp_revoked';
    expect(lines(config, await checkOnline(config, env))).toEqual([
      `${file}:5: github.token_env: GitHub rejected the credentials (401) to authenticate: check the token in $HPCBOT_TEST_TOKEN (expired or revoked?). GitHub said: "Bad credentials". [request id FAKE:1]`,
    ]);
    env.HPCBOT_TEST_TOKEN = 'ghp_good';
    expect(await checkOnline(config, env)).toEqual([]);
    expect(fake.callsTo('GET', '/user').map((c) => c.status)).toEqual([401, 200]);
  });

  test('GitHub: an App authenticates with its key (GET /app)', async () => {
    const key = await writeKey('app.pem', appKey());
    fake = new FakeGitHub();
    const url = await fake.start();
    const file = await site('github:', `  api_url: ${url}`, '  app_id: 77', `  private_key_file: ${key}`);
    expect(await checkOnline(loadConfig(file), env)).toEqual([]);
    expect(fake.callsTo('GET', '/app').map((c) => c.status)).toEqual([200]);
  });

  describe('S3', () => {
    let s3: S3TestServer;
    const saved = { ...process.env };
    beforeAll(async () => {
      s3 = await startS3Server(['present']);
      // The SDK's credential chain reads this process's environment.
      process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
      process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;
    });
    afterAll(async () => {
      process.env = saved;
      await s3.close();
    });

    test('a bucket that does not exist is a problem; one that exists is not', async () => {
      const bucket = (name: string) =>
        site(
          ...DRY_RUN,
          'deploy:',
          '  uploader:',
          '    kind: s3',
          `    endpoint_url: ${s3.endpoint}`,
          `    bucket: { repo-a: present, repo-b: ${name} }`,
        );
      const file = await bucket('missing');
      const config = loadConfig(file);
      expect(lines(config, await checkOnline(config, env))).toEqual([
        `${file}:10: deploy.uploader.bucket: the bucket missing at ${s3.endpoint} does not exist; create it, or fix deploy.uploader.bucket`,
      ]);
      expect(await checkOnline(loadConfig(await bucket('present')), env)).toEqual([]);
    });
  });

  test('Slurm: sinfo that cannot run is a problem', async () => {
    env.PATH = path.join(dir, 'empty-bin');
    const file = await site(...DRY_RUN, 'backend:', '  kind: slurm');
    const config = loadConfig(file);
    expect(lines(config, await checkOnline(config, env))).toEqual([
      `${file}:7: backend.kind: slurm, but sinfo failed (spawn sinfo ENOENT); is slurmctld running and reachable from this machine?`,
    ]);
  });
});

// ---- as another user ------------------------------------------------------------------------
// Tests run as root, who can read every file and sudo anything; what an ordinary bot user meets is
// checked by running the compiled CLI (npm run build) as the job user of CI (scripts/install-job-user.sh).

const JOB_USER = 'hpcbot-job';

function jobUserIds(): { uid: number; gid: number } | undefined {
  try {
    const uid = Number(execFileSync('id', ['-u', JOB_USER], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', JOB_USER], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch {
    return undefined;
  }
}

const jobUser = jobUserIds();
const isRoot = process.getuid?.() === 0;
if (!isRoot || !jobUser)
  console.warn(
    `SKIPPED siteCheck tests that switch user: ${!isRoot ? 'not running as root' : `no user ${JOB_USER} (run scripts/install-job-user.sh as root)`}`,
  );
const describeAsRoot = isRoot && jobUser ? describe : describe.skip;

/** `hpcbot config check --config file` (compiled CLI) as the job user, with only `vars` in its environment. */
async function configCheckAs(
  file: string,
  vars: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const assignments = Object.entries(vars).map(([k, v]) => `${k}=${v}`);
  const proc = spawn(
    'sudo',
    [
      '-n',
      '-u',
      JOB_USER,
      '--',
      'env',
      '-i',
      ...assignments,
      process.execPath,
      BIN,
      'config',
      'check',
      '--config',
      file,
    ],
    { cwd: path.dirname(file), stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const code = await new Promise<number | null>((resolve) => proc.on('close', (c) => resolve(c)));
  return { code, stdout, stderr };
}

describeAsRoot('checked as an ordinary user (the compiled CLI run as the job user)', () => {
  const configCheckAsBotUser = (file: string) =>
    configCheckAs(file, {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: dir,
      HPCBOT_TEST_WEBHOOK_SECRET: 'hook-secret',
    });

  beforeEach(async () => {
    await fs.chown(dir, jobUser!.uid, jobUser!.gid); // the bot's user owns its config dir
  });

  test('an App key file that exists but the bot user cannot read', async () => {
    const key = await writeKey('app.pem', appKey()); // root's, mode 600
    const file = await site(...DRY_RUN, '  app_id: 12', `  private_key_file: ${key}`);
    await fs.chown(file, jobUser!.uid, jobUser!.gid);
    const { code, stdout, stderr } = await configCheckAsBotUser(file);
    expect(stderr).toBe(
      `${file}:7: github.private_key_file: the App private key ${key} is not readable by this user (uid ${jobUser!.uid}); download a private key from the GitHub App's settings and save it there, readable by the bot's user only\n`,
    );
    expect(stdout).toBe('');
    expect(code).toBe(2);
  });

  test('run_as: sudo that does not let the bot user run the job commands as the job user', async () => {
    // The job user as the bot's user too: it has no sudoers rule at all.
    const file = await site(...DRY_RUN, 'backend:', `  run_as: ${JOB_USER}`);
    await fs.chown(file, jobUser!.uid, jobUser!.gid);
    const { code, stdout, stderr } = await configCheckAsBotUser(file);
    expect(stderr).toBe(
      `${file}:7: backend.run_as: unusable: sudo does not let this user run ${LOCAL_RUNNER} 1 job-script, ${LOCAL_RUNNER} --cancel 2 as ${JOB_USER} without a password; add the sudoers rule from the README ("backend.run_as")\n`,
    );
    expect(stdout).toBe('');
    expect(code).toBe(2);
  });
});

describeAsRoot('backend.run_as (checked as root, for the job user)', () => {
  const runAs = ['backend:', `  run_as: ${JOB_USER}`];

  test('a jobdirs the job user cannot reach; with search permission on the way it passes', async () => {
    // mkdtemp made `dir` mode 700: the job user cannot pass it.
    const file = await site(...DRY_RUN, ...runAs);
    const jobdirs = loadConfig(file).jobdirs;
    expect(await problems(file)).toEqual([
      `${file}:2: jobdirs: the job user ${JOB_USER} cannot reach ${jobdirs}; give every directory above it search permission for others (chmod o+x)`,
    ]);
    await fs.chmod(dir, 0o755);
    expect(await problems(file)).toEqual([]);
  });

  test('a job script the job user cannot read; readable by others it passes', async () => {
    await fs.chmod(dir, 0o755);
    const script = path.join(dir, 'job.sh');
    await fs.writeFile(script, '#!/bin/sh\n', { mode: 0o700 });
    await fs.chmod(script, 0o700);
    const file = await site(...DRY_RUN, ...runAs, 'build:', `  job_script: ${script}`);
    expect(await problems(file)).toEqual([
      `${file}:9: build.job_script: the job user ${JOB_USER} cannot read the job script ${script}`,
    ]);
    await fs.chmod(script, 0o755);
    expect(await problems(file)).toEqual([]);
  });
});
