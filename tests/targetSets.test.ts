/**
 * Named target sets (`target_sets:` in site.yaml, `for:set=<name>`) and multi-accelerator targets
 * (`accel=nvidia/cc70+nvidia/cc90`): expansion, the config check (cycles, unknown names, bad lines, with
 * key path and line), target selection, job.cfg, and `help`/`show_config`/`build` through the poller.
 */
import { ConfigError, parseConfig, siteSchema } from '../src/config/config.js';
import { parseBotCommand, type CommandArgs } from '../src/domain/commands.js';
import { renderJobCfg } from '../src/domain/jobConfig.js';
import { expandTargetSet, TargetSetError, targetSetProblems } from '../src/domain/targetSets.js';
import { selectBuildTargets } from '../src/domain/targets.js';
import type { JobData } from '../src/store/job.js';
import { runTick } from '../src/poller.js';
import {
  jobDirsOf,
  OWNER,
  PR,
  REPO,
  startHarness,
  stateOf,
  storeComment,
  type Harness,
} from './support/botHarness.js';

const SETS = {
  'all-cpu': ['for:arch=x86_64/amd/zen4', 'for:arch=x86_64/intel/icelake'],
  'all-gpu': [
    'for:arch=x86_64/amd/zen3,accel=nvidia/cc80',
    'on:arch=zen4 for:arch=x86_64/amd/zen4,accel=nvidia/cc90',
  ],
  everything: ['for:set=all-cpu', 'for:set=all-gpu', 'for:arch=x86_64/amd/zen4'],
};

describe('expandTargetSet', () => {
  test('nested sets expand in order, each distinct line once', () => {
    expect(expandTargetSet(SETS, 'everything').map((l) => l.line)).toEqual([
      'for:arch=x86_64/amd/zen4',
      'for:arch=x86_64/intel/icelake',
      'for:arch=x86_64/amd/zen3,accel=nvidia/cc80',
      'on:arch=zen4 for:arch=x86_64/amd/zen4,accel=nvidia/cc90',
    ]);
    const cross = expandTargetSet(SETS, 'all-gpu')[1]!;
    expect(cross.on).toEqual({ architecture: 'zen4' });
    expect(cross.for).toEqual({ architecture: 'x86_64/amd/zen4', accelerator: 'nvidia/cc90' });
  });

  test('an unknown name and a cycle are TargetSetErrors that say which', () => {
    expect(() => expandTargetSet(SETS, 'nope')).toThrow(
      new TargetSetError('unknown target set "nope"; known sets: all-cpu, all-gpu, everything'),
    );
    const cyclic = { a: ['for:set=b'], b: ['for:arch=zen4', 'for:set=a'] };
    expect(() => expandTargetSet(cyclic, 'a')).toThrow(new TargetSetError('cycle of target sets: a → b → a'));
  });

  test('a set named twice without a cycle (a diamond) is fine', () => {
    const diamond = {
      base: ['for:arch=zen4'],
      l: ['for:set=base'],
      r: ['for:set=base'],
      top: ['for:set=l', 'for:set=r'],
    };
    expect(targetSetProblems(diamond)).toEqual([]);
    expect(expandTargetSet(diamond, 'top')).toHaveLength(1);
  });
});

