/** Picks the backend named by `backend.kind`. */
import path from 'node:path';
import type { Logger } from 'pino';
import { secretEnvNames, type Config } from '../config.js';
import type { JobDirs } from '../jobdirs.js';
import { LocalBackend } from './local.js';
import { SlurmBackend } from './slurm.js';
import type { Backend } from './types.js';

export function instanceJobName(config: Config): string {
  return `${config.backend.slurm.job_name_prefix}-${config.instance}`;
}

/**
 * The environment a job starts with: the poller's own minus the variables holding the bot's secrets
 * (webhook secret, GitHub token), because a job runs scripts from the PR.
 */
export function jobEnvironment(config: Config, env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const secret = new Set(secretEnvNames(config));
  return Object.fromEntries(Object.entries(env).filter(([name]) => !secret.has(name)));
}

export function createBackend(config: Config, _logger: Logger, jobdirs: JobDirs): Backend {
  const env = jobEnvironment(config);
  if (config.backend.kind === 'local') {
    return new LocalBackend(path.join(jobdirs.root, 'local-jobs'), config.backend.local.max_parallel, env);
  }
  const s = config.backend.slurm;
  return new SlurmBackend({
    handover: s.handover,
    default_time: s.default_time,
    delay_begin_seconds: s.delay_begin_seconds,
    jobName: instanceJobName(config),
    env,
  });
}
