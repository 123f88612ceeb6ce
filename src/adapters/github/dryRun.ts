/**
 * The dry-run store: with `github.dry_run`, comments, check runs and commit statuses are written to jobdirs
 * instead of GitHub, and read back from there.
 */
import { createHash } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import type { Config } from '../../config/config.js';
import type { Logger } from '../../log.js';
import { createFileExclusive, mkdirDurable, writeFileAtomic } from '../../store/fsutil.js';
import { checkNumber, checkRepo, GitHubError, ref } from './errors.js';
import type {
  CheckRunBody,
  CommitStatusBody,
  IssueComment,
  ListedCheckRun,
  ListedCheckRuns,
  PullRequestInfo,
  RepoRef,
} from './types.js';

/**
 * Writes: `<jobdirs>/dry-run/<owner>/<repo>/issue_<N>/comment_<id>.md` holds the body.
 * Reads, where present (so a site.yaml can be tried without GitHub; `hpcbot sample-event` fills them):
 * `pulls/<N>.json` (a PullRequestInfo) answers getPullRequest, and `repo.git` is the clone URL.
 * Ids are allocated per repo by exclusive creation of `comment-ids/<id>` (which names the issue), so
 * concurrent processes never share one and `updateComment(repo, id)` finds the file without a scan.
 */
export class DryRunComments {
  private readonly root: string;
  private readonly user: string;

  constructor(
    config: Config,
    private readonly log: Logger,
  ) {
    this.root = path.join(config.jobdirs, 'dry-run');
    this.user = config.github.bot_login ?? `${config.instance}[dry-run]`;
  }

  private repoDir(repo: RepoRef): string {
    checkRepo(repo.owner, repo.repo);
    return path.join(this.root, repo.owner, repo.repo);
  }

