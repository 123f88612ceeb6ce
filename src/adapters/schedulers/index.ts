/** Picks the backend named by `backend.kind`. */
import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../../config/config.js';
import type { JobDirs } from '../../store/jobdirs.js';
import type { JobAccount } from '../jobUser.js';
import { PBS_JOB_WRAPPER } from '../jobScripts.js';
import { LocalBackend } from './local.js';
import { PbsBackend } from './pbs.js';
import { SlurmBackend } from './slurm.js';
import type { Backend } from './types.js';

export function instanceJobName(config: Config): string {
  return `${batchSettings(config).job_name_prefix}-${config.instance}`;
}

/** The settings of the batch system in use: `backend.pbs` for pbs, else `backend.slurm` (local uses its defaults). */
export function batchSettings(config: Config): Config['backend']['slurm'] | Config['backend']['pbs'] {
  return config.backend.kind === 'pbs' ? config.backend.pbs : config.backend.slurm;
}

/** What the scheduler gets besides the job script: the site's and the node type's parameters. */
export function submitParams(
  config: Config,
  target: { slurmParams: string[]; pbsParams?: string[] },
): string[] {
  return config.backend.kind === 'pbs'
    ? [...config.backend.pbs.qsub_params, ...(target.pbsParams ?? [])]
    : [...config.backend.slurm.sbatch_params, ...target.slurmParams];
}

/** Variables a job may inherit from the bot; everything else (secrets, HOME, agents, git helpers) stays behind. */
const INHERITED =
  /^(PATH|LANG|LANGUAGE|TZ|TERM|USER|LOGNAME|SHELL|TMPDIR|SLURM_CONF|LC_[A-Z]+|(http|https|no)_proxy|(HTTP|HTTPS|NO)_PROXY)$/;

/**
 * The environment a job starts with when it runs as the bot's own user (with `run_as`, sudo gives the
 * job user's login environment instead). An allow-list, because a job runs scripts from the PR: the
 * webhook secret and token variables, SSH_AUTH_SOCK, GIT_ASKPASS and GIT_CONFIG_* never reach it, and
 * HOME is the job's own work tree, so the bot's ~/.gitconfig credential helpers are not used either.
 */
export function jobEnvironment(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([name]) => INHERITED.test(name)));
}

export function createBackend(
  config: Config,
  _logger: Logger,
  jobdirs: JobDirs,
  account: JobAccount,
): Backend {
  const env = jobEnvironment();
  if (config.backend.kind === 'local') {
    return new LocalBackend(
      path.join(jobdirs.root, 'local-jobs'),
      config.backend.local.max_parallel,
      env,
      account,
    );
  }
  if (config.backend.kind === 'pbs') {
    const p = config.backend.pbs;
    return new PbsBackend({
      flavour: p.flavour,
      handover: p.handover,
      default_walltime: p.default_walltime,
      delay_begin_seconds: p.delay_begin_seconds,
      jobName: instanceJobName(config),
      wrapper: PBS_JOB_WRAPPER,
      env,
      account,
    });
  }
  const s = config.backend.slurm;
  return new SlurmBackend({
    handover: s.handover,
    default_time: s.default_time,
    delay_begin_seconds: s.delay_begin_seconds,
    jobName: instanceJobName(config),
    env,
    account,
  });
}
