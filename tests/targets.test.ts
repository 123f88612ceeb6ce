/**
 * Which jobs a `bot: build` asks for (src/domain/targets.ts), as tables: the anchored component-suffix
 * matching rule, `*` globs, the GPU-node guard, repo/inst filters and the exportvariable allow-list.
 */
import { parseBotCommand } from '../src/domain/commands.js';
import { siteSchema, type SiteConfig } from '../src/config/config.js';
import { describeTargets, patternMatches, selectBuildTargets } from '../src/domain/targets.js';

describe('patternMatches: equal to the value or to a trailing run of its `/` components', () => {
  const Z4 = 'x86_64/amd/zen4';
  test.each<[string, string, boolean]>([
    ['zen4', Z4, true],
    ['amd/zen4', Z4, true],
    [Z4, Z4, true],
    // never part of a component
    ['zen', Z4, false],
    ['en4', Z4, false],
    ['zen2', 'x86_64/amd/zen20', false],
    ['zen20', 'x86_64/amd/zen2', false],
    // anchored at the end: a leading part alone does not match
    ['x86_64', Z4, false],
    ['x86_64/amd', Z4, false],
    ['x86_64/*', Z4, false],
    // longer than the value
    [`${Z4}/extra`, Z4, false],
    [`a/${Z4}`, Z4, false],
    // `*` matches within one component only
    ['*', Z4, true],
    ['zen*', Z4, true],
    ['*4', Z4, true],
    ['z*4', Z4, true],
    ['**', Z4, true],
    ['amd/*', Z4, true],
    ['x86_64/*/zen4', Z4, true],
    ['*/*/*', Z4, true],
    ['*/*/*/*', Z4, false],
    ['zen*', 'x86_64/intel/icelake', false],
    ['x86_64/*', 'x86_64/generic', true],
    // empty components never match
    ['', Z4, false],
    ['/zen4', Z4, false],
    ['amd/', Z4, false],
    ['amd//zen4', Z4, false],
    // regex metacharacters are literal
    ['zen.', Z4, false],
    ['zen[4]', Z4, false],
    ['(zen4|x)', Z4, false],
    ['zen4$', Z4, false],
    ['.*', Z4, false],
    ['zen4.', 'x86_64/amd/zen4.', true],
    // accelerators and repo ids use the same rule
    ['nvidia/cc90', 'nvidia/cc90', true],
    ['cc90', 'nvidia/cc90', true],
    ['cc9', 'nvidia/cc90', false],
    ['cc9*', 'nvidia/cc90', true],
    ['eessi-*', 'eessi-2023.06', true],
    ['2023.06', 'eessi-2023.06', false],
    ['EESSI-2023.06', 'eessi-2023.06', false], // case-sensitive
  ])('%j against %j → %j', (pattern, value, expected) => {
    expect(patternMatches(pattern, value)).toBe(expected);
  });
});

function siteConfig(build: Record<string, unknown> = {}, instance = 'test'): SiteConfig {
  return siteSchema.parse({
    instance,
    jobdirs: '/nonexistent',
    build: {
      node_types: {
        cpu_zen4: { cpu_subdir: 'x86_64/amd/zen4', repo_targets: ['eessi-2023.06', 'eessi-2025.06'] },
        cpu_zen2: { cpu_subdir: 'x86_64/amd/zen2', repo_targets: ['eessi-2023.06'] },
        cpu_zen20: { cpu_subdir: 'x86_64/amd/zen20', repo_targets: ['eessi-2023.06'] },
        cpu_icelake: { cpu_subdir: 'x86_64/intel/icelake', repo_targets: ['eessi-2023.06'] },
        arm_v1: {
          cpu_subdir: 'aarch64/neoverse_v1',
          repo_targets: ['eessi-2023.06'],
          slurm_params: ['--partition=arm'],
        },
        gpu_cc90: {
          cpu_subdir: 'x86_64/amd/zen4',
          accel: 'nvidia/cc90',
          repo_targets: ['eessi-2023.06'],
          slurm_params: ['--gpus=1'],
        },
        gpu_cc80: {
          cpu_subdir: 'x86_64/intel/icelake',
          accel: 'nvidia/cc80',
          repo_targets: ['eessi-2023.06'],
        },
      },
      allowed_exportvars: ['EESSI_SOFTWARE_SUBDIR_OVERRIDE=x86_64/amd/zen4', 'DEBUG=1'],
      ...build,
    },
  });
}

/** `node_type/repo_id for:<forArch>[,<forAccel>]` for each selected target, sorted. */
function select(line: string, config: SiteConfig = siteConfig()): string[] | string {
  const cmd = parseBotCommand(line);
  if (!cmd.ok) throw new Error(`${line}: ${cmd.error}`);
  const sel = selectBuildTargets(cmd.args, config);
  if (!sel.ok) return sel.reason;
  return sel.targets
    .map((t) => `${t.nodeType}/${t.repoId} for:${t.forArch}${t.forAccel ? `,${t.forAccel}` : ''}`)
    .sort();
}

