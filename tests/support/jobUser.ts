/**
 * Tests that run PR code as a separate job user (`backend.run_as`) need that user and sudo, which
 * `scripts/install-job-user.sh` sets up (as root; `.ci/run` does). Without them the block fails in CI
 * and is skipped with a loud warning elsewhere, like the Slurm tests.
 */
import { execFileSync } from 'node:child_process';
import { LOCAL_RUNNER } from '../../src/adapters/jobScripts.js';

export const JOB_USER = 'hpcbot-job';

function jobUserMissing(): string | undefined {
  try {
    execFileSync('id', ['-u', JOB_USER], { stdio: 'pipe' });
    // What the sudoers rule allows (README, "backend.run_as"): the local runner, asked, not run.
    execFileSync('sudo', ['-n', '-l', '-u', JOB_USER, '--', LOCAL_RUNNER, '1', 'job-script'], {
      stdio: 'pipe',
    });
    return undefined;
  } catch (err) {
    return (err as Error).message.split('\n')[0];
  }
}

export function describeWithJobUser(name: string, fn: () => void): void {
  const missing = jobUserMissing();
  if (missing === undefined) return describe(name, fn);
  const ci = process.env.CI;
  if (ci && ci !== '0' && ci.toLowerCase() !== 'false') {
    describe(name, () => {
      test('the job user is set up', () => {
        throw new Error(
          `no usable job user ${JOB_USER} but CI is set; run scripts/install-job-user.sh as root (${missing})`,
        );
      });
    });
    return;
  }
  const line = '!'.repeat(78);
  console.warn(
    `${line}\n!! SKIPPING "${name}": no usable job user ${JOB_USER} (${missing})\n` +
      `!! To run them, run scripts/install-job-user.sh as root. With CI set they fail instead.\n${line}`,
  );
  describe.skip(name, fn);
}
