/** The two scripts the bot ships for jobs: the default job script and the local backend's runner. */
import path from 'node:path';
import type { Config } from '../config/config.js';

const SCRIPTS = path.resolve(import.meta.dirname, '../../scripts');

/** Runs one local job (and cancels it); the sudoers rule names this path. */
export const LOCAL_RUNNER = path.join(SCRIPTS, 'local-job-runner.sh');

/** `build.job_script`, or the bundled EESSI-compatible bot-build.slurm. */
export function jobScriptPath(config: Config): string {
  return config.build.job_script ?? path.join(SCRIPTS, 'bot-build.slurm');
}
