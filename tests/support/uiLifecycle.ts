/**
 * For the status page tests: one real job lifecycle on the local backend (comment → finished), ticked
 * by the poller as the `hpcbot poll` process does (LivePoller: heartbeat and metrics file after each
 * tick), on PR #7 with the given title.
 */
import { createGitHub } from '../../src/adapters/github/index.js';
import { LivePoller } from '../../src/poller.js';
import { payloads } from './payloads.js';
import { PASSING_BOT } from './prRepo.js';
import {
  INSTALLATION,
  jobDirsOf,
  nextDelivery,
  openPr,
  OWNER,
  PR,
  REPO,
  REVIEWER,
  stageOf,
  startHarness,
  storeRaw,
  type Harness,
} from './botHarness.js';

export async function storeBuildComment(
  h: Harness,
  title: string,
  body = 'bot: build for:arch=x86_64/amd/zen4',
) {
  const p = payloads.commentOnPr();
  p.repository!.owner.login = OWNER;
  p.repository!.name = REPO;
  p.issue!.number = PR;
  (p.issue! as { number: number; title?: string }).title = title;
  p.installation = { id: INSTALLATION, node_id: `I_fake${INSTALLATION}` };
  (p.comment as { body: string; user: { login: string } }).body = body;
  (p.comment as { body: string; user: { login: string } }).user.login = REVIEWER;
  (p.sender as { login: string }).login = REVIEWER;
  return await storeRaw(h, 'issue_comment', p, nextDelivery());
}

/** Tick until the PR's one job is finished; returns the number of ticks and the job dir (relative). */
export async function runLifecycle(title: string): Promise<{ h: Harness; ticks: number; jobRel: string }> {
  const h = await startHarness();
  openPr(h, PASSING_BOT);
  await storeBuildComment(h, title);
  const poller = new LivePoller(h.config, {
    logger: h.deps.logger,
    env: { HARNESS_GITHUB_TOKEN: 'ghp_harness' },
    // The harness's deps, with a GitHub client that reports its calls, as the poller's does.
    makeDeps: (config, onGitHubCall) => ({
      ...h.deps,
      github: createGitHub(
        config,
        h.deps.logger,
        { HARNESS_GITHUB_TOKEN: 'ghp_harness' },
        { retryBaseMs: 1, retries: 1, throttle: false, onResponse: onGitHubCall },
      ),
    }),
  });
  const deadline = Date.now() + 60_000;
  for (let ticks = 1; ; ticks++) {
    await poller.tick();
    const dirs = await jobDirsOf(h);
    if (dirs.length === 1 && (await stageOf(dirs[0]!)) === 'finished')
      return { h, ticks, jobRel: h.deps.jobdirs.relative(dirs[0]!) };
    if (Date.now() > deadline) throw new Error(`the job did not finish in ${ticks} ticks`);
    await new Promise((r) => setTimeout(r, 300));
  }
}
