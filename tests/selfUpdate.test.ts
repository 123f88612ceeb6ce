/**
 * Self-update against a local git remote whose commits stand for bot v1, v2 (good) and v3 (broken).
 * Each release is a small stand-in documented in the README: its bin/hpcbot.mjs runs this checkout's
 * real CLI (good) or fails (broken), and `self_update.install` is a real command standing in for
 * `npm ci`. So config check and the smoke test (`poll --once` on a scratch jobdirs with the sample
 * event) really run.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfig, type Config } from '../src/config/config.js';
import { readSelfUpdateState } from '../src/selfUpdate/log.js';
import {
  compareVersions,
  currentRelease,
  EXIT_RESTART,
  noteStart,
  pickTarget,
  rollback,
  selfUpdate,
} from '../src/selfUpdate/release.js';
import { locate } from '../src/cli/status.js';
import { storePayload } from '../src/ingest/eventStore.js';
import { ensureSamplePr, samplePayload } from '../src/ingest/sampleEvent.js';
import { JobDirs } from '../src/store/jobdirs.js';
import { readState } from '../src/store/state.js';
import { renderOverview } from '../src/ui/html.js';
import { collectOverview } from '../src/ui/model.js';
import { ROOT, runCli, tempDir, writeSiteYaml } from './support/spawn.js';

const GOOD = `import { spawnSync } from 'node:child_process';
const r = spawnSync(process.execPath, ['--import', 'tsx', ${JSON.stringify(path.join(ROOT, 'src/cli/main.ts'))}, ...process.argv.slice(2)], { cwd: ${JSON.stringify(ROOT)}, stdio: 'inherit' });
process.exit(r.status ?? 1);
`;
const BROKEN = `process.stderr.write('v3: SyntaxError in the new code\\n');\nprocess.exit(1);\n`;

const gitIn = (cwd: string, ...args: string[]) =>
  execFileSync('git', args, {
    cwd,
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: 't',
      GIT_AUTHOR_EMAIL: 't@x',
      GIT_COMMITTER_NAME: 't',
      GIT_COMMITTER_EMAIL: 't@x',
    },
  })
    .toString()
    .trim();

let work: string;
let config: Config;

/** Commit a release to the remote's main branch; returns its SHA. */
function release(version: string, cli: string): string {
  mkdirSync(path.join(work, 'bin'), { recursive: true });
  writeFileSync(path.join(work, 'bin', 'hpcbot.mjs'), cli);
  writeFileSync(path.join(work, 'VERSION'), version);
  gitIn(work, 'add', '-A');
  gitIn(work, 'commit', '-q', '-m', version);
  gitIn(work, 'tag', version);
  gitIn(work, 'push', '-q', '--tags', 'origin', 'HEAD:main');
  return gitIn(work, 'rev-parse', 'HEAD');
}

beforeAll(async () => {
  const d = await tempDir('hpcbot-selfupdate-');
  const remote = path.join(d, 'bot.git');
  work = path.join(d, 'work');
  execFileSync('git', ['init', '-q', '--bare', '--initial-branch=main', remote]);
  execFileSync('git', ['init', '-q', '--initial-branch=main', work]);
  gitIn(work, 'remote', 'add', 'origin', remote);
  const file = await writeSiteYaml(
    d,
    0,
    [
      'self_update:',
      `  remote: ${remote}`,
      '  branch: main',
      '  check_every: 1h',
      '  dir: releases-home',
      `  install: [${JSON.stringify(process.execPath)}, -e, "require('fs').writeFileSync('installed', 'yes')"]`,
    ].join('\n'),
  );
  config = loadConfig(file);
}, 30_000);

const u = () => config.self_update!;

/** The sample PR and a `bot: help` comment on it, stored in the bot's jobdirs as the server would. */
async function storeSampleHelp(): Promise<string> {
  const jobdirs = new JobDirs(config.jobdirs);
  await jobdirs.ensureBaseDirs();
  await ensureSamplePr(config);
  return await storePayload(jobdirs, 'issue_comment', samplePayload('bot: help'), `pending-${Date.now()}`);
}
const versionOfCurrent = () => readFileSync(path.join(u().dir, 'current', 'VERSION'), 'utf8');

