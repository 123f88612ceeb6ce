/**
 * PR code runs as the job user (`backend.run_as`) and cannot reach the bot's secrets or records: a hostile
 * build script tries, on the real local backend, while its normal build still succeeds and deploys.
 * The same attack against the real Slurm dev cluster is in tests/slurm/privilege.test.ts.
 */
import { runHostileBuild } from './support/hostileRun.js';
import { describeWithJobUser, JOB_USER } from './support/jobUser.js';

describeWithJobUser('a hostile PR on the local backend with run_as', () => {
  test('cannot read secrets, forge events, edit state or other job dirs, or plant links; its build deploys', async () => {
    await runHostileBuild(`backend:\n  kind: local\n  run_as: ${JOB_USER}\n`);
  });
});

// Without run_as the same job is the bot: the attack report shows what run_as prevents. This keeps the
// attack script honest (it can detect a leak) and documents the default's weakness.
test('without run_as, the same script reads the secrets (the documented weakness of the default)', async () => {
  const { report } = await runHostileBuild('backend:\n  kind: local\n', { expectLeaks: true });
  expect(report).toMatch(/^read-signing-key: LEAKED/m);
  expect(report).toMatch(/^edit-own-state: LEAKED/m);
});
