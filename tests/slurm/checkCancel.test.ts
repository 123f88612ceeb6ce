/**
 * A Cancel press on a job's check run (issue 13, item 2) against the real single-node Slurm: the real
 * `check_run.requested_action` example, adjusted to the bot's run, stored as the server would; the
 * poller cancels the Slurm job, which ends CANCELLED in sacct, and the run completes as cancelled.
 */
import type { JobData } from '../../src/store/job.js';
import { readState } from '../../src/store/state.js';
import {
  INSTALLATION,
  jobDirsOf,
  nextDelivery,
  openPr,
  OWNER,
  PR,
  REPO,
  REVIEWER,
  startHarness,
  stageOf,
  stateOf,
  storeComment,
  storeRaw,
  tickUntil,
  type Harness,
} from '../support/botHarness.js';
import { APP_ID, reconfigure } from '../support/fleet.js';
import { payloads } from '../support/payloads.js';
import { PASSING_BOT } from '../support/prRepo.js';
import { describeSlurm, slurm } from '../support/slurm.js';

const SLURM = `backend:\n  kind: slurm\n  slurm:\n    job_name_prefix: hpcbot-cc${process.pid}\n    default_time: '00:10:00'\n    missing_ticks_before_lost: 20\n`;
const SLEEPY_BOT = { ...PASSING_BOT, 'bot/build.sh': '#!/bin/bash\nsleep 300\n' };

let h: Harness | undefined;
afterEach(async () => {
  if (!h) return;
  const ids: string[] = [];
  for (const dir of await jobDirsOf(h)) {
    const id = (await readState<JobData>(dir))?.data.job_id;
    if (id) ids.push(id);
  }
  if (ids.length) await slurm('scancel', ids).catch(() => undefined);
  await h.stop();
  h = undefined;
});

describeSlurm('the Cancel button on the real Slurm', () => {
  test('a Cancel press on an active run cancels its Slurm job; the run completes as cancelled', async () => {
    h = await startHarness('', SLURM);
    reconfigure(h);
    openPr(h, SLEEPY_BOT);
    await storeComment(h, 'bot: build for:arch=zen4');
    await tickUntil(
      h,
      async () => {
        const [dir] = await jobDirsOf(h!);
        return dir !== undefined && (await stageOf(dir)) === 'running';
      },
      90_000,
      500,
    );
    const [dir] = await jobDirsOf(h);
    // One more tick writes the run's in_progress state (with its Cancel button).
    await tickUntil(h, async () => h!.fake.checkRunsOf(OWNER, REPO).some((r) => r.status === 'in_progress'));
    const state = await stateOf<JobData>(dir!);
    const jobId = state.data.job_id!;
    const run = h.fake.checkRunsOf(OWNER, REPO).find((r) => r.id === state.data.check!.id)!;
    expect(run).toMatchObject({ app_id: APP_ID, status: 'in_progress' });
    expect(await slurm('squeue', ['--noheader', '--jobs', jobId, '--format=%T'])).toMatch(/RUNNING/);

    const p = payloads.checkRunRequestedAction();
    p.requested_action = { identifier: 'cancel' };
    p.repository!.owner.login = OWNER;
    p.repository!.name = REPO;
    p.installation = { id: INSTALLATION, node_id: `I_fake${INSTALLATION}` };
    (p.sender as { login: string }).login = REVIEWER;
    const cr = p.check_run as Record<string, unknown> & { app: { id: number } };
    Object.assign(cr, {
      id: run.id,
      name: run.name,
      external_id: run.external_id,
      head_sha: run.head_sha,
      pull_requests: [
        {
          number: PR,
          id: PR,
          url: `https://api.github.com/repos/${OWNER}/${REPO}/pulls/${PR}`,
          head: { ref: 'feature', sha: run.head_sha, repo: { id: 1, name: REPO, url: '' } },
          base: { ref: 'main', sha: '0'.repeat(40), repo: { id: 1, name: REPO, url: '' } },
        },
      ],
    });
    cr.app.id = APP_ID;
    const press = await storeRaw(h, 'check_run', p, nextDelivery());

    await tickUntil(
      h,
      async () => (await stageOf(dir!)) === 'cancelled' && run.status === 'completed',
      90_000,
      500,
    );
    expect(await stageOf(press)).toBe('done');
    const done = await stateOf<JobData>(dir!);
    expect(done.data.cancel_requested).toBe(`cancelled by ${REVIEWER}`);
    expect(done.data.scheduler_state).toBe('CANCELLED');
    const acct = await slurm('sacct', ['--noheader', '--parsable2', '-X', '-j', jobId, '-o', 'State']);
    expect(acct.trim()).toMatch(/^CANCELLED/);
    expect(run.conclusion).toBe('cancelled');
  }, 180_000);
});