test('v1 is installed, v2 replaces it, broken v3 is refused and v2 stays; 3 crashes roll v2 back', async () => {
  const v1 = release('v1', GOOD);
  expect(await selfUpdate(config)).toEqual({ action: 'updated', to: v1 });
  expect(readlinkSync(path.join(u().dir, 'current'))).toBe(path.join('releases', v1));
  expect(readFileSync(path.join(u().dir, 'current', 'installed'), 'utf8')).toBe('yes');

  // Work stored while v1 runs is taken up by v2 after the switch, from the same jobdirs.
  const pending = await storeSampleHelp();
  const v2 = release('v2', GOOD);
  expect(await selfUpdate(config)).toEqual({ action: 'updated', from: v1, to: v2 });
  expect(versionOfCurrent()).toBe('v2');
  execFileSync(process.execPath, [
    path.join(u().dir, 'current', 'bin', 'hpcbot.mjs'),
    'poll',
    '--once',
    '--config',
    config.source,
  ]);
  expect((await readState(pending))?.stage).toBe('done');

  const v3 = release('v3', BROKEN);
  const refused = await selfUpdate(config);
  expect(refused).toEqual({
    action: 'refused',
    to: v3,
    reason: expect.stringContaining('config check failed'),
  });
  expect(refused.action === 'refused' && refused.reason).toContain('v3: SyntaxError in the new code');
  expect(currentRelease(u())).toBe(v2);
  expect(existsSync(path.join(u().dir, 'releases', v3))).toBe(true); // prepared, never switched to
  // A refused release is not tried again.
  expect(await selfUpdate(config)).toEqual({
    action: 'none',
    current: v2,
    reason: expect.stringMatching(/^[0-9a-f]{12} \(refs\/heads\/main\) was refused: config check failed/),
  });

  // The poller of v2 starts, then crashes three times within 10 minutes: back to v1.
  const switchedAt = Date.parse((await readSelfUpdateState(config.jobdirs)).switched!.at);
  const at = (min: number) => new Date(switchedAt + min * 60_000);
  expect([
    await noteStart(config, at(0)),
    await noteStart(config, at(1)),
    await noteStart(config, at(2)),
  ]).toEqual([false, false, false]);
  expect(await noteStart(config, at(3))).toBe(true);
  expect(currentRelease(u())).toBe(v1);
  const state = await readSelfUpdateState(config.jobdirs);
  expect(state.log.map((e) => [e.action, e.from, e.to])).toEqual([
    ['updated', undefined, v1],
    ['updated', v1, v2],
    ['refused', v2, v3],
    ['rolled back', v2, v1],
  ]);
  expect(state.log.at(-1)!.reason).toBe('3 restarts within 10 minutes of the switch');
  expect(state.refused[v2]).toMatch(/^rolled back: /);
  // The status page lists them.
  const page = renderOverview(await collectOverview(await locate(config.source)), new Date());
  const section = page.slice(page.indexOf('<section id="self-update">'));
  expect(section).toContain('<td>rolled back</td>');
  expect(section).toContain('3 restarts within 10 minutes of the switch');
  // Nothing earlier to go back to now.
  await expect(rollback(config, 'again')).rejects.toThrow('there is no earlier release to go back to');
}, 180_000);

test('hpcbot self-update --check says what runs and what the remote has; the units run `current`', async () => {
  const { code, stdout } = await runCli(['self-update', '--check', '--config', config.source]);
  expect(code).toBe(0);
  expect(stdout).toMatch(/^current {3}[0-9a-f]{12}\nremote {4}[0-9a-f]{12} \(refs\/heads\/main\)\n/);
  expect(stdout).toContain('refused earlier: config check failed');
  expect(stdout).toContain('rolled back');
  expect((await runCli(['self-update', '--config', config.source])).stderr).toContain(
    'give one of --check, --now and --rollback',
  );
  const units = path.join(path.dirname(config.source), 'units');
  expect((await runCli(['service', 'install', '--dir', units, '--config', config.source])).code).toBe(0);
  expect(readFileSync(path.join(units, 'hpcbot-poller.service'), 'utf8')).toContain(
    `ExecStart=${process.execPath} ${path.join(u().dir, 'current', 'bin', 'hpcbot.mjs')} poll\n`,
  );
  expect(EXIT_RESTART).toBe(75);
}, 60_000);

test('the target: a branch head, or the highest matching tag (peeled)', () => {
  const a = 'a'.repeat(40);
  const b = 'b'.repeat(40);
  const c = 'c'.repeat(40);
  const ls = [
    `${a}\trefs/heads/main`,
    `${b}\trefs/tags/v1.9.0`,
    `${a}\trefs/tags/v1.10.0`,
    `${c}\trefs/tags/v1.10.0^{}`,
    `${b}\trefs/tags/other`,
  ].join('\n');
  expect(pickTarget({ branch: 'main' }, ls)).toEqual({ sha: a, ref: 'refs/heads/main' });
  expect(pickTarget({ tag_pattern: 'v*' }, ls)).toEqual({ sha: c, ref: 'refs/tags/v1.10.0' });
  expect(pickTarget({ branch: 'nope' }, ls)).toBeUndefined();
  expect(compareVersions('v1.10.0', 'v1.9.2')).toBeGreaterThan(0);
});
