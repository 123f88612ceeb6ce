/**
 * `bot: ping` end to end (a stored comment, a tick, the reply on the fake GitHub) and the pure health
 * rendering of src/domain/health.ts.
 */
import {
  formatDuration,
  jobHealthRows,
  partitionOf,
  renderInstanceHealth,
  renderPingLine,
  type InstanceHealthInput,
} from '../src/domain/health.js';
import { parsePartitionStates } from '../src/adapters/schedulers/slurm.js';
import { mergePartitions } from '../src/stages/healthNotes.js';
import { heartbeatPath, readHeartbeat, writeHeartbeat } from '../src/store/heartbeat.js';
import { writeSelfUpdateState } from '../src/selfUpdate/log.js';
import { LivePoller, runTick } from '../src/poller.js';
import { BackendUnavailableError, type Backend } from '../src/adapters/schedulers/types.js';
import { readFileSync, writeFileSync } from 'node:fs';
import { OWNER, PR, REPO, startHarness, storeComment, type Harness } from './support/botHarness.js';

const NOW = new Date('2026-11-28T12:00:00Z');
const base: InstanceHealthInput = {
  instance: 'site-a',
  version: '0.1.0',
  queueDepth: 3,
  alertAfter: 600,
  now: NOW,
  heartbeat: {
    process: 'poller',
    pid: 1,
    host: 'login1',
    startedAt: '2026-11-28T09:30:00Z',
    updatedAt: '2026-11-28T11:59:58Z',
    lastTick: { at: '2026-11-28T11:59:55Z', ms: 40, report: {} },
    backend: {
      lastOk: '2026-11-28T11:59:55Z',
      partitions: [
        { partition: 'zen4', state: 'up', since: '2026-11-27T00:00:00Z' },
        { partition: 'gpu', state: 'drained', since: '2026-11-28T08:00:00Z' },
      ],
    },
    ingest: { mode: 'pull', lastPullAt: '2026-11-28T11:59:50Z', lagMs: 7400, recovered: 2 },
  },
};

test('ping is one line: instance, version, uptime, queue depth, ingest and backend', () => {
  expect(renderPingLine(base)).toBe(
    'pong from instance `site-a` (hpc-build-bot 0.1.0): up 2h 30m, 3 in queue, ingest pull, last pull 10s ago, ' +
      'lag 7.4s, 2 recovered, scheduler answered 5s ago, partition `zen4` up, ' +
      ':warning: partition `gpu` drained since 2026-11-28T08:00:00Z',
  );
  expect(renderPingLine({ ...base, heartbeat: undefined })).toBe(
    'pong from instance `site-a` (hpc-build-bot 0.1.0): no poller heartbeat yet, 3 in queue',
  );
});

test('ping ends with the last self-update or rollback: which commits, when, and why it rolled back', () => {
  const updated = {
    at: '2026-11-28T10:00:00Z',
    action: 'updated' as const,
    from: '1'.repeat(40),
    to: '2'.repeat(40),
  };
  expect(renderPingLine({ ...base, lastSelfUpdate: updated })).toBe(
    `${renderPingLine(base)}, last self-update: updated from \`${'1'.repeat(12)}\` to \`${'2'.repeat(12)}\` at 2026-11-28T10:00:00Z, 2h 0m ago`,
  );
  const rolledBack = {
    at: '2026-11-28T11:55:00Z',
    action: 'rolled back' as const,
    from: '3'.repeat(40),
    to: '2'.repeat(40),
    reason: 'crashed 3 times within 10 minutes',
  };
  expect(renderPingLine({ ...base, heartbeat: undefined, lastSelfUpdate: rolledBack })).toBe(
    'pong from instance `site-a` (hpc-build-bot 0.1.0): no poller heartbeat yet, 3 in queue, ' +
      `last self-update: :warning: rolled back from \`${'3'.repeat(12)}\` to \`${'2'.repeat(12)}\` ` +
      'at 2026-11-28T11:55:00Z, 5m 0s ago (`crashed 3 times within 10 minutes`)',
  );
});