  async pullRequest(repo: RepoRef, number: number): Promise<PullRequestInfo | undefined> {
    const file = path.join(this.repoDir(repo), 'pulls', `${number}.json`);
    try {
      return JSON.parse(await fs.readFile(file, 'utf8')) as PullRequestInfo;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  localRepo(owner: string, repo: string): string | undefined {
    const dir = path.join(this.root, owner, repo, 'repo.git');
    return existsSync(dir) ? dir : undefined;
  }

  private file(repo: RepoRef, issue: number, id: number): string {
    return path.join(this.repoDir(repo), `issue_${issue}`, `comment_${id}.md`);
  }

  async create(repo: RepoRef, issue: number, body: string): Promise<IssueComment> {
    const idsDir = path.join(this.repoDir(repo), 'comment-ids');
    await mkdirDurable(idsDir);
    await mkdirDurable(path.dirname(this.file(repo, issue, 1)));
    let id = (await maxNumericName(idsDir)) + 1;
    while (!(await createFileExclusive(path.join(idsDir, String(id)), `${issue}\n`))) id++;
    const file = this.file(repo, issue, id);
    await writeFileAtomic(file, body);
    this.log.debug({ path: file, issue, commentId: id }, 'dry run: comment written instead of posted');
    return { id, body, user: this.user };
  }

  private async issueOf(repo: RepoRef, id: number): Promise<number> {
    let text: string;
    try {
      text = await fs.readFile(path.join(this.repoDir(repo), 'comment-ids', String(id)), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new GitHubError(`dry run: no comment ${id} in ${ref(repo)}`, 404, false);
      throw err;
    }
    const issue = Number(text.trim());
    checkNumber(issue, 'issue number');
    return issue;
  }

  async update(repo: RepoRef, id: number, body: string): Promise<void> {
    const file = this.file(repo, await this.issueOf(repo, id), id);
    await writeFileAtomic(file, body);
    this.log.debug({ path: file, commentId: id }, 'dry run: comment updated instead of posted');
  }

  async get(repo: RepoRef, id: number): Promise<IssueComment> {
    const file = this.file(repo, await this.issueOf(repo, id), id);
    try {
      return { id, body: await fs.readFile(file, 'utf8'), user: this.user };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new GitHubError(`dry run: comment ${id} in ${ref(repo)} has no file ${file}`, 404, false);
      throw err;
    }
  }

  async list(repo: RepoRef, issue: number): Promise<IssueComment[]> {
    const dir = path.dirname(this.file(repo, issue, 1));
    let names: string[];
    try {
      names = await fs.readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const ids = names
      .map((n) => /^comment_(\d+)\.md$/.exec(n)?.[1])
      .filter((s): s is string => s !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
    const out: IssueComment[] = [];
    for (const id of ids) {
      out.push({ id, body: await fs.readFile(path.join(dir, `comment_${id}.md`), 'utf8'), user: this.user });
    }
    return out;
  }
}

async function maxNumericName(dir: string): Promise<number> {
  let max = 0;
  for (const name of await fs.readdir(dir)) {
    if (/^\d+$/.test(name)) max = Math.max(max, Number(name));
  }
  return max;
}

/**
 * Check runs and commit statuses in the dry-run store, beside the comments (SHAs are checked by the caller):
 *   `checks/<sha>/<name-slug>/<id>.json`    one file per check run: its id, head_sha and what was sent
 *   `check-ids/<id>`                       `<sha>/<name-slug>`: where run <id> lives (exclusive creation)
 *   `statuses/<sha>/<context-slug>.json`    the latest status of each context (a new one replaces it)
 * GitHub shows the newest run of each name; so does the highest id in a name's directory.
 */
export class DryRunChecks {
  private readonly root: string;

  constructor(
    config: Config,
    private readonly log: Logger,
  ) {
    this.root = path.join(config.jobdirs, 'dry-run');
  }

  private repoDir(repo: RepoRef): string {
    checkRepo(repo.owner, repo.repo);
    return path.join(this.root, repo.owner, repo.repo);
  }

  private runFile(repo: RepoRef, where: string, id: number): string {
    return path.join(this.repoDir(repo), 'checks', where, `${id}.json`);
  }

  async createCheckRun(repo: RepoRef, headSha: string, run: CheckRunBody): Promise<{ id: number }> {
    const where = `${headSha}/${slug(run.name)}`;
    const idsDir = path.join(this.repoDir(repo), 'check-ids');
    await mkdirDurable(idsDir);
    await mkdirDurable(path.dirname(this.runFile(repo, where, 1)));
    let id = (await maxNumericName(idsDir)) + 1;
    while (!(await createFileExclusive(path.join(idsDir, String(id)), `${where}\n`))) id++;
    const file = this.runFile(repo, where, id);
    await writeFileAtomic(file, runJson(id, headSha, run));
    this.log.debug({ path: file, checkRunId: id }, 'dry run: check run written instead of created');
    return { id };
  }

  async updateCheckRun(repo: RepoRef, id: number, run: CheckRunBody): Promise<void> {
    let where: string;
    try {
      where = (await fs.readFile(path.join(this.repoDir(repo), 'check-ids', String(id)), 'utf8')).trim();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new GitHubError(`dry run: no check run ${id} in ${ref(repo)}`, 404, false);
      throw err;
    }
    const file = this.runFile(repo, where, id);
    await writeFileAtomic(file, runJson(id, where.split('/')[0]!, run));
    this.log.debug({ path: file, checkRunId: id }, 'dry run: check run updated instead of patched');
  }

  async findCheckRun(repo: RepoRef, headSha: string, name: string, externalId: string) {
    const dir = path.dirname(this.runFile(repo, `${headSha}/${slug(name)}`, 1));
    let names: string[];
    try {
      names = await fs.readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    let found: number | undefined;
    for (const file of names.filter((n) => /^\d+\.json$/.test(n))) {
      const run = JSON.parse(await fs.readFile(path.join(dir, file), 'utf8')) as {
        id: number;
      } & CheckRunBody;
      if (run.name === name && run.external_id === externalId) found = Math.max(found ?? 0, run.id);
    }
    return found;
  }

  /** The highest id of each name on `sha`, as GitHub's filter=latest lists them. */
  async listCheckRuns(repo: RepoRef, sha: string): Promise<ListedCheckRuns> {
    const shaDir = path.join(this.repoDir(repo), 'checks', sha);
    const runs: ListedCheckRun[] = [];
    for (const nameDir of await readdirIfExists(shaDir)) {
      const ids = (await readdirIfExists(path.join(shaDir, nameDir)))
        .filter((n) => /^\d+\.json$/.test(n))
        .map((n) => Number.parseInt(n, 10));
      if (ids.length === 0) continue;
      const file = path.join(shaDir, nameDir, `${Math.max(...ids)}.json`);
      const run = JSON.parse(await fs.readFile(file, 'utf8')) as { id: number } & CheckRunBody;
      runs.push({
        id: run.id,
        name: run.name,
        status: run.status,
        conclusion: run.conclusion ?? null,
        title: run.output.title,
        summary: run.output.summary,
      });
    }
    return { runs, complete: true };
  }

  async createCommitStatus(repo: RepoRef, sha: string, status: CommitStatusBody): Promise<void> {
    const file = path.join(this.repoDir(repo), 'statuses', sha, `${slug(status.context)}.json`);
    await mkdirDurable(path.dirname(file));
    await writeFileAtomic(file, JSON.stringify({ sha, ...status }, null, 2) + '\n');
    this.log.debug({ path: file }, 'dry run: commit status written instead of posted');
  }
}

async function readdirIfExists(dir: string): Promise<string[]> {
  try {
    return await fs.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

function runJson(id: number, headSha: string, run: CheckRunBody): string {
  return JSON.stringify({ id, head_sha: headSha, ...run }, null, 2) + '\n';
}

/** A file name for a check name or status context: readable, and distinct for distinct names (hash). */
function slug(name: string): string {
  const readable = name.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 100);
  return `${readable}-${createHash('sha256').update(name).digest('hex').slice(0, 8)}`;
}
