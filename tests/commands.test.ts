/**
 * The `bot:` command parser (src/commands.ts): a table of lines and what they parse to, the comment-level
 * extraction (src/commandLines.ts: one command per line, case-sensitive, only plain top-level paragraph
 * text, limits), `inst:` on every command, and hostile input.
 */
import {
  MAX_NESTING,
  UnreadableCommentError,
  commandLines,
  nestingBound,
  parseBotCommands,
} from '../src/domain/commandLines.js';
import {
  COMMAND_SYNTAX,
  MAX_COMMANDS_PER_COMMENT,
  expandCommand,
  isForInstance,
  parseBotCommand,
  parseLabelBuildCommand,
  type CommandArgs,
  type ParsedCommand,
} from '../src/domain/commands.js';

const BUILD_SYNTAX = COMMAND_SYNTAX.build;

function ok(line: string): Extract<ParsedCommand, { ok: true }> {
  const parsed = parseBotCommand(line);
  if (!parsed.ok) throw new Error(`expected ${JSON.stringify(line)} to parse, got: ${parsed.error}`);
  return parsed;
}

function bad(line: string): Extract<ParsedCommand, { ok: false }> {
  const parsed = parseBotCommand(line);
  if (parsed.ok) throw new Error(`expected ${JSON.stringify(line)} to fail, got ${parsed.expanded}`);
  return parsed;
}

const args = (a: Partial<CommandArgs>): CommandArgs => ({
  on: {},
  filters: {},
  exportVariables: [],
  general: [],
  ...a,
});

