/**
 * Checks of a valid site.yaml against the machine it runs on, for `config check` and for every start,
 * so that a process never dies later on something it could have said now: the env vars it names are
 * set, the files it names are there with the right modes and contents (the App key parses, the signing
 * key works), the uploader and the Slurm commands are usable, secrets are out of every job's reach, and
 * the job user (`backend.run_as`) is usable. What can be checked from site.yaml alone (cron syntax, the
 * label's default command, pairs of keys) is in the schema (config.ts).
 * Errors stop the bot (exit 2); warnings are printed once.
 */
import { createPrivateKey } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { webhookSecretFile, type Config } from './config.js';
import {
  JobUserError,
  lookupJobUser,
  NO_JOB_USER_WARNING,
  permits,
  reachableBy,
  readableBy,
  type JobUser,
} from '../adapters/jobUser.js';
import { CommandError, run } from '../adapters/process.js';
import { jobScriptPath, LOCAL_RUNNER } from '../adapters/jobScripts.js';
import { parseIni } from '../domain/ini.js';
import { BUILTIN_REPOS } from '../domain/jobConfig.js';

export interface SiteProblem {
  keyPath: string;
  message: string;
}

export interface SiteCheck {
  errors: SiteProblem[];
  warnings: string[];
}

/** The Slurm client commands the slurm backend runs. */
export const SLURM_COMMANDS = ['sbatch', 'squeue', 'sacct', 'scontrol', 'scancel'] as const;

/** The PBS client commands the pbs backend runs (and qselect, after a crash during qsub, where there is one). */
export const PBS_COMMANDS = ['qsub', 'qstat', 'qrls', 'qdel'] as const;

