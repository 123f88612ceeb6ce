/**
 * config/site.yaml: the cluster admin's file. Loaded with `yaml`, validated with zod.
 * Every error names the file, the line and the key path; unknown keys are errors.
 * Secrets never live in this file: it names the environment variables or files that hold them.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LineCounter, parseDocument, isMap, isNode, isScalar, isSeq, type Document } from 'yaml';
import { validateDetailed as validateCron } from 'node-cron';
import { z } from 'zod';
import { parseLabelBuildCommand } from '../domain/commands.js';
import { expandRequirement, parseRequirement } from '../domain/deployGate.js';
import { TargetSetError, targetSetProblems } from '../domain/targetSets.js';
import { prefixTemplateProblem } from '../adapters/uploaders/paths.js';

export const CHATLEVELS = ['incognito', 'minimal', 'basic', 'chatty'] as const;
export type Chatlevel = (typeof CHATLEVELS)[number];

/** The name of an environment variable (never its value: secrets do not live in site.yaml). */
const envName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { message: 'expected an environment variable name' });

const login = z.string().regex(/^[A-Za-z0-9-]+(\[bot\])?$|^[A-Za-z0-9-]+\/[A-Za-z0-9_.-]+$/, {
  message: 'expected a GitHub login or an org/team slug',
});

/** qsub options the pbs backend sets itself (name, variables, hold or begin time, output) may not be given. */
const qsubParams = z.array(z.string()).superRefine((params, ctx) => {
  params.forEach((p, i) => {
    if (/^-[NvVhajoed]$/.test(p) || /^-[NvVajoed]\S/.test(p))
      ctx.addIssue({
        code: 'custom',
        path: [i],
        message: `${p.slice(0, 2)} is set by the bot (-N, -v, -V, -h, -a, -j, -o, -e, -d); leave it out`,
        input: p,
      });
  });
});

const nodeTypeSchema = z.strictObject({
  os: z.string().default('linux'),
  cpu_subdir: z.string().min(1),
  accel: z.string().optional(),
  /** The node builds multi-accelerator targets (`accel=nvidia/cc70+nvidia/cc90`) whatever its own accel. */
  accel_multi: z.boolean().default(false),
  slurm_params: z.array(z.string()).default([]),
  pbs_params: qsubParams.default([]),
  repo_targets: z.array(z.string().regex(/^[A-Za-z0-9_.-]+$/)).min(1),
});

const siteConfigSchema = z.strictObject({
  local_tmp: z.string().optional(),
  http_proxy: z.string().optional(),
  https_proxy: z.string().optional(),
  load_modules: z.string().optional(),
  shared_fs_path: z.string().optional(),
  build_logs_dir: z.string().optional(),
  container_cachedir: z.string().optional(),
  site_config_script: z.string().optional(),
});

const bucketName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/, { message: 'expected a bucket name' });

const repoIdKey = z.string().regex(/^[A-Za-z0-9_.-]+$/, { message: 'expected a repo_id' });

/** An upload prefix: `${github_repository}`, `${pull_request_number}` and `${legacy_aws_path}` may be used. */
const prefixTemplate = z.string().superRefine((value, ctx) => {
  const problem = prefixTemplateProblem(value);
  if (problem) ctx.addIssue({ code: 'custom', message: problem, input: value });
});

/** One value for all repositories, or a map repo_id → value (a repo_id missing from the map is not uploaded). */
const perRepo = <T extends z.ZodType<string>>(value: T) => z.union([value, z.record(repoIdKey, value)]);

const PER_REPO_KEYS = ['bucket', 'endpoint_url', 'artefact_prefix', 'metadata_prefix'] as const;

/** Pure: the repo_ids some per-repo map of the uploader has and another lacks (those are never uploaded). */
function perRepoGaps(
  u: Partial<Record<(typeof PER_REPO_KEYS)[number], string | Record<string, string>>>,
): Array<{ key: string; repoId: string; from: string }> {
  const maps = PER_REPO_KEYS.flatMap((key) => {
    const v = u[key];
    return v !== undefined && typeof v !== 'string' ? [{ key, ids: Object.keys(v) }] : [];
  });
  return maps.flatMap((m) =>
    maps.flatMap((other) =>
      other.ids
        .filter((id) => !m.ids.includes(id))
        .map((repoId) => ({ key: m.key, repoId, from: other.key })),
    ),
  );
}