describe('valid commands: what each line parses to', () => {
  const zen4 = 'x86_64/amd/zen4';
  test.each<[string, string, CommandArgs, string]>([
    ['help', 'help', args({}), 'help'],
    ['show_config', 'show_config', args({}), 'show_config'],
    ['status', 'status', args({}), 'status'],
    ['status last_build', 'status', args({ general: ['last_build'] }), 'status last_build'],
    ['deploy', 'deploy', args({}), 'deploy'],
    ['cancel', 'cancel', args({}), 'cancel'],
    // every command takes `inst:` (which instances answer)
    ['help inst:test', 'help', args({ filters: { instance: 'test' } }), 'help instance:test'],
    [
      'show_config ins:te*',
      'show_config',
      args({ filters: { instance: 'te*' } }),
      'show_config instance:te*',
    ],
    [
      'status last_build inst:test',
      'status',
      args({ general: ['last_build'], filters: { instance: 'test' } }),
      'status instance:test last_build',
    ],
    ['deploy inst:test', 'deploy', args({ filters: { instance: 'test' } }), 'deploy instance:test'],
    [
      'cancel job:7 inst:site-a',
      'cancel',
      args({ filters: { job: '7', instance: 'site-a' } }),
      'cancel job:7 instance:site-a',
    ],
    // `for:` alone is a native build: `on:` takes the same values.
    [
      `build for:arch=${zen4}`,
      'build',
      args({ on: { architecture: zen4 }, for: { architecture: zen4 } }),
      `build for:architecture=${zen4}`,
    ],
    // `-` means `/` in architectures (EESSI spelling)
    [
      'build for:arch=x86_64-amd-zen4',
      'build',
      args({ on: { architecture: zen4 }, for: { architecture: zen4 } }),
      `build for:architecture=${zen4}`,
    ],
    // any prefix of at least 3 letters names the key inside for:/on:
    [
      'build for:arc=zen4,acc=nvidia/cc90',
      'build',
      args({
        on: { architecture: 'zen4', accelerator: 'nvidia/cc90' },
        for: { architecture: 'zen4', accelerator: 'nvidia/cc90' },
      }),
      'build for:architecture=zen4,accelerator=nvidia/cc90',
    ],
    [
      'build for:architecture=zen4,accelerator=nvidia=cc90',
      'build',
      args({
        on: { architecture: 'zen4', accelerator: 'nvidia/cc90' },
        for: { architecture: 'zen4', accelerator: 'nvidia/cc90' },
      }),
      'build for:architecture=zen4,accelerator=nvidia/cc90',
    ],
    // cross-compiling: on: and for: differ, both are shown
    [
      `build on:arch=zen4 for:arch=${zen4},accel=nvidia/cc90`,
      'build',
      args({ on: { architecture: 'zen4' }, for: { architecture: zen4, accelerator: 'nvidia/cc90' } }),
      `build on:architecture=zen4 for:architecture=${zen4},accelerator=nvidia/cc90`,
    ],
    // on: equal to for: is shown once
    [
      'build on:arch=zen4 for:arch=zen4',
      'build',
      args({ on: { architecture: 'zen4' }, for: { architecture: 'zen4' } }),
      'build for:architecture=zen4',
    ],
    // order of the tokens does not matter
    [
      'build repo:eessi-test for:arch=zen4 inst:test',
      'build',
      args({
        on: { architecture: 'zen4' },
        for: { architecture: 'zen4' },
        filters: { repository: 'eessi-test', instance: 'test' },
      }),
      'build for:architecture=zen4 repository:eessi-test instance:test',
    ],
    [
      'build for:arch=zen4 repository:eessi* instance:te* architecture:amd/* accelerator:nvidia=cc90',
      'build',
      args({
        on: { architecture: 'zen4' },
        for: { architecture: 'zen4' },
        filters: {
          repository: 'eessi*',
          instance: 'te*',
          architecture: 'amd/*',
          accelerator: 'nvidia/cc90',
        },
      }),
      'build for:architecture=zen4 repository:eessi* instance:te* architecture:amd/* accelerator:nvidia/cc90',
    ],
    // exportvariable: NAME=value, the value may hold `=`; any prefix of 3+ letters works
    [
      'build for:arch=zen4 exportvariable:EESSI_X=1 exp:B=a=b',
      'build',
      args({
        on: { architecture: 'zen4' },
        for: { architecture: 'zen4' },
        exportVariables: [
          { name: 'EESSI_X', value: '1' },
          { name: 'B', value: 'a=b' },
        ],
      }),
      'build for:architecture=zen4 exportvariable:EESSI_X=1 exportvariable:B=a=b',
    ],
    [
      'cancel job:123 repo:eessi-test arch:zen4 accel:nvidia=cc90',
      'cancel',
      args({
        filters: { job: '123', repository: 'eessi-test', architecture: 'zen4', accelerator: 'nvidia/cc90' },
      }),
      'cancel job:123 repository:eessi-test architecture:zen4 accelerator:nvidia/cc90',
    ],
    // runs of whitespace (including tabs and no-break spaces) separate tokens
    [
      'build \t for:arch=zen4\u00a0 repo:r1',
      'build',
      args({ on: { architecture: 'zen4' }, for: { architecture: 'zen4' }, filters: { repository: 'r1' } }),
      'build for:architecture=zen4 repository:r1',
    ],
  ])('%j', (line, name, expectedArgs, expanded) => {
    const parsed = ok(line);
    expect(parsed).toEqual({ ok: true, line, name, args: expectedArgs, expanded });
    // The expanded form is itself a valid command with the same meaning.
    expect(ok(expanded).args).toEqual(expectedArgs);
    expect(expandCommand(parsed.name, parsed.args)).toBe(expanded);
  });
});