/** Pure: is `file` inside `dir` (or `dir` itself)? */
export function isInside(file: string, dir: string): boolean {
  const rel = path.relative(path.resolve(dir), path.resolve(file));
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** The secret files this config uses, by the key that names them. */
export function secretFiles(
  cfg: Config,
  env = process.env,
): Array<{ keyPath: string; file: string; what: string }> {
  const files = [];
  if (!env[cfg.github.webhook_secret_env])
    files.push({
      keyPath: 'github.webhook_secret_file',
      file: webhookSecretFile(cfg, env),
      what: 'the webhook secret',
    });
  if (cfg.github.private_key_file)
    files.push({
      keyPath: 'github.private_key_file',
      file: cfg.github.private_key_file,
      what: 'the App private key',
    });
  if (cfg.deploy.signing.key_file && !isPublicKeyFile(cfg.deploy.signing.key_file))
    files.push({
      keyPath: 'deploy.signing.key_file',
      file: cfg.deploy.signing.key_file,
      what: 'the signing key',
    });
  return files;
}

export async function checkSite(cfg: Config, env = process.env): Promise<SiteCheck> {
  const warnings: string[] = [];
  let user: JobUser | undefined;
  const errors: SiteProblem[] = [];
  if (cfg.backend.run_as === undefined) {
    warnings.push(NO_JOB_USER_WARNING);
  } else {
    try {
      user = await lookupJobUser(cfg.backend.run_as);
    } catch (err) {
      if (!(err instanceof JobUserError)) throw err;
      errors.push({ keyPath: 'backend.run_as', message: err.message });
    }
  }
  const jobdirs = await checkWritableDirectory('jobdirs', 'the jobdirs directory', cfg.jobdirs);
  const uploader = await checkUploader(cfg, env);
  // A staging directory under a jobdirs that is unusable fails for the same cause: one line for it.
  const staging = cfg.deploy.uploader.kind === 'directory' ? cfg.deploy.uploader.directory : undefined;
  const stagingInJobdirs = jobdirs.length > 0 && staging !== undefined && isInside(staging, cfg.jobdirs);
  errors.push(
    ...checkGitHubAuth(cfg, env),
    ...(await checkSecretFiles(cfg, env, user)),
    ...(await checkSigningKey(cfg, env)),
    ...jobdirs,
    ...(await checkJobScript(cfg)),
    ...(await checkReposCfg(cfg)),
    ...(stagingInJobdirs ? [] : uploader),
    ...(await checkSchedulerCommands(cfg, env)),
    ...(user ? await checkJobUser(cfg, user) : []),
  );
  return { errors, warnings };
}

// ---- GitHub ---------------------------------------------------------------------------------

function checkGitHubAuth(cfg: Config, env: NodeJS.ProcessEnv): SiteProblem[] {
  const gh = cfg.github;
  if (gh.app_id !== undefined) return []; // the key file is checked with the secret files
  if (cfg.ingest.mode !== 'webhook')
    return [
      {
        keyPath: 'ingest.mode',
        message: `${cfg.ingest.mode} lists the App's webhook deliveries, which GitHub shows only to the App; set github.app_id and github.private_key_file, or use mode webhook`,
      },
    ];
  if (gh.token_env !== undefined) {
    if (env[gh.token_env]?.trim()) return [];
    return [
      {
        keyPath: 'github.token_env',
        message: `the environment variable ${gh.token_env} is not set or empty; export the GitHub token in it for the bot's processes`,
      },
    ];
  }
  if (gh.dry_run) return [];
  return [
    {
      keyPath: 'github.dry_run',
      message:
        'false, but no GitHub credentials are configured; set github.app_id and github.private_key_file (an App) or github.token_env (a token), or dry_run: true',
    },
  ];
}

// ---- secret files ---------------------------------------------------------------------------

async function checkSecretFiles(cfg: Config, env: NodeJS.ProcessEnv, user: JobUser | undefined) {
  const errors: SiteProblem[] = [];
  const shared = cfg.build.site_config.shared_fs_path;
  const places: Array<[string, string]> = [
    [cfg.jobdirs, 'jobdirs'],
    ...(shared ? [[shared, 'build.site_config.shared_fs_path'] as [string, string]] : []),
  ];
  // Compared as real paths: a jobdirs reached through a symbolic link is still jobdirs.
  const realPlaces = await Promise.all(
    places.map(async ([dir, name]) => [dir, name, await realPathOf(dir)] as const),
  );
  for (const { keyPath, file, what } of secretFiles(cfg, env)) {
    const add = (message: string) => errors.push({ keyPath, message });
    const real = await realPathOf(file);
    for (const [dir, name, realDir] of realPlaces)
      if (isInside(file, dir) || isInside(real, realDir))
        add(`${what} (${file}) is under ${name} (${dir}), where jobs can reach it; move it out`);
    const readableByJobUser = user !== undefined && (await readableBy(real, user));
    if (readableByJobUser)
      add(`${what} (${file}) is readable by the job user ${user.name}; chmod 600 it (and 700 its directory)`);
    const parent = path.dirname(real);
    if (user !== undefined && (await writableBy(parent, user)))
      add(
        `${what} (${file}) is in ${parent}, which the job user ${user.name} can write, so a job could replace it; make that directory writable by the bot's user only`,
      );
    const problem = await fileProblem(file, 'file', constants.R_OK);
    if (problem === 'does not exist' && keyPath === 'github.webhook_secret_file') continue; // generated on start
    if (problem) {
      add(`${what} ${file} ${problem}; ${SECRET_FIX[keyPath]}`);
      continue;
    }
    const mode = (await fs.stat(file)).mode & 0o777;
    if (mode & 0o077 && !readableByJobUser)
      add(`${what} ${file} is open to group or others (mode ${octal(mode)}); chmod 600 it`);
    const content = await fs.readFile(file, 'utf8');
    if (keyPath === 'github.private_key_file' && !isPrivateKey(content))
      add(`${what} ${file} is not a PEM private key; ${SECRET_FIX[keyPath]}`);
    if (keyPath === 'github.webhook_secret_file' && content.trim() === '')
      add(
        `${what} ${file} is empty; write the App's webhook secret into it, or delete it to have one generated`,
      );
  }
  return errors;
}

/**
 * The real path of `p` (symbolic links resolved); for a path that does not exist yet, the real path of
 * its nearest existing ancestor with the rest appended.
 */
async function realPathOf(p: string): Promise<string> {
  const abs = path.resolve(p);
  try {
    return await fs.realpath(abs);
  } catch {
    const parent = path.dirname(abs);
    return parent === abs ? abs : path.join(await realPathOf(parent), path.basename(abs));
  }
}

/** Whether `user` can create, rename or delete entries in the existing directory `dir`. */
async function writableBy(dir: string, user: JobUser): Promise<boolean> {
  const st = await fs.stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) return false;
  return permits(st, user, 2) && permits(st, user, 1) && (await reachableBy(dir, user));
}

