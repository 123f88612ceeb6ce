/**
 * `hpcbot config import-eessi`: an EESSI bot app.cfg, written from the documented keys of its
 * app.cfg.example, becomes a site.yaml that the real `hpcbot config check` accepts once the secrets
 * it names are in place; every key is either mapped or listed as not mapped.
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { parseConfig, type SiteConfig } from '../src/config/config.js';
import { importEessiAppCfg } from '../src/config/eessiImport.js';
import { killAll, ROOT, runCli } from './support/spawn.js';

afterAll(killAll);

/** Every section and key of the EESSI bot's app.cfg.example (v0.9.0), as the reference lists them. */
const DOCUMENTED: Record<string, string[]> = {
  github: ['app_id', 'app_name', 'installation_id', 'private_key'],
  bot_control: ['command_permission', 'command_response_fmt', 'chatlevel'],
  buildenv: [
    'build_job_script',
    'shared_fs_path',
    'build_logs_dir',
    'container_cachedir',
    'job_name',
    'job_delay_begin_factor',
    'job_handover_protocol',
    'jobs_base_dir',
    'load_modules',
    'local_tmp',
    'site_config_script',
    'slurm_params',
    'submit_command',
    'build_permission',
    'no_build_permission_comment',
    'allow_update_submit_opts',
    'allowed_exportvars',
    'clone_git_repo_via',
  ],
  deploycfg: [
    'artefact_upload_script',
    'endpoint_url',
    'bucket_name',
    'upload_policy',
    'deploy_permission',
    'no_deploy_permission_comment',
    'metadata_prefix',
    'artefact_prefix',
    'signing',
  ],
  architecturetargets: ['node_type_map'],
  repo_targets: ['repos_cfg_dir'],
  event_handler: ['log_path'],
  job_manager: ['log_path', 'job_ids_dir', 'poll_command', 'poll_interval', 'scontrol_command'],
  submitted_job_comments: [
    'awaits_release_delayed_begin_msg',
    'awaits_release_hold_release_msg',
    'new_job_instance_repo',
    'build_on_arch',
    'build_for_arch',
    'jobdir',
    'with_accelerator',
  ],
  new_job_comments: ['awaits_launch'],
  running_job_comments: ['running_job'],
  finished_job_comments: ['job_result_unknown_fmt', 'job_test_unknown_fmt'],
  download_pr_comments: [
    'git_clone_failure',
    'git_clone_tip',
    'git_checkout_failure',
    'git_checkout_tip',
    'curl_failure',
    'curl_tip',
    'git_apply_failure',
    'git_apply_tip',
    'pr_diff_failure',
    'pr_diff_tip',
  ],
  clean_up: ['trash_bin_dir', 'moved_job_dirs_comment'],
};

