/**
 * The EESSI job contract as of 2026, end to end on the local backend: a PR whose build makes a
 * `.tar.zst` (or a plain `.tar`) and the node files `_bot_job<ID>.lscpu/.ulimits/.os`; the bot keeps
 * copies of those and shows the CPU model; `bot: deploy` signs and stages the artefact with a
 * metadata file carrying the `task:` block and `job_owner`; `hpcbot verify` accepts it. Then
 * `bot:cancel jobid:<id>` and `permissions.cancel_own_jobs`.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { JobData } from '../src/store/job.js';
import { cpuModelOf } from '../src/domain/resultFile.js';
import { parseProvenance } from '../src/domain/provenance.js';
import type { ArtefactMetadata } from '../src/adapters/uploaders/index.js';
import { workTreeOf } from '../src/store/workTree.js';
import { killAll, runCli } from './support/spawn.js';
import {
  jobDirsOf,
  openPr,
  OWNER,
  PR,
  REPO,
  REVIEWER,
  startHarness,
  stageOf,
  stateOf,
  storeComment,
  tickUntil,
  type Harness,
} from './support/botHarness.js';

let h: Harness;
afterEach(async () => {
  await killAll();
  await h?.stop();
});

/** A build as EESSI's build.sh does it in 2026: node files first, then the tarball (`tar -a` picks the compressor). */
function contractBot(suffix: string, buildSeconds = 0): Record<string, string> {
  return {
    'bot/build.sh': [
      '#!/bin/bash',
      'set -e',
      'lscpu > "_bot_job${SLURM_JOB_ID}.lscpu"',
      'ulimit -a > "_bot_job${SLURM_JOB_ID}.ulimits"',
      'cat /etc/os-release > "_bot_job${SLURM_JOB_ID}.os"',
      `sleep ${buildSeconds}`,
      `tar -caf "eessi-2023.06-software-linux-x86_64-amd-zen4-17000000\${SLURM_JOB_ID}.${suffix}" cfg/job.cfg`,
    ].join('\n'),
    'bot/check-build.sh': [
      '#!/bin/bash',
      `art=$(ls eessi-*.${suffix} | head -1)`,
      'printf "[RESULT]\\ncomment_description = :grin: SUCCESS\\nstatus = SUCCESS\\nartefacts =\\n    %s\\n" "$art" > "_bot_job${SLURM_JOB_ID}.result"',
    ].join('\n'),
    'bot/check-test.sh':
      '#!/bin/bash\nprintf "[TEST]\\ncomment_description = ok\\nstatus = SUCCESS\\n" > "_bot_job${SLURM_JOB_ID}.test"\n',
  };
}

const tmp = (what: string) =>
  path.join(os.tmpdir(), `hpcbot-c2026-${what}-${process.pid}-${Math.random().toString(16).slice(2)}`);

/** The bot's replies to commands (every comment but the job comments). */
const replies = () => h.fake.commentsOf(OWNER, REPO, PR).filter((c) => !c.body.startsWith('New job'));

async function command(body: string, sender = REVIEWER): Promise<string> {
  const n = replies().length;
  await storeComment(h, body, sender);
  await tickUntil(h, async () => replies().length === n + 1);
  return replies()[n]!.body;
}

