/**
 * Commands and labels through the poller's stages (src/stages/commentCommands.ts, pullRequest.ts):
 * which instance answers (`inst:` on every command), commands hidden in markdown, and a broken
 * `labels.default_build_command`. GitHub is the fake; the exact replies it recorded are asserted.
 */
import path from 'node:path';
import { parseConfig, type Config } from '../src/config/config.js';
import type { JobData } from '../src/store/job.js';
import { runTick } from '../src/poller.js';
import { readState } from '../src/store/state.js';
import type { EventData } from '../src/stages/event.js';
import {
  OWNER,
  PR,
  REPO,
  REVIEWER,
  jobDirsOf,
  nextDelivery,
  startHarness,
  stateOf,
  storeComment,
  storeRaw,
  type Harness,
} from './support/botHarness.js';
import { payloads } from './support/payloads.js';
import { BOT_VERSION } from '../src/stages/commands/ping.js';

/** What `bot: status` says first about this instance when no poller has written a heartbeat. */
const HEALTH = `- instance \`test\` (hpc-build-bot ${BOT_VERSION}): no poller heartbeat yet\n`;

let h: Harness;

beforeEach(async () => {
  h = await startHarness();
});

afterEach(async () => {
  await h.stop();
});

function postedBodies(): string[] {
  return h.fake.calls
    .filter((c) => c.method === 'POST' && c.path.endsWith('/comments'))
    .map((c) => (c.body as { body: string }).body);
}

function marker(eventDir: string, key = 'g0:reply'): string {
  return `<!-- hpcbot:test:${path.basename(eventDir)}#${key} -->`;
}

const rel = (dir: string) => h.deps.jobdirs.relative(dir);

/** The reply format of docs/commands.md, written out independently of src/render.ts. */
function reply(
  items: Array<[line: string, expanded: string | undefined, result: string]>,
  sender = REVIEWER,
) {
  const indent = (text: string) =>
    text
      .split('\n')
      .map((l) => `  ${l}`)
      .join('\n');
  return [
    '<details>',
    '<summary>Updates by the bot instance <code>test</code> <em>(click for details)</em></summary>',
    '',
    ...items.map(
      ([line, expanded]) =>
        `- received bot command \`${line}\` from \`${sender}\`` +
        (expanded === undefined ? '' : `\n  - expanded format: \`${expanded}\``),
    ),
    '',
    ...items.map(([line, , result]) => `- handling command \`${line}\` resulted in:\n${indent(result)}`),
    '',
    '</details>',
  ].join('\n');
}

/** A `pull_request.labeled` event on PR 7, as the server stores it. */
async function storeLabel(label: string, sender = REVIEWER): Promise<string> {
  const p = payloads.prLabeled() as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  p.repository.owner.login = OWNER;
  p.repository.name = REPO;
  p.number = PR;
  p.pull_request.number = PR;
  p.label.name = label;
  p.sender.login = sender;
  return await storeRaw(h, 'pull_request', p, nextDelivery());
}

function withLabels(labels: Config['labels']): void {
  h.deps = { ...h.deps, config: { ...h.deps.config, labels } };
}

async function eventState(dir: string) {
  return await stateOf<EventData>(dir);
}