describe('config check of target_sets', () => {
  const base = 'instance: t\njobdirs: /tmp/x\n';
  const problemsOf = (yaml: string) => {
    try {
      parseConfig(base + yaml, 'site.yaml');
    } catch (err) {
      if (err instanceof ConfigError) return err.problems;
      throw err;
    }
    return [];
  };

  test('a cycle is reported at the set, with its line', () => {
    expect(problemsOf('target_sets:\n  a:\n    - for:set=b\n  b:\n    - for:set=a\n')).toEqual([
      { line: 4, keyPath: 'target_sets.a', message: 'cycle of target sets: a → b → a' },
      { line: 6, keyPath: 'target_sets.b', message: 'cycle of target sets: b → a → b' },
    ]);
  });

  test('an unknown set name and a line that is not on:/for: are reported at the line', () => {
    const problems = problemsOf(
      'target_sets:\n  gpu:\n    - for:arch=zen4\n    - for:set=cpu\n    - for:arch=zen4 repo:eessi\n',
    );
    expect(problems).toEqual([
      { line: 6, keyPath: 'target_sets.gpu.1', message: 'names the unknown set "cpu"; sets are: gpu' },
      {
        line: 7,
        keyPath: 'target_sets.gpu.2',
        message: 'a target set line has only `on:` and `for:`, e.g. `for:arch=x86_64/amd/zen4`',
      },
    ]);
    expect(problemsOf('target_sets:\n  gpu: []\n')[0]).toMatchObject({ keyPath: 'target_sets.gpu', line: 4 });
    expect(problemsOf('target_sets:\n  "bad name":\n    - for:arch=zen4\n')[0]).toMatchObject({
      keyPath: 'target_sets.bad name',
    });
  });

  test('accel_multi is a boolean of a node type', () => {
    expect(
      problemsOf(
        'build:\n  node_types:\n    g:\n      cpu_subdir: x86_64/amd/zen4\n      accel: nvidia/cc90\n      accel_multi: "yes"\n      repo_targets: [r]\n',
      )[0],
    ).toMatchObject({ keyPath: 'build.node_types.g.accel_multi', line: 8 });
  });
});

const config = siteSchema.parse({
  instance: 'site',
  jobdirs: '/tmp/x',
  target_sets: SETS,
  build: {
    node_types: {
      zen4: { cpu_subdir: 'x86_64/amd/zen4', repo_targets: ['eessi'] },
      icelake: { cpu_subdir: 'x86_64/intel/icelake', repo_targets: ['eessi'] },
      zen4_cc90: { cpu_subdir: 'x86_64/amd/zen4', accel: 'nvidia/cc90', repo_targets: ['eessi'] },
      zen4_multi: {
        cpu_subdir: 'x86_64/amd/zen4',
        accel: 'amd/gfx90a',
        accel_multi: true,
        repo_targets: ['eessi'],
      },
    },
  },
});

function args(line: string): CommandArgs {
  const cmd = parseBotCommand(line);
  if (!cmd.ok) throw new Error(cmd.error);
  return cmd.args;
}

const summary = (line: string) => {
  const s = selectBuildTargets(args(line), config);
  if (!s.ok) return s.reason;
  return s.targets.map((t) => `${t.nodeType}: ${t.forArch}${t.forAccel ? ` ${t.forAccel}` : ''}`);
};

describe('for:set= in commands', () => {
  test('parses, keeps the set in the expanded form, and refuses on: and other items', () => {
    const ok = parseBotCommand('build for:set=all-gpu repo:eessi');
    expect(ok).toMatchObject({ ok: true, expanded: 'build for:set=all-gpu repository:eessi' });
    expect(parseBotCommand('build on:arch=zen4 for:set=all-gpu')).toMatchObject({
      ok: false,
      error: '`for:set=<name>` takes no `on:`: each line of the set says where to build',
    });
    expect(parseBotCommand('build for:set=a,arch=zen4')).toMatchObject({
      ok: false,
      error: '`for:set=<name>` takes no other items: the set says what to build for',
    });
    expect(parseBotCommand('build on:set=a for:arch=zen4')).toMatchObject({ ok: false });
  });

  test('selects the targets of every line once, cross-builds included; an unknown set is refused', () => {
    expect(summary('build for:set=everything')).toEqual([
      'zen4: x86_64/amd/zen4',
      'icelake: x86_64/intel/icelake',
      'zen4: x86_64/amd/zen4 nvidia/cc90',
    ]);
    expect(summary('build for:set=nope')).toBe(
      'unknown target set "nope"; known sets: all-cpu, all-gpu, everything',
    );
  });
});