const DURATION_UNITS = { s: 1, m: 60, h: 3600, d: 86_400 } as const;
/** A duration as seconds (`15`) or with a unit (`15s`, `10m`, `1h`, `3d`); parsed to seconds. */
const duration = z.union([
  z.number().int().positive(),
  z
    .string()
    .regex(/^[1-9][0-9]*[smhd]$/, { message: 'expected a duration such as 15s, 10m, 1h or 3d' })
    .transform((v) => Number(v.slice(0, -1)) * DURATION_UNITS[v.slice(-1) as keyof typeof DURATION_UNITS]),
]);

/** node-cron's syntax, checked here so that a bad schedule is a config error with its line, not a throw at start. */
const cronExpression = z.string().superRefine((value, ctx) => {
  const problem = validateCron(value).errors[0];
  if (!problem) return;
  const what =
    problem.field === 'expression' ? problem.message : `bad ${problem.field} field "${problem.value}"`;
  ctx.addIssue({
    code: 'custom',
    message: `invalid cron expression (${what}): write 5 fields (minute hour day month weekday) or 6 with seconds first`,
    input: value,
  });
});

const deploySchema = z.strictObject({
  /** Which successful jobs `bot: deploy` uploads: every one, the latest per artefact, only once, or none. */
  policy: z.enum(['all', 'latest', 'once', 'none']).default('once'),
  /** The deploy gate: targets that must have succeeded at the PR head (any instance) before a deploy. */
  require: z
    .array(
      z.string().superRefine((value, ctx) => {
        const parsed = parseRequirement(value);
        if (!parsed.ok) ctx.addIssue({ code: 'custom', message: parsed.error, input: value });
      }),
    )
    .default([]),
  uploader: z
    .strictObject({
      kind: z.enum(['directory', 's3', 'script']).default('directory'),
      /** `directory`: the staging directory (default <jobdirs>/staging). */
      directory: z.string().optional(),
      /** `script`: an EESSI-compatible eessi-upload-to-staging. */
      script: z.string().optional(),
      endpoint_url: perRepo(z.url({ protocol: /^https?$/ })).optional(),
      bucket: perRepo(bucketName).optional(),
      artefact_prefix: perRepo(prefixTemplate).optional(),
      metadata_prefix: perRepo(prefixTemplate).optional(),
      /** `s3`: the region (default: the AWS SDK's chain, or us-east-1 with an endpoint_url). */
      region: z.string().optional(),
    })
    .prefault({})
    .superRefine((u, ctx) => {
      if (u.kind === 's3' && u.bucket === undefined)
        ctx.addIssue({ code: 'custom', path: ['bucket'], message: 'required for kind s3', input: undefined });
      if (u.kind === 'script' && u.script === undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['script'],
          message: 'required for kind script',
          input: undefined,
        });
      for (const gap of perRepoGaps(u))
        ctx.addIssue({
          code: 'custom',
          path: [gap.key],
          message: `has no entry for ${gap.repoId}, which ${gap.from} has; add one (a repo_id missing from one of these maps is never uploaded)`,
          input: undefined,
        });
    }),
  /** EESSI ingestion's task block: `--action/--order/--mode` for a script, `task:` in our metadata. */
  task_metadata: z
    .strictObject({
      action: z.enum(['add', 'update', 'delete', 'start', 'end']),
      order: z.union([z.number().int().nonnegative(), z.string().regex(/^[0-9]+$/)]).optional(),
      mode: z.enum(['order', 'timestamp']).optional(),
    })
    .optional(),
  /** Upload the job's Slurm output (secrets scrubbed) as `<artefact>.log` next to each artefact. */
  upload_logs: z.boolean().default(false),
  signing: z
    .strictObject({
      /** An OpenSSH private key (or a .pub whose key is in ssh-agent); without it nothing is signed. */
      key_file: z.string().optional(),
      /** ssh-keygen -Y namespace (default: the instance name). */
      namespace: z.string().min(1).optional(),
    })
    .prefault({}),
});