describe('inst: decides which instances answer', () => {
  test('commands whose inst: excludes this instance get no reply and no GitHub call, from anyone', async () => {
    const build = await storeComment(h, 'bot: build for:arch=zen4 inst:other-site');
    const all = await storeComment(
      h,
      [
        'bot: cancel inst:other-site',
        'bot: deploy inst:other-site',
        'bot: status inst:other-site',
        'bot: help inst:other-site',
        'bot: show_config inst:other-*',
      ].join('\n'),
    );
    // Not even a permission denial: that, too, would be an answer from an instance nobody asked.
    const stranger = await storeComment(h, 'bot: build for:arch=zen4 inst:other-site', 'mallory');

    await runTick(h.deps);

    expect(h.fake.calls).toEqual([]);
    for (const dir of [build, all, stranger]) {
      const s = await eventState(dir);
      expect(s.stage).toBe('ignored');
      expect(s.history.at(-1)!.note).toBe('every command is for other instances (inst:), none for test');
    }
    expect(await jobDirsOf(h)).toEqual([]);
  });

  test('cancel and deploy accept inst: naming this instance; a mixed comment is answered only for ours', async () => {
    const build = await storeComment(h, 'bot: build for:arch=zen4');
    const scoped = await storeComment(h, 'bot: cancel inst:te*\nbot: deploy inst:test');
    const mixed = await storeComment(h, 'bot: help inst:other-site\nbot: cancel job:1 inst:test');

    await runTick(h.deps);

    const [job] = await jobDirsOf(h);
    expect(job).toBeDefined();
    expect(postedBodies()).toEqual([
      `${reply([
        [
          'build for:arch=zen4',
          'build for:architecture=zen4',
          `- job for \`eessi-test\` on node type \`zen4\` (for \`x86_64/amd/zen4\`) prepared in \`${rel(job!)}\`; its progress is reported in a comment of its own`,
        ],
      ])}\n${marker(build)}`,
      `${reply([
        ['cancel inst:te*', 'cancel instance:te*', `cancelled:\n- unsubmitted job in \`${rel(job!)}\``],
        [
          'deploy inst:test',
          'deploy instance:test',
          'deploy refused: 1 build job(s) of this PR are still active; deploy again when they have finished',
        ],
      ])}\n${marker(scoped)}`,
      `${reply([
        [
          'cancel job:1 inst:test',
          'cancel job:1 instance:test',
          'no active jobs matched, nothing was cancelled',
        ],
      ])}\n${marker(mixed)}`,
    ]);
    expect((await readState<JobData>(job!))!.data.cancel_requested).toBe(`cancelled by ${REVIEWER}`);
  });
});

describe('commands hidden in markdown are not run', () => {
  test('a build in an HTML comment, a code block, a quote or a list starts nothing; the visible one runs', async () => {
    const hidden = await storeComment(
      h,
      [
        '<!--',
        'bot: build for:arch=zen4',
        '-->',
        '',
        '```',
        'bot: build for:arch=zen4',
        '```',
        '',
        '    bot: build for:arch=zen4',
        '',
        '> bot: build for:arch=zen4',
        '',
        '- bot: build for:arch=zen4',
        '',
        'bot&#58; build for:arch=zen4',
      ].join('\n'),
    );
    const visible = await storeComment(h, 'Please check:\n```\nbot: build for:arch=zen4\n```\nbot: status');

    await runTick(h.deps);

    expect(await jobDirsOf(h)).toEqual([]);
    expect((await eventState(hidden)).history.at(-1)).toMatchObject({
      stage: 'ignored',
      note: 'no bot: command in the comment',
    });
    expect(postedBodies()).toEqual([
      `${reply([['status', 'status', `${HEALTH}\nno build jobs of instance \`test\` for this PR yet`]])}\n${marker(visible)}`,
    ]);
  });

  test('a comment nested too deep to read safely is recorded as not read, at once', async () => {
    const dir = await storeComment(h, `${'>'.repeat(20_000)} bot: build for:arch=zen4\n\nbot: help`);
    await runTick(h.deps);
    expect(h.fake.calls).toEqual([]);
    expect((await eventState(dir)).history.at(-1)).toMatchObject({
      stage: 'ignored',
      note: 'comment not read: the comment nests block quotes or lists up to 20000 deep (at most 32 are read)',
    });
  });
});

describe('a broken labels.default_build_command', () => {
  test('config check rejects it with the parser’s message at labels.default_build_command', () => {
    const yaml = (command: string) =>
      [
        'instance: test',
        'jobdirs: /tmp/jobdirs',
        'labels:',
        '  build: build_defaults',
        `  default_build_command: '${command}'`,
      ].join('\n');
    expect(() => parseConfig(yaml('bot: build'), '/etc/hpcbot/site.yaml')).toThrow(
      '/etc/hpcbot/site.yaml:5: labels.default_build_command: no `for:` argument was given, so no build jobs are submitted; ' +
        'say what to build for, e.g. `for:arch=x86_64/amd/zen4`, got "bot: build"',
    );
    expect(() => parseConfig(yaml('status'), '/etc/hpcbot/site.yaml')).toThrow(
      '/etc/hpcbot/site.yaml:5: labels.default_build_command: `status` is not a build command, got "status"',
    );
    expect(() => parseConfig(yaml('build for:arch=zen4 flavour:x'), '/etc/hpcbot/site.yaml')).toThrow(
      'labels.default_build_command: unknown filter key `flavour`',
    );
    expect(parseConfig(yaml('bot: build for:arch=zen4'), '/etc/hpcbot/site.yaml').labels).toEqual({
      build: 'build_defaults',
      default_build_command: 'bot: build for:arch=zen4',
    });
  });

  test('a config loaded before the check existed: the label gets the error as a reply, once, and no retry', async () => {
    withLabels({ build: 'build_defaults', default_build_command: 'bot: build on:arch=zen4' });
    const dir = await storeLabel('bot:build');

    await runTick(h.deps);
    await runTick(h.deps);

    expect(postedBodies()).toEqual([
      'nothing was built: `labels.default_build_command` of instance `test` is not a valid build command ' +
        '(its site.yaml needs fixing):\n\n' +
        'no `for:` argument was given, so no build jobs are submitted; say what to build for, e.g. `for:arch=x86_64/amd/zen4`\n\n' +
        'correct syntax: `bot: build [on:arch=<cpu>[,accel=<gpu>]] for:arch=<cpu>[,accel=<gpu>[+<gpu>...]]|for:set=<name> [repo:<repo_id>] [inst:<instance>] [exportvariable:NAME=value] [after:#<PR>] [--dry-run]`\n' +
        marker(dir),
    ]);
    const s = await eventState(dir);
    expect(s.stage).toBe('done');
    expect(s.attempts).toBe(0);
    expect(s.last_error).toBeUndefined();
    expect(await jobDirsOf(h)).toEqual([]);
  });

  test('a default command for another instance (inst:) makes the label a no-op here, silently', async () => {
    withLabels({ build: 'build_defaults', default_build_command: 'build for:arch=zen4 inst:other-site' });
    const dir = await storeLabel('bot:build');
    await runTick(h.deps);
    expect(h.fake.calls).toEqual([]);
    expect((await eventState(dir)).history.at(-1)).toMatchObject({
      stage: 'ignored',
      note: 'labels.default_build_command is for other instances (inst:), not test',
    });
  });
});

