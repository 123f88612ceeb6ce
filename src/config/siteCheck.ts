/**
 * Checks of a valid site.yaml against the machine it runs on, for `config check` and for every start:
 * secrets must be out of every job's reach, and the job user (`backend.run_as`) must be usable.
 * Errors stop the bot (exit 2); warnings are printed once.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { webhookSecretFile, type Config } from './config.js';
import {
  JobUserError,
  lookupJobUser,
  NO_JOB_USER_WARNING,
  reachableBy,
  readableBy,
  type JobUser,
} from '../adapters/jobUser.js';
import { run } from '../adapters/process.js';
import { jobScriptPath, LOCAL_RUNNER } from '../adapters/jobScripts.js';

export interface SiteProblem {
  keyPath: string;
  message: string;
}

export interface SiteCheck {
  errors: SiteProblem[];
  warnings: string[];
}

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
  if (cfg.deploy.signing.key_file)
    files.push({
      keyPath: 'deploy.signing.key_file',
      file: cfg.deploy.signing.key_file,
      what: 'the signing key',
    });
  return files;
}

export async function checkSite(cfg: Config, env = process.env): Promise<SiteCheck> {
  const errors: SiteProblem[] = [];
  const warnings: string[] = [];
  let user: JobUser | undefined;
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
  const shared = cfg.build.site_config.shared_fs_path;
  for (const { keyPath, file, what } of secretFiles(cfg, env)) {
    const real = await fs.realpath(file).catch(() => file);
    const places: Array<[string, string]> = [
      [cfg.jobdirs, 'jobdirs'],
      ...(shared ? [[shared, 'build.site_config.shared_fs_path'] as [string, string]] : []),
    ];
    for (const [dir, name] of places) {
      if (isInside(file, dir) || isInside(real, dir))
        errors.push({
          keyPath,
          message: `${what} (${file}) is under ${name} (${dir}), where jobs can reach it; move it out`,
        });
    }
    if (user && (await readableBy(real, user)))
      errors.push({
        keyPath,
        message: `${what} (${file}) is readable by the job user ${user.name}; chmod 600 it (and 700 its directory)`,
      });
  }
  if (user) {
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
    const command = cfg.backend.kind === 'local' ? LOCAL_RUNNER : 'sbatch';
    if (!(await sudoAllows(user.name, command)))
      errors.push({
        keyPath: 'backend.run_as',
        message: `sudo does not let this user run ${command} as ${user.name} without a password; add the sudoers rule from the README ("backend.run_as")`,
      });
  }
  return { errors, warnings };
}

/** `sudo -n -l` answers whether a command is allowed without running it. */
async function sudoAllows(user: string, command: string): Promise<boolean> {
  try {
    await run('sudo', ['-n', '-l', '-u', user, '--', command], { timeoutMs: 10_000 });
    return true;
  } catch {
    return false;
  }
}
