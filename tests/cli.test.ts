/**
 * The `hpcbot` command as a user runs it: a child process, real files, real ports.
 */
import { describeWithJobUser, JOB_USER } from './support/jobUser.js';
import { execFileSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { jest } from '@jest/globals';
import { NO_JOB_USER_WARNING } from '../src/adapters/jobUser.js';
import { writeHeartbeat } from '../src/store/heartbeat.js';
import { makeDelivery, payloads, send } from './support/payloads.js';
import {
  BIN,
  CLI,
  freePort,
  killAll,
  listFiles,
  ROOT,
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
    // Said once, plainly: the default runs PR code with the bot's powers.
    expect(stderr).toBe(
      "warning: jobs run as the bot's own user: PR code can read the bot's secrets and write its state; set backend.run_as\n",
    );
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
    const { code, stdout } = await runCli(['config', 'check', '--config', await writeSiteYaml(d, 1)], {
      env: { XDG_CONFIG_HOME: path.join(d, 'xdg') },
    });
    expect(code).toBe(0);
    expect(stdout).toContain(`  webhook_secret: file ${path.join(d, 'xdg', 'hpcbot', 'webhook-secret')}\n`);
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
  test('--online: what only the network can tell is a problem line too, exit 2', async () => {
    const d = await dir();
    const closed = await freePort(); // nothing listens: GitHub cannot be reached
    const file = await writeSiteYaml(
      d,
      1,
      ['  token_env: HPCBOT_TEST_TOKEN', `  api_url: http://127.0.0.1:${closed}`].join('\n'),
    );
    const env = { HPCBOT_TEST_WEBHOOK_SECRET: SECRET, HPCBOT_TEST_TOKEN: 'ghp_x' };
    expect((await runCli(['config', 'check', '--config', file], { env })).code).toBe(0);
    const { code, stdout, stderr } = await runCli(['config', 'check', '--online', '--config', file], { env });
    expect(stderr).toContain(
      `${file}:12: github.token_env: cannot reach GitHub at http://127.0.0.1:${closed}`,
    );
    expect(stderr).not.toMatch(/^\s+at /m);
    expect(stdout).toBe('');
    expect(code).toBe(2);
  });
});

describe('server', () => {
  test('with the secret from the environment: serves, never prints the secret, stops on SIGTERM', async () => {
    const d = await dir();
    const port = await freePort();
    const file = await writeSiteYaml(d, port);
    const child = spawnCli(['server', '--config', file], {
      env: { HPCBOT_TEST_WEBHOOK_SECRET: SECRET, XDG_CONFIG_HOME: path.join(d, 'xdg') },
    });
    await child.waitForOutput(/ready: listening on http:\/\/127\.0\.0\.1:\d+\/webhook/);
    // "ready" comes once the server listens: /healthz answers at once, no waiting.
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    // One startup summary, before "ready": what runs, on which config, and where the secret is.
    const lines = child.stdout().split('\n').filter(Boolean);
    const summary = lines.map((l) => JSON.parse(l) as { msg: string }).map((l) => l.msg);
    expect(summary.filter((m) => m.startsWith('config '))).toEqual([
      `config ${file}; instance test; backend local; GitHub dry-run (comments go to jobdirs/dry-run); ` +
        `jobdirs ${path.join(d, 'jobdirs')}; webhook secret from env HPCBOT_TEST_WEBHOOK_SECRET; ` +
        `webhook http://127.0.0.1:${port}/webhook; healthz http://127.0.0.1:${port}/healthz`,
    ]);
    expect(summary.findIndex((m) => m.startsWith('config '))).toBeLessThan(
      summary.findIndex((m) => m.startsWith('ready: ')),
    );
    const d1 = makeDelivery('pull_request', payloads.prOpened(), { secret: SECRET });
    expect((await send(`http://127.0.0.1:${port}/webhook`, d1)).status).toBe(202);
    child.proc.kill('SIGTERM');
    expect((await child.exited).code).toBe(0);
    expect(child.stdout() + child.stderr()).toContain('webhook secret from env HPCBOT_TEST_WEBHOOK_SECRET');
    expect(child.stdout() + child.stderr()).not.toContain(SECRET);
    // No secret was generated: the env var was used.
    await expect(fs.access(path.join(d, 'xdg', 'hpcbot', 'webhook-secret'))).rejects.toThrow();
  });

  test('without one: generates a mode-600 secret file, prints its path (not the secret) and uses it', async () => {
    const d = await dir();
    const port = await freePort();
    const child = spawnCli(['server', '--config', await writeSiteYaml(d, port)], {
      env: { XDG_CONFIG_HOME: path.join(d, 'xdg') },
    });
    await child.waitForOutput(/listening on/);
    // Outside jobdirs, where no job can reach it.
    const file = path.join(d, 'xdg', 'hpcbot', 'webhook-secret');
    expect((await fs.stat(path.dirname(file))).mode & 0o777).toBe(0o700);
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
    expect(output).toMatch(/"level":"warn".*--insecure-skip-signature: webhook signatures are NOT verified/);
    const unsigned = makeDelivery('pull_request', payloads.prOpened());
    expect((await send(`http://127.0.0.1:${port}/webhook`, unsigned)).status).toBe(202);
  });
});