function fullAppCfg(dir: string): string {
  return `[github]
app_id = 123456
app_name = cluster-a
installation_id = 12345678
private_key = ${dir}/secrets/app.pem

[bot_control]
command_permission = alice bob
command_response_fmt =
    <details><summary>Updates by the bot instance <code>{app_name}</code>
    <em>(click for details)</em></summary>

    {comment_response}
    {comment_result}
    </details>
chatlevel = minimal

[buildenv]
build_job_script = /opt/eessi-bot-software-layer/scripts/bot-build.slurm
shared_fs_path = ${dir}/shared
build_logs_dir = ${dir}/shared/build_logs
container_cachedir = ${dir}/shared/containers
http_proxy = http://proxy.example.org:3128/
https_proxy = http://proxy.example.org:3128/
job_name = prod
job_delay_begin_factor = 3
job_handover_protocol = delayed_begin
jobs_base_dir = $HOME/jobs
load_modules = Apptainer/1.3
local_tmp = /tmp/$USER/EESSI
site_config_script = ${dir}/site.sh
slurm_params = --hold --account=eessi "--comment=a b"
submit_command = /usr/bin/sbatch
build_permission = alice
no_build_permission_comment = Label \`bot:build\` has been set by user \`{build_labeler}\`, but this person does not have permission to trigger builds
allow_update_submit_opts = false
allowed_exportvars = ["SKIP_TESTS=yes", "SKIP_TESTS=no"]
clone_git_repo_via = https

[deploycfg]
artefact_upload_script = /opt/eessi-bot-software-layer/scripts/eessi-upload-to-staging
endpoint_url = http://127.0.0.1:9000
bucket_name = {
    "eessi.io-2023.06-software": "eessi.io-staging-2023.06",
    "eessi.io-2025.06-software": "eessi.io-staging-2025.06" }
upload_policy = latest
deploy_permission = carol
no_deploy_permission_comment = Label \`bot:deploy\` has been set by user \`{deploy_labeler}\`, but this person does not have permission to trigger deployments
metadata_prefix = {"eessi.io-2023.06-software": "new/\${github_repository}/\${pull_request_number}", "eessi.io-2025.06-software": ""}
artefact_prefix = {"eessi.io-2023.06-software": "new/\${github_repository}/\${pull_request_number}", "eessi.io-2025.06-software": ""}
signing =
    {
        "eessi.io-2023.06-software": {
            "script": "/opt/eessi-bot-software-layer/scripts/sign_verify_file_ssh.sh",
            "key": "${dir}/secrets/sign_key",
            "container_runtime": "/usr/bin/apptainer"
        }
    }

[architecturetargets]
node_type_map = {
    "cpu_zen2": {
        "os": "linux",
        "cpu_subdir": "x86_64/amd/zen2",
        "slurm_params": "-p rome --nodes 1 --ntasks-per-node 16",
        "repo_targets": ["eessi.io-2023.06-software", "eessi.io-2025.06-software"]
    },
    "gpu_h100": {
        "os": "linux",
        "cpu_subdir": "x86_64/amd/zen4",
        "accel": "nvidia/cc90",
        "slurm_params": "-p gpu_h100 --gpus-per-node 1",
        "repo_targets": ["eessi.io-2023.06-software"]
    },
    "cpu_zen4": {
        "os": "linux",
        "cpu_subdir": "x86_64/amd/zen4",
        "accel": "None",
        "slurm_params": "-p genoa",
        "repo_targets": ["eessi.io-2025.06-software"]
    }}

[repo_targets]
repos_cfg_dir = ${dir}/repos

[event_handler]
log_path = /var/log/eessi_bot_event_handler.log

[job_manager]
log_path = /var/log/eessi_bot_job_manager.log
job_ids_dir = $HOME/jobs/ids
poll_command = /usr/bin/squeue
poll_interval = 30
scontrol_command = /usr/bin/scontrol

[submitted_job_comments]
awaits_release_delayed_begin_msg = job id \`{job_id}\` will be eligible to start in about {delay_seconds} seconds
awaits_release_hold_release_msg = job id \`{job_id}\` awaits release by job manager
new_job_instance_repo = New job on instance \`{app_name}\` for repository \`{repo_id}\`
build_on_arch = Building on: \`{on_arch}\`{on_accelerator}
build_for_arch = Building for: \`{for_arch}\`{for_accelerator}
jobdir = Job dir: \`{symlink}\`
with_accelerator = &nbsp;and accelerator \`{accelerator}\`

[new_job_comments]
awaits_launch = job awaits launch by Slurm scheduler{extra_info}

[running_job_comments]
running_job = job \`{job_id}\` is running

[finished_job_comments]
job_result_unknown_fmt = <details><summary>:shrug: UNKNOWN</summary><ul><li>Job results file \`{filename}\` does not exist in job directory, or parsing it failed.</li></ul></details>
job_test_unknown_fmt = <details><summary>:shrug: UNKNOWN</summary><ul><li>Job test file \`{filename}\` does not exist in job directory, or parsing it failed.</li></ul></details>

[download_pr_comments]
git_clone_failure = Unable to clone the target repository.
git_clone_tip = _Tip: This could be a connection failure._
git_checkout_failure = Unable to checkout to the correct branch.
git_checkout_tip = _Tip: Ensure that the branch name is correct._
curl_failure = Unable to download the \`.diff\` file.
curl_tip = _Tip: This could be a connection failure._
git_apply_failure = Unable to download or merge changes.
git_apply_tip = _Tip: sync your branch and resolve merge conflicts._
pr_diff_failure = Unable to obtain PR diff.
pr_diff_tip = _Tip: This could be a problem with SSH access to the repository._

[clean_up]
trash_bin_dir = $HOME/trash_bin
moved_job_dirs_comment = PR merged! Moved \`{job_dirs}\` to \`{trash_bin_dir}\`
`;
}

const MINIMAL = (dir: string) => `[github]
app_id = 42
app_name = mini
installation_id = 7
private_key = ${dir}/app.pem

[buildenv]
jobs_base_dir = ${dir}/jobs

[architecturetargets]
node_type_map = {"generic": {"os": "linux", "cpu_subdir": "x86_64/generic", "slurm_params": "", "repo_targets": ["EESSI"]}}
`;

async function tmp(): Promise<string> {
  return await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), 'eessi-import-')));
}

