/**
 * site.yaml: every error names the file, the line and the key path; unknown keys are errors;
 * defaults and path resolution are as the README says; secrets are never echoed.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  ConfigError,
  DEFAULT_CONFIG_PATH,
  configPathFrom,
  describeSecretsSources,
  loadConfig,
  parseConfig,
  webhookSecretFile,
} from '../src/config/config.js';
import { ROOT } from './support/spawn.js';

const FILE = 'config/site.yaml';

/** The message of the ConfigError that parsing `text` throws (fails the test if it parses). */
function errorOf(text: string, file = FILE): ConfigError {
  try {
    parseConfig(text, file);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`expected a ConfigError for:\n${text}`);
}

const lines = (...l: string[]) => l.join('\n') + '\n';

describe('errors name file, line and key path', () => {
  test("the README's example, verbatim", () => {
    const text = lines(
      '# site.yaml',
      'instance: dev',
      'jobdirs: ../jobdirs',
      'server:',
      '  host: 127.0.0.1',
      '  port: 3000',
      'github:',
      '  dry_run: true',
      'poller:',
      "  schedule: '*/10 * * * * *'",
      'chatlevel: basic',
      'backend:',
      '  slurm:',
      '    handover: hold',
    );
    const err = errorOf(text);
    expect(err.message).toBe(
      'config/site.yaml:14: backend.slurm.handover: expected hold_release | delayed_begin, got "hold"',
    );
    expect(err.problems).toEqual([
      {
        line: 14,
        keyPath: 'backend.slurm.handover',
        message: 'expected hold_release | delayed_begin, got "hold"',
      },
    ]);
  });

  test('unknown keys are errors, at the line of the unknown key, top level and nested', () => {
    const err = errorOf(
      lines(
        'instance: dev',
        'jobdirs: x',
        'server:',
        '  hots: 0.0.0.0',
        '  port: 3000',
        'webhook_secret: abc',
        'build:',
        '  node_types:',
        '    zen4:',
        '      cpu_subdir: x86_64/amd/zen4',
        '      repo_targets: [eessi]',
        '      gpu: yes',
      ),
    );
    expect(err.message.split('\n')).toEqual([
      'config/site.yaml:4: server.hots: unknown key "hots"',
      'config/site.yaml:6: webhook_secret: unknown key "webhook_secret"',
      'config/site.yaml:12: build.node_types.zen4.gpu: unknown key "gpu"',
    ]);
    // The value of an unknown key (maybe a pasted secret) is not echoed.
    expect(err.message).not.toContain('abc');
  });

  test('every problem is reported at once, each with its own line', () => {
    const err = errorOf(
      lines(
        'instance: "has spaces"',
        'jobdirs: x',
        'server:',
        '  port: 70000',
        '  webhook_path: webhook',
        'github:',
        '  api_url: not a url',
        '  dry_run: "yes"',
        '  webhook_secret_env: "0-not-a-name"',
        'chatlevel: loud',
        'permissions:',
        '  command:',
        '    - alice',
        '    - "bad user"',
      ),
    );
    const byPath = Object.fromEntries(err.problems.map((p) => [p.keyPath, p.line]));
    expect(byPath).toEqual({
      instance: 1,
      'server.port': 4,
      'server.webhook_path': 5,
      'github.api_url': 7,
      'github.dry_run': 8,
      'github.webhook_secret_env': 9,
      chatlevel: 10,
      'permissions.command.1': 14,
    });
    expect(err.message).toContain('config/site.yaml:8: github.dry_run: expected boolean, got "yes"');
    expect(err.message).toContain(
      'config/site.yaml:10: chatlevel: expected incognito | minimal | basic | chatty',
    );
    for (const line of err.message.split('\n')) expect(line).toMatch(/^config\/site\.yaml:\d+: \S+: /);
  });

  test('a missing required key is reported at line 1 with its key path', () => {
    expect(errorOf('jobdirs: x\n').message).toBe('config/site.yaml:1: instance: required (string)');
  });

  test('an empty file names both required keys, with a line', () => {
    expect(errorOf('').message.split('\n')).toEqual([
      'config/site.yaml:1: instance: required (string)',
      'config/site.yaml:1: jobdirs: required (string)',
    ]);
  });

  test('a section given as null names the section', () => {
    expect(errorOf(lines('instance: dev', 'jobdirs: x', 'server:')).message).toBe(
      'config/site.yaml:3: server: expected object, got null',
    );
  });

  test('YAML syntax errors have a line and the key they are in', () => {
    expect(errorOf(lines('instance: dev', '\tjobdirs: x')).message).toBe(
      'config/site.yaml:2: instance: YAML syntax: Tabs are not allowed as indentation',
    );
    const err = errorOf(lines('instance: dev', 'jobdirs: x', 'server:', '  port: [3000', 'chatlevel: basic'));
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]!.line).toBe(5);
    expect(err.problems[0]!.keyPath).not.toBe('');
    expect(err.message).toMatch(/^config\/site\.yaml:5: \S+: YAML syntax: Flow sequence/);
  });

  test('a duplicate key is an error at the second occurrence', () => {
    expect(errorOf(lines('instance: dev', 'jobdirs: x', 'instance: prod')).message).toBe(
      'config/site.yaml:3: instance: YAML syntax: Map keys must be unique',
    );
  });

  test('a file that is not a mapping is not echoed (it could be a secret file passed by mistake)', () => {
    const secretLike = 'c0ffee'.repeat(10) + '1234';
    const err = errorOf(secretLike + '\n');
    expect(err.message).toBe(
      'config/site.yaml:1: (top level): expected a mapping of site.yaml keys, got a string',
    );
    expect(err.message).not.toContain(secretLike);
    expect(errorOf('- a\n- b\n').message).toContain('got a list');
  });

  test('long offending values are shortened', () => {
    const long = 'x'.repeat(500);
    const err = errorOf(lines('instance: dev', 'jobdirs: x', `chatlevel: ${long}`));
    expect(err.message).toContain('(502 characters)');
    expect(err.message.length).toBeLessThan(250);
  });

  test('loadConfig of a missing file names the file', () => {
    const missing = path.join(os.tmpdir(), 'hpcbot-no-such-dir', 'site.yaml');
    expect(() => loadConfig(missing)).toThrow(ConfigError);
    expect(() => loadConfig(missing)).toThrow(`${missing}:?: (top level): cannot read:`);
  });
});

