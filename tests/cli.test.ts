/**
 * The `hpcbot` command as a user runs it: a child process, real files, real ports.
 */
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { jest } from '@jest/globals';
import { makeDelivery, payloads, send } from './support/payloads.js';
import {
  BIN,
  freePort,
  killAll,
  runCli,
  spawnCli,
  tempDir,
  waitForHttp,
  writeSiteYaml,
} from './support/spawn.js';

jest.setTimeout(60_000);

const SECRET = 'cli-secret-' + randomUUID();
const temps: string[] = [];

async function dir(): Promise<string> {
  const d = await tempDir('hpcbot-cli-');
  temps.push(d);
  return d;
}

afterEach(killAll);
afterAll(async () => {
  for (const d of temps) await fs.rm(d, { recursive: true, force: true });
});

describe('a bad site.yaml', () => {
  let bad: string;
  beforeAll(async () => {
    bad = path.join(await dir(), 'bad.yaml');
    await fs.writeFile(
      bad,
      [
        'instance: test',
        'jobdirs: jobdirs',
        'backend:',
        '  kind: slurm',
        '  slurm:',
        '    handover: hold',
        '',
      ].join('\n'),
    );
  });

  test.each([['config', 'check'], ['server'], ['poll', '--once'], ['start']])(
    '`hpcbot %s` exits 2 with file, line and key path on stderr',
    async (...cmd) => {
      const { code, stdout, stderr } = await runCli([...cmd, '--config', bad]);
      expect(code).toBe(2);
      expect(stderr.trim()).toBe(
        `${bad}:6: backend.slurm.handover: expected hold_release | delayed_begin, got "hold"`,
      );
      expect(stdout).toBe('');
    },
  );

  test('$HPCBOT_CONFIG selects the file when --config is not given', async () => {
    const { code, stderr } = await runCli(['config', 'check'], { env: { HPCBOT_CONFIG: bad } });
    expect(code).toBe(2);
    expect(stderr).toContain(`${bad}:6: backend.slurm.handover`);
  });

  test('a missing file exits 2 and names it', async () => {
    const missing = path.join(await dir(), 'nope.yaml');
    const { code, stderr } = await runCli(['config', 'check', '--config', missing]);
    expect(code).toBe(2);
    expect(stderr).toContain(`${missing}:?: (top level): cannot read`);
  });
});

describe('config check', () => {
  test('prints the effective config (defaults filled in, paths resolved), never a secret value', async () => {
    const d = await dir();
    const file = await writeSiteYaml(d, 4321, ['  token_env: HPCBOT_TEST_TOKEN'].join('\n'));
    const token = 'ghp_' + randomUUID().replace(/-/g, '');
    const { code, stdout, stderr } = await runCli(['config', 'check', '--config', file], {
      env: { HPCBOT_TEST_WEBHOOK_SECRET: SECRET, HPCBOT_TEST_TOKEN: token },
    });
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout.split('\n')[0]).toBe(`# ${file}: OK`);
    expect(stdout).toContain(`jobdirs: ${path.join(d, 'jobdirs')}\n`);
    expect(stdout).toContain('  port: 4321\n');
    expect(stdout).toContain('    handover: hold_release\n'); // a default
    expect(stdout).toContain('  webhook_secret: env HPCBOT_TEST_WEBHOOK_SECRET (set, redacted)\n');
    expect(stdout).toContain('  github_auth: token from env HPCBOT_TEST_TOKEN (set, redacted)\n');
    expect(stdout).not.toContain(SECRET);
    expect(stdout).not.toContain(token);
  });

  test('without the env var it names the secret file', async () => {
    const d = await dir();
    const { code, stdout } = await runCli(['config', 'check', '--config', await writeSiteYaml(d, 1)]);
    expect(code).toBe(0);
    expect(stdout).toContain(
      `  webhook_secret: file ${path.join(d, 'jobdirs', '.secrets', 'webhook-secret')}\n`,
    );
  });

  test('a secret pasted into site.yaml by mistake is still not printed', async () => {
    const d = await dir();
    const file = await writeSiteYaml(d, 1, `  bot_login: ${SECRET}`);
    const { code, stdout, stderr } = await runCli(['config', 'check', '--config', file], {
      env: { HPCBOT_TEST_WEBHOOK_SECRET: SECRET },
    });
    expect(code).toBe(0);
    expect(stdout + stderr).not.toContain(SECRET);
    expect(stdout).toContain('bot_login: "[redacted]"');
  });
});