export const siteSchema = z
  .strictObject({
    /** Short name shown in comments and used in Slurm job names. */
    instance: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, { message: 'expected 1-32 of [A-Za-z0-9_-]' }),
    /** Root of all runtime data; relative paths are resolved against the config file's directory. */
    jobdirs: z.string().min(1),
    server: z
      .strictObject({
        host: z.string().default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(3000),
        webhook_path: z.string().startsWith('/').default('/webhook'),
      })
      .prefault({}),
    /** The status page (`hpcbot ui`). */
    ui: z
      .strictObject({
        host: z.string().default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(3001),
        /** A file holding the access token; required to listen on an address other than loopback. */
        token_file: z.string().optional(),
      })
      .prefault({}),
    /** The bot updating itself from its own git remote (README "Self-update"); off without this key. */
    self_update: z
      .strictObject({
        /** The bot's git repository: a URL or a path. */
        remote: z.string().regex(/^[^-\s]\S*$/, { message: 'expected a git URL or path' }),
        branch: z
          .string()
          .regex(/^[A-Za-z0-9._/-]+$/)
          .optional(),
        /** A glob (`v*`) over tag names; the highest version among them is used. */
        tag_pattern: z
          .string()
          .regex(/^[A-Za-z0-9._/*?-]+$/)
          .optional(),
        check_every: duration.default(3600),
        /** Holds `releases/<sha>` and the `current` symlink that the units run. */
        dir: z.string().min(1),
        /** Run in a new release before it is tried (argv, no shell). */
        install: z.array(z.string().min(1)).min(1).default(['npm', 'ci']),
      })
      .refine((u) => (u.branch === undefined) !== (u.tag_pattern === undefined), {
        message: 'set exactly one of branch and tag_pattern',
      })
      .optional(),
    github: z
      .strictObject({
        api_url: z.url().default('https://api.github.com'),
        /** Write comments into the job directory instead of posting them. */
        dry_run: z.boolean().default(false),
        app_id: z.number().int().positive().optional(),
        private_key_file: z.string().optional(),
        token_env: envName.optional(),
        webhook_secret_env: envName.default('HPCBOT_WEBHOOK_SECRET'),
        /** Used when the env var is unset; generated (mode 600) on first start if missing. */
        webhook_secret_file: z.string().optional(),
        /** The bot's own login, whose comments are never parsed as commands. */
        bot_login: z.string().optional(),
      })
      .superRefine((gh, ctx) => {
        if ((gh.app_id === undefined) === (gh.private_key_file === undefined)) return;
        const [missing, given] =
          gh.app_id === undefined ? ['app_id', 'private_key_file'] : ['private_key_file', 'app_id'];
        ctx.addIssue({
          code: 'custom',
          path: [missing],
          message: `required with github.${given}: a GitHub App needs both (or use github.token_env instead)`,
          input: undefined,
        });
      })
      .prefault({}),
    poller: z
      .strictObject({
        schedule: cronExpression.default('*/10 * * * * *'),
        max_attempts: z.number().int().positive().default(10),
        concurrency: z.number().int().min(1).max(32).default(4),
        /** About one default tick (10 s) of replies at GitHub's pace of one new comment per 3 s. */
        max_replies_per_tick: z.number().int().positive().default(3),
      })
      .prefault({}),
    chatlevel: z.enum(CHATLEVELS).default('basic'),
    /** Where jobs are reported in the PR. */
    reporting: z
      .strictObject({
        /** A check run per job on the PR's head commit (commit statuses with a personal token). */
        checks: z.boolean().default(true),
        /** `per_job`: the EESSI-style job comment; `summary`: one comment per PR with this instance's matrix; `none`: no job comments (replies to commands stay). */
        comments: z.enum(['per_job', 'summary', 'none']).default('per_job'),
        /** The one instance that answers `bot: status` with the fleet's target matrix; unset: each answers for itself. */
        status_responder: z
          .string()
          .regex(/^[A-Za-z0-9_-]{1,32}$/, { message: 'expected an instance name (1-32 of [A-Za-z0-9_-])' })
          .optional(),
        /** Lines of a failed job's Slurm output shown in its comment and check run; 0 shows none. */
        log_tail_lines: z.number().int().min(0).max(1000).default(40),
      })
      .prefault({}),
    permissions: z
      .strictObject({
        command: z.array(login).default([]),
        build: z.array(login).default([]),
        deploy: z.array(login).default([]),
        /** A builder may cancel the jobs they asked for, without being in `build`. */
        cancel_own_jobs: z.boolean().default(false),
      })
      .prefault({}),
    labels: z
      .strictObject({
        /** What the `bot:build` label does: reply with a hint (as the EESSI bot does) or build the defaults. */
        build: z.enum(['hint', 'build_defaults']).default('hint'),
        default_build_command: z.string().default(''),
      })
      .superRefine((labels, ctx) => {
        if (labels.default_build_command.trim() === '') return;
        const cmd = parseLabelBuildCommand(labels.default_build_command);
        if (!cmd.ok) {
          const input = labels.default_build_command;
          ctx.addIssue({ code: 'custom', path: ['default_build_command'], message: cmd.error, input });
        }
      })
      .prefault({}),
    backend: z
      .strictObject({
        kind: z.enum(['local', 'slurm', 'pbs']).default('local'),
        /** The unprivileged Unix user that runs jobs (through sudo); unset, jobs run as the bot's own user. */
        run_as: z
          .string()
          .regex(/^[a-z_][a-z0-9_-]{0,31}$/, { message: 'expected a Unix user name' })
          .optional(),
        local: z.strictObject({ max_parallel: z.number().int().positive().default(2) }).prefault({}),
        slurm: z
          .strictObject({
            handover: z.enum(['hold_release', 'delayed_begin']).default('hold_release'),
            job_name_prefix: z
              .string()
              .regex(/^[A-Za-z0-9_-]*$/)
              .default('hpcbot'),
            default_time: z.string().default('24:00:00'),
            sbatch_params: z.array(z.string()).default([]),
            delay_begin_seconds: z.number().int().positive().default(20),
            missing_ticks_before_lost: z.number().int().positive().default(3),
          })
          .prefault({}),
        pbs: z
          .strictObject({
            /** pbspro: OpenPBS / PBS Professional (qstat -x -f -F json); torque: Torque (qstat -f). */
            flavour: z.enum(['pbspro', 'torque']).default('pbspro'),
            handover: z.enum(['hold_release', 'delayed_begin']).default('hold_release'),
            job_name_prefix: z
              .string()
              .regex(/^[A-Za-z][A-Za-z0-9_-]*$/, { message: 'expected a name starting with a letter' })
              .default('hpcbot'),
            default_walltime: z
              .string()
              .regex(/^(\d+:)?\d+:\d\d:\d\d$/, { message: 'expected [DD:]HH:MM:SS' })
              .default('24:00:00'),
            qsub_params: qsubParams.default([]),
            delay_begin_seconds: z.number().int().positive().default(20),
            missing_ticks_before_lost: z.number().int().positive().default(3),
          })
          .prefault({}),
      })
      .prefault({}),
    build: z
      .strictObject({
        node_types: z.record(z.string().regex(/^[A-Za-z0-9_.-]+$/), nodeTypeSchema).default({}),
        repos_cfg_dir: z.string().optional(),
        site_config: siteConfigSchema.prefault({}),
        allowed_exportvars: z.array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*=.*$/)).default([]),
        job_script: z.string().optional(),
        on_overlap: z.enum(['supersede', 'queue', 'refuse']).default('supersede'),
        on_new_push: z.enum(['cancel', 'keep']).default('cancel'),
        /** Resubmissions of a job that ended by an infrastructure failure (NODE_FAIL, BOOT_FAIL, PREEMPTED, lost). */
        infra_retries: z.number().int().min(0).max(10).default(1),
      })
      .prefault({}),
    deploy: deploySchema.prefault({}),
    /** Active jobs (handed to the scheduler) of this instance at once; unset: no limit. Others wait, queued. */
    limits: z
      .strictObject({
        max_active_jobs: z.number().int().positive().optional(),
        max_active_jobs_per_pr: z.number().int().positive().optional(),
        max_active_gpu_jobs: z.number().int().positive().optional(),
      })
      .prefault({}),
    /** Named lists of build lines (`for:...`, `on:... for:...`, `for:set=<other>`): `bot: build for:set=<name>`. */
    target_sets: z
      .record(
        z.string().regex(/^[A-Za-z0-9_.-]+$/, { message: 'expected a set name of [A-Za-z0-9_.-]' }),
        z.array(z.string()).min(1),
      )
      .default({})
      .superRefine((sets, ctx) => {
        for (const p of targetSetProblems(sets))
          ctx.addIssue({ code: 'custom', path: p.path, message: p.message, input: undefined });
      }),
    cleanup: z
      .strictObject({
        /** Where the directories of closed PRs go; default <jobdirs>/trash. */
        trash_dir: z.string().optional(),
      })
      .prefault({}),
    /** How deliveries come in: the webhook server, the poller pulling them from GitHub, or both. */
    ingest: z
      .strictObject({
        mode: z.enum(['webhook', 'pull', 'both']).default('webhook'),
        /** Seconds between two listings of the App's deliveries (pull, both). */
        pull_interval: duration.default(15),
        /** How far back a listing goes after downtime (GitHub keeps deliveries for 3 days). */
        horizon: duration.default(3 * 86_400),
        /** Seconds between two look-backs for deliveries the server missed (both). */
        reconcile_interval: duration.default(600),
      })
      .prefault({}),
    health: z
      .strictObject({
        /** A scheduler unreachable this long (seconds) is noted on every active job. */
        alert_after: duration.default(600),
      })
      .prefault({}),
  })
  .superRefine((site, ctx) => {
    // `deploy.require` may name target sets, which live in another section.
    site.deploy.require.forEach((text, i) => {
      const parsed = parseRequirement(text);
      if (!parsed.ok || parsed.requirement.kind !== 'set') return;
      try {
        expandRequirement(parsed.requirement, site.target_sets);
      } catch (err) {
        if (!(err instanceof TargetSetError)) throw err;
        ctx.addIssue({ code: 'custom', path: ['deploy', 'require', i], message: err.message, input: text });
      }
    });
  });