describe('valid configs', () => {
  test('defaults are the documented ones', () => {
    const cfg = parseConfig(lines('instance: dev', 'jobdirs: /var/lib/hpcbot'), '/etc/hpcbot/site.yaml');
    expect(cfg.source).toBe('/etc/hpcbot/site.yaml');
    expect(cfg.jobdirs).toBe('/var/lib/hpcbot');
    expect(cfg.server).toEqual({ host: '127.0.0.1', port: 3000, webhook_path: '/webhook' });
    expect(cfg.github).toMatchObject({
      api_url: 'https://api.github.com',
      dry_run: false,
      webhook_secret_env: 'HPCBOT_WEBHOOK_SECRET',
    });
    expect(cfg.poller).toEqual({
      schedule: '*/10 * * * * *',
      max_attempts: 10,
      concurrency: 4,
      max_replies_per_tick: 3,
    });
    expect(cfg.chatlevel).toBe('basic');
    expect(cfg.permissions).toEqual({ command: [], build: [], deploy: [], cancel_own_jobs: false });
    expect(cfg.labels).toEqual({ build: 'hint', default_build_command: '' });
    expect(cfg.backend.kind).toBe('local');
    expect(cfg.backend.local.max_parallel).toBe(2);
    expect(cfg.backend.slurm).toEqual({
      handover: 'hold_release',
      job_name_prefix: 'hpcbot',
      default_time: '24:00:00',
      sbatch_params: [],
      delay_begin_seconds: 20,
      missing_ticks_before_lost: 3,
    });
    expect(webhookSecretFile(cfg, { XDG_CONFIG_HOME: '/srv/xdg' })).toBe('/srv/xdg/hpcbot/webhook-secret');
    expect(webhookSecretFile(cfg, { HOME: '/home/bot' })).toBe('/home/bot/.config/hpcbot/webhook-secret');
  });

  test("relative paths are resolved against the config file's directory", () => {
    const cfg = parseConfig(
      lines(
        'instance: dev',
        'jobdirs: ../jobdirs',
        'github:',
        '  app_id: 1',
        '  private_key_file: keys/app.pem',
        '  webhook_secret_file: /run/secrets/hook',
        'build:',
        '  job_script: ./scripts/build.sh',
      ),
      '/srv/bot/config/site.yaml',
    );
    expect(cfg.jobdirs).toBe('/srv/bot/jobdirs');
    expect(cfg.github.private_key_file).toBe('/srv/bot/config/keys/app.pem');
    expect(cfg.github.webhook_secret_file).toBe('/run/secrets/hook');
    expect(cfg.build.job_script).toBe('/srv/bot/config/scripts/build.sh');
    expect(webhookSecretFile(cfg)).toBe('/run/secrets/hook');
  });

  test('the shipped config/site.yaml is valid and runs without a cluster or GitHub credentials', () => {
    const cfg = loadConfig(path.join(ROOT, DEFAULT_CONFIG_PATH));
    expect(cfg.jobdirs).toBe(path.join(ROOT, 'jobdirs'));
    expect(cfg.backend.kind).toBe('local');
    expect(cfg.github.dry_run).toBe(true);
    expect(cfg.server.host).toBe('127.0.0.1');
  });

  test('a config file on disk is read relative to where it is', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'hpcbot-config-'));
    try {
      await fs.writeFile(path.join(dir, 'site.yaml'), lines('instance: t', 'jobdirs: data'));
      expect(loadConfig(path.join(dir, 'site.yaml')).jobdirs).toBe(path.join(dir, 'data'));
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

describe('which file', () => {
  test('--config wins over $HPCBOT_CONFIG, which wins over the default', () => {
    expect(configPathFrom('a.yaml', { HPCBOT_CONFIG: 'b.yaml' })).toBe('a.yaml');
    expect(configPathFrom(undefined, { HPCBOT_CONFIG: 'b.yaml' })).toBe('b.yaml');
    expect(configPathFrom(undefined, {})).toBe('config/site.yaml');
  });
});

describe('secrets are described, never shown', () => {
  const saved = { ...process.env };
  afterEach(() => {
    process.env = { ...saved };
  });

  test('the webhook secret from the environment is "set, redacted"; otherwise the file is named', () => {
    const cfg = parseConfig(
      lines(
        'instance: dev',
        'jobdirs: /j',
        'github:',
        '  webhook_secret_env: MY_HOOK_SECRET',
        '  token_env: MY_TOKEN',
      ),
      '/etc/site.yaml',
    );
    delete process.env.MY_HOOK_SECRET;
    delete process.env.MY_TOKEN;
    expect(describeSecretsSources(cfg)).toEqual({
      webhook_secret: `file ${process.env.XDG_CONFIG_HOME}/hpcbot/webhook-secret`,
      github_auth: 'token from env MY_TOKEN (NOT SET)',
    });
    process.env.MY_HOOK_SECRET = 'hook-secret-value-81c3';
    process.env.MY_TOKEN = 'ghp_token-value-9d2e';
    const described = describeSecretsSources(cfg);
    expect(described).toEqual({
      webhook_secret: 'env MY_HOOK_SECRET (set, redacted)',
      github_auth: 'token from env MY_TOKEN (set, redacted)',
    });
    expect(JSON.stringify(described)).not.toMatch(/hook-secret-value|ghp_token-value/);
  });

  test('an App is described by id and key file', () => {
    const cfg = parseConfig(
      lines('instance: dev', 'jobdirs: /j', 'github:', '  app_id: 123', '  private_key_file: /k.pem'),
      '/etc/site.yaml',
    );
    expect(describeSecretsSources(cfg).github_auth).toBe('app 123, key file /k.pem');
  });
});