const ZEN4_BOTH = [
  'cpu_zen4/eessi-2023.06 for:x86_64/amd/zen4',
  'cpu_zen4/eessi-2025.06 for:x86_64/amd/zen4',
];

describe('selectBuildTargets: one job per matching node type × repo target', () => {
  test.each<[string, string[]]>([
    // native builds: `for:` alone, in any short form, builds for the node's full CPU path
    ['build for:arch=zen4', ZEN4_BOTH],
    ['build for:arch=amd/zen4', ZEN4_BOTH],
    ['build for:arch=x86_64/amd/zen4', ZEN4_BOTH],
    ['build for:arch=x86_64-amd-zen4', ZEN4_BOTH],
    ['build for:arch=zen', []],
    ['build for:arch=en4', []],
    ['build for:arch=zen2', ['cpu_zen2/eessi-2023.06 for:x86_64/amd/zen2']],
    [
      'build for:arch=zen*',
      [
        ...ZEN4_BOTH,
        'cpu_zen2/eessi-2023.06 for:x86_64/amd/zen2',
        'cpu_zen20/eessi-2023.06 for:x86_64/amd/zen20',
      ].sort(),
    ],
    ['build for:arch=x86_64/*/zen4', ZEN4_BOTH],
    ['build for:arch=intel/*', ['cpu_icelake/eessi-2023.06 for:x86_64/intel/icelake']],
    [
      'build for:arch=*',
      [
        ...ZEN4_BOTH,
        'cpu_zen2/eessi-2023.06 for:x86_64/amd/zen2',
        'cpu_zen20/eessi-2023.06 for:x86_64/amd/zen20',
        'cpu_icelake/eessi-2023.06 for:x86_64/intel/icelake',
        'arm_v1/eessi-2023.06 for:aarch64/neoverse_v1',
      ].sort(),
    ],
    ['build for:arch=x86_64/amd/zen4/extra', []],
    ['build for:arch=riscv64/generic', []],
    // GPU-node guard: GPU nodes only when an accelerator is asked for, and then only GPU nodes
    ['build for:arch=zen4,accel=nvidia/cc90', ['gpu_cc90/eessi-2023.06 for:x86_64/amd/zen4,nvidia/cc90']],
    // ... and, like the CPU, a native accelerator is the node's full one
    ['build for:arch=zen4,accel=cc90', ['gpu_cc90/eessi-2023.06 for:x86_64/amd/zen4,nvidia/cc90']],
    ['build for:arch=zen4,accel=nvidia=cc90', ['gpu_cc90/eessi-2023.06 for:x86_64/amd/zen4,nvidia/cc90']],
    ['build for:arch=zen4,accel=nvidia/cc80', []],
    ['build for:arch=icelake,accel=cc80', ['gpu_cc80/eessi-2023.06 for:x86_64/intel/icelake,nvidia/cc80']],
    ['build for:arch=zen4,accel=nvidia/*', ['gpu_cc90/eessi-2023.06 for:x86_64/amd/zen4,nvidia/cc90']],
    [
      'build for:arch=*,accel=nvidia/*',
      [
        'gpu_cc80/eessi-2023.06 for:x86_64/intel/icelake,nvidia/cc80',
        'gpu_cc90/eessi-2023.06 for:x86_64/amd/zen4,nvidia/cc90',
      ],
    ],
    // an accel: filter also asks for a GPU node
    ['build for:arch=zen4 accel:cc90', ['gpu_cc90/eessi-2023.06 for:x86_64/amd/zen4']],
    ['build for:arch=zen4 accel:cc80', []],
    // cross-compiling: on: picks the node, for: is used as given
    [
      'build on:arch=zen4 for:arch=x86_64/amd/zen4,accel=nvidia/cc90',
      [
        'cpu_zen4/eessi-2023.06 for:x86_64/amd/zen4,nvidia/cc90',
        'cpu_zen4/eessi-2025.06 for:x86_64/amd/zen4,nvidia/cc90',
      ],
    ],
    [
      'build on:arch=zen4,accel=cc90 for:arch=x86_64/amd/zen4,accel=nvidia/cc90',
      ['gpu_cc90/eessi-2023.06 for:x86_64/amd/zen4,nvidia/cc90'],
    ],
    [
      'build on:arch=zen4 for:arch=x86_64/amd/zen3',
      ['cpu_zen4/eessi-2023.06 for:x86_64/amd/zen3', 'cpu_zen4/eessi-2025.06 for:x86_64/amd/zen3'],
    ],
    ['build on:arch=neoverse_v1 for:arch=aarch64/generic', ['arm_v1/eessi-2023.06 for:aarch64/generic']],
    // the accelerator of a cross build is used as given, too
    [
      'build on:arch=zen4,accel=cc90 for:arch=x86_64/amd/zen4,accel=nvidia/cc80',
      ['gpu_cc90/eessi-2023.06 for:x86_64/amd/zen4,nvidia/cc80'],
    ],
    // repo: and arch: filters narrow the selection
    ['build for:arch=zen4 repo:eessi-2023.06', ['cpu_zen4/eessi-2023.06 for:x86_64/amd/zen4']],
    ['build for:arch=zen4 repo:eessi-*', ZEN4_BOTH],
    ['build for:arch=zen4 repo:2023.06', []],
    ['build for:arch=zen4 repo:eessi', []],
    ['build for:arch=zen4 arch:amd/zen4', ZEN4_BOTH],
    ['build for:arch=zen4 arch:zen2', []],
    ['build for:arch=zen* arch:zen2', ['cpu_zen2/eessi-2023.06 for:x86_64/amd/zen2']],
    // inst: names this instance or nothing is built here (another instance may match)
    ['build for:arch=zen4 inst:test', ZEN4_BOTH],
    ['build for:arch=zen4 inst:t*', ZEN4_BOTH],
    ['build for:arch=zen4 inst:prod', []],
    ['build for:arch=zen4 inst:tes', []],
  ])('%j', (line, expected) => {
    expect(select(line)).toEqual(expected);
  });

  test('a target carries the node type, its OS, CPU, accelerator and Slurm parameters', () => {
    const cmd = parseBotCommand('build for:arch=zen4,accel=cc90');
    if (!cmd.ok) throw new Error(cmd.error);
    expect(selectBuildTargets(cmd.args, siteConfig())).toEqual({
      ok: true,
      exportVariables: [],
      targets: [
        {
          nodeType: 'gpu_cc90',
          repoId: 'eessi-2023.06',
          os: 'linux',
          onArch: 'x86_64/amd/zen4',
          onAccel: 'nvidia/cc90',
          forArch: 'x86_64/amd/zen4',
          forAccel: 'nvidia/cc90',
          slurmParams: ['--gpus=1'],
        },
      ],
    });
  });

  test('an instance without node types selects nothing', () => {
    expect(select('build for:arch=*', siteConfig({ node_types: {} }))).toEqual([]);
  });
});

