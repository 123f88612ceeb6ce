/**
 * No user error ends in a stack trace: each command, run as a user runs it with bad input, prints a
 * clear message and exits 2 (usage: bad options, bad config) or 1 (failure).
 */
import { spawn } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { jest } from '@jest/globals';
import { describeError, DEBUG_HINT, UsageError } from '../src/cli/errors.js';
import { CLI, childEnv, freePort, killAll, ROOT, runCli, tempDir, writeSiteYaml } from './support/spawn.js';

jest.setTimeout(60_000);

const STACK_FRAME = /^\s+at /m;
const temps: string[] = [];
let site: string;
let dir: string;

beforeAll(async () => {
  dir = await tempDir('hpcbot-clierr-');
  temps.push(dir);
  site = await writeSiteYaml(dir, await freePort());
});
afterEach(killAll);
afterAll(async () => {
  for (const d of temps) await fs.rm(d, { recursive: true, force: true });
});

describe('usage errors exit 2 with one line', () => {
  test.each([
    [
      'a bad --older-than',
      () => ['gc', '--older-than', '30x', '--config', site],
      'hpcbot gc: --older-than takes a number with d, h or m, e.g. 30d; got "30x"\n',
    ],
    ['an unknown option', () => ['poll', '--bogus', '--config', site], "error: unknown option '--bogus'\n"],
    ['an unknown command', () => ['bogus'], "error: unknown command 'bogus'\n"],
    [
      'a missing required option',
      () => ['verify', 'x.tar'],
      "error: required option '--allowed-signers <file>' not specified\n",
    ],
    [
      'a missing option value',
      () => ['status', '--config'],
      "error: option '-c, --config <path>' argument missing\n",
    ],
  ])('%s', async (_what, args, message) => {
    const { code, stdout, stderr } = await runCli(args());
    expect(stderr).toBe(message);
    expect(stderr).not.toMatch(STACK_FRAME);
    expect(code).toBe(2);
    expect(stdout).toBe('');
  });

  test('a config file that does not exist, for status', async () => {
    const missing = path.join(dir, 'nope.yaml');
    const { code, stderr } = await runCli(['status', '--config', missing]);
    expect(stderr).toMatch(new RegExp(`^${missing}:\\?: \\(top level\\): cannot read: ENOENT[^\\n]*\\n$`));
    expect(stderr).not.toMatch(STACK_FRAME);
    expect(code).toBe(2);
  });

  test.each([['server'], ['start'], ['ui']])('%s with a config file that does not exist', async (cmd) => {
    const missing = path.join(dir, `${cmd}-nope.yaml`);
    const { code, stdout, stderr } = await runCli([cmd, '--config', missing]);
    expect(stderr).toBe(
      `${missing}:?: (top level): cannot read: ENOENT: no such file or directory, open '${missing}'\n`,
    );
    expect(stderr).not.toMatch(STACK_FRAME);
    expect(code).toBe(2);
    expect(stdout).toBe('');
  });

  test.each([
    [
      'deliveries recover with a bad --since',
      () => ['deliveries', 'recover', '--since', '3x', '--config', site],
      'hpcbot deliveries recover: --since "3x": expected an age such as 90m, 12h or 3d\n',
    ],
    [
      'self-update without --check, --now or --rollback',
      () => ['self-update', '--config', site],
      'hpcbot self-update: give one of --check, --now and --rollback\n',
    ],
    [
      'self-update --check without self_update in site.yaml',
      () => ['self-update', '--check', '--config', site],
      () => `hpcbot self-update: ${site}: self_update is not set; see README "Self-update"\n`,
    ],
    [
      'deploy forget of something that is no PR number',
      () => ['deploy', 'forget', 'abc', '--config', site],
      'hpcbot deploy forget: "abc" is not a pull request number\n',
    ],
    [
      'service install --entry of a file that does not exist',
      () => [
        'service',
        'install',
        '--dir',
        path.join(dir, 'units'),
        '--entry',
        '/nonexistent',
        '--config',
        site,
      ],
      'hpcbot service install: --entry /nonexistent: no such file\n',
    ],
  ])('%s', async (_what, args, message) => {
    const { code, stdout, stderr } = await runCli(args(), {
      env: { XDG_CONFIG_HOME: path.join(dir, 'xdg') },
    });
    expect(stderr).toBe(typeof message === 'function' ? message() : message);
    expect(stderr).not.toMatch(STACK_FRAME);
    expect(code).toBe(2);
    expect(stdout).toBe('');
  });

  test('service install --entry that does not exist writes no unit', async () => {
    const units = path.join(dir, 'units-refused');
    const { code } = await runCli(
      ['service', 'install', '--dir', units, '--entry', path.join(dir, 'no-hpcbot.mjs'), '--config', site],
      { env: { XDG_CONFIG_HOME: path.join(dir, 'xdg') } },
    );
    expect(code).toBe(2);
    expect(existsSync(units)).toBe(false);
  });

  test('a log level that does not exist', async () => {
    const { code, stderr } = await runCli(['poll', '--once', '--config', site], {
      env: { HPCBOT_LOG_LEVEL: 'loud' },
    });
    expect(stderr).toMatch(/^hpcbot poll: HPCBOT_LOG_LEVEL is "loud"; set it to one of [^\n]*\n$/);
    expect(stderr).not.toMatch(STACK_FRAME);
    expect(code).toBe(2);
  });
});

