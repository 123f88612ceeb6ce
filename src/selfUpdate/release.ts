/**
 * Self-update with rollback. `self_update.dir` holds one directory per release, `releases/<sha>` (a
 * clone of `self_update.remote` at that commit, with `self_update.install` run in it), and the
 * `current` symlink that the service units run (`<dir>/current/bin/hpcbot.mjs`).
 *
 * An update: find the newest commit of the branch (or the highest tag matching the pattern); prepare
 * its release; run `hpcbot config check` on site.yaml and a smoke test (`hpcbot poll --once` on a
 * scratch jobdirs holding the sample event) with the new code; only then replace `current` (a new
 * symlink renamed over the old one) and have the processes restart (EXIT_RESTART; the units restart
 * them, and as the processes are stateless nothing is lost). A release that fails its checks is
 * recorded as refused and not tried again; one whose poller starts 4 times within 10 minutes of the
 * switch (3 crashes) is switched back. Everything runs under the poller lock, never inside a tick.
 */
import { randomUUID } from 'node:crypto';
import { promises as fs, readlinkSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { git } from '../adapters/git.js';
import { run } from '../adapters/process.js';
import { loadConfig, type Config } from '../config/config.js';
import { storePayload } from '../ingest/eventStore.js';
import { ensureSamplePr, samplePayload } from '../ingest/sampleEvent.js';
import type { Logger } from '../log.js';
import { fsyncDir, mkdirDurable } from '../store/fsutil.js';
import { JobDirs } from '../store/jobdirs.js';
import { readState } from '../store/state.js';
import { readSelfUpdateState, writeSelfUpdateState, type SelfUpdateState } from './log.js';

/** Exit code of a process that stops because the release changed; its unit starts it again. */
export const EXIT_RESTART = 75;
/** Starts of the poller within CRASH_WINDOW_MS of a switch that mean the release crash-loops. */
export const CRASH_STARTS = 4;
export const CRASH_WINDOW_MS = 10 * 60_000;
const SHA_RE = /^[0-9a-f]{40}$/;

export type SelfUpdateConfig = NonNullable<Config['self_update']>;

export class SelfUpdateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SelfUpdateError';
  }
}

export function releasesDir(u: SelfUpdateConfig): string {
  return path.join(u.dir, 'releases');
}

export function currentLink(u: SelfUpdateConfig): string {
  return path.join(u.dir, 'current');
}

/** The SHA `current` points at, or undefined before the first release. */
export function currentRelease(u: SelfUpdateConfig): string | undefined {
  try {
    const sha = path.basename(readlinkSync(currentLink(u)));
    return SHA_RE.test(sha) ? sha : undefined;
  } catch {
    return undefined;
  }
}

/** Pure: `v1.10.0` after `v1.9.2`: compare the numeric runs as numbers. */
export function compareVersions(a: string, b: string): number {
  const parts = (s: string) => s.split(/(\d+)/).filter(Boolean);
  const pa = parts(a);
  const pb = parts(b);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? '';
    const y = pb[i] ?? '';
    const nx = /^\d+$/.test(x) ? Number(x) : NaN;
    const ny = /^\d+$/.test(y) ? Number(y) : NaN;
    const c = !isNaN(nx) && !isNaN(ny) ? nx - ny : x.localeCompare(y);
    if (c !== 0) return c;
  }
  return 0;
}