describe('a cross build needs exact for: values', () => {
  test.each<[string, string]>([
    [
      'build on:arch=zen4 for:arch=x86_64/amd/*',
      '`x86_64/amd/*`: `for:` needs exact values (no `*`) when `on:` names other hardware',
    ],
    [
      'build on:arch=zen4 for:arch=x86_64/amd/zen4,accel=nvidia/*',
      '`nvidia/*`: `for:` needs exact values (no `*`) when `on:` names other hardware',
    ],
  ])('%j', (line, reason) => {
    expect(select(line)).toBe(reason);
  });
});

describe('exportvariable: only NAME=value pairs on the allow-list', () => {
  test.each<[string, string[] | string]>([
    ['build for:arch=zen4 exportvariable:DEBUG=1', ZEN4_BOTH],
    [
      'build for:arch=zen4 exportvariable:EESSI_SOFTWARE_SUBDIR_OVERRIDE=x86_64/amd/zen4 exportvariable:DEBUG=1',
      ZEN4_BOTH,
    ],
    [
      'build for:arch=zen4 exportvariable:DEBUG=2',
      'export variable(s) `DEBUG=2` not allowed here; allowed: `EESSI_SOFTWARE_SUBDIR_OVERRIDE=x86_64/amd/zen4`, `DEBUG=1`',
    ],
    [
      'build for:arch=zen4 exportvariable:DEBUG=1 exportvariable:LD_PRELOAD=/tmp/x.so exportvariable:debug=1',
      'export variable(s) `LD_PRELOAD=/tmp/x.so`, `debug=1` not allowed here; allowed: `EESSI_SOFTWARE_SUBDIR_OVERRIDE=x86_64/amd/zen4`, `DEBUG=1`',
    ],
    // the allow-list is checked even when no node would match
    [
      'build for:arch=zen9 exportvariable:X=1',
      expect.stringContaining('`X=1` not allowed here') as unknown as string,
    ],
  ])('%j', (line, expected) => {
    expect(select(line)).toEqual(expected);
  });

  test('the allowed variables are passed on with the targets', () => {
    const cmd = parseBotCommand('build for:arch=zen2 exportvariable:DEBUG=1');
    if (!cmd.ok) throw new Error(cmd.error);
    const sel = selectBuildTargets(cmd.args, siteConfig());
    expect(sel).toMatchObject({ ok: true, exportVariables: [{ name: 'DEBUG', value: '1' }] });
  });

  test('an instance that allows none says so', () => {
    expect(select('build for:arch=zen4 exportvariable:DEBUG=1', siteConfig({ allowed_exportvars: [] }))).toBe(
      'export variable(s) `DEBUG=1` not allowed here; this instance allows none',
    );
  });
});

test('describeTargets lists every node type for the "no match" reply', () => {
  const config = siteConfig({
    node_types: {
      zen4: { cpu_subdir: 'x86_64/amd/zen4', repo_targets: ['a', 'b'] },
      gpu: { cpu_subdir: 'x86_64/amd/zen3', accel: 'nvidia/cc80', repo_targets: ['a'] },
    },
  });
  expect(describeTargets(config)).toEqual([
    '`zen4`: on:arch=x86_64/amd/zen4 (repositories: a, b)',
    '`gpu`: on:arch=x86_64/amd/zen3,accel=nvidia/cc80 (repositories: a)',
  ]);
});