/** The command line of a running process (Linux). */
async function cmdline(pid: number): Promise<string[]> {
  return (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter(Boolean);
}

/** Sources changed after the last `npm run build`: the compiled entry point would run old code. */
async function newerThanDist(): Promise<string[]> {
  const built =
    (await fs.stat(path.join(ROOT, 'dist', 'cli', 'main.js')).catch(() => undefined))?.mtimeMs ?? 0;
  const newer: string[] = [];
  for (const f of await listFiles(path.join(ROOT, 'src')))
    if ((await fs.stat(path.join(ROOT, 'src', f))).mtimeMs > built) newer.push(f);
  return newer;
}

describe('poll', () => {
  test('prints one startup summary (no secret, no URLs: the poller uses neither), then ticks', async () => {
    const d = await dir();
    const file = await writeSiteYaml(d, await freePort());
    const child = spawnCli(['poll', '--config', file]);
    await child.waitForOutput(/"msg":"poller started/);
    const summaries = child.stdout().match(/"msg":"config [^"]*"/g);
    expect(summaries).toEqual([
      `"msg":"config ${file}; instance test; backend local; GitHub dry-run (comments go to jobdirs/dry-run); jobdirs ${path.join(d, 'jobdirs')}"`,
    ]);
  });
});

describe('start', () => {
  test.each([
    ['the installed entry point (bin/hpcbot.mjs → dist/)', [BIN], ['dist/cli/main.js']],
    ['the sources through tsx', ['--import', 'tsx', CLI], ['--import', 'tsx', 'src/cli/main.ts']],
  ])(
    'through %s: server and poller run the same entry; one summary; SIGTERM stops both',
    async (_what, entry, childEntry) => {
      if (entry[0] === BIN)
        expect({ 'changed since `npm run build`': await newerThanDist() }).toEqual({
          'changed since `npm run build`': [],
        });
      const d = await dir();
      const port = await freePort();
      const file = await writeSiteYaml(d, port);
      const child = spawnCli(['start', '--config', file], {
        entry,
        env: { HPCBOT_TEST_WEBHOOK_SECRET: SECRET },
      });
      await child.waitForOutput(/"msg":"ready: listening on/);
      expect(await waitForHttp(`http://127.0.0.1:${port}/healthz`)).toBe(200);
      await child.waitForOutput(/"name":"poller"/);
      expect(child.proc.exitCode).toBeNull();
      // No backend.run_as here: said plainly, once for the whole start (by the poller).
      expect((child.stdout() + child.stderr()).split(NO_JOB_USER_WARNING)).toHaveLength(2);
      // The children are this CLI as it was started: compiled, or the sources through tsx.
      const children = (await fs.readFile(`/proc/${child.proc.pid}/task/${child.proc.pid}/children`, 'utf8'))
        .trim()
        .split(' ')
        .map(Number);
      expect(children).toHaveLength(3);
      for (const pid of children) {
        const argv = await cmdline(pid);
        const script = argv.findIndex((a) => a.endsWith('main.js') || a.endsWith('main.ts'));
        const entryOf = argv
          .slice(1, script + 1)
          .map((a) => (path.isAbsolute(a) ? path.relative(ROOT, a) : a));
        expect(entryOf).toEqual(childEntry);
      }
      // One summary for the pair, from the server.
      expect(child.stdout().match(/"msg":"config /g)).toHaveLength(1);

      child.proc.kill('SIGTERM');
      const { code } = await child.exited;
      expect(code).toBe(0);
      // The server child is gone too: nothing listens any more.
      await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
      expect(child.stdout() + child.stderr()).not.toContain(SECRET);
    },
  );
  test('a `start` killed with SIGKILL takes its children along: no orphan keeps the port', async () => {
    const d = await dir();
    const port = await freePort();
    const child = spawnCli(['start', '--config', await writeSiteYaml(d, port)], {
      env: { HPCBOT_TEST_WEBHOOK_SECRET: SECRET },
    });
    await child.waitForOutput(/"msg":"ready: listening on/);
    const children = (await fs.readFile(`/proc/${child.proc.pid}/task/${child.proc.pid}/children`, 'utf8'))
      .trim()
      .split(' ')
      .map(Number);
    expect(children).toHaveLength(3);
    child.proc.kill('SIGKILL');
    await child.exited; // 'close' comes once the children, too, let go of the inherited stdout
    const until = Date.now() + 20_000;
    while (children.some((pid) => existsSync(`/proc/${pid}`)) && Date.now() < until)
      await new Promise((r) => setTimeout(r, 100));
    expect(children.filter((pid) => existsSync(`/proc/${pid}`))).toEqual([]);
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
  });
});

describe('a subcommand loads only what it uses', () => {
  const HEAVY = /\/node_modules\/(@octokit|@aws-sdk|express|node-cron|pino|zod|prom-client)\//;

  /** The modules `hpcbot <args>` loads, as a module-resolution hook sees them. */
  async function modulesOf(args: string[]): Promise<string[]> {
    const d = await dir();
    const hook = path.join(d, 'hook.mjs');
    const log = path.join(d, 'modules.log');
    await fs.writeFile(
      hook,
      [
        "import { appendFileSync } from 'node:fs';",
        'export async function resolve(specifier, context, next) {',
        '  const result = await next(specifier, context);',
        `  appendFileSync(${JSON.stringify(log)}, result.url + '\\n');`,
        '  return result;',
        '}',
      ].join('\n'),
    );
    const register = `data:text/javascript,import{register}from"node:module";register(${JSON.stringify(
      pathToFileURL(hook).href,
    )})`;
    const child = spawnCli(args, { entry: ['--import', 'tsx', '--import', register, CLI] });
    expect((await child.exited).code).toBe(0);
    return (await fs.readFile(log, 'utf8')).split('\n').filter(Boolean);
  }

  test('--help: commander and the CLI module, nothing else', async () => {
    const mods = await modulesOf(['--help']);
    const ours = mods.filter((m) => m.startsWith('file:') && !m.includes('/node_modules/'));
    expect(ours.map((m) => path.relative(ROOT, fileURLToPath(m))).sort()).toEqual([
      'src/cli/errors.ts',
      'src/cli/main.ts',
    ]);
    expect(mods.filter((m) => HEAVY.test(m))).toEqual([]);
  });

  test('status: no GitHub client, web server, cron, logger or schema library', async () => {
    const d = await dir();
    const file = await writeSiteYaml(d, 1);
    // The poller has run on this site.yaml: its heartbeat names the text it accepted.
    const digest = createHash('sha256')
      .update(await fs.readFile(file, 'utf8'))
      .digest('hex');
    await writeHeartbeat(path.join(d, 'jobdirs'), 'poller', { config: { source: file, digest } });
    const mods = await modulesOf(['status', '--config', file]);
    expect(mods.some((m) => m.endsWith('/src/cli/status.ts'))).toBe(true);
    expect(mods.filter((m) => HEAVY.test(m))).toEqual([]);
  });

  test('status of a site.yaml no process has accepted validates it: then, and only then, the schema', async () => {
    const d = await dir();
    const mods = await modulesOf(['status', '--config', await writeSiteYaml(d, 1)]);
    expect(mods.some((m) => /\/node_modules\/zod\//.test(m))).toBe(true);
    expect(
      mods.filter((m) => /\/node_modules\/(@octokit|@aws-sdk|express|pino|prom-client)\//.test(m)),
    ).toEqual([]);
  });
});

describe("config check: secrets out of every job's reach", () => {
  test('a webhook secret, App key or signing key under jobdirs or the shared file system is an error with its key and line', async () => {
    const d = await dir();
    const keys = path.join(d, 'jobdirs', 'keys');
    await fs.mkdir(keys, { recursive: true });
    await fs.mkdir(path.join(d, 'shared'));
    const file = await writeSiteYaml(
      d,
      1,
      [
        `  webhook_secret_file: ${path.join(keys, 'hook')}`,
        `  private_key_file: ${path.join(keys, 'app.pem')}`,
        '  app_id: 1',
        'build:',
        '  site_config:',
        `    shared_fs_path: ${path.join(d, 'shared')}`,
        'deploy:',
        '  signing:',
        `    key_file: ${path.join(d, 'shared', 'sign')}`,
      ].join('\n'),
    );
    const { code, stderr, stdout } = await runCli(['config', 'check', '--config', file]);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toContain(
      `${file}:12: github.webhook_secret_file: the webhook secret (${path.join(keys, 'hook')}) is under jobdirs`,
    );
    expect(stderr).toContain(
      `${file}:13: github.private_key_file: the App private key (${path.join(keys, 'app.pem')}) is under jobdirs`,
    );
    expect(stderr).toContain(
      `${file}:20: deploy.signing.key_file: the signing key (${path.join(d, 'shared', 'sign')}) is under build.site_config.shared_fs_path`,
    );
    // The poller refuses to start on the same config, with the same message.
    const poll = await runCli(['poll', '--once', '--config', file]);
    expect(poll.code).toBe(2);
    expect(poll.stderr).toContain('github.webhook_secret_file: the webhook secret');
  });
});

describeWithJobUser('config check with backend.run_as', () => {
  test('a key the job user can read is an error; once it is mode 600 the check passes', async () => {
    const d = await dir();
    await fs.chmod(d, 0o755);
    const key = path.join(d, 'signing-key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    await fs.chmod(key, 0o644);
    const file = await writeSiteYaml(
      d,
      1,
      ['backend:', `  run_as: ${JOB_USER}`, 'deploy:', '  signing:', `    key_file: ${key}`].join('\n'),
    );
    const env = { HPCBOT_TEST_WEBHOOK_SECRET: 'x' };
    const bad = await runCli(['config', 'check', '--config', file], { env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(
      `${file}:16: deploy.signing.key_file: the signing key (${key}) is readable by the job user ${JOB_USER}`,
    );
    await fs.chmod(key, 0o600);
    const good = await runCli(['config', 'check', '--config', file], { env });
    expect(good.stderr).toBe('');
    expect(good.code).toBe(0);
  });

  test('an unknown job user is an error', async () => {
    const d = await dir();
    const file = await writeSiteYaml(d, 1, ['backend:', '  run_as: no-such-user-hpcbot'].join('\n'));
    const { code, stderr } = await runCli(['config', 'check', '--config', file]);
    expect(code).toBe(2);
    expect(stderr).toBe(
      `${file}:13: backend.run_as: user "no-such-user-hpcbot" does not exist; create it (scripts/install-job-user.sh does on a dev machine)\n`,
    );
  });
});