describe('multi-accelerator targets', () => {
  test('one job per node type that has one of the accelerators or accel_multi, not one per accelerator', () => {
    expect(summary('build for:arch=x86_64/amd/zen4,accel=nvidia/cc70+nvidia/cc90')).toEqual([
      'zen4_cc90: x86_64/amd/zen4 nvidia/cc70+nvidia/cc90',
      'zen4_multi: x86_64/amd/zen4 nvidia/cc70+nvidia/cc90',
    ]);
    // No node provides cc70 nor cc80, but the accel_multi one builds any combination.
    expect(summary('build for:arch=zen4,accel=nvidia=cc70+nvidia=cc80')).toEqual([
      'zen4_multi: x86_64/amd/zen4 nvidia/cc70+nvidia/cc80',
    ]);
    // A CPU node never does.
    expect(
      summary('build on:arch=icelake for:arch=x86_64/intel/icelake,accel=nvidia/cc70+nvidia/cc90'),
    ).toEqual([]);
  });

  test('globs and empty parts are refused', () => {
    expect(summary('build for:arch=zen4,accel=nvidia/cc*+nvidia/cc90')).toBe(
      '`nvidia/cc*+nvidia/cc90`: a multi-accelerator target needs exact values (no `*`)',
    );
    expect(parseBotCommand('build for:arch=zen4,accel=nvidia/cc70+')).toMatchObject({ ok: false });
  });

  test('job.cfg gets the accelerators joined with +, as the EESSI scripts expect', () => {
    const s = selectBuildTargets(args('build for:arch=zen4,accel=nvidia/cc70+nvidia/cc90'), config);
    if (!s.ok) throw new Error(s.reason);
    const cfg = renderJobCfg(config.build.site_config, s.targets[0]!, '/job/cfg', {});
    expect(cfg).toContain('accelerator = nvidia/cc70+nvidia/cc90\n');
  });
});

describe('through the poller', () => {
  let h: Harness;
  const yaml = [
    '    zen4_cc90:',
    '      cpu_subdir: x86_64/amd/zen4',
    '      accel: nvidia/cc90',
    '      repo_targets: [eessi-test]',
    'target_sets:',
    '  gpu:',
    '    - for:arch=zen4,accel=nvidia/cc90',
    '  all:',
    '    - for:arch=zen4',
    '    - for:set=gpu',
  ].join('\n');

  beforeEach(async () => {
    h = await startHarness(yaml);
  });
  afterEach(async () => {
    await h.stop();
  });

  const lastReply = () => h.fake.commentsOf(OWNER, REPO, PR).at(-1)!.body;

  test('help lists the sets, show_config shows them expanded', async () => {
    await storeComment(h, 'bot: help\nbot: show_config');
    await runTick(h.deps);
    const body = lastReply();
    expect(body).toContain(
      '- target sets of this instance (`bot: build for:set=<name>`):\n' +
        '    - `for:set=gpu`: `for:arch=zen4,accel=nvidia/cc90`\n' +
        '    - `for:set=all`: `for:arch=zen4`, `for:set=gpu`',
    );
    expect(body).toContain(
      '  - target set `all`:\n' +
        '    - `for:architecture=zen4`\n' +
        '    - `for:architecture=zen4,accelerator=nvidia/cc90`',
    );
  });

  test('build for:set= prepares one job per target of the set', async () => {
    await storeComment(h, 'bot: build for:set=all');
    await runTick(h.deps);
    const targets = await Promise.all(
      (await jobDirsOf(h)).map(async (d) => (await stateOf<JobData>(d)).data.target),
    );
    expect(targets.map((t) => [t.nodeType, t.forArch, t.forAccel])).toEqual(
      expect.arrayContaining([
        ['zen4', 'x86_64/amd/zen4', undefined],
        ['zen4_cc90', 'x86_64/amd/zen4', 'nvidia/cc90'],
      ]),
    );
    expect(targets).toHaveLength(2);
  });
});