/** Pure: a tag glob (`*`, `?`) as a regular expression. */
export function globToRegExp(glob: string): RegExp {
  const body = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

/**
 * Pure: the commit to run from `git ls-remote` output: the branch's head, or the highest tag that
 * matches (a peeled `^{}` line gives an annotated tag's commit).
 */
export function pickTarget(
  u: Pick<SelfUpdateConfig, 'branch' | 'tag_pattern'>,
  lsRemote: string,
): { sha: string; ref: string } | undefined {
  const refs = new Map<string, string>();
  for (const line of lsRemote.split('\n')) {
    const [sha, ref] = line.split('\t');
    if (sha && ref && SHA_RE.test(sha)) refs.set(ref, sha);
  }
  if (u.branch) {
    const ref = `refs/heads/${u.branch}`;
    const sha = refs.get(ref);
    return sha ? { sha, ref } : undefined;
  }
  const re = globToRegExp(u.tag_pattern ?? '');
  const tags = [...refs.keys()]
    .filter((r) => r.startsWith('refs/tags/') && !r.endsWith('^{}'))
    .map((r) => r.slice('refs/tags/'.length))
    .filter((t) => re.test(t))
    .sort(compareVersions);
  const tag = tags.at(-1);
  if (!tag) return undefined;
  const ref = `refs/tags/${tag}`;
  return { sha: refs.get(`${ref}^{}`) ?? refs.get(ref)!, ref };
}

export async function findTarget(u: SelfUpdateConfig): Promise<{ sha: string; ref: string }> {
  const out = await git(['ls-remote', '--', u.remote], { timeoutMs: 120_000 });
  const target = pickTarget(u, out);
  if (!target)
    throw new SelfUpdateError(
      `${u.remote} has no ${u.branch ? `branch ${u.branch}` : `tag matching ${u.tag_pattern}`}`,
    );
  return target;
}

/** `releases/<sha>`, cloned and installed in a temp dir that is renamed into place when complete. */
export async function prepareRelease(
  u: SelfUpdateConfig,
  sha: string,
  logger?: Pick<Logger, 'info'>,
): Promise<string> {
  const dest = path.join(releasesDir(u), sha);
  try {
    await fs.access(path.join(dest, 'bin', 'hpcbot.mjs'));
    return dest;
  } catch {
    /* prepare it */
  }
  await mkdirDurable(releasesDir(u));
  const partial = path.join(releasesDir(u), `.partial-${sha}-${randomUUID().slice(0, 8)}`);
  try {
    await git(['clone', '--quiet', '--no-checkout', '--', u.remote, partial], { timeoutMs: 600_000 });
    await git(['-C', partial, 'checkout', '--quiet', '--detach', sha]);
    logger?.info(`self-update: installing ${sha.slice(0, 12)}: ${u.install.join(' ')}`);
    const [command, ...args] = u.install;
    await run(command!, args, { cwd: partial, timeoutMs: 1_800_000 });
    await fs.rm(dest, { recursive: true, force: true });
    await fs.rename(partial, dest);
    await fsyncDir(releasesDir(u));
    return dest;
  } catch (err) {
    await fs.rm(partial, { recursive: true, force: true });
    throw err;
  }
}

/** Keys of site.yaml that hold paths, relative to the file's directory. */
const PATH_KEYS = [
  ['build', 'repos_cfg_dir'],
  ['build', 'job_script'],
  ['github', 'private_key_file'],
  ['github', 'webhook_secret_file'],
  ['deploy', 'signing', 'key_file'],
];

/**
 * Pure: site.yaml for the smoke test: the same file on a scratch jobdirs, in dry run, taking no port,
 * its paths made absolute against `base` (the real file's directory).
 */
export function scratchSiteYaml(siteYaml: string, scratchJobdirs: string, base: string): string {
  const doc = YAML.parseDocument(siteYaml);
  for (const key of PATH_KEYS) {
    const value = doc.getIn(key);
    if (typeof value === 'string') doc.setIn(key, path.resolve(base, value));
  }
  doc.set('jobdirs', scratchJobdirs);
  doc.setIn(['github', 'dry_run'], true);
  doc.setIn(['server', 'port'], 0);
  doc.setIn(['ui', 'port'], 0);
  doc.delete('self_update');
  doc.delete('deploy');
  return doc.toString();
}

/**
 * With the release's own code: `hpcbot config check` on site.yaml, then `hpcbot poll --once` on a
 * scratch jobdirs where this (the running) code stored the sample PR and a `bot: help` comment on it;
 * the event must end as `done`. Throws SelfUpdateError saying which step failed.
 */
export async function verifyRelease(config: Config, release: string): Promise<void> {
  const cli = path.join(release, 'bin', 'hpcbot.mjs');
  const step = async (what: string, args: string[]) => {
    try {
      await run(process.execPath, [cli, ...args], { cwd: release, timeoutMs: 300_000 });
    } catch (err) {
      throw new SelfUpdateError(`${what} failed: ${(err as Error).message}`);
    }
  };
  await step('config check', ['config', 'check', '--config', config.source]);
  const scratch = await fs.mkdtemp(path.join(path.dirname(release), '.smoke-'));
  try {
    const site = path.join(scratch, 'site.yaml');
    const text = await fs.readFile(config.source, 'utf8');
    await fs.writeFile(
      site,
      scratchSiteYaml(text, path.join(scratch, 'jobdirs'), path.dirname(config.source)),
    );
    const scratchConfig = loadConfig(site);
    const jobdirs = new JobDirs(scratchConfig.jobdirs);
    await jobdirs.ensureBaseDirs();
    await ensureSamplePr(scratchConfig);
    const eventDir = await storePayload(
      jobdirs,
      'issue_comment',
      samplePayload('bot: help'),
      `smoke-${randomUUID()}`,
    );
    await step('smoke test (poll --once)', ['poll', '--once', '--config', site]);
    const stage = (await readState(eventDir))?.stage;
    if (stage !== 'done')
      throw new SelfUpdateError(`smoke test: the sample event ended as ${stage ?? 'untouched'}, not done`);
  } finally {
    await fs.rm(scratch, { recursive: true, force: true });
  }
}

/** Point `current` at `releases/<sha>`: a new symlink renamed over the old one, so never missing. */
export async function switchCurrent(u: SelfUpdateConfig, sha: string): Promise<void> {
  const tmp = path.join(u.dir, `.current-${randomUUID().slice(0, 8)}`);
  await fs.symlink(path.join('releases', sha), tmp);
  await fs.rename(tmp, currentLink(u));
  await fsyncDir(u.dir);
}

export type UpdateOutcome =
  | { action: 'none'; current?: string; reason: string }
  | { action: 'updated'; from?: string; to: string }
  | { action: 'refused'; to: string; reason: string };

/** Pure: whether the remote is due for a look. */
export function checkDue(state: SelfUpdateState, u: SelfUpdateConfig, now: Date): boolean {
  return !state.lastCheck || now.getTime() - Date.parse(state.lastCheck) >= u.check_every * 1000;
}

/** Check the remote and update if there is a new release that passes its checks. Caller holds the poller lock. */
export async function selfUpdate(
  config: Config,
  opts: { now?: Date; logger?: Pick<Logger, 'info' | 'warn'>; verify?: typeof verifyRelease } = {},
): Promise<UpdateOutcome> {
  const u = config.self_update;
  if (!u) throw new SelfUpdateError('self_update is not set in site.yaml');
  const now = opts.now ?? new Date();
  const state = await readSelfUpdateState(config.jobdirs);
  const save = (next: SelfUpdateState) =>
    writeSelfUpdateState(config.jobdirs, { ...next, lastCheck: now.toISOString() });
  const from = currentRelease(u);
  const { sha, ref } = await findTarget(u);
  if (sha === from) {
    await save(state);
    return { action: 'none', current: from, reason: `${ref} is the current release` };
  }
  if (state.refused[sha]) {
    await save(state);
    return {
      action: 'none',
      current: from,
      reason: `${sha.slice(0, 12)} (${ref}) was refused: ${state.refused[sha]}`,
    };
  }
  try {
    const release = await prepareRelease(u, sha, opts.logger);
    await (opts.verify ?? verifyRelease)(config, release);
  } catch (err) {
    const reason = (err as Error).message;
    opts.logger?.warn({ release: sha, ref }, `self-update: refused ${sha.slice(0, 12)}: ${reason}`);
    await save({
      ...state,
      refused: { ...state.refused, [sha]: reason },
      log: [...state.log, { at: now.toISOString(), action: 'refused', from, to: sha, reason }],
    });
    return { action: 'refused', to: sha, reason };
  }
  await switchCurrent(u, sha);
  opts.logger?.info({ from, to: sha, ref }, `self-update: switched to ${sha.slice(0, 12)} (${ref})`);
  await save({
    ...state,
    switched: { ...(from && { from }), to: sha, at: now.toISOString(), starts: [] },
    log: [...state.log, { at: now.toISOString(), action: 'updated', from, to: sha, reason: ref }],
  });
  return { action: 'updated', from, to: sha };
}

/** Switch back to the release before the last switch; the new one is refused from now on. */
export async function rollback(
  config: Config,
  reason: string,
  now = new Date(),
): Promise<{ from: string; to: string }> {
  const u = config.self_update;
  if (!u) throw new SelfUpdateError('self_update is not set in site.yaml');
  const state = await readSelfUpdateState(config.jobdirs);
  const to = state.switched?.from;
  const from = currentRelease(u);
  if (!to || !from || from !== state.switched?.to)
    throw new SelfUpdateError(
      'there is no earlier release to go back to (no switch recorded for the current one)',
    );
  await switchCurrent(u, to);
  await writeSelfUpdateState(config.jobdirs, {
    ...state,
    switched: undefined,
    refused: { ...state.refused, [from]: `rolled back: ${reason}` },
    log: [...state.log, { at: now.toISOString(), action: 'rolled back', from, to, reason }],
  });
  return { from, to };
}

/**
 * The poller's start, under its lock: within CRASH_WINDOW_MS of a switch each start is counted, and
 * the CRASH_STARTS-th one rolls back (the caller exits with EXIT_RESTART). True on a rollback.
 */
export async function noteStart(config: Config, now = new Date()): Promise<boolean> {
  const u = config.self_update;
  if (!u) return false;
  const state = await readSelfUpdateState(config.jobdirs);
  const s = state.switched;
  if (!s || s.to !== currentRelease(u) || now.getTime() - Date.parse(s.at) > CRASH_WINDOW_MS) return false;
  const starts = [...s.starts, now.toISOString()];
  if (starts.length >= CRASH_STARTS && s.from) {
    await rollback(
      config,
      `${starts.length - 1} restarts within ${CRASH_WINDOW_MS / 60_000} minutes of the switch`,
      now,
    );
    return true;
  }
  await writeSelfUpdateState(config.jobdirs, { ...state, switched: { ...s, starts } });
  return false;
}

/** The release this process runs from, when it runs from `<dir>/releases/<sha>`. */
export function runningRelease(u: SelfUpdateConfig): string | undefined {
  const here = realpathSync(path.dirname(fileURLToPath(import.meta.url)));
  const releases = path.join(realpathSync.native(u.dir), 'releases') + path.sep;
  if (!here.startsWith(releases)) return undefined;
  return here.slice(releases.length).split(path.sep)[0];
}

/**
 * Call `onChange` once `current` no longer names the release this process runs from (an update or a
 * rollback by another process). Checks every `everyMs`; returns the stop function.
 */
export function followRelease(u: SelfUpdateConfig, onChange: () => void, everyMs = 5000): () => void {
  let mine: string | undefined;
  try {
    mine = runningRelease(u);
  } catch {
    mine = undefined;
  }
  if (!mine) return () => {};
  const timer = setInterval(() => {
    const now = currentRelease(u);
    if (now && now !== mine) {
      clearInterval(timer);
      onChange();
    }
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * The poller's part, after a tick and under its lock: a look at the remote when one is due. True once
 * `current` was switched (the caller exits with EXIT_RESTART). A failing look is logged and waits for
 * the next one.
 */
export async function selfUpdateIfDue(
  config: Config,
  logger: Pick<Logger, 'info' | 'warn'>,
  now = new Date(),
): Promise<boolean> {
  const u = config.self_update;
  if (!u) return false;
  const state = await readSelfUpdateState(config.jobdirs);
  if (!checkDue(state, u, now)) return false;
  try {
    return (await selfUpdate(config, { now, logger })).action === 'updated';
  } catch (err) {
    logger.warn({ err: (err as Error).message }, 'self-update: cannot check the remote');
    await writeSelfUpdateState(config.jobdirs, { ...state, lastCheck: now.toISOString() });
    return false;
  }
}