const SECRET_FIX: Record<string, string> = {
  'github.webhook_secret_file': "make it readable by the bot's user only, or delete it to have one generated",
  'github.private_key_file':
    "download a private key from the GitHub App's settings and save it there, readable by the bot's user only",
  'deploy.signing.key_file':
    "create one with ssh-keygen -t ed25519 -N '' -f KEY, readable by the bot's user only",
};

/** The parser's message is not used: it could quote part of the file. */
function isPrivateKey(pem: string): boolean {
  try {
    createPrivateKey(pem);
    return true;
  } catch {
    return false;
  }
}

function isPublicKeyFile(file: string): boolean {
  return file.endsWith('.pub');
}

/**
 * The signing key works: a private key gives its public key to `ssh-keygen -y` (no passphrase, as the
 * bot signs without a terminal); a `.pub` has its private half in the ssh-agent (`ssh-add -T`).
 * Where the file is and who may read it is checked with the other secret files.
 */
async function checkSigningKey(cfg: Config, env: NodeJS.ProcessEnv): Promise<SiteProblem[]> {
  const key = cfg.deploy.signing.key_file;
  if (key === undefined) return [];
  const problem = (message: string) => [{ keyPath: 'deploy.signing.key_file', message }];
  if (isPublicKeyFile(key)) {
    const missing = await fileProblem(key, 'file', constants.R_OK);
    if (missing)
      return problem(`the signing key ${key} ${missing}; ${SECRET_FIX['deploy.signing.key_file']}`);
    if (!env.SSH_AUTH_SOCK)
      return problem(
        `the signing key ${key} is a public key, but SSH_AUTH_SOCK is not set; start ssh-agent and ssh-add its private key for the bot, or name the private key file`,
      );
    const failed = await runFails('ssh-add', ['-T', key], env);
    return failed === undefined
      ? []
      : problem(
          `the signing key ${key} is not usable through ssh-agent (${failed}); ssh-add its private key`,
        );
  }
  if ((await fileProblem(key, 'file', constants.R_OK)) !== undefined) return []; // said with the secret files
  if ((await fs.stat(key)).mode & 0o077) return []; // ssh-keygen refuses such a key; said with the secret files
  const failed = await runFails('ssh-keygen', ['-y', '-P', '', '-f', key], env);
  return failed === undefined
    ? []
    : problem(
        `the signing key ${key} does not work (ssh-keygen -y: ${failed}); give an OpenSSH private key without a passphrase, or a .pub whose key is in ssh-agent`,
      );
}

/** Undefined when the command succeeds, else the last line it printed on stderr. */
async function runFails(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<string | undefined> {
  try {
    // No terminal to prompt on: stdin is not a TTY and no askpass program is set.
    await run(command, args, { env: { ...env, SSH_ASKPASS: '', DISPLAY: '' }, timeoutMs: 10_000 });
    return undefined;
  } catch (err) {
    const text = err instanceof CommandError ? err.stderr : (err as Error).message;
    return (
      text
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean)
        .pop() ?? 'failed'
    );
  }
}

// ---- build ----------------------------------------------------------------------------------

async function checkJobScript(cfg: Config): Promise<SiteProblem[]> {
  const script = jobScriptPath(cfg);
  const problem = await fileProblem(script, 'file', constants.R_OK);
  if (!problem) return [];
  const fix =
    cfg.build.job_script === undefined
      ? 'the bundled script is missing from this checkout: restore it, or set build.job_script'
      : 'fix the path, or remove build.job_script to use the bundled one';
  return [{ keyPath: 'build.job_script', message: `the job script ${script} ${problem}; ${fix}` }];
}

