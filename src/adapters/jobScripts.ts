/** The scripts the bot ships for jobs: the default job script, the local backend's runner and the PBS wrapper. */
import path from 'node:path';
import type { Config } from '../config/config.js';

const SCRIPTS = path.resolve(import.meta.dirname, '../../scripts');

/** Runs one local job (and cancels it); the sudoers rule names this path. */
export const LOCAL_RUNNER = path.join(SCRIPTS, 'local-job-runner.sh');

/** What qsub submits: it runs the job script with Slurm's contract (cwd, SLURM_JOB_ID, slurm-<id>.out). */
export const PBS_JOB_WRAPPER = path.join(SCRIPTS, 'pbs-job.sh');

/** `build.job_script`, or the bundled EESSI-compatible bot-build.slurm. */
export function jobScriptPath(config: Config): string {
  return config.build.job_script ?? path.join(SCRIPTS, 'bot-build.slurm');
}
