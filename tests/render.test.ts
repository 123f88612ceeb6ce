/**
 * The pure pieces behind every bot comment: markdown helpers (src/markdown.ts), the reply renderer
 * (src/render.ts), permissions (src/permissions.ts, teams through the fake GitHub) and chatAllows.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { CHATLEVELS, siteSchema, type Chatlevel, type Config } from '../src/config/config.js';
import { parseBotCommands } from '../src/domain/commandLines.js';
import { COMMAND_LINE_RE, COMMAND_SYNTAX } from '../src/domain/commands.js';
import { createGitHub, GitHubError, type GitHubApi, type RepoRef } from '../src/adapters/github/index.js';
import {
  MAX_COMMENT_CHARS,
  codeSpan,
  commentMarker,
  fitComment,
  neutralizeCommands,
} from '../src/domain/markdown.js';
import { hasPermission, isBotAccount, matchLogin } from '../src/domain/permissions.js';
import { renderCommandReply, renderConfig, renderHelp, renderSyntaxError } from '../src/domain/render.js';
import { chatAllows } from '../src/stages/context.js';
import { FakeGitHub } from './support/fakeGithub.js';

/** No line of `body` is read as a command by the parser. */
function commandLines(body: string): string[] {
  return body.split(/\r?\n/).filter((l) => COMMAND_LINE_RE.test(l.trim()));
}

describe('codeSpan', () => {
  test.each<[string, number | undefined, string]>([
    ['abc', undefined, '`abc`'],
    ['a`b', undefined, '`` a`b ``'],
    ['```', undefined, '```` ``` ````'],
    ['a``b`c', undefined, '``` a``b`c ```'],
    ['`x', undefined, '`` `x ``'],
    [' padded ', undefined, '`  padded  `'],
    ['line1\nline2\r\nline3', undefined, '`line1 line2 line3`'],
    ['<!-- hpcbot:x:y --> <b>', undefined, '`<!-- hpcbot:x:y --> <b>`'],
    ['abcdefghij', 4, '`abcd…`'],
    ['x'.repeat(300), undefined, `\`${'x'.repeat(200)}…\``],
  ])('%j (max %j) → %j', (input, max, expected) => {
    expect(codeSpan(input, max)).toBe(expected);
  });
});

describe('neutralizeCommands: no line of a bot comment parses as a command', () => {
  test.each<[string, string]>([
    ['bot: help', 'bot&#58; help'],
    ['  bot: help', '  bot&#58; help'],
    ['a\nbot: build for:arch=zen4\nb', 'a\nbot&#58; build for:arch=zen4\nb'],
    ['a\r\nbot:help\r\n', 'a\r\nbot&#58;help\r\n'],
    ['\tbot:', '\tbot&#58;'],
    ['robot: x\nsay bot: x\n`bot: help`', 'robot: x\nsay bot: x\n`bot: help`'],
    ['Bot: help', 'Bot: help'],
  ])('%j → %j', (input, expected) => {
    expect(neutralizeCommands(input)).toBe(expected);
  });

  test('hostile bodies: after neutralizing, the parser finds no command', () => {
    const bodies = [
      'bot: help\nbot: build for:arch=zen4\n   bot: cancel',
      '\ufeffbot: help',
      '\u00a0\u3000bot: help',
      'x\u2028bot: help',
      'x\rbot: help',
      Array.from({ length: 100 }, (_, i) => `${' '.repeat(i % 5)}bot: cmd${i}`).join('\n'),
    ];
    for (const body of bodies) {
      const safe = neutralizeCommands(body);
      expect(parseBotCommands(safe).commands).toEqual([]);
      expect(commandLines(safe)).toEqual([]);
    }
  });
});

