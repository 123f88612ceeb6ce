/** The hostile PR of tests/privilege.test.ts, on the real Slurm dev cluster: sbatch runs as the job user. */
import { runHostileBuild } from '../support/hostileRun.js';
import { describeWithJobUser, JOB_USER } from '../support/jobUser.js';
import { describeSlurm } from '../support/slurm.js';

describeSlurm('Slurm', () => {
  describeWithJobUser('a hostile PR on Slurm with run_as', () => {
    test('cannot read secrets, forge events, edit state or other job dirs, or plant links; its build deploys', async () => {
      await runHostileBuild(
        `backend:\n  kind: slurm\n  run_as: ${JOB_USER}\n  slurm:\n    job_name_prefix: hpcbot-p${process.pid}\n    default_time: '00:10:00'\n    missing_ticks_before_lost: 20\n`,
      );
    }, 300_000);
  });
});