export type SiteConfig = z.infer<typeof siteSchema>;

/** The validated config plus where it came from; paths are absolute. */
export interface Config extends SiteConfig {
  source: string;
  /** sha256 (hex) of the site.yaml text this config was parsed from; jobs record it. */
  digest?: string;
}

export interface ConfigProblem {
  line: number | undefined;
  keyPath: string;
  message: string;
}

export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly problems: ConfigProblem[],
  ) {
    super(
      problems.map((p) => `${file}:${p.line ?? '?'}: ${p.keyPath || '(top level)'}: ${p.message}`).join('\n'),
    );
    this.name = 'ConfigError';
  }
}

export const DEFAULT_CONFIG_PATH = 'config/site.yaml';

export function configPathFrom(cliPath: string | undefined, env = process.env): string {
  return cliPath ?? env.HPCBOT_CONFIG ?? DEFAULT_CONFIG_PATH;
}

export function loadConfig(file: string): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [
      { line: undefined, keyPath: '', message: `cannot read: ${(err as Error).message}` },
    ]);
  }
  return parseConfig(text, file);
}

export function parseConfig(text: string, file: string): Config {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => ({
        line: lineCounter.linePos(e.pos[0]).line,
        keyPath: keyPathAt(doc.contents, e.pos[0]).join('.'),
        message: `YAML syntax: ${e.message.split('\n')[0]}`,
      })),
    );
  }
  const result = siteSchema.safeParse(doc.toJS() ?? {}, { reportInput: true });
  if (!result.success) {
    throw new ConfigError(
      file,
      result.error.issues
        .map((issue) => describeIssue(issue, doc, lineCounter))
        .sort((a, b) => (a.line ?? 0) - (b.line ?? 0)), // in file order
    );
  }
  return resolvePaths({ ...result.data, source: path.resolve(file), digest: configDigest(text) });
}

