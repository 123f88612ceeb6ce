/**
 * Logs for people: the format follows the terminal (or HPCBOT_LOG_FORMAT), and a run through the real
 * poller and server says, one info line each, what happened to which pull request, and nothing else.
 */
import type { Server } from 'node:http';
import { Writable } from 'node:stream';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { createLogger, logFormat, LogSettingError, prOfDir } from '../src/log.js';
import { createApp, ingestOf } from '../src/server.js';
import { runTick } from '../src/poller.js';
import type { JobData } from '../src/store/job.js';
import { PASSING_BOT } from './support/prRepo.js';
import { makeDelivery, payloads, send } from './support/payloads.js';
import { ROOT, spawnCli } from './support/spawn.js';
import {
  jobDirsOf,
  openPr,
  OWNER,
  PR,
  REPO,
  REVIEWER,
  nextDelivery,
  startHarness,
  stageOf,
  stateOf,
  storeComment,
  storeRaw,
  tickUntil,
  type Harness,
} from './support/botHarness.js';

/** A destination that keeps what is written, with a promise for the next write. */
function capture() {
  const chunks: string[] = [];
  let waiting: (() => void) | undefined;
  const stream = new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      chunks.push(chunk.toString());
      waiting?.();
      cb();
    },
  });
  return {
    stream,
    text: () => chunks.join(''),
    written: () => new Promise<void>((resolve) => (waiting = resolve)),
  };
}

type Line = Record<string, unknown> & { level: string; msg: string; time: string };