/** What the admin does for the placeholders: the App key (PEM) and the signing key, mode 600. */
async function putSecrets(files: { appKey: string; signingKey?: string }): Promise<void> {
  await fs.mkdir(path.dirname(files.appKey), { recursive: true, mode: 0o700 });
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  await fs.writeFile(files.appKey, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  if (files.signingKey)
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bot', '-f', files.signingKey]);
}

/** The environment of `config check`: credentials for the s3 checks are not needed for kind script. */
function checkEnv(home: string): Record<string, string> {
  return { HOME: home };
}

describe('config import-eessi', () => {
  test('a full app.cfg: every documented key is mapped or listed, and config check accepts the result', async () => {
    const dir = await tmp();
    const home = path.join(dir, 'home');
    await fs.mkdir(home);
    const appCfg = path.join(dir, 'app.cfg');
    await fs.writeFile(appCfg, fullAppCfg(dir));
    const out = path.join(dir, 'site.yaml');

    const imported = await runCli(['config', 'import-eessi', appCfg, '--out', out], { env: { HOME: home } });
    expect(imported.stderr).toContain(
      'put these secrets in place: github.private_key_file, deploy.signing.key_file',
    );
    expect(imported.code).toBe(0);
    const text = await fs.readFile(out, 'utf8');

    // Every documented key: mapped (a "from [section] key" comment) or in the "Not mapped" list.
    const [mappedPart, notMappedPart] = text.split('# Not mapped, because...');
    for (const [section, keys] of Object.entries(DOCUMENTED))
      for (const key of keys) {
        const mapped = new RegExp(`from .*\\[${section}\\] [^\\n]*\\b${key}\\b`).test(mappedPart!);
        const listed = notMappedPart!.includes(`[${section}] ${key}`);
        expect({ section, key, handled: mapped || listed }).toEqual({ section, key, handled: true });
      }
    expect(notMappedPart).toContain('[github] installation_id: the installation is taken from each event');
    expect(notMappedPart).toContain(
      '[buildenv] build_job_script: /opt/eessi-bot-software-layer/scripts/bot-build.slurm',
    );
    // A custom template's text is kept in the report, so nothing is lost.
    expect(notMappedPart).toContain('the text was: PR merged! Moved `{job_dirs}` to `{trash_bin_dir}`');
    expect(mappedPart).toContain('# SECRET: the App key file');

    const site = parse(text) as SiteConfig;
    expect(site.instance).toBe('cluster-a');
    expect(site.jobdirs).toBe(path.join(home, 'jobs'));
    expect(site.github).toMatchObject({
      app_id: 123456,
      private_key_file: `${dir}/secrets/app.pem`,
      webhook_secret_env: 'GITHUB_APP_SECRET_TOKEN',
    });
    expect(site.permissions).toEqual({ command: ['alice', 'bob'], build: ['alice'], deploy: ['carol'] });
    expect(site.chatlevel).toBe('minimal');
    expect(site.poller.schedule).toBe('*/30 * * * * *');
    expect(site.backend).toEqual({
      kind: 'slurm',
      slurm: {
        job_name_prefix: 'prod',
        handover: 'delayed_begin',
        delay_begin_seconds: 90,
        sbatch_params: ['--account=eessi', '--comment=a b'],
      },
    });
    expect(site.build.node_types).toEqual({
      cpu_zen2: {
        os: 'linux',
        cpu_subdir: 'x86_64/amd/zen2',
        slurm_params: ['-p', 'rome', '--nodes', '1', '--ntasks-per-node', '16'],
        repo_targets: ['eessi.io-2023.06-software', 'eessi.io-2025.06-software'],
      },
      gpu_h100: {
        os: 'linux',
        cpu_subdir: 'x86_64/amd/zen4',
        accel: 'nvidia/cc90',
        slurm_params: ['-p', 'gpu_h100', '--gpus-per-node', '1'],
        repo_targets: ['eessi.io-2023.06-software'],
      },
      cpu_zen4: {
        os: 'linux',
        cpu_subdir: 'x86_64/amd/zen4',
        slurm_params: ['-p', 'genoa'],
        repo_targets: ['eessi.io-2025.06-software'],
      },
    });
    expect(site.build.site_config).toMatchObject({
      local_tmp: '/tmp/$USER/EESSI',
      load_modules: 'Apptainer/1.3',
    });
    expect(site.build.allowed_exportvars).toEqual(['SKIP_TESTS=yes', 'SKIP_TESTS=no']);
    expect(site.build.job_script).toBeUndefined(); // the bundled bot-build.slurm
    expect(site.deploy).toEqual({
      uploader: {
        kind: 'script',
        script: path.join(ROOT, 'scripts', 'eessi-upload-to-staging'),
        endpoint_url: 'http://127.0.0.1:9000',
        bucket: {
          'eessi.io-2023.06-software': 'eessi.io-staging-2023.06',
          'eessi.io-2025.06-software': 'eessi.io-staging-2025.06',
        },
        artefact_prefix: {
          'eessi.io-2023.06-software': 'new/${github_repository}/${pull_request_number}',
          'eessi.io-2025.06-software': '',
        },
        metadata_prefix: {
          'eessi.io-2023.06-software': 'new/${github_repository}/${pull_request_number}',
          'eessi.io-2025.06-software': '',
        },
      },
      policy: 'latest',
      signing: { key_file: `${dir}/secrets/sign_key` },
    });
    expect(site.cleanup.trash_dir).toBe(path.join(home, 'trash_bin'));

    // Before the secrets are there, config check names exactly them.
    const before = await runCli(['config', 'check', '--config', out], { env: checkEnv(home) });
    expect(before.code).toBe(2);
    expect(before.stderr).toMatch(/github\.private_key_file: the App private key .* does not exist/);

    // The admin puts the secrets in place and creates the repos.cfg app.cfg pointed at.
    await putSecrets({ appKey: `${dir}/secrets/app.pem`, signingKey: `${dir}/secrets/sign_key` });
    await fs.mkdir(path.join(dir, 'repos'));
    await fs.writeFile(
      path.join(dir, 'repos', 'repos.cfg'),
      ['2023.06', '2025.06']
        .map(
          (v) =>
            `[eessi.io-${v}-software]\nrepo_name = software.eessi.io\nrepo_version = ${v}\ncontainer = docker://ghcr.io/eessi/build-node:debian12\n`,
        )
        .join('\n'),
    );
    const check = await runCli(['config', 'check', '--config', out], { env: checkEnv(home) });
    expect(check.stderr).not.toMatch(/^[^w].*:\d+:/m); // no problem lines (warnings start with "warning:")
    expect(check.code).toBe(0);
    expect(check.stdout).toContain(`# ${out}: OK`);
  });

  test('a minimal app.cfg gives a site.yaml that config check accepts once the App key is there', async () => {
    const dir = await tmp();
    const appCfg = path.join(dir, 'app.cfg');
    await fs.writeFile(appCfg, MINIMAL(dir));
    const imported = await runCli(['config', 'import-eessi', appCfg]);
    expect(imported.code).toBe(0);
    const out = path.join(dir, 'site.yaml');
    await fs.writeFile(out, imported.stdout);
    expect(parse(imported.stdout)).toMatchObject({
      instance: 'mini',
      jobdirs: `${dir}/jobs`,
      github: { app_id: 42, private_key_file: `${dir}/app.pem` },
      backend: { kind: 'slurm' },
      build: {
        node_types: { generic: { cpu_subdir: 'x86_64/generic', slurm_params: [], repo_targets: ['EESSI'] } },
      },
    });
    expect(imported.stdout).toContain('[github] installation_id:');
    await putSecrets({ appKey: `${dir}/app.pem` });
    const check = await runCli(['config', 'check', '--config', out], { env: checkEnv(dir) });
    expect(check.code).toBe(0);
  });

  test('a bad JSON value or a missing app_name is an error naming the key', () => {
    const opts = { env: {}, bundledUploadScript: '/x', exists: () => false };
    expect(() =>
      importEessiAppCfg(
        '[github]\napp_name = a\n[buildenv]\njobs_base_dir = /j\n[architecturetargets]\nnode_type_map = {"x": ',
        opts,
      ),
    ).toThrow(/\[architecturetargets\] node_type_map: not valid JSON/);
    expect(() => importEessiAppCfg('[buildenv]\njobs_base_dir = /j\n', opts)).toThrow(
      /\[github\] app_name is missing/,
    );
  });

  test('the older arch_target_map + repo_target_map become node types; an unset $VAR is reported', () => {
    const { yaml, notMapped } = importEessiAppCfg(
      `[github]\napp_name = old\n[buildenv]\njobs_base_dir = $NOPE_UNSET/jobs\n[architecturetargets]\narch_target_map = {"linux/x86_64/amd/zen2": "--partition rome"}\n[repo_targets]\nrepo_target_map = {"linux/x86_64/amd/zen2": ["eessi.io-2023.06-software"]}\n`,
      { env: {}, bundledUploadScript: '/x', exists: () => false },
    );
    const cfg = parseConfig(yaml.replace('$NOPE_UNSET', '/srv'), '/tmp/site.yaml');
    expect(cfg.build.node_types).toMatchObject({
      x86_64_amd_zen2: {
        os: 'linux',
        cpu_subdir: 'x86_64/amd/zen2',
        slurm_params: ['--partition', 'rome'],
        repo_targets: ['eessi.io-2023.06-software'],
      },
    });
    expect(notMapped).toContainEqual(
      expect.objectContaining({ section: 'buildenv', key: 'jobs_base_dir ($NOPE_UNSET)' }),
    );
  });
});
