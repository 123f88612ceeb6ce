/**
 * `hpcbot config import-eessi`: an EESSI bot `app.cfg` (INI, some values JSON) turned into an
 * equivalent, commented site.yaml. Pure: the caller reads the file and says which paths exist.
 * Every key of the EESSI bot's app.cfg.example is either mapped or listed at the end of the output
 * with the reason it is not; secrets (the App key, the signing key) stay where app.cfg names them and
 * are marked as placeholders to check, since site.yaml never holds a secret itself.
 */
import { Document, isMap, isScalar, type YAMLMap } from 'yaml';
import { CHATLEVELS, siteSchema } from './config.js';
import { parseIni } from '../domain/ini.js';

export interface ImportOptions {
  /** Environment used to expand `$HOME` and the like in app.cfg paths (as the EESSI bot's shell did). */
  env: Record<string, string | undefined>;
  /** Our own upload script, used when app.cfg names the EESSI bot's copy that is not on this machine. */
  bundledUploadScript: string;
  /** Whether a path exists on this machine (the importer never touches the file system itself). */
  exists: (file: string) => boolean;
}

export interface NotMapped {
  section: string;
  key: string;
  reason: string;
}

export interface ImportResult {
  /** The site.yaml text, with comments. */
  yaml: string;
  notMapped: NotMapped[];
  /** Key paths of site.yaml that name a secret the admin must put in place before `config check` passes. */
  secrets: Array<{ keyPath: string; what: string }>;
}

export class EessiImportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EessiImportError';
  }
}

/** Where our comments have no configurable text: what shows instead. */
const TEMPLATE_REASON: Record<string, string> = {
  command_response_fmt:
    'the reply to commands has a fixed layout (a <details> block titled with the instance, like the default)',
  no_build_permission_comment: 'the reply to a build without permission is fixed text naming the login',
  no_deploy_permission_comment: 'the reply to a deploy without permission is fixed text naming the login',
  moved_job_dirs_comment: 'the close comment is fixed text ("merged" or "closed", and where the dirs went)',
};
const COMMENT_SECTIONS: Record<string, string> = {
  submitted_job_comments:
    'the job comment has a fixed layout (the same header lines and `|date|job status|comment|` rows as the EESSI bot)',
  new_job_comments: 'the "released" row of the job comment is fixed text',
  running_job_comments: 'the "running" row of the job comment is fixed text',
  finished_job_comments:
    'the "finished" rows are fixed text (:shrug: UNKNOWN with the missing file, as the default)',
  download_pr_comments: 'checkout failures are reported with fixed text per step, with git stderr and a tip',
};

const LOG_REASON =
  'both processes log to stdout (one JSON object per line when not at a terminal): redirect it, or run them under systemd';

/** Keys that have no counterpart, with the reason (section → key → reason). */
const NOT_MAPPED: Record<string, Record<string, string>> = {
  github: {
    installation_id: 'the installation is taken from each event, so one App can serve several installations',
  },
  buildenv: {
    cvmfs_customizations:
      'the EESSI bot parses it but never applies it; put such settings into site_config_script',
    submit_command:
      "sbatch (and squeue, sacct, scontrol, scancel) are run from the PATH; put their directory first on the bot's PATH",
    allow_update_submit_opts:
      'code from a PR never runs in the bot; give per-node sbatch options in build.node_types.*.slurm_params',
    clone_git_repo_via:
      "PRs are fetched over HTTPS with the bot's GitHub credentials (private repositories need no ssh key)",
  },
  event_handler: { log_path: LOG_REASON },
  job_manager: {
    log_path: LOG_REASON,
    job_ids_dir: 'jobs are tracked in their job directories (and the pending-work index <jobdirs>/queue)',
    poll_command: 'squeue is run from the PATH',
    scontrol_command: 'scontrol is run from the PATH',
  },
};

/** A value from app.cfg with its origin, for the comment above the key it becomes. */
interface Mapped {
  path: string[];
  value: unknown;
  from: string;
  note?: string;
}