describe('failures exit 1 with a clear message', () => {
  test('poll --replay of a path that is no event dir', async () => {
    const bad = path.join(dir, 'no-such-event');
    const { code, stderr } = await runCli(['poll', '--replay', bad, '--config', site]);
    expect(stderr).toContain(`hpcbot poll: ${bad} is not an event directory that has been processed\n`);
    expect(stderr).not.toMatch(STACK_FRAME);
    expect(code).toBe(1);
  });

  test('poll --dir of a directory that does not exist', async () => {
    const missing = path.join(dir, 'no-such-dir');
    const { code, stdout, stderr } = await runCli(['poll', '--dir', missing, '--config', site]);
    expect(stderr).toBe(`hpcbot poll: --dir ${missing}: no such directory\n`);
    expect(stdout).toBe('');
    expect(code).toBe(1);
  });

  test('poll --dir of a directory that is no event or job directory', async () => {
    const { code, stdout, stderr } = await runCli(['poll', '--dir', dir, '--config', site]);
    expect(stderr).toBe(
      `hpcbot poll: --dir ${dir}: not an event or job directory (it has neither event.json nor state.json)\n`,
    );
    expect(stdout).toBe('');
    expect(code).toBe(1);
  });

  test('config import-eessi of an app.cfg that does not exist', async () => {
    const missing = path.join(dir, 'app.cfg');
    const { code, stdout, stderr } = await runCli(['config', 'import-eessi', missing]);
    expect(stderr).toBe(`hpcbot config import-eessi: cannot read ${missing}: ENOENT\n`);
    expect(stderr).not.toMatch(STACK_FRAME);
    expect(stdout).toBe('');
    expect(code).toBe(1);
  });

  test('deploy forget of a PR without deploy records', async () => {
    const { code, stderr } = await runCli(['deploy', 'forget', '12', '--config', site]);
    expect(stderr).toBe('hpcbot deploy forget: no deploy records of PR #12 in any repository\n');
    expect(code).toBe(1);
  });

  test('service install --dir under /proc fails at once instead of hanging in mkdir', async () => {
    const started = Date.now();
    const { code, stdout, stderr } = await runCli(
      ['service', 'install', '--dir', '/proc/nope/units', '--config', site],
      { env: { XDG_CONFIG_HOME: path.join(dir, 'xdg') } },
    );
    expect(stderr).toBe('hpcbot service install: cannot create /proc/nope/units: /proc/nope: ENOENT\n');
    expect(stdout).toBe('');
    expect(code).toBe(1);
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  test('deliveries recover without an App (webhook mode)', async () => {
    const { code, stderr } = await runCli(['deliveries', 'recover', '--config', site]);
    expect(stderr).toMatch(/^hpcbot deliveries recover: ingest\.mode: [^\n]*\n$/);
    expect(code).toBe(2);
  });

  test('sample-event while the server is down', async () => {
    const port = await freePort();
    const down = await writeSiteYaml(await tempDir('hpcbot-clierr-'), port);
    temps.push(path.dirname(down));
    const { code, stderr } = await runCli(['sample-event', '--config', down]);
    expect(stderr).not.toMatch(STACK_FRAME);
    expect(stderr).toBe(
      `hpcbot sample-event: cannot reach the server at http://127.0.0.1:${port}/webhook (is \`npm start\` running?): connect ECONNREFUSED 127.0.0.1:${port}\n`,
    );
    expect(code).toBe(1);
  });

  test('verify of a file that does not exist', async () => {
    const missing = path.join(dir, 'missing.tar');
    const { code, stderr } = await runCli([
      'verify',
      missing,
      '--allowed-signers',
      path.join(dir, 'signers'),
    ]);
    expect(stderr).toBe(`FAILED: ${missing}\n  problem: artefact ${missing} does not exist\n`);
    expect(stderr).not.toMatch(STACK_FRAME);
    expect(code).toBe(1);
  });
});

test('output piped into a reader that goes away (`| head`) ends quietly', async () => {
  // An effective config far larger than a pipe's buffer, so that writes go on after the reader left.
  const vars = Array.from({ length: 4000 }, (_, i) => `    - VARIABLE_NUMBER_${i}=.*`);
  const big = await writeSiteYaml(dir, 1, ['build:', '  allowed_exportvars:', ...vars].join('\n'));
  const proc = spawn(process.execPath, ['--import', 'tsx', CLI, 'config', 'check', '--config', big], {
    cwd: ROOT,
    env: childEnv({ HPCBOT_TEST_WEBHOOK_SECRET: 'x' }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let bytes = 0;
  proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  proc.stdout.once('data', (c: Buffer) => {
    bytes = c.length;
    proc.stdout.destroy();
  });
  const code = await new Promise<number | null>((resolve) => proc.on('close', (c) => resolve(c)));
  expect(bytes).toBeGreaterThan(0);
  expect(bytes).toBeLessThan(4000 * 30); // the reader did leave before the end
  expect(stderr).not.toMatch(STACK_FRAME);
  expect(stderr).not.toContain('EPIPE');
  expect(code).toBe(0);
});

describe('describeError', () => {
  test('a bug (TypeError) says it is unexpected and how to get the stack', () => {
    const err = new TypeError("Cannot read properties of undefined (reading 'x')");
    expect(describeError(err, 'status')).toEqual({
      exitCode: 1,
      text: `hpcbot status: unexpected error: TypeError: Cannot read properties of undefined (reading 'x')\n${DEBUG_HINT}\n`,
    });
  });

  test('HPCBOT_DEBUG gives the stack, with the same exit code', () => {
    const report = describeError(new UsageError('bad value'), 'gc', true);
    expect(report.exitCode).toBe(2);
    expect(report.text).toMatch(/^UsageError: bad value\n\s+at /);
  });

  test('a ConfigError is printed as it is: one line per problem, file and line first', () => {
    const err = Object.assign(new Error('a.yaml:3: x: bad\na.yaml:4: y: bad'), { name: 'ConfigError' });
    expect(describeError(err, 'poll')).toEqual({ exitCode: 2, text: 'a.yaml:3: x: bad\na.yaml:4: y: bad\n' });
  });

  test('a thrown non-error is unexpected', () => {
    expect(describeError('boom', '').text).toBe(`hpcbot: unexpected error: boom\n${DEBUG_HINT}\n`);
  });
});