test('the status lines flag a scheduler unreachable for longer than alert_after', () => {
  const hb = base.heartbeat!;
  const down = {
    ...base,
    heartbeat: {
      ...hb,
      backend: {
        lastOk: '2026-11-28T11:40:00Z',
        unreachableSince: '2026-11-28T11:45:00Z',
        lastError: { at: '2026-11-28T11:59:55Z', message: 'squeue: Unable to contact slurm controller' },
      },
    },
  };
  expect(renderInstanceHealth(down)).toEqual([
    '- instance `site-a` (hpc-build-bot 0.1.0): last tick 5s ago, 3 in queue',
    '  - ingest pull, last pull 10s ago, lag 7.4s, 2 recovered',
    '  - :warning: scheduler unreachable since 2026-11-28T11:45:00Z (squeue: Unable to contact slurm controller)',
  ]);
  expect(renderInstanceHealth({ ...down, alertAfter: 3600 })[2]).toMatch(
    /^ {2}- scheduler unreachable since/,
  );
});

test('job rows: added once while the condition lasts, removed after; the same array when unchanged', () => {
  const partition = { partition: 'gpu', state: 'down', since: '2026-11-28T08:00:00Z' };
  const input = {
    instance: 'site-a',
    stage: 'released',
    partition,
    unreachableSince: undefined,
    alertAfter: 600,
    now: NOW,
  };
  const submitted = [{ key: 'submitted', at: 'x', status: 'submitted', comment: 'job id 1' }];
  const noted = jobHealthRows(submitted, input);
  expect(noted.map((r) => r.key)).toEqual(['submitted', 'health:partition']);
  expect(noted[1]!.comment).toBe(
    'partition `gpu` is down since 2026-11-28T08:00:00Z: the job starts once it is up again',
  );
  expect(jobHealthRows(noted, input)).toBe(noted);
  expect(jobHealthRows(noted, { ...input, stage: 'running' })).toEqual(submitted);
  const lost = { ...input, partition: undefined, unreachableSince: '2026-11-28T11:45:00Z' };
  expect(jobHealthRows(submitted, lost)[1]!.comment).toBe(
    'instance `site-a`: scheduler unreachable since 2026-11-28T11:45:00Z',
  );
  expect(jobHealthRows(submitted, { ...lost, alertAfter: 3600 })).toBe(submitted);
});

test('partitions: from sbatch arguments, from sinfo lines, and since when', () => {
  expect(partitionOf(['--time=1:00:00', '--partition=zen4'])).toBe('zen4');
  expect(partitionOf(['-p', 'gpu'])).toBe('gpu');
  expect(partitionOf(['-pgpu'])).toBe('gpu');
  expect(partitionOf(['--constraint=x'])).toBeUndefined();
  expect(
    parsePartitionStates(
      'zen4|up|idle\nzen4|up|mixed\ngpu|up|drained\ngpu|up|draining\nold|inact|idle\nx|down|idle\n',
    ),
  ).toEqual([
    { partition: 'zen4', state: 'up' },
    { partition: 'gpu', state: 'drained' },
    { partition: 'old', state: 'inact' },
    { partition: 'x', state: 'down' },
  ]);
  const before = [{ partition: 'gpu', state: 'down', since: '2026-11-27T00:00:00Z' }];
  expect(mergePartitions(before, [{ partition: 'gpu', state: 'down' }], NOW)[0]!.since).toBe(
    '2026-11-27T00:00:00Z',
  );
  expect(mergePartitions(before, [{ partition: 'gpu', state: 'up' }], NOW)[0]!.since).toBe(NOW.toISOString());
  expect(formatDuration(200_000)).toBe('2d 7h');
});