export function importEessiAppCfg(text: string, opts: ImportOptions): ImportResult {
  const ini = parseIni(text);
  const used = new Set<string>();
  const notMapped: NotMapped[] = [];
  const secrets: ImportResult['secrets'] = [];
  const mapped: Mapped[] = [];
  const get = (section: string, key: string): string | undefined => {
    const v = ini[section]?.[key];
    if (v === undefined) return undefined;
    used.add(`${section}.${key}`);
    return v;
  };
  const set = (path: string[], value: unknown, from: string, note?: string) =>
    mapped.push({ path, value, from, note });
  const skip = (section: string, key: string, reason: string) => {
    used.add(`${section}.${key}`);
    notMapped.push({ section, key, reason });
  };
  const expand = (value: string, where: string) => expandVars(value, opts.env, where, notMapped);

  // [github]
  const appName = get('github', 'app_name');
  if (appName === undefined || appName === '')
    throw new EessiImportError('[github] app_name is missing: it becomes the instance name');
  const instance = appName.replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 32);
  set(
    ['instance'],
    instance,
    '[github] app_name',
    instance === appName
      ? 'also the signing namespace, as with the EESSI bot'
      : `app_name "${appName}" has characters an instance name may not have`,
  );
  const appId = get('github', 'app_id');
  if (appId !== undefined && appId !== '') {
    if (!/^[1-9][0-9]*$/.test(appId))
      throw new EessiImportError(`[github] app_id: expected a number, got "${appId}"`);
    set(['github', 'app_id'], Number(appId), '[github] app_id');
  }
  const privateKey = get('github', 'private_key');
  if (privateKey !== undefined && privateKey !== '') {
    set(
      ['github', 'private_key_file'],
      expand(privateKey, '[github] private_key'),
      '[github] private_key',
      'SECRET: the App key file must be there, mode 600, outside jobdirs',
    );
    secrets.push({ keyPath: 'github.private_key_file', what: "the GitHub App's private key (PEM)" });
  }
  set(
    ['github', 'webhook_secret_env'],
    'GITHUB_APP_SECRET_TOKEN',
    'the variable the EESSI bot read the webhook secret from',
    'SECRET: the same variable the EESSI bot reads; unset, a secret file is used (github.webhook_secret_file)',
  );
  if (get('github', 'installation_id') !== undefined)
    skip('github', 'installation_id', NOT_MAPPED.github!.installation_id!);

  // [bot_control]
  const logins = (v: string) => v.split(/\s+/).filter(Boolean);
  const commandPermission = get('bot_control', 'command_permission');
  if (commandPermission !== undefined)
    set(
      ['permissions', 'command'],
      logins(commandPermission),
      '[bot_control] command_permission',
      'empty means nobody',
    );
  const chatlevel = get('bot_control', 'chatlevel');
  if (chatlevel !== undefined && chatlevel !== '') {
    if (!(CHATLEVELS as readonly string[]).includes(chatlevel))
      throw new EessiImportError(
        `[bot_control] chatlevel: expected ${CHATLEVELS.join(' | ')}, got "${chatlevel}"`,
      );
    set(['chatlevel'], chatlevel, '[bot_control] chatlevel');
  }
  templateKey('bot_control', 'command_response_fmt');

  // [buildenv]
  set(['backend', 'kind'], 'slurm', 'Slurm, as the EESSI bot submits with sbatch');
  const jobsBaseDir = get('buildenv', 'jobs_base_dir');
  if (jobsBaseDir === undefined || jobsBaseDir === '')
    throw new EessiImportError('[buildenv] jobs_base_dir is missing: it becomes jobdirs');
  set(
    ['jobdirs'],
    expand(jobsBaseDir, '[buildenv] jobs_base_dir'),
    '[buildenv] jobs_base_dir',
    'our layout adds <owner>/<repo> under YYYY.MM, so old and new job dirs do not collide',
  );
  const jobScript = get('buildenv', 'build_job_script');
  if (jobScript !== undefined && jobScript !== '') {
    if (jobScript.includes('@'))
      skip(
        'buildenv',
        'build_job_script',
        'a script from a repository (path@repo) is not supported; the bundled scripts/bot-build.slurm is used',
      );
    else if (
      /(^|\/)bot-build\.slurm$/.test(jobScript) &&
      !opts.exists(expand(jobScript, '[buildenv] build_job_script'))
    )
      skip(
        'buildenv',
        'build_job_script',
        `${jobScript} is the EESSI bot's bot-build.slurm, which is not on this machine; the bundled scripts/bot-build.slurm runs the same steps`,
      );
    else
      set(
        ['build', 'job_script'],
        expand(jobScript, '[buildenv] build_job_script'),
        '[buildenv] build_job_script',
      );
  }
  for (const key of [
    'shared_fs_path',
    'build_logs_dir',
    'container_cachedir',
    'load_modules',
    'site_config_script',
    'http_proxy',
    'https_proxy',
  ]) {
    const v = get('buildenv', key);
    if (v !== undefined && v !== '') set(['build', 'site_config', key], v, `[buildenv] ${key}`);
  }
  const localTmp = get('buildenv', 'local_tmp');
  if (localTmp !== undefined && localTmp !== '')
    set(
      ['build', 'site_config', 'local_tmp'],
      localTmp,
      '[buildenv] local_tmp',
      'expanded in the job, as before',
    );
  const jobName = get('buildenv', 'job_name');
  if (jobName !== undefined && jobName !== '') {
    const prefix = jobName.replace(/[^A-Za-z0-9_-]/g, '-');
    set(
      ['backend', 'slurm', 'job_name_prefix'],
      prefix,
      '[buildenv] job_name',
      `Slurm job names become ${prefix}-${instance}`,
    );
  }
  const handover = get('buildenv', 'job_handover_protocol');
  if (handover !== undefined && handover !== '') {
    // The EESSI bot falls back to --hold for an unknown protocol.
    const value = handover === 'delayed_begin' ? 'delayed_begin' : 'hold_release';
    set(['backend', 'slurm', 'handover'], value, '[buildenv] job_handover_protocol');
  }
  const pollInterval = Number(get('job_manager', 'poll_interval') || 60);
  const delayFactor = get('buildenv', 'job_delay_begin_factor');
  if (delayFactor !== undefined && delayFactor !== '') {
    const seconds = Math.max(1, Math.round(Number(delayFactor) * pollInterval));
    if (!Number.isFinite(seconds))
      throw new EessiImportError(
        `[buildenv] job_delay_begin_factor: expected a number, got "${delayFactor}"`,
      );
    set(
      ['backend', 'slurm', 'delay_begin_seconds'],
      seconds,
      '[buildenv] job_delay_begin_factor × [job_manager] poll_interval',
    );
  }
  const slurmParams = get('buildenv', 'slurm_params');
  if (slurmParams !== undefined) {
    const params = splitParams(slurmParams).filter((p) => p !== '--hold');
    set(
      ['backend', 'slurm', 'sbatch_params'],
      params,
      '[buildenv] slurm_params',
      slurmParams.includes('--hold') ? '--hold is left out: backend.slurm.handover adds it' : undefined,
    );
  }
  const buildPermission = get('buildenv', 'build_permission');
  if (buildPermission !== undefined)
    set(
      ['permissions', 'build'],
      logins(buildPermission),
      '[buildenv] build_permission',
      'empty means nobody',
    );
  templateKey('buildenv', 'no_build_permission_comment');
  const exportVars = get('buildenv', 'allowed_exportvars');
  if (exportVars !== undefined && exportVars !== '')
    set(
      ['build', 'allowed_exportvars'],
      jsonValue(exportVars, '[buildenv] allowed_exportvars'),
      '[buildenv] allowed_exportvars',
    );
  for (const key of Object.keys(NOT_MAPPED.buildenv!))
    if (get('buildenv', key) !== undefined) skip('buildenv', key, NOT_MAPPED.buildenv![key]!);

  // [deploycfg]
  const uploadScript = get('deploycfg', 'artefact_upload_script');
  if (uploadScript !== undefined && uploadScript !== '') {
    const given = expand(uploadScript, '[deploycfg] artefact_upload_script');
    const script = opts.exists(given) ? given : opts.bundledUploadScript;
    set(['deploy', 'uploader', 'kind'], 'script', '[deploycfg] artefact_upload_script');
    set(
      ['deploy', 'uploader', 'script'],
      script,
      '[deploycfg] artefact_upload_script',
      script === given
        ? 'signing is done by the bot itself: the script is not given --sign-key'
        : `${given} is not on this machine; the bundled eessi-upload-to-staging takes the same flags`,
    );
  }
  for (const [key, target] of [
    ['endpoint_url', 'endpoint_url'],
    ['bucket_name', 'bucket'],
    ['artefact_prefix', 'artefact_prefix'],
    ['metadata_prefix', 'metadata_prefix'],
  ] as const) {
    const v = get('deploycfg', key);
    if (v === undefined || v === '') continue;
    const value = v.trimStart().startsWith('{') ? jsonValue(v, `[deploycfg] ${key}`) : v;
    set(['deploy', 'uploader', target], value, `[deploycfg] ${key}`);
  }
  const policy = get('deploycfg', 'upload_policy');
  if (policy !== undefined && policy !== '') set(['deploy', 'policy'], policy, '[deploycfg] upload_policy');
  const deployPermission = get('deploycfg', 'deploy_permission');
  if (deployPermission !== undefined)
    set(
      ['permissions', 'deploy'],
      logins(deployPermission),
      '[deploycfg] deploy_permission',
      'empty means nobody',
    );
  templateKey('deploycfg', 'no_deploy_permission_comment');
  const signing = get('deploycfg', 'signing');
  if (signing !== undefined && signing.trim() !== '' && signing.trim() !== '{}') {
    const perRepo = jsonValue(signing, '[deploycfg] signing') as Record<string, { key?: string }>;
    const keys = [
      ...new Set(
        Object.values(perRepo)
          .map((s) => s.key)
          .filter((k): k is string => Boolean(k)),
      ),
    ];
    if (keys.length > 0) {
      set(
        ['deploy', 'signing', 'key_file'],
        expand(keys[0]!, '[deploycfg] signing'),
        '[deploycfg] signing (key)',
        'SECRET: an OpenSSH private key without passphrase, mode 600, outside jobdirs; the bot runs ssh-keygen -Y sign itself',
      );
      secrets.push({ keyPath: 'deploy.signing.key_file', what: 'the SSH signing key' });
    }
    notMapped.push({
      section: 'deploycfg',
      key: 'signing (script, container_runtime)',
      reason:
        keys.length > 1
          ? `one key signs for every repository; the other keys (${keys.slice(1).join(', ')}) are not used`
          : 'the bot signs with its own code (ssh-keygen -Y sign, namespace = instance); no script or container runs with the key',
    });
  }

  // [architecturetargets], [repo_targets]
  const nodeTypeMap = get('architecturetargets', 'node_type_map');
  const repoTargetMap = get('repo_targets', 'repo_target_map');
  const archTargetMap = get('architecturetargets', 'arch_target_map');
  if (nodeTypeMap !== undefined && nodeTypeMap.trim() !== '') {
    set(
      ['build', 'node_types'],
      nodeTypes(jsonValue(nodeTypeMap, '[architecturetargets] node_type_map')),
      '[architecturetargets] node_type_map',
    );
    if (archTargetMap !== undefined)
      skip('architecturetargets', 'arch_target_map', 'replaced by node_type_map');
    if (repoTargetMap !== undefined) skip('repo_targets', 'repo_target_map', 'replaced by node_type_map');
  } else if (archTargetMap !== undefined && archTargetMap.trim() !== '') {
    set(
      ['build', 'node_types'],
      legacyNodeTypes(
        jsonValue(archTargetMap, '[architecturetargets] arch_target_map'),
        repoTargetMap ? jsonValue(repoTargetMap, '[repo_targets] repo_target_map') : {},
      ),
      '[architecturetargets] arch_target_map and [repo_targets] repo_target_map (before node_type_map)',
    );
  }
  const reposCfgDir = get('repo_targets', 'repos_cfg_dir');
  if (reposCfgDir !== undefined && reposCfgDir !== '')
    set(
      ['build', 'repos_cfg_dir'],
      expand(reposCfgDir, '[repo_targets] repos_cfg_dir'),
      '[repo_targets] repos_cfg_dir',
    );

  // [job_manager], [event_handler]
  if (ini.job_manager?.poll_interval !== undefined) {
    get('job_manager', 'poll_interval');
    set(
      ['poller', 'schedule'],
      cronEvery(pollInterval),
      '[job_manager] poll_interval',
      `every ${pollInterval} s`,
    );
  }
  for (const section of ['event_handler', 'job_manager'])
    for (const key of Object.keys(NOT_MAPPED[section]!))
      if (get(section, key) !== undefined) skip(section, key, NOT_MAPPED[section]![key]!);

  // [clean_up]
  const trash = get('clean_up', 'trash_bin_dir');
  if (trash !== undefined && trash !== '')
    set(['cleanup', 'trash_dir'], expand(trash, '[clean_up] trash_bin_dir'), '[clean_up] trash_bin_dir');
  templateKey('clean_up', 'moved_job_dirs_comment');

  // Comment templates, then anything else app.cfg has.
  for (const [section, reason] of Object.entries(COMMENT_SECTIONS))
    for (const key of Object.keys(ini[section] ?? {})) {
      used.add(`${section}.${key}`);
      notMapped.push({ section, key, reason: `${reason}; the text was: ${oneLine(ini[section]![key]!)}` });
    }
  for (const [section, keys] of Object.entries(ini))
    for (const key of Object.keys(keys))
      if (!used.has(`${section}.${key}`))
        notMapped.push({
          section,
          key,
          reason: "not a key of the EESSI bot's app.cfg.example; check whether it matters",
        });

  const object = buildObject(mapped);
  const problems = siteSchema.safeParse(object);
  if (!problems.success)
    throw new EessiImportError(
      `the imported values do not form a valid site.yaml: ${problems.error.issues
        .map((i) => `${i.path.join('.')}: ${i.message}`)
        .join('; ')}`,
    );
  return { yaml: render(object, mapped, notMapped, secrets), notMapped, secrets };

  function templateKey(section: string, key: string) {
    const v = get(section, key);
    if (v !== undefined)
      notMapped.push({ section, key, reason: `${TEMPLATE_REASON[key]}; the text was: ${oneLine(v)}` });
  }
}

