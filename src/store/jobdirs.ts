/**
 * The on-disk layout under `jobdirs`. Everything the bot knows lives here (see jobdirs/README.md).
 *
 *   <root>/<YYYY.MM>/<owner>/<repo>/pr_<N>/event_<delivery>/event.json   an event about a PR
 *   <root>/<YYYY.MM>/<owner>/<repo>/_repo/event_<delivery>/event.json   a repo-level event
 *   <root>/deliveries/<delivery>     claim of a delivery id: holds the event dir (relative to root)
 *   <root>/queue/<name>              pending-work index: one entry per directory the poller must advance
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createFileExclusive, isTempName, mkdirDurable } from './fsutil.js';

/** GitHub's rules: logins are alphanumerics and single hyphens; repo names add `.` and `_`. */
const OWNER_RE = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$/;
const REPO_RE = /^[A-Za-z0-9._-]{1,100}$/;
/** Delivery ids are GUIDs; we accept a safe superset so that tests and replays can name their own. */
const DELIVERY_RE = /^[A-Za-z0-9-]{1,64}$/;

export function isValidOwner(owner: unknown): owner is string {
  return typeof owner === 'string' && OWNER_RE.test(owner);
}

export function isValidRepoName(repo: unknown): repo is string {
  return typeof repo === 'string' && REPO_RE.test(repo) && repo !== '.' && repo !== '..';
}

export function isValidDeliveryId(id: unknown): id is string {
  return typeof id === 'string' && DELIVERY_RE.test(id);
}

/**
 * Pure: the pull request (`owner/repo#N`), or the repository, a path relative to jobdirs belongs to
 * (`<month>/<owner>/<repo>/pr_<N>/...` or `.../_repo/...`); undefined outside that layout.
 */
export function prOfRelativeDir(rel: string): string | undefined {
  const [, owner, repo, scope] = rel.split(/[\\/]/);
  if (!owner || !repo || !scope) return undefined;
  const n = /^pr_(\d+)$/.exec(scope)?.[1];
  return n ? `${owner}/${repo}#${n}` : `${owner}/${repo}`;
}

export type EventScope = { kind: 'pr'; number: number } | { kind: 'repo' };

export function monthDir(date: Date): string {
  return `${date.getUTCFullYear()}.${String(date.getUTCMonth() + 1).padStart(2, '0')}`;
}

export class JobDirs {
  readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  get queueDir(): string {
    return path.join(this.root, 'queue');
  }

  get deliveriesDir(): string {
    return path.join(this.root, 'deliveries');
  }

  get mirrorsDir(): string {
    return path.join(this.root, 'mirrors');
  }

  get locksDir(): string {
    return path.join(this.root, 'locks');
  }

  prDir(month: string, owner: string, repo: string, pr: number): string {
    return path.join(this.root, month, owner, repo, `pr_${pr}`);
  }

  eventDir(received: Date, owner: string, repo: string, scope: EventScope, delivery: string): string {
    const scopeDir = scope.kind === 'pr' ? `pr_${scope.number}` : '_repo';
    return path.join(this.root, monthDir(received), owner, repo, scopeDir, `event_${delivery}`);
  }

  /** Every job directory of a PR, across months (month, owner, repo, pr_N, event, run, node type, repo id). */
  async prJobDirs(owner: string, repo: string, pr: number): Promise<string[]> {
    const found: string[] = [];
    for (const month of (await listDir(this.root)).filter((m) => /^\d{4}\.\d{2}$/.test(m)).sort()) {
      const prDir = this.prDir(month, owner, repo, pr);
      for (const ev of (await listDir(prDir)).filter((e) => e.startsWith('event_')).sort()) {
        for (const run of (await listDir(path.join(prDir, ev))).filter((r) => /^run_\d+$/.test(r)).sort()) {
          const runDir = path.join(prDir, ev, run);
          for (const node of (await listDir(runDir)).sort()) {
            for (const repoId of (await listDir(path.join(runDir, node))).sort()) {
              found.push(path.join(runDir, node, repoId));
            }
          }
        }
      }
    }
    return found;
  }

  relative(p: string): string {
    return path.relative(this.root, p);
  }

  /** Resolve a path read from the index; refuses anything outside root. */
  resolve(rel: string): string {
    const abs = path.resolve(this.root, rel);
    if (abs !== this.root && !abs.startsWith(this.root + path.sep)) {
      throw new Error(`path ${JSON.stringify(rel)} is outside jobdirs`);
    }
    return abs;
  }

  /** The dry-run store stands in for GitHub: other repositories' comments are none of a job's business. */
  get dryRunDir(): string {
    return path.join(this.root, 'dry-run');
  }

  async ensureBaseDirs(): Promise<void> {
    for (const d of [this.queueDir, this.deliveriesDir, this.locksDir, this.dryRunDir]) await mkdirDurable(d);
    await fs.chmod(this.dryRunDir, 0o700);
  }

  // ---- pending-work index -------------------------------------------------------------------

  /** The pending-work index entry of `dir`: a file holding the dir relative to jobdirs. */
  queueEntryPath(dir: string): string {
    return path.join(this.queueDir, this.relative(dir).split(path.sep).join('__'));
  }

  /** Add `dir` to the pending-work index (idempotent). */
  async enqueue(dir: string): Promise<void> {
    await createFileExclusive(this.queueEntryPath(dir), this.relative(dir) + '\n');
  }

  async dequeue(dir: string): Promise<void> {
    await fs.rm(this.queueEntryPath(dir), { force: true });
  }

  async isQueued(dir: string): Promise<boolean> {
    try {
      await fs.access(this.queueEntryPath(dir));
      return true;
    } catch {
      return false;
    }
  }

  /** Absolute paths of all pending directories, oldest entry name first (names sort by month). */
  async pending(): Promise<string[]> {
    return (await this.pendingEntries()).map((e) => e.dir);
  }

  /**
   * The pending-work index as (entry name, directory) pairs, oldest first. An entry's content never
   * changes, so `known` (entry name → relative dir, from the tick cache) saves reading its file.
   */
  async pendingEntries(
    known?: ReadonlyMap<string, { rel: string }>,
  ): Promise<Array<{ name: string; dir: string }>> {
    let names: string[];
    try {
      names = await fs.readdir(this.queueDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const entries: Array<{ name: string; dir: string }> = [];
    for (const name of names.sort()) {
      if (isTempName(name)) continue;
      try {
        const rel =
          known?.get(name)?.rel ?? (await fs.readFile(path.join(this.queueDir, name), 'utf8')).trim();
        entries.push({ name, dir: this.resolve(rel) });
      } catch (err) {
        // One bad entry (hand-edited, pointing outside jobdirs, not a file) must not stop the others.
        process.emitWarning(`skipping queue entry ${name}: ${(err as Error).message}`);
      }
    }
    return entries;
  }
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return (await fs.readdir(dir, { withFileTypes: true }))
      .filter((d) => d.isDirectory() && !isTempName(d.name))
      .map((d) => d.name);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR')
      return [];
    throw err;
  }
}