/** Every repository a node type builds for needs a section in repos.cfg (as writeJobCfg reads it). */
async function checkReposCfg(cfg: Config): Promise<SiteProblem[]> {
  const dir = cfg.build.repos_cfg_dir;
  let sections: Record<string, Record<string, string>> = {};
  if (dir !== undefined) {
    const problem = await fileProblem(dir, 'directory', constants.R_OK | constants.X_OK);
    if (problem)
      return [
        {
          keyPath: 'build.repos_cfg_dir',
          message: `the directory ${dir} ${problem}; create it with a repos.cfg that has a section per repository of build.node_types`,
        },
      ];
    const file = path.join(dir, 'repos.cfg');
    const fileMissing = await fileProblem(file, 'file', constants.R_OK);
    if (fileMissing && fileMissing !== 'does not exist')
      return [{ keyPath: 'build.repos_cfg_dir', message: `${file} ${fileMissing}; make it readable` }];
    if (!fileMissing) sections = parseIni(await fs.readFile(file, 'utf8'));
  }
  const errors: SiteProblem[] = [];
  for (const [name, nodeType] of Object.entries(cfg.build.node_types))
    for (const repo of nodeType.repo_targets) {
      if (BUILTIN_REPOS.has(repo) || Object.keys(sections[repo] ?? {}).length > 0) continue;
      errors.push({
        keyPath: `build.node_types.${name}.repo_targets`,
        message:
          dir === undefined
            ? `repository ${repo} needs a section in a repos.cfg, but build.repos_cfg_dir is not set; set it to a directory whose repos.cfg has a [${repo}] section`
            : `repository ${repo} has no section in ${path.join(dir, 'repos.cfg')}; add a [${repo}] section with repo_name, repo_version and container`,
      });
    }
  return errors;
}

// ---- deploy ---------------------------------------------------------------------------------

async function checkUploader(cfg: Config, env: NodeJS.ProcessEnv): Promise<SiteProblem[]> {
  const u = cfg.deploy.uploader;
  switch (u.kind) {
    case 'directory':
      // resolvePaths fills in the default directory.
      return checkWritableDirectory('deploy.uploader.directory', 'the staging directory', u.directory!);
    case 'script': {
      const problem = await fileProblem(u.script!, 'file', constants.X_OK); // the schema requires it
      return problem
        ? [
            {
              keyPath: 'deploy.uploader.script',
              message: `the upload script ${u.script} ${problem}; fix the path (chmod +x it if it is there)`,
            },
          ]
        : [];
    }
    case 's3':
      return checkS3Environment(cfg, env);
  }
}

/**
 * The AWS SDK takes credentials and region from its standard chain; without an endpoint_url (AWS
 * itself) it needs a region. Only the sources that need no network are looked at here.
 */
async function checkS3Environment(cfg: Config, env: NodeJS.ProcessEnv): Promise<SiteProblem[]> {
  const u = cfg.deploy.uploader;
  const errors: SiteProblem[] = [];
  const home = env.HOME || os.homedir();
  const sharedFiles = [
    env.AWS_SHARED_CREDENTIALS_FILE || path.join(home, '.aws', 'credentials'),
    env.AWS_CONFIG_FILE || path.join(home, '.aws', 'config'),
  ];
  const hasSharedFile = (
    await Promise.all(sharedFiles.map((f) => fileProblem(f, 'file', constants.R_OK)))
  ).some((p) => p === undefined);
  const id = Boolean(env.AWS_ACCESS_KEY_ID?.trim());
  const secret = Boolean(env.AWS_SECRET_ACCESS_KEY?.trim());
  const otherSource = [
    'AWS_PROFILE',
    'AWS_WEB_IDENTITY_TOKEN_FILE',
    'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI',
    'AWS_CONTAINER_CREDENTIALS_FULL_URI',
  ].some((name) => env[name]);
  if (id !== secret)
    errors.push({
      keyPath: 'deploy.uploader.kind',
      message: `s3, but only ${id ? 'AWS_ACCESS_KEY_ID' : 'AWS_SECRET_ACCESS_KEY'} of the pair is set; set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the bot's environment`,
    });
  else if (!id && !otherSource && !hasSharedFile)
    errors.push({
      keyPath: 'deploy.uploader.kind',
      message: `s3, but no AWS credentials are set; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the bot's environment (or AWS_PROFILE with ${sharedFiles[0]})`,
    });
  if (
    u.endpoint_url === undefined &&
    !u.region &&
    !env.AWS_REGION &&
    !env.AWS_DEFAULT_REGION &&
    !hasSharedFile
  )
    errors.push({
      keyPath: 'deploy.uploader.region',
      message: `not set, and neither AWS_REGION nor ${sharedFiles[1]} gives one; set it to the bucket's region`,
    });
  return errors;
}

// ---- backend --------------------------------------------------------------------------------

async function checkSchedulerCommands(cfg: Config, env: NodeJS.ProcessEnv): Promise<SiteProblem[]> {
  const kind = cfg.backend.kind;
  if (kind === 'local') return [];
  const missing: string[] = [];
  for (const command of kind === 'pbs' ? PBS_COMMANDS : SLURM_COMMANDS)
    if (!(await onPath(command, env))) missing.push(command);
  if (missing.length === 0) return [];
  return [
    {
      keyPath: 'backend.kind',
      message: `${kind}, but ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not on PATH; install the ${kind === 'pbs' ? 'PBS' : 'Slurm'} client commands, or add their directory to the bot's PATH`,
    },
  ];
}