describe('mistakes: each says what was wrong and shows the correct syntax', () => {
  const ONE_OF = `one of: ${Object.values(COMMAND_SYNTAX)
    .map((s) => `\`${s}\``)
    .join(', ')}`;
  test.each<[string, string, string]>([
    ['frobnicate', 'unknown command `frobnicate`', ONE_OF],
    // case-sensitive, as in the EESSI bot
    ['Help', 'unknown command `Help`', ONE_OF],
    ['BUILD for:arch=zen4', 'unknown command `BUILD`', ONE_OF],
    // names of Object.prototype are not commands
    ['toString', 'unknown command `toString`', ONE_OF],
    ['constructor', 'unknown command `constructor`', ONE_OF],
    ['__proto__', 'unknown command `__proto__`', ONE_OF],
    ['hasOwnProperty', 'unknown command `hasOwnProperty`', ONE_OF],
    ['bot: help', 'unknown command `bot:`', ONE_OF],
    ['build', 'no `for:` argument was given, so no build jobs are submitted', BUILD_SYNTAX],
    ['build on:arch=zen4', 'no `for:` argument was given', BUILD_SYNTAX],
    ['build for:', '`for:` needs at least `arch=<cpu>`', BUILD_SYNTAX],
    ['build on: for:arch=zen4', '`on:` needs at least `arch=<cpu>`', BUILD_SYNTAX],
    ['build for:arch', '`for:` item `arch` is not of the form key=value', BUILD_SYNTAX],
    ['build for:arch=', '`for:` item `arch=` is not of the form key=value', BUILD_SYNTAX],
    ['build for:=zen4', '`for:` item `=zen4` is not of the form key=value', BUILD_SYNTAX],
    ['build for:arch=zen4,', '`for:` item `` is not of the form key=value', BUILD_SYNTAX],
    ['build for:accel=nvidia/cc90', '`for:` needs `arch=<cpu>`', BUILD_SYNTAX],
    ['build for:a=zen4', 'unknown for: key `a`; use one of `arch`, `accel`', BUILD_SYNTAX],
    ['build for:ar=zen4', 'unknown for: key `ar`', BUILD_SYNTAX],
    ['build on:cpu=zen4 for:arch=zen4', 'unknown on: key `cpu`', BUILD_SYNTAX],
    [
      'build for:arch=zen4 ar:zen4',
      'unknown filter key `ar`; use one of `accel`, `arch`, `exportvariable`, `inst`, `job`, `repo`',
      BUILD_SYNTAX,
    ],
    ['build for:arch=zen4 flavour:x', 'unknown filter key `flavour`', BUILD_SYNTAX],
    ['build for:arch=zen4 repo:', 'filter `repo:` must be `component:pattern` with one colon', BUILD_SYNTAX],
    [
      'build for:arch=zen4 repo:a:b',
      'filter `repo:a:b` must be `component:pattern` with one colon',
      BUILD_SYNTAX,
    ],
    [
      'build for:arch=zen4 exportvariable:NOEQ',
      '`exportvariable:` needs NAME=value, got `NOEQ`',
      BUILD_SYNTAX,
    ],
    ['build for:arch=zen4 exportvariable:=x', '`exportvariable:` needs NAME=value, got `=x`', BUILD_SYNTAX],
    [
      'build for:arch=zen4 exportvariable:1A=x',
      '`exportvariable:` needs NAME=value, got `1A=x`',
      BUILD_SYNTAX,
    ],
    ['build for:arch=zen4 exportvariable:A-B=x', '`exportvariable:` needs NAME=value', BUILD_SYNTAX],
    ['build for:arch=zen4 last_build', 'unexpected argument `last_build`', BUILD_SYNTAX],
    ['status foo', 'unexpected argument `foo`', COMMAND_SYNTAX.status],
    ['status arch:zen4', '`status` takes no filters but `inst:`', COMMAND_SYNTAX.status],
    [
      'cancel for:arch=zen4',
      '`cancel` takes only `job:`, `repo:`, `arch:`, `accel:` and `inst:` filters',
      COMMAND_SYNTAX.cancel,
    ],
    ['cancel exportvariable:A=1', '`cancel` takes only', COMMAND_SYNTAX.cancel],
    ['cancel everything', 'unexpected argument `everything`', COMMAND_SYNTAX.cancel],
    ['cancel job:', 'filter `job:` must be', COMMAND_SYNTAX.cancel],
    ['help me', '`help` takes no arguments but `inst:`', COMMAND_SYNTAX.help],
    ['show_config arch:zen4', '`show_config` takes no arguments but `inst:`', COMMAND_SYNTAX.show_config],
    ['deploy now', '`deploy` takes no arguments but `inst:`', COMMAND_SYNTAX.deploy],
    ['deploy repo:eessi inst:test', '`deploy` takes no arguments but `inst:`', COMMAND_SYNTAX.deploy],
  ])('%j', (line, error, syntax) => {
    const parsed = bad(line);
    expect(parsed.line).toBe(line);
    expect(parsed.error).toContain(error);
    expect(parsed.syntax).toBe(syntax);
  });

  test('an error quoting a huge token quotes only its start', () => {
    const parsed = bad('x'.repeat(60_000));
    expect(parsed.error).toBe(`unknown command \`${'x'.repeat(60)}…\``);
  });
});

