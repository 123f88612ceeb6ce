/**
 * The README's first steps: `hpcbot start` on the shipped site.yaml (local backend, dry run) plus
 * `hpcbot sample-event` runs a real job and renders its PR comment into the dry-run store.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { freePort, ROOT, spawnCli, tempDir, waitForHttp, type Child } from './support/spawn.js';

let bot: Child | undefined;
afterAll(() => {
  if (bot && bot.proc.exitCode === null) bot.proc.kill('SIGTERM');
});

test('start + sample-event: a job runs on the local backend and its comment is written in dry-run', async () => {
  const dir = await tempDir('hpcbot-sample-');
  const port = await freePort();
  const site = YAML.parse(readFileSync(path.join(ROOT, 'config/site.yaml'), 'utf8'));
  site.jobdirs = path.join(dir, 'jobdirs');
  site.server.port = port;
  site.ui = { port: 0 };
  site.build.repos_cfg_dir = path.join(ROOT, 'config/repos');
  site.poller.schedule = '* * * * * *';
  const config = path.join(dir, 'site.yaml');
  await fs.writeFile(config, YAML.stringify(site));

  bot = spawnCli(['start', '--config', config], { env: { XDG_CONFIG_HOME: path.join(dir, 'xdg') } });
  expect(await waitForHttp(`http://127.0.0.1:${port}/healthz`)).toBe(200);
  const secretFile = path.join(dir, 'xdg', 'hpcbot', 'webhook-secret');
  expect((await fs.stat(secretFile)).mode & 0o777).toBe(0o600);
  expect(bot.stdout() + bot.stderr()).toContain(secretFile);

  const sender = spawnCli(['sample-event', '--config', config], {
    env: { XDG_CONFIG_HOME: path.join(dir, 'xdg') },
  });
  expect((await sender.exited).code).toBe(0);
  expect(sender.stdout()).toMatch(/^server answered 202 \{"delivery":"[0-9a-f-]+","stored":true\}/);

  const comments = path.join(dir, 'jobdirs', 'dry-run', 'hpcbot-sample', 'hello-hpc', 'issue_1');
  const deadline = Date.now() + 60_000;
  let jobComment = '';
  while (Date.now() < deadline) {
    const files = existsSync(comments) ? readdirSync(comments).sort() : [];
    jobComment =
      files.map((f) => readFileSync(path.join(comments, f), 'utf8')).find((b) => b.startsWith('New job')) ??
      '';
    if (jobComment.includes('|test result|')) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  expect(jobComment).toContain('New job on instance `dev` for repository `sample`');
  expect(jobComment).toMatch(
    /\|finished\|<details><summary>:grin: SUCCESS<\/summary>.*\(scheduler: `COMPLETED, exit code 0:0`\)/,
  );
  expect(jobComment).toContain('|test result|:grin: SUCCESS');
  const reply = readFileSync(path.join(comments, 'comment_1.md'), 'utf8');
  expect(reply).toContain(
    '- received bot command `build for:arch=x86_64/generic` from `hpcbot-sample-reviewer`',
  );
}, 90_000);