describe('fitComment', () => {
  const marker = commentMarker('test', 'event_1#g0:reply');
  const NOTE = `… (cut: this comment exceeded GitHub's limit of ${MAX_COMMENT_CHARS} characters)`;

  test('a body within the limit is kept as is, with the tail on its own line', () => {
    expect(fitComment('hello', marker)).toBe(`hello\n${marker}`);
    expect(fitComment('hello')).toBe('hello');
    const exact = 'x'.repeat(MAX_COMMENT_CHARS - marker.length - 1);
    expect(fitComment(exact, marker)).toBe(`${exact}\n${marker}`);
    expect(fitComment(exact, marker)).toHaveLength(MAX_COMMENT_CHARS);
  });

  test('a body one character too long is cut, with the note and the tail', () => {
    const body = 'x'.repeat(MAX_COMMENT_CHARS - marker.length);
    const out = fitComment(body, marker);
    expect(out.length).toBeLessThanOrEqual(MAX_COMMENT_CHARS);
    expect(out).toContain(NOTE);
    expect(out.endsWith(marker)).toBe(true);
  });

  test.each([100_000, 1_000_000])('a %d-char body fits, ends with the marker', (size) => {
    const out = fitComment('y'.repeat(size), marker);
    expect(out.length).toBeLessThanOrEqual(MAX_COMMENT_CHARS);
    expect(out.endsWith(`${NOTE}\n${marker}`)).toBe(true);
  });

  test('the note is outside an open <details> block and an open code fence', () => {
    const body = ['<details>', '<summary>s</summary>', '', '```', 'log line\n'.repeat(20_000)].join('\n');
    const out = fitComment(body, marker);
    expect(out.length).toBeLessThanOrEqual(MAX_COMMENT_CHARS);
    const beforeNote = out.slice(0, out.indexOf(NOTE));
    expect((beforeNote.match(/^```/gm) ?? []).length % 2).toBe(0);
    expect(beforeNote.trimEnd().endsWith('```\n</details>')).toBe(true);
  });

  test('a cut never splits a surrogate pair', () => {
    for (let shift = 0; shift < 2; shift++) {
      const out = fitComment('a'.repeat(shift) + '🤖'.repeat(40_000), marker);
      expect(out.length).toBeLessThanOrEqual(MAX_COMMENT_CHARS);
      expect(out).not.toMatch(/[\ud800-\udbff](?![\udc00-\udfff])/);
      expect(out).not.toMatch(/(?<![\ud800-\udbff])[\udc00-\udfff]/);
    }
  });
});

describe('the reply comment', () => {
  test('a <details> block titled with the instance; one bullet per command, then each result', () => {
    const body = renderCommandReply(
      'site-a',
      'alice',
      [
        { line: 'build for:arch=zen4', expanded: 'build for:architecture=zen4', result: '- job 1\n- job 2' },
        { line: 'frobnicate', result: renderSyntaxError('unknown command `frobnicate`', 'bot: help') },
      ],
      3,
    );
    expect(body).toBe(
      [
        '<details>',
        '<summary>Updates by the bot instance <code>site-a</code> <em>(click for details)</em></summary>',
        '',
        '- received bot command `build for:arch=zen4` from `alice`',
        '  - expanded format: `build for:architecture=zen4`',
        '- received bot command `frobnicate` from `alice`',
        '- 3 more command line(s) were ignored: at most 2 are handled per comment',
        '',
        '- handling command `build for:arch=zen4` resulted in:',
        '  - job 1',
        '  - job 2',
        '- handling command `frobnicate` resulted in:',
        '  unknown command `frobnicate`',
        '  ',
        '  correct syntax: `bot: help`',
        '',
        '</details>',
      ].join('\n'),
    );
    expect(commandLines(body)).toEqual([]);
  });

  test('the instance name is HTML-escaped in the summary; user text stays in code spans', () => {
    const body = renderCommandReply('a<b', 'x`y', [{ line: '<img src=x>', result: 'r' }]);
    expect(body).toContain('<code>a&#60;b</code>');
    expect(body).toContain('- received bot command `<img src=x>` from `` x`y ``');
  });

  test('renderSyntaxError: a syntax in a code span, a list of choices as it is', () => {
    expect(renderSyntaxError('bad', 'bot: status [last_build]')).toBe(
      'bad\n\ncorrect syntax: `bot: status [last_build]`',
    );
    expect(renderSyntaxError('bad', 'one of: `bot: help`')).toBe(
      'bad\n\ncorrect syntax: one of: `bot: help`',
    );
    expect(renderSyntaxError('bad')).toBe('bad');
  });

  test('help lists every command and no line of it is itself a command', () => {
    const help = renderHelp();
    for (const syntax of Object.values(COMMAND_SYNTAX)) expect(help).toContain(`\`${syntax}\``);
    expect(commandLines(help)).toEqual([]);
  });

  test('show_config lists the node types', () => {
    const config = {
      ...siteSchema.parse({
        instance: 'site-a',
        jobdirs: '/x',
        build: {
          node_types: {
            zen4: { cpu_subdir: 'x86_64/amd/zen4', repo_targets: ['r1', 'r2'] },
            gpu: { cpu_subdir: 'x86_64/amd/zen3', accel: 'nvidia/cc80', repo_targets: ['r1'] },
          },
        },
      }),
      source: '/x/site.yaml',
    };
    expect(renderConfig(config)).toBe(
      [
        'Instance `site-a` is configured to build on:',
        '- node type `zen4`: OS `linux`, CPU architecture `x86_64/amd/zen4`, repositories `r1`, `r2`',
        '- node type `gpu`: OS `linux`, CPU architecture `x86_64/amd/zen3`, repositories `r1`, accelerator `nvidia/cc80`',
      ].join('\n'),
    );
    expect(renderConfig({ ...config, build: { ...config.build, node_types: {} } })).toBe(
      'Instance `site-a` has no build node types configured.',
    );
  });
});

describe('chatAllows: a comment is posted when the configured level is at least the required one', () => {
  const table: Array<[Chatlevel, Chatlevel, boolean]> = [];
  for (const [ci, configured] of CHATLEVELS.entries())
    for (const [ri, required] of CHATLEVELS.entries()) table.push([configured, required, ci >= ri]);
  test.each(table)('configured %s, required %s → %s', (configured, required, expected) => {
    expect(chatAllows(configured, required)).toBe(expected);
  });
  test('incognito posts nothing that needs a level above it; chatty posts everything', () => {
    expect(CHATLEVELS).toEqual(['incognito', 'minimal', 'basic', 'chatty']);
    expect(chatAllows('incognito', 'minimal')).toBe(false);
    expect(chatAllows('chatty', 'chatty')).toBe(true);
  });
});

describe('permissions', () => {
  test.each<[string, string | undefined, boolean]>([
    ['hpcbot-app[bot]', undefined, true],
    ['dependabot[bot]', 'mybot', true],
    ['MyBot', 'mybot', true],
    ['mybot', 'MyBot', true],
    ['mybot2', 'mybot', false],
    ['alice', undefined, false],
    ['bot', undefined, false],
  ])('isBotAccount(%j, bot_login %j) → %j', (login, botLogin, expected) => {
    expect(isBotAccount(login, botLogin)).toBe(expected);
  });

  test.each<[string, string[], { allowed: boolean; teams: string[] }]>([
    ['alice', ['alice'], { allowed: true, teams: [] }],
    ['Alice', ['alice'], { allowed: true, teams: [] }],
    ['alice', ['ALICE', 'org/team'], { allowed: true, teams: [] }],
    ['alice', [], { allowed: false, teams: [] }],
    ['alice', ['bob'], { allowed: false, teams: [] }],
    ['alice', ['alic'], { allowed: false, teams: [] }],
    ['alice', ['alice-x'], { allowed: false, teams: [] }],
    [
      'alice',
      ['bob', 'org/builders', 'org/admins'],
      { allowed: false, teams: ['org/builders', 'org/admins'] },
    ],
    // a team slug is never compared with a login
    ['org/builders', ['org/builders'], { allowed: false, teams: ['org/builders'] }],
  ])('matchLogin(%j, %j)', (login, allowed, expected) => {
    expect(matchLogin(login, allowed)).toEqual(expected);
  });

  describe('with teams looked up through the GitHub API', () => {
    let tmp: string;
    let fake: FakeGitHub;
    let github: GitHubApi;
    const repo: RepoRef = { owner: 'octo', repo: 'stack', installationId: null };

    beforeEach(async () => {
      tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'hpcbot-perm-'));
      fake = new FakeGitHub();
      const apiUrl = await fake.start();
      const config: Config = {
        ...siteSchema.parse({
          instance: 'test',
          jobdirs: path.join(tmp, 'jobdirs'),
          github: { api_url: apiUrl, token_env: 'HPCBOT_TEST_TOKEN' },
        }),
        source: path.join(tmp, 'site.yaml'),
      };
      github = createGitHub(
        config,
        pino({ level: 'silent' }),
        { HPCBOT_TEST_TOKEN: 'pat-token' },
        { retryBaseMs: 1, retries: 1, requestTimeoutMs: 10_000 },
      );
      fake.addTeamMember('org', 'builders', 'alice');
      fake.addTeamMember('org', 'admins', 'carol');
      fake.addTeamMember('org', 'builders', 'dave', 'pending');
    });

    afterEach(async () => {
      await fake.stop();
      await fs.rm(tmp, { recursive: true, force: true });
    });

    const memberships = () =>
      fake.calls
        .filter((c) => c.path.includes('/memberships/'))
        .map((c) => `${c.method} ${c.path} ${c.status}`);

    test('a listed login needs no API call', async () => {
      await expect(hasPermission(github, repo, 'Alice', ['bob', 'alice', 'org/builders'])).resolves.toBe(
        true,
      );
      expect(fake.calls).toEqual([]);
    });

    test('an empty list means nobody', async () => {
      await expect(hasPermission(github, repo, 'alice', [])).resolves.toBe(false);
      expect(fake.calls).toEqual([]);
    });

    test('an active team member is allowed; teams are asked in order until one says yes', async () => {
      await expect(
        hasPermission(github, repo, 'carol', ['org/builders', 'org/admins', 'org/x']),
      ).resolves.toBe(true);
      expect(memberships()).toEqual([
        'GET /orgs/org/teams/builders/memberships/carol 404',
        'GET /orgs/org/teams/admins/memberships/carol 200',
      ]);
      expect(fake.calls[0]!.auth).toBe('token pat-token');
    });

    test('a pending membership or no membership is not enough', async () => {
      await expect(hasPermission(github, repo, 'dave', ['org/builders'])).resolves.toBe(false);
      await expect(hasPermission(github, repo, 'mallory', ['org/builders', 'alice'])).resolves.toBe(false);
      expect(memberships()).toEqual([
        'GET /orgs/org/teams/builders/memberships/dave 200',
        'GET /orgs/org/teams/builders/memberships/mallory 404',
      ]);
    });

    test('a team lookup that fails is an error, never a yes', async () => {
      fake.failNext('GET', /\/memberships\//, 403);
      await expect(hasPermission(github, repo, 'alice', ['org/builders'])).rejects.toBeInstanceOf(
        GitHubError,
      );
      fake.failNext('GET', /\/memberships\//, 500, 5);
      await expect(hasPermission(github, repo, 'alice', ['org/builders'])).rejects.toBeInstanceOf(
        GitHubError,
      );
    });
  });
});
