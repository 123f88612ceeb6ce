/** The PBS backend's pure parts on qstat output written from the PBS Professional and Torque docs. */
import path from 'node:path';
import { pbsDateTime, qsubArgs, type PbsSettings } from '../src/adapters/schedulers/pbs.js';
import {
  observationOf,
  parseQstatJson,
  parseQstatText,
  parseQsubOutput,
  PbsOutputError,
  type PbsFlavour,
  type PbsJob,
} from '../src/adapters/schedulers/pbsParse.js';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { ConfigError, parseConfig } from '../src/config/config.js';
import { checkOnline } from '../src/config/onlineCheck.js';
import { checkSite, PBS_COMMANDS } from '../src/config/siteCheck.js';
import { submitParams } from '../src/adapters/schedulers/index.js';
import { jobTimeLimit } from '../src/domain/jobComment.js';
import { ROOT } from './support/spawn.js';

/** A fixture without its `#` header lines (which cite the documentation it follows). */
function fixture(name: string): string {
  const text = readFileSync(path.join(ROOT, 'tests/fixtures/pbs', name), 'utf8');
  return text
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .join('\n');
}

function observations(flavour: PbsFlavour, jobs: PbsJob[]) {
  return Object.fromEntries(
    jobs.map((j) => {
      const { jobId: _id, ...o } = observationOf(flavour, j);
      return [j.id, o];
    }),
  );
}

describe('qstat -x -f -F json (PBS Professional / OpenPBS)', () => {
  test('every active state maps to the Slurm observation the stages know, held with its hold type', () => {
    const jobs = parseQstatJson(fixture('pbspro-active.json.txt'));
    expect(observations('pbspro', jobs)).toEqual({
      '101.pbs01': { state: 'PENDING', final: false, held: false },
      '102.pbs01': { state: 'PENDING', final: false, held: true, reason: 'JobHeldUser' },
      '103.pbs01': { state: 'PENDING', final: false, held: true, reason: 'JobHeldAdmin' },
      '104.pbs01': { state: 'PENDING', final: false, held: false, reason: 'BeginTime' },
      '105.pbs01': { state: 'RUNNING', final: false, held: false },
      '106.pbs01': { state: 'COMPLETING', final: false, held: false },
      '107.pbs01': { state: 'SUSPENDED', final: false, held: false },
      '108.pbs01': { state: 'SUSPENDED', final: false, held: false },
      '109.pbs01': { state: 'PENDING', final: false, held: false },
      '110[].pbs01': { state: 'RUNNING', final: false, held: false },
    });
    expect(jobs[0]).toMatchObject({
      name: 'hpcbot-site',
      variables: {
        HPCBOT_SUBMIT_ID: '11111111-aaaa-4bbb-8ccc-000000000101',
        PBS_O_WORKDIR: '/jobs/o/r/pr_1/run_1/work',
      },
    });
  });

  test('finished jobs: exit status, the special negative codes and qdel (substate 91)', () => {
    const jobs = parseQstatJson(fixture('pbspro-finished.json.txt'));
    expect(observations('pbspro', jobs)).toEqual({
      '201.pbs01': { state: 'COMPLETED', exitCode: '0:0', final: true },
      '202.pbs01': { state: 'FAILED', exitCode: '3:0', final: true },
      '203.pbs01': { state: 'TIMEOUT', exitCode: '-29:0', final: true },
      '204.pbs01': { state: 'OUT_OF_MEMORY', exitCode: '-27:0', final: true },
      '205.pbs01': { state: 'NODE_FAIL', exitCode: '-20:0', final: true },
      '206.pbs01': { state: 'CANCELLED', exitCode: '0:15', final: true },
      '207.pbs01': { state: 'CANCELLED', final: true },
      '208.pbs01': { state: 'FAILED', exitCode: '0:9', final: true },
      '209.pbs01': { state: 'NODE_FAIL', exitCode: '-4:0', final: true },
      '210.pbs01': { state: 'OUT_OF_MEMORY', exitCode: '-26:0', final: true },
      '211[1].pbs01': { state: 'COMPLETED', exitCode: '0:0', final: true },
      '212.pbs01': { state: 'FAILED', exitCode: '-1:0', final: true },
    });
  });

  test('no matching job: no "Jobs" key, no jobs', () => {
    expect(parseQstatJson(fixture('pbspro-none.json.txt'))).toEqual([]);
  });

  test('output that is not qstat JSON is an error (the tick then changes nothing), not "no jobs"', () => {
    expect(() => parseQstatJson('qstat: cannot connect to server pbs01 (errno=111)')).toThrow(PbsOutputError);
    expect(() => parseQstatJson('{"Jobs":{"1.s":{"Job_Name":"x"}}}')).toThrow(/no job_state/);
  });
});

