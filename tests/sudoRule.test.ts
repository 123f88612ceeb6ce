/**
 * The sudoers rule of the README ("backend.run_as"), taken from the README verbatim and installed for
 * a bot user that is not root (root may sudo anything, so a bot running as root never tests the rule).
 * Asked as that user: the commands the backends run as the job user are allowed, nothing else is; and
 * `hpcbot config check`, run as that user, accepts run_as with the rule and names it unusable without.
 * Needs root and sudo (CI has both): skipped loudly elsewhere, fails in CI.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { LOCAL_RUNNER } from '../src/adapters/jobScripts.js';
import { SUDO_COMMANDS } from '../src/config/siteCheck.js';
import { JOB_USER } from './support/jobUser.js';
import { CLI, ROOT, tempDir } from './support/spawn.js';

const BOT_USER = 'hpcbot-ci-bot';
const RULE_FILE = '/etc/sudoers.d/hpcbot-ci-readme-rule';

/** The rule line of the README, with the substitutions the README asks for. */
async function readmeRule(): Promise<string> {
  const readme = await fs.readFile(path.join(ROOT, 'README.md'), 'utf8');
  const at = readme.indexOf('The sudoers rule, verbatim');
  if (at < 0) throw new Error('README.md has no "The sudoers rule, verbatim" paragraph');
  const block = /```\n([^\n]*)\n```/.exec(readme.slice(at));
  if (!block) throw new Error('no code block after "The sudoers rule, verbatim" in README.md');
  const line = block[1]!;
  expect(line).toMatch(/^hpcbot ALL=\(hpcbot-job\) NOPASSWD: /);
  // The README: the first word is the bot's user, /opt/hpc-build-bot the checkout, /usr/bin/ where the
  // scheduler commands are (Debian's Slurm and its Torque front ends: /usr/bin, as in the README).
  return line.replace(/^hpcbot /, `${BOT_USER} `).replaceAll('/opt/hpc-build-bot', ROOT) + '\n';
}

function missing(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root';
  for (const tool of ['/usr/bin/sudo', '/usr/sbin/visudo', '/usr/sbin/useradd'])
    if (!existsSync(tool)) return `${tool} is missing (scripts/install-job-user.sh installs sudo)`;
  try {
    execFileSync('id', ['-u', JOB_USER], { stdio: 'pipe' });
  } catch {
    return `no job user ${JOB_USER} (run scripts/install-job-user.sh as root)`;
  }
  return undefined;
}

