/**
 * No user error ends in a stack trace: each command, run as a user runs it with bad input, prints a
 * clear message and exits 2 (usage: bad options, bad config) or 1 (failure).
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
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
