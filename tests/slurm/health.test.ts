/**
 * Instance health on the real single-node Slurm: a job waiting on a partition set DOWN with
 * `scontrol update` gets a row saying so, which goes when the partition is UP again; a poller whose
 * SLURM_CONF names a controller port nobody listens on notes "scheduler unreachable" on the active
 * job after health.alert_after, and the note goes once a poller reaches the scheduler again.
 */
import { jest } from '@jest/globals';
import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import type { JobData } from '../../src/store/job.js';
import { LivePoller } from '../../src/poller.js';
import { readState } from '../../src/store/state.js';
import {
  jobDirsOf,
  openPr,
  OWNER,
  PR,
  REPO,
  startHarness,
  stageOf,
  storeComment,
  tickUntil,
  type Harness,
} from '../support/botHarness.js';
import { PASSING_BOT } from '../support/prRepo.js';
import { describeSlurm, slurm } from '../support/slurm.js';
import { freePort, killAll, spawnCli } from '../support/spawn.js';

jest.setTimeout(240_000);

const PARTITION = 'debug';
const SLURM =
  `backend:\n  kind: slurm\n  slurm:\n    job_name_prefix: hpcbot-health${process.pid}\n` +
  `    default_time: '00:10:00'\n    missing_ticks_before_lost: 50\n    sbatch_params: ['--partition=${PARTITION}']\n`;
const SLEEPY_BOT = { ...PASSING_BOT, 'bot/build.sh': '#!/bin/bash\nsleep 300\n' };

let h: Harness | undefined;

async function partitionUp(): Promise<void> {
  await slurm('scontrol', ['update', `PartitionName=${PARTITION}`, 'State=UP']);
}

afterEach(async () => {
  await killAll();
  await partitionUp().catch(() => undefined);
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

afterAll(async () => {
  await partitionUp().catch(() => undefined);
});

const jobComment = () =>
  h!.fake.commentsOf(OWNER, REPO, PR).find((c) => c.body.startsWith('New job on instance'))?.body ?? '';

function livePoller(): LivePoller {
  return new LivePoller(h!.config, { logger: h!.deps.logger, makeDeps: () => h!.deps });
}

async function liveTicksUntil(poller: LivePoller, done: () => boolean, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await poller.tick();
    if (done()) return;
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 500));
  }
}

describeSlurm('instance health on the real Slurm', () => {
  test('a job waiting on a DOWN partition says so; the row goes when it is UP again', async () => {
    h = await startHarness('', SLURM);
    openPr(h, SLEEPY_BOT);
    await slurm('scontrol', ['update', `PartitionName=${PARTITION}`, 'State=DOWN']);
    await storeComment(h, 'bot: build for:arch=zen4');
    await tickUntil(h, async () => {
      const [dir] = await jobDirsOf(h!);
      return dir !== undefined && (await stageOf(dir)) === 'released';
    });
    const poller = livePoller();
    await liveTicksUntil(poller, () => /partition `debug` is down since/.test(jobComment()));
    expect(jobComment().match(/partition `debug` is down/g)).toHaveLength(1);
    await poller.tick(); // a further tick adds no second row
    expect(jobComment().match(/partition `debug` is down/g)).toHaveLength(1);

    await partitionUp();
    await liveTicksUntil(poller, () => !/partition `debug`/.test(jobComment()));
    expect(jobComment()).toMatch(/^New job on instance `test`/);
  });

  test('a poller that cannot reach the controller notes it on the active job; the note goes when it can', async () => {
    h = await startHarness('health:\n  alert_after: 1s\n', SLURM);
    openPr(h, SLEEPY_BOT);
    await storeComment(h, 'bot: build for:arch=zen4');
    await tickUntil(h, async () => {
      const [dir] = await jobDirsOf(h!);
      return dir !== undefined && ['released', 'running'].includes((await stageOf(dir)) ?? '');
    });

    // The same cluster config, but a controller port nobody listens on: for the child only.
    const conf = readFileSync(process.env.SLURM_CONF ?? '/etc/slurm/slurm.conf', 'utf8');
    const port = await freePort();
    const lost = path.join(h.root, 'slurm-lost.conf');
    await fs.writeFile(
      lost,
      /^SlurmctldPort=/m.test(conf)
        ? conf.replace(/^SlurmctldPort=.*$/m, `SlurmctldPort=${port}`)
        : `SlurmctldPort=${port}\n${conf}`,
    );
    const child = spawnCli(['poll', '--config', path.join(h.root, 'site.yaml')], {
      env: { HARNESS_GITHUB_TOKEN: 'ghp_harness', SLURM_CONF: lost },
    });
    const deadline = Date.now() + 150_000;
    while (!/scheduler unreachable since/.test(jobComment())) {
      if (Date.now() > deadline) throw new Error(`no note; poller said:\n${child.stdout()}${child.stderr()}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(jobComment()).toMatch(/\|scheduler\|instance `test`: scheduler unreachable since \d{4}-/);
    child.proc.kill('SIGKILL');
    await child.exited;

    await liveTicksUntil(livePoller(), () => !/scheduler unreachable/.test(jobComment()));
  });
});
