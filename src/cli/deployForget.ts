/**
 * `hpcbot deploy forget <pr> [--repo owner/name] [--target T]`: remove deploy records, so that an
 * operator can undo a `deploy.policy: once` decision (the next `bot: deploy` uploads the target again).
 * Each removal is first appended, with who asked, to `forgotten.log` next to the records (never
 * rewritten), then the record is unlinked and its directory synced; it runs under the poller's lock,
 * so that no deploy writes a record at the same time. What was removed is printed.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { configPathFrom, loadConfig } from '../config/config.js';
import {
  deployRecordsDir,
  FORGOTTEN_LOG,
  readDeployRecords,
  UPLOADS_DIR,
  type DeployRecord,
} from '../store/deployRecords.js';
import { fsyncDir, mkdirDurable } from '../store/fsutil.js';
import { isValidOwner, isValidRepoName, JobDirs } from '../store/jobdirs.js';
import { waitForLock } from '../store/lock.js';
import { UsageError } from './errors.js';

/** How long to wait for a poller tick to end. */
const LOCK_WAIT_MS = 60_000;

export interface DeployForgetOptions {
  config?: string;
  repo?: string;
  target?: string;
}

/** Who ran the command: the login, and the login behind sudo if any. */
export interface Operator {
  user: string;
  sudoUser?: string;
}

export function currentOperator(env = process.env): Operator {
  return { user: os.userInfo().username, ...(env.SUDO_USER ? { sudoUser: env.SUDO_USER } : {}) };
}

/** Pure: the PR number of the `<pr>` argument (`7` or `#7`). */
export function parsePrArgument(arg: string): number {
  const m = /^#?([1-9][0-9]{0,9})$/.exec(arg.trim());
  if (!m) throw new UsageError(`"${arg}" is not a pull request number`);
  return Number(m[1]);
}

/** Pure: `owner/name` of `--repo`. */
export function parseRepoOption(value: string): { owner: string; repo: string } {
  const [owner, repo, ...rest] = value.split('/');
  if (rest.length > 0 || !isValidOwner(owner) || !isValidRepoName(repo))
    throw new UsageError(`--repo "${value}" is not owner/name`);
  return { owner, repo };
}

/** Pure: the node type and repo id of a record (the last two components of its job dir). */
export function nodeTypeAndRepo(record: DeployRecord): string {
  return record.job_dir.split('/').slice(-2).join('/');
}

/**
 * Pure: does `--target` name this record? It may be `<node_type>/<repo_id>` (as in the job dir), the
 * `for:` architecture (every record built for it), or the record's own key.
 */
export function targetMatches(record: DeployRecord, target: string): boolean {
  const [forArch] = record.target.split('|');
  return target === nodeTypeAndRepo(record) || target === forArch || target === record.target;
}

/** Pure: one line that says what a record was. */
export function describeRecord(record: DeployRecord): string {
  const [forArch, forAccel] = record.target.split('|');
  const built = forAccel ? `${forArch}, accel ${forAccel}` : forArch;
  return `${nodeTypeAndRepo(record)} (for ${built}): ${record.status} ${record.at} from ${record.job_dir}`;
}

/** The repositories (`owner/name`) that have deploy records of PR `pr`. */
export async function reposWithRecords(jobdirsRoot: string, pr: number): Promise<string[]> {
  const found: string[] = [];
  const uploads = path.join(jobdirsRoot, UPLOADS_DIR);
  for (const owner of await subdirs(uploads)) {
    for (const repo of await subdirs(path.join(uploads, owner))) {
      const dir = deployRecordsDir(jobdirsRoot, owner, repo, pr);
      if ((await readDeployRecords(dir)).length > 0) found.push(`${owner}/${repo}`);
    }
  }
  return found.sort();
}

async function subdirs(dir: string): Promise<string[]> {
  try {
    return (await fs.readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** Append one line to the audit log and make it durable before anything is removed. */
async function appendAudit(file: string, line: string): Promise<void> {
  const handle = await fs.open(file, 'a', 0o644);
  try {
    await handle.appendFile(line);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fsyncDir(path.dirname(file)); // a new log file's entry
}

export interface ForgetResult {
  repo: string;
  removed: DeployRecord[];
  auditLog: string;
}

/**
 * Remove the deploy records of `pr` (those `target` names, or all), each after its audit line. A usage
 * problem (ambiguous or unknown repo) throws UsageError; no matching record throws an Error.
 */
export async function forgetDeploys(
  jobdirsRoot: string,
  pr: number,
  opts: { repo?: string; target?: string },
  operator: Operator,
  now = new Date(),
): Promise<ForgetResult> {
  let repoName = opts.repo;
  if (repoName === undefined) {
    const repos = await reposWithRecords(jobdirsRoot, pr);
    if (repos.length === 0) throw new Error(`no deploy records of PR #${pr} in any repository`);
    if (repos.length > 1)
      throw new UsageError(`PR #${pr} has deploy records in ${repos.join(', ')}; choose one with --repo`);
    repoName = repos[0]!;
  }
  const { owner, repo } = parseRepoOption(repoName);
  const dir = deployRecordsDir(jobdirsRoot, owner, repo, pr);
  const { locksDir } = new JobDirs(jobdirsRoot);
  await mkdirDurable(locksDir);
  const lock = await waitForLock(path.join(locksDir, 'poller.lock'), LOCK_WAIT_MS);
  try {
    const records = await readDeployRecords(dir);
    if (records.length === 0) throw new Error(`no deploy records of ${owner}/${repo}#${pr}`);
    const chosen = opts.target ? records.filter((r) => targetMatches(r.record, opts.target!)) : records;
    if (chosen.length === 0) {
      const known = records.map((r) => nodeTypeAndRepo(r.record)).join(', ');
      throw new Error(
        `no deploy record of ${owner}/${repo}#${pr} matches --target ${opts.target}; there are: ${known}`,
      );
    }
    const auditLog = path.join(dir, FORGOTTEN_LOG);
    for (const { file, record } of chosen) {
      const line = {
        at: now.toISOString(),
        user: operator.user,
        sudo_user: operator.sudoUser ?? null,
        repo: `${owner}/${repo}`,
        pr,
        record_file: path.basename(file),
        record,
      };
      await appendAudit(auditLog, JSON.stringify(line) + '\n');
      await fs.rm(file, { force: true });
    }
    await fsyncDir(dir);
    return { repo: `${owner}/${repo}`, removed: chosen.map((c) => c.record), auditLog };
  } finally {
    await lock.release();
  }
}

/** Pure: what the command prints. */
export function formatForgetResult(pr: number, result: ForgetResult, operator: Operator): string {
  const who = operator.sudoUser ? `${operator.user} (sudo by ${operator.sudoUser})` : operator.user;
  return [
    ...result.removed.map((r) => `forgot the deploy of ${result.repo}#${pr} ${describeRecord(r)}`),
    `by ${who}; recorded in ${result.auditLog}`,
  ]
    .map((l) => l + '\n')
    .join('');
}

export async function deployForgetCommand(prArg: string, opts: DeployForgetOptions): Promise<void> {
  const pr = parsePrArgument(prArg);
  if (opts.repo !== undefined) parseRepoOption(opts.repo); // a usage error before anything is read
  const config = loadConfig(configPathFrom(opts.config));
  const operator = currentOperator();
  const result = await forgetDeploys(config.jobdirs, pr, opts, operator);
  process.stdout.write(formatForgetResult(pr, result, operator));
}