function oneLine(text: string): string {
  const flat = text.replace(/\s*\n\s*/g, ' ').trim();
  return flat.length > 200 ? `${flat.slice(0, 200)}...` : flat;
}

function jsonValue(text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new EessiImportError(`${where}: not valid JSON (${(err as Error).message})`);
  }
}

/** `$NAME`, `${NAME}` and a leading `~` from the environment; an unset variable is reported and kept. */
function expandVars(
  value: string,
  env: Record<string, string | undefined>,
  where: string,
  notMapped: NotMapped[],
): string {
  const withHome = value.replace(/^~(?=\/|$)/, '$HOME');
  return withHome.replace(/\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))/g, (all, a, b) => {
    const name = (a ?? b) as string;
    const v = env[name];
    if (v !== undefined) return v;
    const [section = '', key = ''] = where.replace(/^\[/, '').split('] ');
    notMapped.push({
      section,
      key: `${key} ($${name})`,
      reason: `$${name} is not set here, so it was left as is; write the path out`,
    });
    return all;
  });
}

/** Split sbatch parameters as the EESSI bot's shell did (whitespace; simple quotes group words). */
export function splitParams(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)) out.push(m[1] ?? m[2] ?? m[3]!);
  return out;
}

interface EessiNodeType {
  os?: string;
  cpu_subdir?: string;
  accel?: string;
  slurm_params?: string;
  repo_targets?: string[];
}