describe('finding the command lines of a comment', () => {
  test.each<[string, string, string[]]>([
    ['one command', 'bot: help', ['help']],
    ['no space after the colon', 'bot:help', ['help']],
    ['extra spaces', 'bot:    status   last_build  ', ['status   last_build']],
    [
      'several commands, in order',
      'bot: help\nsome text\nbot: status\nbot: show_config',
      ['help', 'status', 'show_config'],
    ],
    ['CRLF line ends', 'bot: help\r\nbot: status\r\n', ['help', 'status']],
    ['lines indented less than a code block count', '   bot: help\n  bot: status', ['help', 'status']],
    // A paragraph's continuation lines may be indented any amount (an indented code block cannot interrupt it).
    [
      'an indented continuation line of a paragraph counts',
      'Hi\n\tbot: help\n        bot: status',
      ['help', 'status'],
    ],
    ['bare `bot:` is not a command', 'bot:\nbot: \nbot:\t', []],
    ['`Bot:` and `BOT:` are not commands (case-sensitive)', 'Bot: help\nBOT: help\nbOt: help', []],
    ['`bot:` must start the line', 'please bot: help\n> bot: help\n- bot: help\n`bot: help`', []],
    ['a word ending in bot is not the prefix', 'robot: help\nxbot: help', []],
    ['`bot :` is not the prefix', 'bot : help', []],
    ['a full-width colon is not the prefix', 'bot\uff1a help', []],
    ['a no-break space after the colon is whitespace', 'bot:\u00a0help', ['help']],
    ['text around commands is ignored', 'Hi!\n\nbot: build for:arch=zen4\n\nThanks', ['build for:arch=zen4']],
  ])('%s', (_name, body, expected) => {
    expect(commandLines(body)).toEqual(expected);
  });

  // Only what a reader sees as plain text of a top-level paragraph is a command (CommonMark, as GitHub
  // renders comments). The old line-by-line regex ran every one of these hidden or quoted lines.
  test.each<[string, string, string[]]>([
    ['fenced with backticks', 'Try this:\n\n```\nbot: build for:arch=zen4\n```\n', []],
    ['fenced with tildes', '~~~sh\nbot: build for:arch=zen4\n~~~', []],
    ['a fence that is never closed runs to the end', '```\nbot: help\n\nbot: status', []],
    ['a longer fence is not closed by a shorter one', '````\n```\nbot: help\n````\nbot: status', ['status']],
    ['indented code block (4 spaces)', 'Example:\n\n    bot: build for:arch=zen4\n', []],
    ['indented code block (a tab)', '\tbot: build for:arch=zen4', []],
    ['a code span spanning lines', 'run `this\nbot: build for:arch=zen4` later', []],
    ['a block quote', '> bot: build for:arch=zen4', []],
    ['a lazy continuation line of a block quote', '> I asked for\nbot: build for:arch=zen4', []],
    ['a list item', '- bot: build for:arch=zen4\n1. bot: help', []],
    ['a second line of a list item', '- first do\n  bot: build for:arch=zen4', []],
    ['an HTML block', '<div>\nbot: build for:arch=zen4\n</div>', []],
    ['a one-line HTML comment', '<!-- bot: build for:arch=zen4 -->', []],
    // The comment's block ends with the line holding `-->`; the visible line after it counts.
    ['a multi-line HTML comment', '<!--\nhidden:\nbot: build for:arch=zen4\n-->\nbot: help', ['help']],
    ['an HTML comment opened on a line of its own', 'Hi\n<!--\nbot: build for:arch=zen4\n-->', []],
    ['an HTML comment inside a paragraph', 'see <!--\nbot: build for:arch=zen4\n--> here', []],
    ['inline HTML spanning lines', 'a <span title="\nbot: build for:arch=zen4">x</span>', []],
    ['a character reference for the colon', 'bot&#58; build for:arch=zen4\nbot&colon; help', []],
    ['a character reference for a letter', '&#98;ot: build for:arch=zen4', []],
    ['a backslash escape', 'bot\\: help', []],
    ['a setext heading', 'bot: help\n---', []],
    ['an ATX heading', '# bot: help', []],
    ['a link reference definition', '[x]: /url\n[y]: /url "\nbot: help"', []],
    ['a link title', '[docs](/d "see\nbot: build for:arch=zen4\n")', []],
    ['a link destination', '[docs](\nbot:help\n)', []],
    ['a GitHub table row', 'a | b\n--|--\nbot: help | x', []],
    ['a normal top-level command', 'bot: build for:arch=zen4', ['build for:arch=zen4']],
    [
      'a command on its own line after other paragraph text',
      'Thanks, looks good.\nbot: build for:arch=zen4\nbot: status',
      ['build for:arch=zen4', 'status'],
    ],
    ['after a hard line break', 'Thanks  \nbot: help', ['help']],
    ['after an inline comment that closed on the line before', 'a <!-- x -->\nbot: help', ['help']],
    ['after a code block', '```\ncode\n```\nbot: help', ['help']],
    ['after a block quote and a blank line', '> quoted\n\nbot: help', ['help']],
    [
      'character references later in the line are kept as written',
      'bot: build for:arch=zen4 &amp;',
      ['build for:arch=zen4 &amp;'],
    ],
    ['a byte order mark before the first line', '\ufeffbot: help\nbot: status', ['help', 'status']],
    ['a lone CR ends a line too', 'Hi\rbot: help', ['help']],
  ])('%s', (_name, body, expected) => {
    expect(commandLines(body)).toEqual(expected);
  });

  // Markdown parsers are slow or overflow their stack on some inputs; a comment is at most 65,536 characters.
  test.each<[string, string]>([
    ['emphasis delimiter runs', `${'*'.repeat(30_000)}a${'*'.repeat(30_000)}`],
    ['mixed emphasis', '*a _'.repeat(15_000)],
    ['brackets', `${'['.repeat(30_000)}${']'.repeat(30_000)}`],
    ['escaped backticks', '\\``'.repeat(20_000)],
    ['a long list of nested lists', '- a\n  - a\n'.repeat(6_000)],
    ['lines nested as deep as allowed', `${'> - '.repeat(MAX_NESTING / 2)}a\n`.repeat(900)],
  ])('hostile but readable: %s is read in under 5 s', (_name, filler) => {
    expect(commandLines(`${filler}\n\nbot: help`)).toEqual(['help']);
  });

  test.each<[string, string, number]>([
    ['one line of 20,000 `>`', '>'.repeat(20_000), 20_000],
    ['one line of 20,000 `1. `', '1. '.repeat(20_000), 20_000],
    [
      'a list nested by indentation',
      Array.from({ length: 40 }, (_, i) => `${'  '.repeat(i)}- a`).join('\n'),
      40,
    ],
    ['nesting built up by tabs', `${'- '.repeat(30)}a\n${'\t'.repeat(12)}${'- '.repeat(12)}a`, 36],
  ])('too deep to read: %s is refused at once', (_name, filler, depth) => {
    expect(nestingBound(filler)).toBe(depth);
    expect(() => commandLines(`${filler}\n\nbot: help`)).toThrow(
      new UnreadableCommentError(
        `the comment nests block quotes or lists up to ${depth} deep (at most ${MAX_NESTING} are read)`,
      ),
    );
  });

  test.each<[string, string, number]>([
    ['plain text', 'Hi\nbot: help', 0],
    ['a reply quoting a reply', '> > > old\n> > > words\n> > new', 3],
    ['a nested list', '- a\n  - b\n    - c\n  - d\n- e', 3],
    ['deep indentation without markers (code)', `\`\`\`\n${' '.repeat(200)}x\n\`\`\``, 0],
    ['YAML in a code block', '```\na:\n  - b:\n      - c\n```', 2],
  ])('nesting bound of ordinary comments: %s', (_name, body, depth) => {
    expect(nestingBound(body)).toBe(depth);
  });

  test(`50 commands: the first ${MAX_COMMANDS_PER_COMMENT} are handled and the rest counted`, () => {
    const body = Array.from({ length: 50 }, (_, i) => (i % 2 ? `bot: status` : `bot: cmd${i}`)).join('\n');
    const { commands, dropped } = parseBotCommands(body);
    expect(commands).toHaveLength(MAX_COMMANDS_PER_COMMENT);
    expect(dropped).toBe(50 - MAX_COMMANDS_PER_COMMENT);
    expect(commands[0]).toMatchObject({ ok: false, line: 'cmd0', error: 'unknown command `cmd0`' });
    expect(commands[1]).toMatchObject({ ok: true, name: 'status' });
    expect(commands.at(-1)).toMatchObject({ ok: true, line: 'status' });
  });

  test('a 60 kB comment with commands at both ends', () => {
    const filler = Array.from({ length: 1200 }, (_, i) => `line ${i} ${'lorem ipsum '.repeat(4)}`).join('\n');
    const body = `bot: help\n${filler}\nbot: status last_build\n`;
    expect(body.length).toBeGreaterThan(60_000);
    const { commands, dropped } = parseBotCommands(body);
    expect(commands.map((c) => c.ok && c.expanded)).toEqual(['help', 'status last_build']);
    expect(dropped).toBe(0);
  });

  test('a single 60 kB command line parses (and a huge filter value stays a value)', () => {
    const long = 'r'.repeat(60_000);
    const { commands } = parseBotCommands(`bot: build for:arch=zen4 repo:${long}`);
    expect(commands).toHaveLength(1);
    expect(commands[0]).toMatchObject({ ok: true, name: 'build', args: { filters: { repository: long } } });
  });

  test('unicode oddities never throw and never become commands by accident', () => {
    const odd = [
      'bot: h\u200belp', // zero-width space inside the name
      'bot: \u202ehelp', // right-to-left override
      'bot: he\u0301lp', // combining accent
      'bot: 🤖', // emoji (surrogate pair)
      'bot: \ud800', // lone surrogate
      'bot: help\u0000', // NUL
      'bot: build for:arch=zen4\u2028bot: help', // line separator inside one line
      'bot: build for:arch=zen\u0434', // Cyrillic look-alike letter in a value
      '\ufeffbot: help', // byte order mark before the prefix
      'bot: ｈｅｌｐ', // full-width letters
    ];
    const results = odd.map((line) => parseBotCommands(line));
    for (const { commands } of results) {
      for (const c of commands) {
        expect(typeof c.line).toBe('string');
        if (!c.ok) expect(c.error.length).toBeLessThan(1000);
      }
    }
    const names = results.map((r) => r.commands.map((c) => (c.ok ? c.name : `!${c.name}`)));
    expect(names).toEqual([
      ['!h\u200belp'],
      ['!\u202ehelp'],
      ['!he\u0301lp'],
      ['!🤖'],
      ['!\ud800'],
      ['!help\u0000'],
      [], // `.` does not match U+2028, so the line is not a command at all
      ['build'], // a value is a value; matching decides (and finds nothing)
      ['help'], // the BOM is whitespace to trim()
      ['!ｈｅｌｐ'],
    ]);
  });
});