describe.each(['tar.zst', 'tar'])('a build that makes a .%s', (suffix) => {
  test('is recorded with its node files, deployed with task and job_owner metadata, and verifies', async () => {
    const key = tmp('key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'hpcbot@test', '-f', key]);
    h = await startHarness(
      [
        'deploy:',
        '  policy: once',
        '  uploader:',
        '    kind: directory',
        '    directory: staging',
        '  task_metadata:',
        '    action: add',
        '  signing:',
        `    key_file: ${key}`,
        '',
      ].join('\n'),
    );
    openPr(h, contractBot(suffix));
    await storeComment(h, 'bot: build for:arch=zen4');
    await tickUntil(h, async () => {
      const dirs = await jobDirsOf(h);
      return dirs.length === 1 && (await stageOf(dirs[0]!)) === 'finished';
    });
    const [dir] = await jobDirsOf(h);
    const state = await stateOf<JobData>(dir!);
    const jobId = state.data.job_id!;
    expect(state.data.result).toMatchObject({ status: 'SUCCESS' });
    expect(state.data.result!.artefacts[0]).toMatch(new RegExp(`\\.${suffix.replace('.', '\\.')}$`));
    expect(state.data.job_owner).toBe(REVIEWER);

    // The node files are copied into the job's own record, and the CPU model is in the comment.
    for (const kind of ['lscpu', 'ulimits', 'os'])
      expect(readFileSync(path.join(dir!, 'node', `_bot_job${jobId}.${kind}`), 'utf8')).toBe(
        readFileSync(path.join(workTreeOf(dir!), `_bot_job${jobId}.${kind}`), 'utf8'),
      );
    const model = cpuModelOf(execFileSync('lscpu', { encoding: 'utf8' }));
    expect(model).toBeDefined();
    expect(state.data.node_cpu_model).toBe(model);
    await tickUntil(h, async () =>
      h.fake.commentsOf(OWNER, REPO, PR).some((c) => c.body.includes(`Node CPU: \`${model}\``)),
    );
    expect(readFileSync(path.join(dir!, 'job.json'), 'utf8')).toContain(`"job_owner": "${REVIEWER}"`);
    expect(readFileSync(path.join(workTreeOf(dir!), `_bot_job${jobId}.metadata`), 'utf8')).toContain(
      `job_owner = ${REVIEWER}`,
    );

    const reply = await command('bot: deploy');
    expect(reply).toMatch(/: uploaded \(signed to file:/);
    const staging = h.config.deploy.uploader.directory!;
    const files = execFileSync('find', [staging, '-type', 'f'], { encoding: 'utf8' }).trim().split('\n');
    const artefact = files.find((f) => f.endsWith(`.${suffix}`))!;
    expect(path.basename(artefact)).toBe(state.data.result!.artefacts[0]);
    if (suffix === 'tar.zst') expect(readFileSync(artefact).subarray(0, 4).toString('hex')).toBe('28b52ffd');
    // The legacy path drops the suffix, whichever it is.
    expect(path.relative(staging, artefact)).toBe(
      `2023.06/software/linux/x86_64/amd/zen4/17000000${jobId}/${path.basename(artefact)}`,
    );
    const meta = JSON.parse(readFileSync(`${artefact}.meta.txt`, 'utf8')) as ArtefactMetadata;
    expect(meta.task).toEqual({ action: 'add', order: '', mode: 'timestamp' });
    expect(meta.link2pr).toMatchObject({ repo: `${OWNER}/${REPO}`, pr: String(PR), job_owner: REVIEWER });
    const provenance = parseProvenance(readFileSync(`${artefact}.provenance.json`, 'utf8'));
    expect(provenance.predicate.buildDefinition.externalParameters.jobOwner).toBe(REVIEWER);

    const allowed = tmp('allowed');
    writeFileSync(allowed, `hpcbot@test ${readFileSync(`${key}.pub`, 'utf8').trim()}\n`);
    const verified = await runCli(['verify', artefact, '--allowed-signers', allowed]);
    expect(verified.stderr).toBe('');
    expect(verified.code).toBe(0);
    expect(verified.stdout).toContain(`OK: ${artefact}`);
    expect(verified.stdout).toMatch(new RegExp(`job owner: +${REVIEWER}`));
  });
});

describe('bot: cancel', () => {
  test('jobid: is job: (and instance: is inst:), and with cancel_own_jobs a builder without rights cancels only their own jobs', async () => {
    h = await startHarness();
    openPr(h, contractBot('tar.zst', 600));
    await storeComment(h, 'bot: build for:arch=zen4');
    await tickUntil(h, async () => {
      const dirs = await jobDirsOf(h);
      return dirs.length === 1 && (await stageOf(dirs[0]!)) === 'running';
    });
    const [dir] = await jobDirsOf(h);
    const jobId = (await stateOf<JobData>(dir!)).data.job_id!;

    // Rights taken away, as a live site.yaml edit would: without cancel_own_jobs nobody gets through.
    Object.assign(h.deps.config.permissions, { command: [], build: [], cancel_own_jobs: false });
    const refused = await command(`bot:cancel jobid:${jobId}`);
    expect(refused).toContain('has NO permission to send commands');

    h.deps.config.permissions.cancel_own_jobs = true;
    const stranger = await command(`bot:cancel jobid:${jobId}`, 'someone-else');
    expect(stranger).toContain('no active jobs of `someone-else` matched, nothing was cancelled');
    expect(await stageOf(dir!)).toBe('running');

    const own = await command(`bot:cancel jobid:${jobId} instance:test`);
    expect(own).toContain(`cancelled:`);
    expect(own).toContain(`job \`${jobId}\``);
    await tickUntil(h, async () => (await stageOf(dir!)) === 'cancelled');
    expect((await stateOf<JobData>(dir!)).data.cancel_requested).toBe(`cancelled by ${REVIEWER}`);
  });
});

test('cpuModelOf: the lscpu model line, as plain text that cannot break out of a code span', () => {
  expect(cpuModelOf('Architecture: x86_64\nModel name:   AMD EPYC 9654 96-Core Processor\n')).toBe(
    'AMD EPYC 9654 96-Core Processor',
  );
  expect(cpuModelOf('Model name: evil`](x)\u0007 <b>\n')).toBe("evil'](x) <b>");
  expect(cpuModelOf('Model name:\nBIOS Model name: x\n')).toBeUndefined();
  expect(cpuModelOf(undefined)).toBeUndefined();
});