describe('qstat -f (Torque)', () => {
  test('states, exit statuses and the Torque exit codes; Variable_List across continuation lines', () => {
    const jobs = parseQstatText(fixture('torque-full.txt'));
    const short = (id: string) => id.replace('.torque01.example.org', '');
    expect(
      Object.fromEntries(Object.entries(observations('torque', jobs)).map(([k, v]) => [short(k), v])),
    ).toEqual({
      '301': { state: 'PENDING', final: false, held: false },
      '302': { state: 'PENDING', final: false, held: true, reason: 'JobHeldUser' },
      '303': { state: 'PENDING', final: false, held: false, reason: 'BeginTime' },
      '304': { state: 'RUNNING', final: false, held: false },
      '305': { state: 'COMPLETING', final: false, held: false },
      '306': { state: 'COMPLETED', exitCode: '0:0', final: true },
      '307': { state: 'FAILED', exitCode: '2:0', final: true },
      '308': { state: 'TIMEOUT', exitCode: '-11:0', final: true },
      '309': { state: 'OUT_OF_MEMORY', exitCode: '-10:0', final: true },
      '310': { state: 'NODE_FAIL', exitCode: '-4:0', final: true },
      '311': { state: 'CANCELLED', exitCode: '0:15', final: true },
      '312': { state: 'FAILED', exitCode: '-1:0', final: true },
      '313': { state: 'SUSPENDED', final: false, held: false },
      '314': { state: 'PENDING', final: false, held: false },
    });
    expect(jobs[0]!.variables).toMatchObject({
      HPCBOT_SUBMIT_ID: '44444444-aaaa-4bbb-8ccc-000000000301',
      PBS_O_WORKDIR: '/jobs/o/r/pr_1/run_1/work',
      HPCBOT_JOB_SCRIPT: '/opt/hpcbot/scripts/bot-build.slurm',
    });
  });

  test("a completed job without exit_status (Slurm's Torque wrapper) is FINISHED, not a success", () => {
    const [j] = parseQstatText('Job Id:\t42\n\tJob_Name = hpcbot-t\n\tjob_state = C\n\tqueue = debug\n\n');
    expect(observationOf('torque', j!)).toEqual({ jobId: '42', state: 'FINISHED', final: true });
  });

  test('the same exit status means what each flavour says: 271 and -11', () => {
    const j = (exitStatus: number): PbsJob => ({ id: '1', state: 'F', exitStatus, variables: {} });
    expect(observationOf('torque', { ...j(271), state: 'C' }).state).toBe('CANCELLED');
    expect(observationOf('pbspro', j(271)).state).toBe('FAILED');
    expect(observationOf('torque', { ...j(-11), state: 'C' }).state).toBe('TIMEOUT');
    expect(observationOf('pbspro', j(-11)).state).toBe('FAILED'); // JOB_EXEC_RERUN on PBS Pro
  });
});

describe('qsub', () => {
  const settings: PbsSettings = {
    flavour: 'pbspro',
    handover: 'hold_release',
    default_walltime: '24:00:00',
    delay_begin_seconds: 20,
    jobName: 'hpcbot-site',
    wrapper: '/opt/hpcbot/scripts/pbs-job.sh',
    env: {},
    account: { name: undefined } as unknown as PbsSettings['account'],
  };
  const req = {
    workTree: '/jobs/w',
    script: '/opt/hpcbot/scripts/bot-build.slurm',
    jobName: 'hpcbot-site',
    submitId: '55555555-aaaa-4bbb-8ccc-000000000001',
    params: ['-q', 'gpu', '-l', 'select=1:ncpus=16'],
  };
  const now = new Date(2026, 10, 28, 3, 59, 50);

  test('hold_release: -h, default walltime, params, name, submit id and script as variables, the wrapper', () => {
    expect(qsubArgs(req, settings, now)).toEqual([
      '-h',
      '-l',
      'walltime=24:00:00',
      '-q',
      'gpu',
      '-l',
      'select=1:ncpus=16',
      '-N',
      'hpcbot-site',
      '-V',
      '-v',
      'HPCBOT_SUBMIT_ID=55555555-aaaa-4bbb-8ccc-000000000001,HPCBOT_JOB_SCRIPT=/opt/hpcbot/scripts/bot-build.slurm',
      '-j',
      'oe',
      '-o',
      '/dev/null',
      '/opt/hpcbot/scripts/pbs-job.sh',
    ]);
  });

  test('delayed_begin: -a in [[CC]YY]MMDDhhmm.SS, delay seconds from now; a walltime in params wins', () => {
    const args = qsubArgs(
      { ...req, params: ['-l', 'walltime=01:00:00'] },
      { ...settings, handover: 'delayed_begin' },
      now,
    );
    expect(args.slice(0, 4)).toEqual(['-a', '202611280400.10', '-l', 'walltime=01:00:00']);
    expect(args.filter((a) => a.startsWith('walltime='))).toHaveLength(1);
    expect(pbsDateTime(new Date(2027, 0, 2, 3, 4, 5))).toBe('202701020304.05');
  });

  test('a value qsub -v would split or a shell would read is refused', () => {
    expect(() => qsubArgs({ ...req, script: '/opt/my scripts/x,y.sh' }, settings, now)).toThrow(
      /cannot be passed to qsub -v/,
    );
  });

  test('the job id qsub prints: PBS Pro, Torque, Slurm wrapper; anything else is no id', () => {
    expect(parseQsubOutput('1234.pbs01\n')).toBe('1234.pbs01');
    expect(parseQsubOutput('77.torque01.example.org\n')).toBe('77.torque01.example.org');
    expect(parseQsubOutput('81\n')).toBe('81');
    expect(parseQsubOutput('There was an error running the Slurm sbatch command.\n')).toBeUndefined();
    expect(parseQsubOutput('')).toBeUndefined();
  });
});