describe('bot: status shows why a job ended early', () => {
  test('a job cancelled before submission: its row is worded, and the status table says by whom', async () => {
    await storeComment(h, 'bot: build for:arch=zen4');
    await storeComment(h, 'bot: cancel');
    await runTick(h.deps); // the job is prepared, and the cancel reaches it
    await runTick(h.deps); // the job ends, before it was submitted
    const [job] = await jobDirsOf(h);
    const js = (await readState<JobData>(job!))!;
    expect(js.stage).toBe('cancelled');
    expect(js.data.rows.map((r) => r.comment)).toEqual([
      `cancelled before submission by \`${REVIEWER}\` (\`bot: cancel\`)`,
    ]);

    const asked = await storeComment(h, 'bot: status');
    await runTick(h.deps);
    const answer = postedBodies().find((b) => b.endsWith(marker(asked)));
    expect(answer).toContain(`|cancelled (by \`${REVIEWER}\`)|\`${path.normalize(rel(job!))}\`|`);
  });
});

describe('permissions.cancel_own_jobs', () => {
  test('a flood of `bot: cancel` from someone without permission and without jobs: one reply per PR and hour', async () => {
    h.deps.config.permissions.cancel_own_jobs = true;
    const flood: string[] = [];
    for (let i = 0; i < 5; i++) flood.push(await storeComment(h, 'bot: cancel', 'mallory'));
    await runTick(h.deps);
    await runTick(h.deps);
    const bodies = postedBodies();
    expect(bodies).toHaveLength(1);
    expect(bodies[0]).toContain('no active jobs of `mallory` matched, nothing was cancelled');
    expect(bodies[0]!.endsWith(marker(flood[0]!))).toBe(true);
    for (const dir of flood.slice(1)) {
      const s = (await readState<EventData>(dir))!;
      expect(s.stage).toBe('ignored');
      expect(s.history.at(-1)!.note).toMatch(
        /^mallory may cancel only their own jobs, had none, and was told so at /,
      );
    }
  });
});