describe('bot: ping', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(async () => {
    await h.stop();
  });

  test('is answered with one line from the poller heartbeat', async () => {
    await writeHeartbeat(h.deps.jobdirs.root, 'poller', { backend: { lastOk: new Date().toISOString() } });
    await storeComment(h, 'bot: ping');
    await runTick(h.deps);
    const replies = h.fake.commentsOf(OWNER, REPO, PR).map((c) => c.body);
    expect(replies).toHaveLength(1);
    expect(replies[0]).toMatch(
      /pong from instance `test` \(hpc-build-bot \d+\.\d+\.\d+\): up \d+s, 1 in queue, ingest webhook, scheduler answered \d+s ago/,
    );
  });

  test('names the last update or rollback the self-updater recorded (a refusal is not one)', async () => {
    await writeHeartbeat(h.deps.jobdirs.root, 'poller', { backend: { lastOk: new Date().toISOString() } });
    const at = new Date(Date.now() - 60_000).toISOString();
    await writeSelfUpdateState(h.deps.jobdirs.root, {
      refused: { ['c'.repeat(40)]: 'smoke test failed' },
      log: [
        { at, action: 'updated', from: 'a'.repeat(40), to: 'b'.repeat(40) },
        { at, action: 'refused', to: 'c'.repeat(40), reason: 'smoke test failed' },
      ],
    });
    await storeComment(h, 'bot: ping');
    await runTick(h.deps);
    const replies = h.fake.commentsOf(OWNER, REPO, PR).map((c) => c.body);
    expect(replies).toHaveLength(1);
    expect(replies[0]).toContain(
      `, last self-update: updated from \`${'a'.repeat(12)}\` to \`${'b'.repeat(12)}\` at ${at}, 1m `,
    );
    expect(replies[0]).not.toContain('c'.repeat(12));
  });
});

describe('scheduler unreachable since T', () => {
  let h: Harness;
  afterEach(async () => {
    await h?.stop();
  });

  test('a restarted poller keeps the original T while the scheduler is still silent; an answer clears it', async () => {
    h = await startHarness('', 'backend:\n  kind: local\n  slurm:\n    sbatch_params: [--partition=debug]\n');
    const root = h.deps.jobdirs.root;
    let answering = false;
    let clock = new Date('2026-11-28T10:00:00Z');
    const real = h.deps.backend;
    // The scheduler as sinfo sees it: silent until `answering`.
    const backend: Backend = {
      kind: real.kind,
      submit: (...a) => real.submit(...a),
      findBySubmitId: (...a) => real.findBySubmitId(...a),
      release: (...a) => real.release(...a),
      observe: (...a) => real.observe(...a),
      cancel: (...a) => real.cancel(...a),
      partitionStates: async (names) => {
        if (!answering) throw new BackendUnavailableError('slurmctld: connection refused');
        return names.map((partition) => ({ partition, state: 'up' }));
      },
    };
    // Each poller stands for a fresh process: new deps, nothing carried over in memory.
    const freshPoller = () =>
      new LivePoller(h.config, {
        logger: h.deps.logger,
        env: { ...process.env, HARNESS_GITHUB_TOKEN: 'ghp_harness' },
        makeDeps: (config) => ({ ...h.deps, config, backend, now: () => clock }),
      });

    await freshPoller().tick();
    expect((await readHeartbeat(root, 'poller'))?.backend?.unreachableSince).toBe('2026-11-28T10:00:00.000Z');

    // The old process is gone (another pid wrote the file); the new one's pull loop writes first.
    const file = heartbeatPath(root, 'poller');
    writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), pid: process.pid + 1 }));
    await writeHeartbeat(root, 'poller', { ingest: { mode: 'pull' } });
    clock = new Date('2026-11-28T10:20:00Z');
    await freshPoller().tick();
    const after = (await readHeartbeat(root, 'poller'))?.backend;
    expect(after?.unreachableSince).toBe('2026-11-28T10:00:00.000Z');
    expect(after?.lastError?.at).toBe('2026-11-28T10:20:00.000Z');

    answering = true;
    clock = new Date('2026-11-28T10:25:00Z');
    await freshPoller().tick();
    const back = (await readHeartbeat(root, 'poller'))?.backend;
    expect(back?.unreachableSince).toBeUndefined();
    expect(back?.lastOk).toBe('2026-11-28T10:25:00.000Z');
  });
});