export function configDigest(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * A ConfigError for problems found after parsing (e.g. by `checkSite`), with each key's line in the file
 * (or the line of its nearest parent that is written there, for a key left at its default).
 */
export function configErrorAt(
  cfg: Config,
  problems: Array<{ keyPath: string; message: string }>,
): ConfigError {
  let text = '';
  try {
    text = readFileSync(cfg.source, 'utf8');
  } catch {
    /* the lines stay unknown */
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines });
  return new ConfigError(
    cfg.source,
    problems.map((p) => ({ ...p, line: text ? lineOf(doc, p.keyPath.split('.'), lines) : undefined })),
  );
}

/** The key path of the innermost mapping key or sequence item around `offset` (for YAML syntax errors). */
function keyPathAt(node: unknown, offset: number): string[] {
  if (isMap(node)) {
    // The last key that starts before the offset owns it (pairs are in document order).
    let owner: (typeof node.items)[number] | undefined;
    for (const pair of node.items) {
      const start = isNode(pair.key) && pair.key.range ? pair.key.range[0] : undefined;
      if (start !== undefined && start <= offset) owner = pair;
    }
    if (owner)
      return [isScalar(owner.key) ? String(owner.key.value) : '?', ...keyPathAt(owner.value, offset)];
  } else if (isSeq(node)) {
    for (const [i, item] of node.items.entries()) {
      if (isNode(item) && item.range && offset >= item.range[0] && offset <= item.range[2]) {
        return [String(i), ...keyPathAt(item, offset)];
      }
    }
  }
  return [];
}