/** `yyyy-mm-dd HH:MM:ss` as a clock in `timeZone` shows `date`. */
function wallClock(date: Date, timeZone: string): string {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-CA', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    })
      .formatToParts(date)
      .map((p) => [p.type, p.value]),
  );
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second}`;
}

function jsonLines(text: string): Line[] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Line);
}

describe('format', () => {
  test('pretty at a terminal, JSON elsewhere; HPCBOT_LOG_FORMAT overrides either way', () => {
    expect(logFormat({}, true)).toBe('pretty');
    expect(logFormat({}, false)).toBe('json');
    expect(logFormat({ HPCBOT_LOG_FORMAT: 'json' }, true)).toBe('json');
    expect(logFormat({ HPCBOT_LOG_FORMAT: 'pretty' }, false)).toBe('pretty');
    expect(logFormat({ HPCBOT_LOG_FORMAT: '' }, true)).toBe('pretty');
    expect(() => logFormat({ HPCBOT_LOG_FORMAT: 'yaml' }, false)).toThrow(
      new LogSettingError('HPCBOT_LOG_FORMAT is "yaml"; set it to json or pretty, or unset it'),
    );
  });

  test('JSON lines have ISO times and level names; HPCBOT_LOG_LEVEL sets the level', () => {
    const out = capture();
    const logger = createLogger('poller', {
      stream: out.stream,
      isTTY: false,
      env: { HPCBOT_LOG_LEVEL: 'warn' },
    });
    logger.info('not shown at warn');
    logger.warn({ pr: 'o/r#1' }, 'shown');
    const [line, ...rest] = jsonLines(out.text());
    expect(rest).toEqual([]);
    expect(line).toMatchObject({ level: 'warn', name: 'poller', pr: 'o/r#1', msg: 'shown' });
    expect(line!.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  test('an unknown level is refused with the values that work', () => {
    expect(() => createLogger('x', { stream: capture().stream, env: { HPCBOT_LOG_LEVEL: 'loud' } })).toThrow(
      /HPCBOT_LOG_LEVEL is "loud"; set it to one of trace, debug, info, warn, error, fatal, silent/,
    );
  });

  test('a secret handed to the logger by mistake is redacted', () => {
    const out = capture();
    createLogger('x', { stream: out.stream, isTTY: false }).info({ token: 'ghp_secret123' }, 'oops');
    expect(out.text()).not.toContain('ghp_secret123');
    expect(jsonLines(out.text())[0]).toMatchObject({ token: '[redacted]' });
  });

  test('pretty: one line with the local time, the level word, the PR first and the rest as JSON', async () => {
    // A child far from UTC (the time zone is fixed at start), so a UTC time could not pass for local time.
    // It exits right after logging: the line must be out by then.
    const zone = 'Pacific/Kiritimati';
    const script = [
      `import { createLogger } from ${JSON.stringify(pathToFileURL(path.join(ROOT, 'src', 'log.ts')).href)};`,
      "createLogger('poller', { isTTY: true }).info({ pr: 'hpc-org/software-layer#7', job_id: '42' }, 'job submitted');",
      'process.exit(0);',
    ].join('\n');
    const before = new Date(Math.floor(Date.now() / 1000) * 1000);
    const child = spawnCli([], {
      entry: ['--import', 'tsx', '--input-type=module', '-e', script],
      env: { TZ: zone },
    });
    const { code } = await child.exited;
    const after = new Date();
    expect({ code, stderr: child.stderr() }).toEqual({ code: 0, stderr: '' });
    // eslint-disable-next-line no-control-regex
    const text = child.stdout().replace(/\x1b\[[0-9;]*m/g, '');
    expect(text.endsWith('\n')).toBe(true);
    expect(text.trimEnd().split('\n')).toHaveLength(1);
    const m = /^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\] INFO \(poller\): (.*)$/.exec(text.trimEnd());
    expect(m).not.toBeNull();
    expect(m![1]! >= wallClock(before, zone) && m![1]! <= wallClock(after, zone)).toBe(true);
    expect(m![2]).toBe('hpc-org/software-layer#7: job submitted {"job_id":"42"}');
  });
});

test('prOfDir names the pull request (or repository) of a directory under jobdirs', () => {
  const root = '/srv/jobdirs';
  expect(prOfDir(root, `${root}/2025.01/hpc-org/software-layer/pr_7/event_d1/run_000/zen4/eessi-test`)).toBe(
    'hpc-org/software-layer#7',
  );
  expect(prOfDir(root, `${root}/2025.01/hpc-org/software-layer/_repo/event_d2`)).toBe(
    'hpc-org/software-layer',
  );
  expect(prOfDir(root, `${root}/queue`)).toBeUndefined();
});

describe('a scripted run through the real poller', () => {
  let h: Harness;
  afterEach(async () => {
    await h?.stop();
  });

  test('build and deploy: one info line per thing that happened, each naming the PR; idle ticks say nothing', async () => {
    const key = path.join(os.tmpdir(), `hpcbot-log-key-${process.pid}-${Date.now()}`);
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'hpcbot@test', '-f', key]);
    h = await startHarness(
      `deploy:\n  policy: once\n  uploader:\n    kind: directory\n    directory: staging\n  signing:\n    key_file: ${key}\n`,
    );
    const out = capture();
    h.deps.logger = createLogger('poller', { stream: out.stream, isTTY: false, env: {} });
    openPr(h, PASSING_BOT);

    await storeComment(h, 'bot: build for:arch=x86_64/amd/zen4');
    const ticks = await tickUntil(h, async () => {
      const dirs = await jobDirsOf(h);
      return dirs.length === 1 && (await stageOf(dirs[0]!)) === 'finished';
    });
    const [jobDir] = await jobDirsOf(h);
    const job = (await stateOf<JobData>(jobDir!)).data;
    const pr = `${OWNER}/${REPO}#${PR}`;
    const target = 'zen4/eessi-test';

    const build = jsonLines(out.text());
    expect(build.filter((l) => l.level !== 'info')).toEqual([]);
    const byMsg = (msg: string) => build.filter((l) => l.msg === msg);
    expect(byMsg('command received')).toEqual([
      expect.objectContaining({ pr, sender: REVIEWER, command: expect.stringContaining('build') }),
    ]);
    expect(byMsg('job prepared')).toEqual([expect.objectContaining({ pr, target })]);
    expect(byMsg('job submitted')).toEqual([expect.objectContaining({ pr, target, job_id: job.job_id })]);
    expect(byMsg('job finished')).toEqual([
      expect.objectContaining({ pr, target, job_id: job.job_id, outcome: 'finished', result: 'SUCCESS' }),
    ]);
    // The local backend may finish the job before a tick sees it running: "started" is there at most once.
    expect(byMsg('job started').length).toBeLessThanOrEqual(1);
    expect(build.every((l) => l.pr === pr)).toBe(true);
    // However many ticks it took, the lines are the things that happened, not the ticks.
    expect(ticks).toBeGreaterThan(1);
    expect(build.length).toBeLessThanOrEqual(5);

    const idle = out.text().length;
    await runTick(h.deps);
    await runTick(h.deps);
    expect(out.text().slice(idle)).toBe('');

    const deployFrom = out.text().length;
    await storeComment(h, 'bot: deploy');
    await tickUntil(h, async () => (await h.deps.jobdirs.pending()).length === 0);
    const deploy = jsonLines(out.text().slice(deployFrom));
    expect(deploy.map((l) => l.msg)).toEqual(['command received', 'artefact deployed']);
    expect(deploy[1]).toMatchObject({
      pr,
      target,
      job_id: job.job_id,
      artefact: job.result!.artefacts[0],
      detail: expect.stringMatching(/^signed to /),
    });
  });
});