async function onPath(command: string, env: NodeJS.ProcessEnv): Promise<boolean> {
  for (const dir of (env.PATH ?? '').split(path.delimiter).filter(Boolean))
    if ((await fileProblem(path.join(dir, command), 'file', constants.X_OK)) === undefined) return true;
  return false;
}

async function checkJobUser(cfg: Config, user: JobUser): Promise<SiteProblem[]> {
  const errors: SiteProblem[] = [];
  if (!(await reachableBy(cfg.jobdirs, user)))
    errors.push({
      keyPath: 'jobdirs',
      message: `the job user ${user.name} cannot reach ${cfg.jobdirs}; give every directory above it search permission for others (chmod o+x)`,
    });
  const script = jobScriptPath(cfg);
  if (!(await readableBy(script, user)))
    errors.push({
      keyPath: 'build.job_script',
      message: `the job user ${user.name} cannot read the job script ${script}`,
    });
  const denied: string[] = [];
  for (const argv of SUDO_COMMANDS[cfg.backend.kind])
    if (!(await sudoAllows(user.name, argv))) denied.push(argv.join(' '));
  if (denied.length > 0)
    errors.push({
      keyPath: 'backend.run_as',
      message: `unusable: sudo does not let this user run ${denied.join(', ')} as ${user.name} without a password; add the sudoers rule from the README ("backend.run_as")`,
    });
  return errors;
}

/** What each backend runs through sudo as the job user (a job id stands in for the real one). */
export const SUDO_COMMANDS: Record<Config['backend']['kind'], string[][]> = {
  local: [
    [LOCAL_RUNNER, '1', 'job-script'],
    [LOCAL_RUNNER, '--cancel', '2'],
  ],
  slurm: [['sbatch'], ['scancel', '1'], ['scontrol', 'release', '1']],
  pbs: [['qsub'], ['qrls', '1'], ['qdel', '1']],
};

/** `sudo -n -l` answers whether a command is allowed without running it. */
async function sudoAllows(user: string, argv: string[]): Promise<boolean> {
  try {
    await run('sudo', ['-n', '-l', '-u', user, '--', ...argv], { timeoutMs: 10_000 });
    return true;
  } catch {
    return false;
  }
}

// ---- files ----------------------------------------------------------------------------------

/**
 * Why this process cannot use `file` as a `kind` with `access` (R_OK, W_OK, X_OK bits), in words that
 * follow its name ("does not exist", "is not a directory", ...), or undefined when it can.
 */
async function fileProblem(
  file: string,
  kind: 'file' | 'directory',
  access: number,
): Promise<string | undefined> {
  let st;
  try {
    st = await fs.stat(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'does not exist' : `cannot be reached (${code ?? 'error'})`;
  }
  if (kind === 'file' ? !st.isFile() : !st.isDirectory())
    return kind === 'file' ? 'is not a regular file' : 'is not a directory';
  try {
    await fs.access(file, access);
    return undefined;
  } catch {
    const word =
      access & constants.W_OK
        ? 'writable'
        : access === constants.X_OK
          ? kind === 'file'
            ? 'executable'
            : 'searchable'
          : 'readable';
    return `is not ${word} by this user (uid ${process.getuid?.() ?? '?'})`;
  }
}

/** A directory the bot writes into: there and writable, or creatable (its nearest existing parent is). */
async function checkWritableDirectory(keyPath: string, what: string, dir: string): Promise<SiteProblem[]> {
  let existing = path.resolve(dir);
  while (
    (await fileProblem(existing, 'directory', constants.F_OK)) === 'does not exist' &&
    path.dirname(existing) !== existing
  )
    existing = path.dirname(existing);
  const problem = await fileProblem(existing, 'directory', constants.R_OK | constants.W_OK | constants.X_OK);
  if (!problem) return [];
  const where = existing === path.resolve(dir) ? dir : `${dir} does not exist, and ${existing}`;
  return [
    {
      keyPath,
      message: `${what} ${where} ${problem}; give the bot's user write access there, or pick another directory`,
    },
  ];
}

function octal(mode: number): string {
  return mode.toString(8).padStart(4, '0');
}