describe('site.yaml backend.pbs', () => {
  const yaml = (pbs: string, node = '') =>
    [
      'instance: site',
      'jobdirs: /tmp/jobs',
      'backend:',
      '  kind: pbs',
      '  pbs:',
      pbs,
      'build:',
      '  node_types:',
      '    zen4:',
      '      cpu_subdir: x86_64/amd/zen4',
      '      repo_targets: [eessi]',
      node,
    ].join('\n');

  test('defaults, and the qsub params of the site and the node type in that order', () => {
    const config = parseConfig(
      yaml('    qsub_params: ["-q", "gpu"]', '      pbs_params: ["-l", "select=1:ncpus=16"]'),
      'site.yaml',
    );
    expect(config.backend.pbs).toMatchObject({
      flavour: 'pbspro',
      handover: 'hold_release',
      default_walltime: '24:00:00',
      job_name_prefix: 'hpcbot',
    });
    const target = { slurmParams: [], pbsParams: config.build.node_types.zen4!.pbs_params };
    expect(submitParams(config, target)).toEqual(['-q', 'gpu', '-l', 'select=1:ncpus=16']);
    // A TIMEOUT names the walltime: the default, or the one the params give.
    const target2 = { ...target, pbsParams: ['-l', 'select=1:ncpus=4,walltime=02:00:00'] };
    expect(jobTimeLimit(config, { target } as never)).toBe('24:00:00');
    expect(jobTimeLimit(config, { target: target2 } as never)).toBe('02:00:00');
  });

  test('options the bot sets itself, an unknown flavour and a bad walltime are errors with key path and line', () => {
    let err: unknown;
    try {
      parseConfig(
        yaml('    flavour: lsf\n    default_walltime: 1h\n    qsub_params: ["-N", "mine"]'),
        'site.yaml',
      );
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const problems = Object.fromEntries((err as ConfigError).problems.map((p) => [p.keyPath, p]));
    expect(problems['backend.pbs.flavour']?.line).toBe(6);
    expect(problems['backend.pbs.default_walltime']?.message).toMatch(/\[DD:\]HH:MM:SS/);
    expect(problems['backend.pbs.qsub_params.0']?.message).toMatch(/-N is set by the bot/);
    expect(problems['backend.pbs.qsub_params.0']?.line).toBe(8);
  });
});

describe('config check for backend.kind: pbs', () => {
  const config = () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'hpcbot-pbs-check-'));
    const text = [
      'instance: site',
      `jobdirs: ${dir}`,
      'github:',
      '  dry_run: true',
      'backend:',
      '  kind: pbs',
    ];
    return parseConfig(text.join('\n'), path.join(dir, 'site.yaml'));
  };
  const empty = { ...process.env, PATH: '/nonexistent-hpcbot-bin' };

  test('names the PBS commands missing from PATH', async () => {
    const { errors } = await checkSite(config(), empty);
    expect(errors.filter((e) => e.keyPath === 'backend.kind')).toEqual([
      {
        keyPath: 'backend.kind',
        message: `pbs, but ${PBS_COMMANDS.join(', ')} are not on PATH; install the PBS client commands, or add their directory to the bot's PATH`,
      },
    ]);
  });

  test('--online: a qstat -B that cannot run is a problem', async () => {
    const problems = await checkOnline(config(), empty);
    expect(problems.filter((p) => p.keyPath === 'backend.kind')).toEqual([
      {
        keyPath: 'backend.kind',
        message: expect.stringMatching(/^pbs, but qstat -B failed \(.*ENOENT.*\); is the PBS server running/),
      },
    ]);
  });
});