function nodeName(name: string): string {
  return name.replace(/[^A-Za-z0-9_.-]/g, '_');
}

function nodeTypes(map: unknown): Record<string, unknown> {
  if (!map || typeof map !== 'object' || Array.isArray(map))
    throw new EessiImportError('[architecturetargets] node_type_map: expected a JSON object of node types');
  return Object.fromEntries(
    Object.entries(map as Record<string, EessiNodeType>).map(([name, n]) => [
      nodeName(name),
      {
        os: n.os ?? 'linux',
        cpu_subdir: n.cpu_subdir,
        ...(n.accel && n.accel !== 'None' ? { accel: n.accel } : {}),
        slurm_params: splitParams(n.slurm_params ?? ''),
        repo_targets: n.repo_targets ?? [],
      },
    ]),
  );
}

/** `arch_target_map` ("linux/x86_64/amd/zen2" → sbatch params) with `repo_target_map` (same keys → repo ids). */
function legacyNodeTypes(archMap: unknown, repoMap: unknown): Record<string, unknown> {
  const repos = (repoMap ?? {}) as Record<string, string[]>;
  return Object.fromEntries(
    Object.entries(archMap as Record<string, string>).map(([target, params]) => {
      const [os = 'linux', ...subdir] = target.split('/');
      return [
        nodeName(subdir.join('_')),
        {
          os,
          cpu_subdir: subdir.join('/'),
          slurm_params: splitParams(params),
          repo_targets: repos[target] ?? ['EESSI'],
        },
      ];
    }),
  );
}

