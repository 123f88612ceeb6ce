/** hpcbot gc: removes old trash and finished event history, nothing that is pending or recent. */
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseConfig } from '../src/config.js';
import { collectGarbage, parseAge } from '../src/gc.js';
import { JobDirs } from '../src/jobdirs.js';
import { newState, transition, writeState } from '../src/state.js';

const DAY = 86_400_000;
const NOW = new Date('2026-11-24T12:00:00Z');

async function eventDir(root: string, name: string, stage: string, at: Date, jobStage?: string) {
  const dir = path.join(root, '2026.09', 'org', 'repo', 'pr_1', `event_${name}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'event.json'), '{}');
  writeFileSync(path.join(dir, 'payload-bytes'), 'x'.repeat(1000));
  await writeState(dir, transition(newState('event', 'received', {}, at), stage, at));
  if (jobStage) {
    const job = path.join(dir, 'run_000', 'zen4', 'repo');
    mkdirSync(job, { recursive: true });
    await writeState(job, transition(newState('job', 'prepared', {}, at), jobStage, at));
  }
  return dir;
}

test('parseAge', () => {
  expect(parseAge('30d')).toBe(30 * DAY);
  expect(parseAge('12h')).toBe(12 * 3_600_000);
  expect(() => parseAge('30 days')).toThrow('--older-than takes a number with d, h or m');
});

test('dry run lists, a real run removes, exactly the old finished things', async () => {
  const base = mkdtempSync(path.join(os.tmpdir(), 'hpcbot-gc-'));
  const file = path.join(base, 'site.yaml');
  writeFileSync(file, 'instance: t\njobdirs: jobdirs\n');
  const config = parseConfig('instance: t\njobdirs: jobdirs\n', file);
  const root = config.jobdirs;
  const old = new Date(NOW.getTime() - 40 * DAY);
  const oldTrash = path.join(root, 'trash', 'org', 'repo', '2026.10.01');
  const newTrash = path.join(root, 'trash', 'org', 'repo', '2026.11.20');
  for (const d of [oldTrash, newTrash]) {
    mkdirSync(path.join(d, '2026.09', 'pr_1'), { recursive: true });
    writeFileSync(path.join(d, '2026.09', 'pr_1', 'f'), 'y'.repeat(500));
  }
  const finished = await eventDir(root, 'old-done', 'done', old, 'finished');
  const activeJob = await eventDir(root, 'old-active-job', 'done', old, 'running');
  const recent = await eventDir(root, 'recent', 'done', new Date(NOW.getTime() - DAY));
  const pending = await eventDir(root, 'old-pending', 'ignored', old);
  await new JobDirs(root).ensureBaseDirs();
  await new JobDirs(root).enqueue(pending);

  const dry = await collectGarbage(config, 30 * DAY, true, NOW);
  expect(dry.removed.map((r) => r.path).sort()).toEqual([finished, oldTrash].sort());
  expect(dry.bytes).toBeGreaterThan(1500);
  expect(existsSync(finished)).toBe(true);

  const real = await collectGarbage(config, 30 * DAY, false, NOW);
  expect(real.bytes).toBe(dry.bytes);
  expect(existsSync(finished)).toBe(false);
  expect(existsSync(oldTrash)).toBe(false);
  for (const kept of [newTrash, activeJob, recent, pending]) expect(existsSync(kept)).toBe(true);
});