function sh(command: string, args: string[], opts: { input?: string } = {}): { code: number; out: string } {
  try {
    const out = execFileSync(command, args, { stdio: 'pipe', input: opts.input, encoding: 'utf8' });
    return { code: 0, out };
  } catch (err) {
    const e = err as { status?: number; stdout?: string; stderr?: string };
    return { code: e.status ?? -1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

/** `sudo -n -l` as the bot user: may the bot user run `argv` as the job user without a password? */
function botMay(argv: string[]): boolean {
  return (
    sh('sudo', ['-n', '-u', BOT_USER, '--', 'sudo', '-n', '-l', '-u', JOB_USER, '--', ...argv]).code === 0
  );
}

const why = missing();
const ci = process.env.CI && process.env.CI !== '0' && process.env.CI.toLowerCase() !== 'false';
if (why !== undefined && !ci) {
  const bar = '!'.repeat(78);
  console.warn(
    `${bar}\n!! SKIPPING tests/sudoRule.test.ts: ${why}\n!! Run it as root with sudo installed.\n${bar}`,
  );
}
const describeRule = why === undefined ? describe : ci ? describe : describe.skip;

describeRule("the README's sudoers rule, for a bot user that is not root", () => {
  if (why !== undefined) {
    test('root and sudo are there', () => {
      throw new Error(`CI is set but this test cannot run: ${why}`);
    });
    return;
  }
  let home: string;

  beforeAll(async () => {
    if (sh('id', ['-u', BOT_USER]).code !== 0)
      execFileSync('useradd', ['--create-home', '--shell', '/bin/bash', '--user-group', BOT_USER]);
    // As the README says: the bot's user is in the job user's group.
    execFileSync('usermod', ['-a', '-G', sh('id', ['-gn', JOB_USER]).out.trim(), BOT_USER]);
    const rule = await readmeRule();
    const checked = sh('visudo', ['-c', '-f', '-'], { input: rule });
    if (checked.code !== 0) throw new Error(`visudo rejects the README's rule ${rule}: ${checked.out}`);
    await fs.writeFile(RULE_FILE, rule, { mode: 0o440 });
    expect(sh('visudo', ['-c']).code).toBe(0);
    home = await tempDir('hpcbot-sudorule-');
    await fs.chmod(home, 0o755);
    execFileSync('chown', [BOT_USER, home]);
  });

  afterAll(async () => {
    await fs.rm(RULE_FILE, { force: true });
    if (home) await fs.rm(home, { recursive: true, force: true });
  });

  test('allows the commands each backend runs as the job user', () => {
    for (const argv of [...SUDO_COMMANDS.local, ...SUDO_COMMANDS.slurm, ...SUDO_COMMANDS.pbs])
      expect([argv.join(' '), botMay(argv)]).toEqual([argv.join(' '), true]);
    expect(botMay([LOCAL_RUNNER, '7', '/opt/site/bot-build.slurm'])).toBe(true);
  });

  test('refuses anything else as the job user, and anything as root', () => {
    for (const argv of [
      ['/bin/sh', '-c', 'id'],
      ['/bin/bash'],
      ['/bin/rm', '-rf', '/tmp/x'],
      ['/bin/true'],
      ['scontrol', 'update', 'JobId=1', 'Priority=1'],
      ['scontrol', 'hold', '1'],
      ['squeue'],
    ])
      expect([argv.join(' '), botMay(argv)]).toEqual([argv.join(' '), false]);
    expect(sh('sudo', ['-n', '-u', BOT_USER, '--', 'sudo', '-n', '-l', '--', LOCAL_RUNNER]).code).not.toBe(0);
  });

  /** `hpcbot config check` as the bot user (tsx, as tests/cli.test.ts runs the CLI). */
  async function configCheckAsBot(): Promise<{ code: number; out: string }> {
    const file = path.join(home, 'site.yaml');
    await fs.writeFile(
      file,
      [
        'instance: sudo-rule',
        'jobdirs: jobdirs',
        'github:',
        '  dry_run: true',
        'backend:',
        '  kind: local',
        `  run_as: ${JOB_USER}`,
        '',
      ].join('\n'),
    );
    execFileSync('chown', [BOT_USER, file]);
    const env = [
      `HOME=${home}`,
      `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`,
      `XDG_CONFIG_HOME=${home}/.config`,
    ];
    return sh('sudo', [
      '-n',
      '-u',
      BOT_USER,
      '--',
      '/usr/bin/env',
      '-i',
      ...env,
      process.execPath,
      '--import',
      'tsx',
      CLI,
      'config',
      'check',
      '--config',
      file,
    ]);
  }

  test('config check, run as the bot user, accepts run_as with the rule and names it unusable without', async () => {
    const ok = await configCheckAsBot();
    expect(ok.out).toContain(': OK');
    expect(ok.code).toBe(0);

    await fs.rm(RULE_FILE);
    const refused = await configCheckAsBot();
    const file = path.join(home, 'site.yaml');
    expect(refused.out.trim().split('\n')).toContain(
      `${file}:7: backend.run_as: unusable: sudo does not let this user run ${LOCAL_RUNNER} 1 job-script, ${LOCAL_RUNNER} --cancel 2 as ${JOB_USER} without a password; add the sudoers rule from the README ("backend.run_as")`,
    );
    expect(refused.code).toBe(2);
  }, 60_000);
});
