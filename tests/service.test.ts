/** `hpcbot service install`: the units it writes, the secrets file and the lines it prints. */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { renderUnit, unitPath, UNITS } from '../src/cli/service.js';
import { ROOT, runCli, tempDir, writeSiteYaml } from './support/spawn.js';

test("--user writes three units with this checkout's paths, an env file (600) and prints the systemctl lines", async () => {
  const d = await tempDir('hpcbot-service-');
  const config = await writeSiteYaml(d, 0);
  const xdg = path.join(d, 'xdg');
  const { code, stdout, stderr } = await runCli(['service', 'install', '--user', '--config', config], {
    env: { XDG_CONFIG_HOME: xdg },
  });
  expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
  const unitDir = path.join(xdg, 'systemd', 'user');
  const envFile = path.join(xdg, 'hpcbot', 'env');
  for (const [name, command] of [
    ['hpcbot-server.service', 'server'],
    ['hpcbot-poller.service', 'poll'],
    ['hpcbot-ui.service', 'ui'],
  ] as const) {
    const unit = readFileSync(path.join(unitDir, name), 'utf8');
    expect(unit).not.toMatch(/@[A-Z]+@/);
    const lines = unit.split('\n');
    expect(lines).toEqual(
      expect.arrayContaining([
        `ExecStart=${process.execPath} ${path.join(ROOT, 'bin', 'hpcbot.mjs')} ${command}`,
        `EnvironmentFile=-${envFile}`,
        `Environment=HPCBOT_CONFIG=${config}`,
        `WorkingDirectory=${d}`,
        'Restart=always',
        'WantedBy=default.target',
      ]),
    );
    expect((statSync(path.join(unitDir, name)).mode & 0o777).toString(8)).toBe('644');
  }
  expect((statSync(envFile).mode & 0o777).toString(8)).toBe('600');
  expect(readFileSync(envFile, 'utf8')).toContain('#HPCBOT_TEST_WEBHOOK_SECRET=\n');
  expect(stdout).toContain(`wrote ${path.join(unitDir, 'hpcbot-ui.service')}\n`);
  expect(stdout).toContain('  systemctl --user daemon-reload\n');
  expect(stdout).toContain('  systemctl --user enable --now hpcbot-server hpcbot-poller hpcbot-ui\n');
  expect(stdout).toContain('  loginctl enable-linger "$USER"');

  // Run again: the units are rewritten, the env file (holding secrets by now) is kept.
  const again = await runCli(['service', 'install', '--user', '--config', config], {
    env: { XDG_CONFIG_HOME: xdg },
  });
  expect(again.code).toBe(0);
  expect(again.stdout).toContain(`kept ${envFile} (mode 600)`);
});

test('the units pass systemd-analyze verify', async () => {
  const d = await tempDir('hpcbot-service-');
  const config = await writeSiteYaml(d, 0);
  const out = path.join(d, 'units');
  const { code } = await runCli(['service', 'install', '--config', config, '--dir', out], {
    env: { XDG_CONFIG_HOME: path.join(d, 'xdg') },
  });
  expect(code).toBe(0);
  expect(readFileSync(path.join(out, 'hpcbot-poller.service'), 'utf8')).toContain(
    'WantedBy=multi-user.target',
  );
  if (!existsSync('/usr/bin/systemd-analyze')) return;
  const files = UNITS.map((u) => path.join(out, u));
  const { stderr } = await promisify(execFile)('systemd-analyze', ['verify', ...files]).catch(
    (err: { stderr: string; code: number }) => ({ stderr: `exit ${err.code}: ${err.stderr}` }),
  );
  // Only complaints about our units count (a container without systemd as PID 1 adds its own noise).
  expect(stderr.split('\n').filter((l) => l.includes('hpcbot-'))).toEqual([]);
});

test('a path systemd would split or expand is refused, not quoted', () => {
  expect(() => unitPath('site.yaml', '/home/a b/site.yaml')).toThrow(
    'site.yaml "/home/a b/site.yaml" must be an absolute path without spaces, quotes, \\, %, $ or ;',
  );
  expect(() => unitPath('site.yaml', 'relative/site.yaml')).toThrow(/must be an absolute path/);
  expect(() =>
    renderUnit('ExecStart=@NODE@ @ENTRY@ @NOPE@', {
      node: '/n',
      entry: '/e',
      config: '/c',
      envFile: '/f',
      workdir: '/w',
      wantedBy: 'default.target',
    }),
  ).toThrow('unit template: unknown placeholder @NOPE@');
});