/** A node-cron schedule (with seconds) for "every N seconds". */
function cronEvery(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 1) return '*/10 * * * * *';
  if (seconds < 60) return `*/${Math.round(seconds)} * * * * *`;
  const minutes = Math.max(1, Math.min(59, Math.round(seconds / 60)));
  return minutes === 1 ? '0 * * * * *' : `0 */${minutes} * * * *`;
}

function buildObject(mapped: Mapped[]): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const { path, value } of mapped) {
    let node = root;
    for (const key of path.slice(0, -1)) node = (node[key] ??= {}) as Record<string, unknown>;
    node[path[path.length - 1]!] = value;
  }
  return root;
}

const TOP_ORDER = [
  'instance',
  'jobdirs',
  'github',
  'poller',
  'chatlevel',
  'permissions',
  'backend',
  'build',
  'deploy',
  'cleanup',
];

function render(
  object: Record<string, unknown>,
  mapped: Mapped[],
  notMapped: NotMapped[],
  secrets: ImportResult['secrets'],
): string {
  const ordered = Object.fromEntries(TOP_ORDER.filter((k) => k in object).map((k) => [k, object[k]]));
  const doc = new Document(ordered);
  for (const m of mapped) {
    const parent = m.path.length === 1 ? doc.contents : doc.getIn(m.path.slice(0, -1), true);
    if (!isMap(parent)) continue;
    const pair = (parent as YAMLMap).items.find(
      (p) => isScalar(p.key) && p.key.value === m.path[m.path.length - 1],
    );
    if (pair && isScalar(pair.key))
      pair.key.commentBefore = [
        m.from.startsWith('[') ? ` from ${m.from}` : ` ${m.from}`,
        ...(m.note ? [` ${m.note}`] : []),
      ].join('\n');
  }
  doc.commentBefore = [
    ' site.yaml imported from an EESSI bot app.cfg by `hpcbot config import-eessi`.',
    ' Check it with `hpcbot config check`. Reference: README.md, "site.yaml reference".',
    ...(secrets.length > 0
      ? [
          ' SECRETS to put in place (marked SECRET below; site.yaml only names where they are):',
          ...secrets.map((s) => `   ${s.keyPath}: ${s.what}`),
          '   the webhook secret: export GITHUB_APP_SECRET_TOKEN, or write it to github.webhook_secret_file',
        ]
      : []),
    ' Consider backend.run_as (an unprivileged user for PR code); app.cfg has no counterpart.',
  ].join('\n');
  doc.comment = [
    ' Not mapped, because...',
    ...notMapped.map((n) => `   [${n.section}] ${n.key}: ${n.reason}`.replace(/\n/g, ' ')),
  ].join('\n');
  const text = doc.toString({ lineWidth: 0 });
  return text.endsWith('\n') ? text : `${text}\n`;
}