describe('server', () => {
  test('with the secret from the environment: serves, never prints the secret, stops on SIGTERM', async () => {
    const d = await dir();
    const port = await freePort();
    const child = spawnCli(['server', '--config', await writeSiteYaml(d, port)], {
      env: { HPCBOT_TEST_WEBHOOK_SECRET: SECRET },
    });
    await child.waitForOutput(/listening on http:\/\/127\.0\.0\.1:\d+\/webhook/);
    expect(await waitForHttp(`http://127.0.0.1:${port}/healthz`)).toBe(200);
    const d1 = makeDelivery('pull_request', payloads.prOpened(), { secret: SECRET });
    expect((await send(`http://127.0.0.1:${port}/webhook`, d1)).status).toBe(202);
    child.proc.kill('SIGTERM');
    expect((await child.exited).code).toBe(0);
    expect(child.stdout() + child.stderr()).toContain('webhook secret from env HPCBOT_TEST_WEBHOOK_SECRET');
    expect(child.stdout() + child.stderr()).not.toContain(SECRET);
    // No secret was generated: the env var was used.
    await expect(fs.access(path.join(d, 'jobdirs', '.secrets', 'webhook-secret'))).rejects.toThrow();
  });

  test('without one: generates a mode-600 secret file, prints its path (not the secret) and uses it', async () => {
    const d = await dir();
    const port = await freePort();
    const child = spawnCli(['server', '--config', await writeSiteYaml(d, port)]);
    await child.waitForOutput(/listening on/);
    const file = path.join(d, 'jobdirs', '.secrets', 'webhook-secret');
    const output = child.stdout() + child.stderr();
    expect(output).toContain(`generated a new webhook secret in ${file}`);
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
    const secret = (await fs.readFile(file, 'utf8')).trim();
    expect(secret).toMatch(/^[0-9a-f]{64}$/);
    expect(output).not.toContain(secret);
    const url = `http://127.0.0.1:${port}/webhook`;
    expect((await send(url, makeDelivery('pull_request', payloads.prOpened(), { secret }))).status).toBe(202);
    expect(
      (await send(url, makeDelivery('pull_request', payloads.prOpened(), { secret: SECRET }))).status,
    ).toBe(401);
  });

  test('--insecure-skip-signature says so loudly and accepts unsigned deliveries', async () => {
    const d = await dir();
    const port = await freePort();
    const child = spawnCli(['server', '--insecure-skip-signature', '--config', await writeSiteYaml(d, port)]);
    await child.waitForOutput(/listening on/);
    const output = child.stdout() + child.stderr();
    expect(output).toMatch(/"level":40.*--insecure-skip-signature: webhook signatures are NOT verified/);
    const unsigned = makeDelivery('pull_request', payloads.prOpened());
    expect((await send(`http://127.0.0.1:${port}/webhook`, unsigned)).status).toBe(202);
  });
});

describe('start', () => {
  test('`hpcbot start --config` runs server and poller; /healthz answers; SIGTERM stops both', async () => {
    const d = await dir();
    const port = await freePort();
    const file = await writeSiteYaml(d, port);
    // Through the installed entry point (bin/hpcbot.mjs), as `hpcbot start` runs.
    const child = spawnCli(['start', '--config', file], {
      entry: [BIN],
      env: { HPCBOT_TEST_WEBHOOK_SECRET: SECRET },
    });
    expect(await waitForHttp(`http://127.0.0.1:${port}/healthz`)).toBe(200);
    await child.waitForOutput(/"name":"poller"/);
    expect(child.proc.exitCode).toBeNull();

    child.proc.kill('SIGTERM');
    const { code } = await child.exited;
    expect(code).toBe(0);
    // The server child is gone too: nothing listens any more.
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
    expect(child.stdout() + child.stderr()).not.toContain(SECRET);
  });
});