describe('`inst:` on every command: which instances answer', () => {
  test.each<[string, boolean]>([
    ['build for:arch=zen4', true],
    ['build for:arch=zen4 inst:site-a', true],
    ['build for:arch=zen4 inst:site-*', true],
    ['build for:arch=zen4 inst:other-site', false],
    ['cancel inst:other-site', false],
    ['deploy inst:other-site', false],
    ['status inst:other-site', false],
    ['help inst:other-site', false],
    ['show_config instance:site-a', true],
    // A line that does not parse is answered by every instance: none can tell whom it was for.
    ['deploy now inst:other-site', true],
  ])('%j is for site-a: %j', (line, expected) => {
    expect(isForInstance(parseBotCommand(line), 'site-a')).toBe(expected);
  });

  test('commands for other instances are left out before the limit; the reply counts only ours', () => {
    const others = Array.from({ length: 30 }, () => 'bot: build for:arch=zen4 inst:other-site');
    const body = [...others, 'bot: status inst:site-a', 'bot: help'].join('\n');
    const { commands, dropped, forOtherInstances } = parseBotCommands(body, 'site-a');
    expect(commands.map((c) => c.ok && c.expanded)).toEqual(['status instance:site-a', 'help']);
    expect({ dropped, forOtherInstances }).toEqual({ dropped: 0, forOtherInstances: 30 });
    expect(parseBotCommands(body, 'other-site')).toMatchObject({ dropped: 11, forOtherInstances: 1 });
  });
});

describe('labels.default_build_command', () => {
  test.each<[string, string]>([
    ['build for:arch=zen4', 'build for:architecture=zen4'],
    ['bot: build for:arch=zen4 repo:eessi-test', 'build for:architecture=zen4 repository:eessi-test'],
    ['  bot:build for:arch=zen4  ', 'build for:architecture=zen4'],
  ])('%j is the build command %j', (text, expanded) => {
    expect(parseLabelBuildCommand(text)).toMatchObject({ ok: true, name: 'build', expanded });
  });

  test.each<[string, string]>([
    ['bot: build', 'no `for:` argument was given, so no build jobs are submitted'],
    ['build for:arch=zen4 flavour:x', 'unknown filter key `flavour`'],
    ['status', '`status` is not a build command'],
    ['bot: frobnicate', 'unknown command `frobnicate`'],
  ])('%j is refused: %s', (text, error) => {
    const parsed = parseLabelBuildCommand(text);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.error).toContain(error);
  });
});
