/**
 * Live config: the poller reads site.yaml again before each tick, the server on SIGHUP and when the
 * file changes. A valid file takes effect, an invalid one is logged once and shown in the heartbeat
 * while the last good config stays in use; restart-only settings keep their value.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { parseConfig } from '../src/config/config.js';
import { keepRestartOnly } from '../src/config/liveConfig.js';
import { LivePoller } from '../src/poller.js';
import { readHeartbeat, type Heartbeat } from '../src/store/heartbeat.js';
import type { JobData } from '../src/store/job.js';
import { PASSING_BOT } from './support/prRepo.js';
import { makeDelivery, payloads, send } from './support/payloads.js';
import { freePort, killAll, spawnCli, tempDir, writeSiteYaml } from './support/spawn.js';
import {
  jobDirsOf,
  openPr,
  OWNER,
  PR,
  REPO,
  startHarness,
  stateOf,
  storeComment,
  type Harness,
} from './support/botHarness.js';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A real pino logger whose lines are kept for the test. */
function capturingLogger() {
  const lines: LogLine[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { logger, lines };
}

let h: Harness | undefined;
afterEach(async () => {
  await killAll();
  await h?.stop();
  h = undefined;
});

async function livePoller() {
  h = await startHarness();
  const { logger, lines } = capturingLogger();
  const harness = h;
  const poller = new LivePoller(h.config, {
    logger,
    env: { ...process.env, HARNESS_GITHUB_TOKEN: 'ghp_harness' }, // as the harness's GitHub adapter has it
    makeDeps: (config) => ({ ...harness.deps, config, logger }),
  });
  const file = h.config.source;
  const edit = (from: string, to: string) => {
    const text = readFileSync(file, 'utf8');
    expect(text).toContain(from);
    writeFileSync(file, text.replace(from, to));
    return text.replace(from, to);
  };
  return { h, poller, lines, file, edit };
}

const replies = () => h!.fake.commentsOf(OWNER, REPO, PR).map((c) => c.body);

describe('the poller', () => {
  test('a valid change takes effect on the next tick: a newly allowed login is heard', async () => {
    const { poller, edit } = await livePoller();
    await storeComment(h!, 'bot: help', 'newcomer');
    await poller.tick();
    expect(replies().at(-1)).toContain('`newcomer` has NO permission to send commands');

    const text = edit('  command: [reviewer1]', '  command: [reviewer1, newcomer]');
    await storeComment(h!, 'bot: help', 'newcomer');
    await poller.tick();
    expect(replies()).toHaveLength(2);
    expect(replies().at(-1)).not.toContain('NO permission');
    expect(poller.live.config.permissions.command).toEqual(['reviewer1', 'newcomer']);
    expect((await readHeartbeat(h!.config.jobdirs, 'poller'))?.config).toEqual({
      source: h!.config.source,
      digest: sha256(text),
    });
  });

  test('an invalid file keeps the last good config, is logged once and shows in the heartbeat', async () => {
    const { poller, lines, edit } = await livePoller();
    const good = h!.config.digest;
    edit('chatlevel: basic', 'chatlevel: loud');
    for (let i = 0; i < 3; i++) await poller.tick();

    const complaints = lines.filter((l) => l.msg.startsWith('site.yaml is not valid'));
    expect(complaints).toHaveLength(1);
    expect(complaints[0]!.err).toMatch(/site\.yaml:\d+: chatlevel: expected .* got "loud"/);
    expect(poller.live.config.chatlevel).toBe('basic');
    const beat = (await readHeartbeat(h!.config.jobdirs, 'poller')) as Heartbeat;
    expect(beat.config?.digest).toBe(good);
    expect(beat.config?.error?.message).toBe(complaints[0]!.err);
    expect(Date.parse(beat.config!.error!.since)).not.toBeNaN();
    expect(beat.lastTick?.report).toMatchObject({ failed: 0 });
    expect(beat.pid).toBe(process.pid);

    // Fixed: in use on the next tick, and the heartbeat no longer shows an error.
    const fixed = edit('chatlevel: loud', 'chatlevel: chatty');
    await poller.tick();
    expect(poller.live.config.chatlevel).toBe('chatty');
    const after = (await readHeartbeat(h!.config.jobdirs, 'poller')) as Heartbeat;
    expect(after.config).toEqual({ source: h!.config.source, digest: sha256(fixed) });
    expect(lines.filter((l) => l.msg.startsWith('site.yaml is not valid'))).toHaveLength(1);
  });

  test('a removed file is a problem too, logged once; the config in use stays', async () => {
    const { poller, lines, file } = await livePoller();
    await fs.rename(file, `${file}.away`);
    await poller.tick();
    await poller.tick();
    const complaints = lines.filter((l) => l.msg.startsWith('site.yaml is not valid'));
    expect(complaints).toHaveLength(1);
    expect(complaints[0]!.err).toContain(`${file}:?: (top level): cannot read: ENOENT`);
    await fs.rename(`${file}.away`, file);
    await poller.tick();
    expect((await readHeartbeat(h!.config.jobdirs, 'poller'))?.config?.error).toBeUndefined();
    expect(lines.some((l) => l.msg === 'site.yaml is back to the config in use')).toBe(true);
  });

  test('restart-only settings keep their value and say so; the rest of the file takes effect', async () => {
    const { poller, lines, edit } = await livePoller();
    edit('jobdirs: jobdirs', 'jobdirs: elsewhere');
    edit('chatlevel: basic', 'chatlevel: minimal');
    await poller.tick();
    expect(poller.live.config.jobdirs).toBe(h!.config.jobdirs);
    expect(poller.live.config.chatlevel).toBe('minimal');
    const warning = lines.find((l) => l.key === 'jobdirs');
    expect(warning?.msg).toBe(
      `jobdirs changed in site.yaml; it needs a restart, until then it stays ${JSON.stringify(h!.config.jobdirs)}`,
    );
    expect(warning?.in_file).toBe(path.join(h!.root, 'elsewhere'));
    expect(existsSync(path.join(h!.root, 'elsewhere'))).toBe(false);
  });

  test('each job records the digest of the config it was prepared with', async () => {
    const { poller, edit } = await livePoller();
    openPr(h!, PASSING_BOT);
    const text = edit('chatlevel: basic', 'chatlevel: chatty');
    await storeComment(h!, 'bot: build for:arch=zen4');
    const jobJsonWritten = async () => {
      const [dir] = await jobDirsOf(h!);
      return dir !== undefined && existsSync(path.join(dir, 'job.json'));
    };
    for (let i = 0; i < 20 && !(await jobJsonWritten()); i++) await poller.tick();
    const [dir] = await jobDirsOf(h!);
    expect((await stateOf<JobData>(dir!)).data.config_digest).toBe(sha256(text));
    const jobJson = JSON.parse(readFileSync(path.join(dir!, 'job.json'), 'utf8'));
    expect(jobJson.config_digest).toBe(sha256(text));
  });

  test('the heartbeat notes when the scheduler last answered', async () => {
    const { poller } = await livePoller();
    openPr(h!, PASSING_BOT);
    await storeComment(h!, 'bot: build for:arch=zen4');
    let beat: Heartbeat | undefined;
    for (let i = 0; i < 20 && !beat?.backend?.lastOk; i++) {
      await poller.tick();
      beat = await readHeartbeat(h!.config.jobdirs, 'poller');
    }
    expect(Date.parse(beat!.backend!.lastOk!)).not.toBeNaN();
    expect(beat!.backend!.lastError).toBeUndefined();
  });
});

test('keepRestartOnly: only the listed keys keep their value, and each change is named', () => {
  const a = parseConfig('instance: a\njobdirs: /a\nserver:\n  port: 1\n', '/etc/site.yaml');
  const b = parseConfig('instance: b\njobdirs: /b\nserver:\n  port: 2\n', '/etc/site.yaml');
  const { config, changes } = keepRestartOnly(a, b, ['jobdirs', 'server.port', 'server.host']);
  expect(config.instance).toBe('b');
  expect(config.jobdirs).toBe('/a');
  expect(config.server).toEqual({ ...b.server, port: 1 });
  expect(changes).toEqual([
    { key: 'jobdirs', kept: '/a', wanted: '/b' },
    { key: 'server.port', kept: 1, wanted: 2 },
  ]);
  expect(b.server.port).toBe(2); // not modified in place
});

describe('the server', () => {
  const SECRET_A = 'live-config-secret-a';
  const SECRET_B = 'live-config-secret-b';

  test('SIGHUP applies a new webhook secret source; an edit that does not validate is reported and ignored', async () => {
    // site.yaml is a link to a file elsewhere: editing that file is invisible to the server's watch on
    // the link's directory, so only SIGHUP can make it read the edit. Replacing the link is visible.
    const dir = await tempDir();
    const elsewhere = await tempDir();
    const port = await freePort();
    const real = await writeSiteYaml(elsewhere, port);
    const link = path.join(dir, 'site.yaml');
    symlinkSync(real, link);
    const child = spawnCli(['server', '--config', link], {
      env: { HPCBOT_TEST_WEBHOOK_SECRET: SECRET_A, HOOK_B: SECRET_B },
    });
    await child.waitForOutput(/ready: listening/);
    const url = `http://127.0.0.1:${port}/webhook`;
    const deliver = (secret: string) =>
      send(url, makeDelivery('issue_comment', payloads.commentOnPr(), { secret }));
    expect((await deliver(SECRET_A)).status).toBe(202);
    expect((await deliver(SECRET_B)).status).toBe(401);
    const jobdirs = path.join(dir, 'jobdirs');
    const started = (await readHeartbeat(jobdirs, 'server')) as Heartbeat;
    expect(started.pid).toBe(child.proc.pid);
    expect(started.extra).toEqual({ url, healthz: `http://127.0.0.1:${port}/healthz` });
    expect(started.config).toEqual({ source: link, digest: sha256(readFileSync(real, 'utf8')) });

    const text = readFileSync(real, 'utf8').replace(
      'webhook_secret_env: HPCBOT_TEST_WEBHOOK_SECRET',
      'webhook_secret_env: HOOK_B',
    );
    writeFileSync(real, text);
    child.proc.kill('SIGHUP');
    await child.waitForOutput(/the webhook secret now comes from env HOOK_B/);
    expect((await deliver(SECRET_B)).status).toBe(202);
    expect((await deliver(SECRET_A)).status).toBe(401);
    const reloaded = await waitForHeartbeat(jobdirs, (b) => b.config?.digest === sha256(text));
    expect(reloaded.startedAt).toBe(started.startedAt);

    // A new file without a valid port, swapped in under the link's name: the watch sees it.
    const bad = path.join(elsewhere, 'bad.yaml');
    writeFileSync(bad, text.replace(`port: ${port}`, 'port: many'));
    symlinkSync(bad, path.join(dir, 'next-link'));
    renameSync(path.join(dir, 'next-link'), link);
    const broken = await waitForHeartbeat(jobdirs, (b) => b.config?.error !== undefined);
    expect(broken.config?.error?.message).toMatch(
      /site\.yaml:\d+: server\.port: expected number, got "many"/,
    );
    expect(broken.config?.digest).toBe(sha256(text));
    expect(child.stdout() + child.stderr()).toContain(
      'site.yaml is not valid; the last good config stays in use',
    );
    expect((await deliver(SECRET_B)).status).toBe(202);
    expect(child.proc.exitCode).toBeNull();
  }, 60_000);
});

/** Read the heartbeat until `ok` holds; the server writes it right after it reloads. */
async function waitForHeartbeat(jobdirs: string, ok: (b: Heartbeat) => boolean): Promise<Heartbeat> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const beat = await readHeartbeat(jobdirs, 'server');
    if (beat && ok(beat)) return beat;
    if (Date.now() > deadline) throw new Error(`heartbeat never matched: ${JSON.stringify(beat)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