describe('one line for a label and for a directory given up on', () => {
  let h: Harness;
  afterEach(async () => {
    await h?.stop();
  });

  test('a bot:build label: "label received" with who and which label, at info', async () => {
    h = await startHarness();
    const out = capture();
    h.deps.logger = createLogger('poller', { stream: out.stream, isTTY: false, env: {} });
    openPr(h, PASSING_BOT);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const p = payloads.prLabeled() as Record<string, any>;
    p.repository.owner.login = OWNER;
    p.repository.name = REPO;
    p.number = PR;
    p.pull_request.number = PR;
    p.label.name = 'bot:build';
    p.sender.login = REVIEWER;
    await storeRaw(h, 'pull_request', p, nextDelivery());
    await runTick(h.deps);
    const lines = jsonLines(out.text()).filter((l) => l.msg === 'label received');
    expect(lines).toEqual([
      expect.objectContaining({
        level: 'info',
        pr: `${OWNER}/${REPO}#${PR}`,
        sender: REVIEWER,
        label: 'bot:build',
      }),
    ]);
  });

  test('parked after poller.max_attempts failures: one error line with the PR, the dir and the error', async () => {
    h = await startHarness(); // poller.max_attempts: 3
    const out = capture();
    h.deps.logger = createLogger('poller', { stream: out.stream, isTTY: false, env: {} });
    let clock = Date.now();
    h.deps.now = () => new Date(clock);
    openPr(h, PASSING_BOT);
    h.fake.failNext('POST', /\/issues\/\d+\/comments$/, 422, 100);
    const eventDir = await storeComment(h, 'bot: help');
    for (let i = 0; i < 6; i++) {
      await runTick(h.deps);
      clock += 24 * 3600_000; // past any retry delay
    }
    const lines = jsonLines(out.text());
    const parked = lines.filter((l) => /^parked as /.test(l.msg));
    expect(parked).toHaveLength(1);
    expect(parked[0]).toMatchObject({
      level: 'error',
      pr: `${OWNER}/${REPO}#${PR}`,
      dir: h.deps.jobdirs.relative(eventDir),
      attempts: 3,
      err: expect.stringContaining('422'),
    });
    expect(parked[0]!.msg).toBe(
      `parked as ${String(parked[0]!.stage)} after 3 failed attempts (poller.max_attempts)`,
    );
    // The two attempts before it were warnings that say it is retried.
    expect(lines.filter((l) => l.msg === 'advancing failed; it is retried later')).toHaveLength(2);
  });
});

describe('the server', () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  });

  test('logs each stored delivery once, with event, action, PR and delivery id, and never the secret', async () => {
    const h = await startHarness();
    const secret = 'log-test-webhook-secret-91c2';
    const out = capture();
    const logger = createLogger('server', { stream: out.stream, isTTY: false, env: {} });
    const app = createApp({ config: h.config, logger, secret });
    server = await new Promise<Server>((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    const addr = server.address();
    const url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}${h.config.server.webhook_path}`;
    const payload = payloads.prOpened();
    const delivery = makeDelivery('pull_request', payload, { secret });
    expect((await send(url, delivery)).status).toBe(202);
    expect((await send(url, delivery)).status).toBe(200); // a redelivery is not stored again
    expect((await send(url, makeDelivery('pull_request', payload, { secret: 'wrong' }))).status).toBe(401);
    await ingestOf(app).settled();
    await h.stop();

    const number = (payload.pull_request as { number: number }).number;
    expect(jsonLines(out.text())).toEqual([
      expect.objectContaining({
        level: 'info',
        msg: 'delivery stored',
        pr: `${payload.repository!.owner.login}/${payload.repository!.name}#${number}`,
        event: 'pull_request',
        action: 'opened',
        delivery: delivery.delivery,
      }),
    ]);
    expect(out.text()).not.toContain(secret);
  });
});