/** A short rendering of an offending value: enough to find it, never a whole file or a long blob. */
function shortValue(input: unknown): string {
  const text = JSON.stringify(input) ?? String(input);
  return text.length > 80 ? `${text.slice(0, 60)}... (${text.length} characters)` : text;
}

function describeIssue(issue: z.core.$ZodIssue, doc: Document, lines: LineCounter): ConfigProblem {
  let keyPath = issue.path.map(String);
  let message: string;
  const got = 'input' in issue && issue.input !== undefined ? `, got ${shortValue(issue.input)}` : '';
  if (keyPath.length === 0 && issue.code === 'invalid_type') {
    // Not a mapping at all (maybe not a site.yaml): say what it is, but do not echo the file.
    const kind =
      issue.input === null
        ? 'an empty document'
        : Array.isArray(issue.input)
          ? 'a list'
          : `a ${typeof issue.input}`;
    return { line: 1, keyPath: '', message: `expected a mapping of site.yaml keys, got ${kind}` };
  }
  switch (issue.code) {
    case 'invalid_value':
      message = `expected ${issue.values.map(String).join(' | ')}${got}`;
      break;
    case 'unrecognized_keys':
      // Point at the unknown key itself, so the line is the typo's line.
      keyPath = [...keyPath, issue.keys[0] ?? ''];
      message = `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
      break;
    case 'invalid_type':
      message =
        issue.input === undefined ? `required (${issue.expected})` : `expected ${issue.expected}${got}`;
      break;
    default:
      message = `${issue.message}${got}`;
  }
  return { line: lineOf(doc, keyPath, lines), keyPath: keyPath.join('.'), message };
}

/** The line of the deepest node along keyPath that exists in the document. */
function lineOf(doc: Document, keyPath: string[], lines: LineCounter): number {
  for (let depth = keyPath.length; depth >= 0; depth--) {
    const node = depth === 0 ? doc.contents : doc.getIn(keyPath.slice(0, depth), true);
    if (isNode(node) && node.range) {
      // For a key, prefer the line of the key (the value may start on the next line).
      const pair = depth > 0 ? findPairKeyOffset(doc, keyPath.slice(0, depth)) : undefined;
      return lines.linePos(pair ?? node.range[0]).line;
    }
  }
  return 1; // an empty document: the problem is at its start
}

function findPairKeyOffset(doc: Document, keyPath: string[]): number | undefined {
  const parent = keyPath.length === 1 ? doc.contents : doc.getIn(keyPath.slice(0, -1), true);
  const last = keyPath[keyPath.length - 1];
  if (!parent || typeof parent !== 'object' || !('items' in parent) || !Array.isArray(parent.items))
    return undefined;
  for (const item of parent.items as unknown[]) {
    const key = (item as { key?: { value?: unknown; range?: [number, number, number] } }).key;
    if (key && String(key.value) === last && key.range) return key.range[0];
  }
  return undefined;
}

function resolvePaths(cfg: Config): Config {
  const base = path.dirname(cfg.source);
  const abs = (p: string | undefined) => (p === undefined ? undefined : path.resolve(base, p));
  return {
    ...cfg,
    jobdirs: path.resolve(base, cfg.jobdirs),
    deploy: {
      ...cfg.deploy,
      uploader: {
        ...cfg.deploy.uploader,
        directory:
          cfg.deploy.uploader.kind === 'directory'
            ? path.resolve(base, cfg.deploy.uploader.directory ?? path.join(cfg.jobdirs, 'staging'))
            : abs(cfg.deploy.uploader.directory),
        script: abs(cfg.deploy.uploader.script),
      },
      signing: {
        ...cfg.deploy.signing,
        key_file: abs(cfg.deploy.signing.key_file),
        namespace: cfg.deploy.signing.namespace ?? cfg.instance,
      },
    },
    github: {
      ...cfg.github,
      private_key_file: abs(cfg.github.private_key_file),
      webhook_secret_file: abs(cfg.github.webhook_secret_file),
    },
    ui: { ...cfg.ui, token_file: abs(cfg.ui.token_file) },
    self_update: cfg.self_update && { ...cfg.self_update, dir: path.resolve(base, cfg.self_update.dir) },
    cleanup: { ...cfg.cleanup, trash_dir: abs(cfg.cleanup.trash_dir) },
    build: {
      ...cfg.build,
      repos_cfg_dir: abs(cfg.build.repos_cfg_dir),
      job_script: abs(cfg.build.job_script),
    },
  };
}

/** The effective config as `hpcbot config check` prints it. The file holds no secret values, only their sources. */
export function describeSecretsSources(cfg: Config): Record<string, string> {
  return {
    webhook_secret: process.env[cfg.github.webhook_secret_env]
      ? `env ${cfg.github.webhook_secret_env} (set, redacted)`
      : `file ${webhookSecretFile(cfg)}`,
    github_auth:
      cfg.github.app_id !== undefined
        ? `app ${cfg.github.app_id}, key file ${cfg.github.private_key_file ?? '(missing)'}`
        : cfg.github.token_env
          ? `token from env ${cfg.github.token_env} (${process.env[cfg.github.token_env] ? 'set, redacted' : 'NOT SET'})`
          : 'none (dry_run only)',
  };
}

/** Names of the environment variables that hold the bot's secrets (those that are configured). */
export function secretEnvNames(cfg: Config): string[] {
  return [cfg.github.webhook_secret_env, cfg.github.token_env].filter((n): n is string => Boolean(n));
}

/** Outside jobdirs by default, so that no job can reach it: `$XDG_CONFIG_HOME/hpcbot/` or `~/.config/hpcbot/`. */
export function webhookSecretFile(cfg: Config, env = process.env): string {
  return cfg.github.webhook_secret_file ?? path.join(userConfigDir(env), 'webhook-secret');
}

export function userConfigDir(env = process.env): string {
  const base = env.XDG_CONFIG_HOME || path.join(env.HOME || os.homedir(), '.config');
  return path.join(path.resolve(base), 'hpcbot');
}
