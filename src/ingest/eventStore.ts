/**
 * Turning a verified delivery into an event file. Pure classification (`classifyEvent`) plus the
 * durable, exactly-once write (`storeEvent`). This is all the webhook server does with a delivery.
 */
import { promises as fs, existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import {
  chmodDurableSync,
  createFileExclusiveSync,
  createNewFileSync,
  exists,
  fsyncDir,
  fsyncDirSync,
  isTempName,
  mkdirDurableSync,
  publishDirSync,
  tempName,
  type SyncOption,
} from '../store/fsutil.js';
import { crashPoint } from '../store/crashPoint.js';
import {
  JobDirs,
  isValidDeliveryId,
  isValidOwner,
  isValidRepoName,
  type EventScope,
} from '../store/jobdirs.js';
import { STATE_FILE } from '../store/state.js';

/** Events about a pull request; they are stored under pr_<N>. */
const PR_EVENTS = new Set([
  'pull_request',
  'pull_request_review',
  'pull_request_review_comment',
  'pull_request_review_thread',
]);
/** Repo-level events kept for the record (a renamed, archived or deleted repository). */
const REPO_EVENTS = new Set(['repository']);
/** Presses of a check run's buttons: a Rebuild or Cancel button, or GitHub's own "Re-run" (rerequested). */
const CHECK_RUN_ACTIONS = new Set(['requested_action', 'rerequested']);
/** Every event type classifyEvent may store (the pull ingest fetches deliveries of these only). */
export const STORED_EVENTS: ReadonlySet<string> = new Set([
  ...PR_EVENTS,
  'issue_comment',
  'check_run',
  ...REPO_EVENTS,
]);
/** A job's external_id: its dir relative to jobdirs, `<YYYY.MM>/<owner>/<repo>/pr_<N>/event_<id>/...`. */
const JOB_DIR_PR = /^\d{4}\.\d{2}\/([^/]+)\/([^/]+)\/pr_(\d{1,9})\//;

export type Classification =
  | { store: true; owner: string; repo: string; scope: EventScope }
  | { store: false; reason: string }
  | { invalid: string };

interface PayloadShape {
  action?: unknown;
  number?: unknown;
  repository?: { name?: unknown; owner?: { login?: unknown } };
  pull_request?: { number?: unknown };
  issue?: { number?: unknown; pull_request?: unknown };
  installation?: { id?: unknown };
  check_run?: {
    name?: unknown;
    external_id?: unknown;
    app?: { id?: unknown };
    pull_requests?: Array<{ number?: unknown }>;
  };
}

export interface ClassifyOptions {
  /** `github.app_id`: check runs of any other App are dropped. Without it, only runs named `hpcbot/...`. */
  appId?: number;
}

/** Decide where (and whether) an event is stored. Names that could build odd paths are `invalid`. */
export function classifyEvent(event: string, payload: unknown, opts: ClassifyOptions = {}): Classification {
  const p = (payload ?? {}) as PayloadShape;
  let scope: EventScope | undefined;
  if (event === 'check_run') {
    const where = checkRunScope(p, opts);
    if ('reason' in where) return { store: false, reason: where.reason };
    scope = where;
  } else if (PR_EVENTS.has(event)) {
    const n = p.pull_request?.number ?? p.number;
    if (!isPrNumber(n)) return { invalid: `${event} payload has no valid pull_request.number` };
    scope = { kind: 'pr', number: n };
  } else if (event === 'issue_comment') {
    if (!p.issue?.pull_request)
      return { store: false, reason: 'comment on a plain issue, not a pull request' };
    if (!isPrNumber(p.issue.number)) return { invalid: 'issue_comment payload has no valid issue.number' };
    scope = { kind: 'pr', number: p.issue.number };
  } else if (REPO_EVENTS.has(event)) {
    scope = { kind: 'repo' };
  } else {
    return { store: false, reason: `the bot does not act on ${event} events` };
  }
  const owner = p.repository?.owner?.login;
  const repo = p.repository?.name;
  if (!isValidOwner(owner)) return { invalid: `repository.owner.login is not a valid GitHub login` };
  if (!isValidRepoName(repo)) return { invalid: `repository.name is not a valid GitHub repository name` };
  return { store: true, owner, repo, scope };
}

/**
 * A button press on one of the bot's check runs is stored under the PR of the job it names (its
 * external_id, when that is a job dir of this repository), else under `check_run.pull_requests[0]`,
 * else under the repository (`_repo`). GitHub leaves `pull_requests` empty for PRs from forks, which
 * is why the job dir comes first; the poller checks every part of it again.
 */
function checkRunScope(p: PayloadShape, opts: ClassifyOptions): EventScope | { reason: string } {
  if (!CHECK_RUN_ACTIONS.has(String(p.action)))
    return { reason: `check_run ${String(p.action)}: only button presses and re-runs are acted on` };
  const run = p.check_run ?? {};
  if (opts.appId !== undefined ? run.app?.id !== opts.appId : !String(run.name).startsWith('hpcbot/'))
    return { reason: 'a check run of another app' };
  const fromJob = typeof run.external_id === 'string' ? JOB_DIR_PR.exec(run.external_id) : null;
  const jobPr = fromJob && Number(fromJob[3]);
  if (
    fromJob &&
    fromJob[1] === p.repository?.owner?.login &&
    fromJob[2] === p.repository?.name &&
    isPrNumber(jobPr)
  )
    return { kind: 'pr', number: jobPr };
  const listed = Array.isArray(run.pull_requests) ? run.pull_requests[0]?.number : undefined;
  return isPrNumber(listed) ? { kind: 'pr', number: listed } : { kind: 'repo' };
}

function isPrNumber(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0;
}

export interface IncomingEvent {
  delivery: string;
  event: string;
  /** The verified raw body; it is embedded byte for byte as `payload`. */
  rawBody: string | Buffer;
  action: string | null;
  installationId: number | null;
  /** X-GitHub-* headers only. */
  headers: Record<string, string>;
  owner: string;
  repo: string;
  scope: EventScope;
  receivedAt: Date;
  /** `pull`: fetched from GitHub's list of deliveries (src/ingest/pull.ts); absent: the webhook. */
  source?: 'pull';
}

export interface StoredEvent {
  delivery: string;
  event: string;
  action: string | null;
  received_at: string;
  installation_id: number | null;
  headers: Record<string, string>;
  source?: 'pull';
  payload: unknown;
}

export const EVENT_FILE = 'event.json';

/** Where event directories are staged before they are moved into place (same filesystem as jobdirs). */
export const INCOMING_DIR = '.incoming';

export function incomingDir(jobdirs: JobDirs): string {
  return path.join(jobdirs.root, INCOMING_DIR);
}

/** An event ready to be written: what the server journals and then builds an event dir from. */
export interface EventRecord {
  delivery: string;
  /** The event dir, relative to jobdirs. */
  eventDir: string;
  /** The bytes of its event.json, in parts (the payload is the request's own buffer, not a copy). */
  content: Buffer[];
}

export function contentLength(rec: EventRecord): number {
  return rec.content.reduce((n, part) => n + part.length, 0);
}

export function eventRecord(jobdirs: JobDirs, ev: IncomingEvent): EventRecord {
  const eventDir = jobdirs.eventDir(ev.receivedAt, ev.owner, ev.repo, ev.scope, ev.delivery);
  return { delivery: ev.delivery, eventDir: jobdirs.relative(eventDir), content: renderEventFile(ev) };
}

/**
 * Store an event exactly once per delivery id, durably, and add it to the pending-work index: the
 * in-process way (tests, tools). The server journals deliveries first and builds their event dirs
 * afterwards (src/ingest/ingest.ts).
 */
export async function storeEvent(
  jobdirs: JobDirs,
  ev: IncomingEvent,
): Promise<{ duplicate: boolean; eventDir: string }> {
  const built = buildEventDir(jobdirs, eventRecord(jobdirs, ev));
  // A duplicate is queued only if an earlier store was cut short before queueing it: its dir is in
  // place and the poller has not seen it. One that went to the trash (a closed PR) stays away.
  const unseen = () => existsSync(built.eventDir) && !existsSync(path.join(built.eventDir, STATE_FILE));
  if (built.published || unseen()) await enqueueEventDir(jobdirs, built.claim, built.eventDir);
  crashPoint('store-queued');
  return { duplicate: !built.published, eventDir: built.eventDir };
}

/**
 * Store a payload the bot made itself (not a delivery it received) as the server would store it, and
 * return its event dir: the self-update smoke test's sample comment, and the tests' events. Throws if
 * classifyEvent would not store it.
 */
export async function storePayload(
  jobdirs: JobDirs,
  event: string,
  payload: Record<string, unknown>,
  delivery: string,
  installationId: number | null = null,
): Promise<string> {
  const where = classifyEvent(event, payload);
  if (!('store' in where) || !where.store) throw new Error(`not stored: ${JSON.stringify(where)}`);
  const { eventDir } = await storeEvent(jobdirs, {
    delivery,
    event,
    rawBody: JSON.stringify(payload),
    action: typeof payload.action === 'string' ? payload.action : null,
    installationId,
    headers: {},
    owner: where.owner,
    repo: where.repo,
    scope: where.scope,
    receivedAt: new Date(),
  });
  return eventDir;
}

export interface BuiltEvent {
  /** False if the event dir was there already (left untouched), or the delivery was stored before. */
  published: boolean;
  eventDir: string;
  claim: string;
}

/**
 * A claim records whether its event dir was ever in place, in its mode: it is created private
 * (`CLAIM_CLAIMED_MODE`, "claimed, not yet published") and made readable (`CLAIM_PUBLISHED_MODE`)
 * once its event dir is in place. A published claim whose event dir is gone is an event that was
 * stored and later moved away (its PR closed: the trash; or gc): it stays, so that neither a
 * redelivery nor a look-back over GitHub's deliveries stores that event again. A claim that was never
 * published is a store cut short; it is finished by the next store of the delivery, or released
 * (repairDeliveries). Claims written before this scheme (0644) count as published. The pending-work
 * index's entries are hard links to claims, so they share the mode: an entry is only ever linked to
 * a published claim.
 */
export const CLAIM_CLAIMED_MODE = 0o600;
export const CLAIM_PUBLISHED_MODE = 0o644;

/** Pure: whether a claim's mode says its event dir was in place once (any group or other bit). */
export function claimIsPublished(mode: number): boolean {
  return (mode & 0o077) !== 0;
}

export interface BuildOptions extends SyncOption {
  /**
   * Publish even if the claim says the event dir was published before: only for journaled records,
   * which the poller has never seen (so their event dir cannot have been moved away on purpose).
   */
  republish?: boolean;
}

/**
 * Put an event dir and its delivery claim in place, exactly once per delivery id:
 *
 * 1. Stage the event dir: `.incoming/.tmp-*` /event.json.
 * 2. Claim the delivery id: exclusive create of deliveries/<id> (mode CLAIM_CLAIMED_MODE), naming
 *    the event dir. An existing claim (a redelivery) names the dir to use, even if it is in an
 *    earlier month.
 * 3. Move the staged dir into place with rename(2); it fails if that event dir exists already.
 * 4. Mark the claim published (CLAIM_PUBLISHED_MODE).
 *
 * So an event dir appears complete or not at all, and never holds a temp file. A redelivery whose
 * claim exists finishes steps 3 and 4 if an earlier attempt crashed midway; if the event dir already
 * exists it is left untouched and `published` is false. A claim that is published already is never
 * published again (its event dir may be in the trash), unless `republish`. Everything is synced
 * before it returns, unless `sync: false` (the caller syncs the filesystem before it relies on the
 * result). Synchronous: the server runs it between requests, where a threadpool round trip per step
 * would cost more CPU.
 */
export function buildEventDir(jobdirs: JobDirs, rec: EventRecord, opts: BuildOptions = {}): BuiltEvent {
  const claim = path.join(jobdirs.deliveriesDir, rec.delivery);
  const staged = stageEventDir(incomingDir(jobdirs), rec.content, opts);
  let eventDir = jobdirs.resolve(rec.eventDir);
  let published = false;
  try {
    if (!createFileExclusiveSync(claim, rec.eventDir + '\n', { ...opts, mode: CLAIM_CLAIMED_MODE })) {
      eventDir = jobdirs.resolve(readFileSync(claim, 'utf8').trim());
      if (!opts.republish && claimIsPublished(statSync(claim).mode)) return { published, eventDir, claim };
    }
    crashPoint('store-claimed');
    published = publishDirSync(staged, eventDir, opts);
    crashPoint('store-published');
    // Published by this call or by an earlier one (the dir was in place): either way it was.
    markClaimPublished(claim, opts);
  } finally {
    if (!published) rmSync(staged, { recursive: true, force: true });
  }
  return { published, eventDir, claim };
}

/** Step 4 of buildEventDir; durable unless `sync: false`. */
function markClaimPublished(claim: string, opts: SyncOption = {}): void {
  if (!claimIsPublished(statSync(claim).mode)) chmodDurableSync(claim, CLAIM_PUBLISHED_MODE, opts);
}

/**
 * Whether a delivery is stored: its claim is published (its event dir was in place, even if it has
 * been moved away since: a closed PR's events are never stored again), or its event dir is in place.
 * A claim whose event dir never appeared (a store cut short by a kill) does not count: storing the
 * delivery again finishes it.
 */
export function isDeliveryStored(jobdirs: JobDirs, id: string): boolean {
  const claim = path.join(jobdirs.deliveriesDir, id);
  const st = statSync(claim, { throwIfNoEntry: false });
  if (!st) return false;
  if (claimIsPublished(st.mode)) return true;
  let named: string;
  try {
    named = readFileSync(claim, 'utf8').trim();
  } catch {
    return false; // released meanwhile
  }
  // An empty claim (a power loss) is left to repairDeliveries, as one it cannot read.
  return named === '' || existsSync(jobdirs.resolve(named));
}

/**
 * Add the event dir to the pending-work index. A queue entry holds the same text as the claim (the
 * dir relative to jobdirs), so it is made a hard link to the claim: one file per delivery instead of
 * two. Falls back to `JobDirs.enqueue` if the link cannot be made.
 */
export async function enqueueEventDir(jobdirs: JobDirs, claim: string, eventDir: string): Promise<void> {
  const entry = jobdirs.queueEntryPath(eventDir);
  try {
    await fs.link(claim, entry);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
      await jobdirs.enqueue(eventDir);
      return;
    }
  }
  await fsyncDir(jobdirs.queueDir);
}

/** A private directory holding an event file (synced, dir included, unless `sync: false`). */
function stageEventDir(incoming: string, content: Buffer[], opts: SyncOption): string {
  const dir = path.join(incoming, tempName());
  try {
    mkdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    mkdirDurableSync(incoming, opts);
    mkdirSync(dir);
  }
  crashPoint('store-staging');
  createNewFileSync(path.join(dir, EVENT_FILE), content, opts);
  if (opts.sync !== false) fsyncDirSync(dir);
  return dir;
}

const EVENT_FILE_END = Buffer.from('}\n');

/** The event file, with the raw body spliced in as `payload` so it is stored exactly as GitHub sent it. */
export function renderEventFile(ev: IncomingEvent): Buffer[] {
  const head = JSON.stringify({
    delivery: ev.delivery,
    event: ev.event,
    action: ev.action,
    received_at: ev.receivedAt.toISOString(),
    installation_id: ev.installationId,
    headers: ev.headers,
    ...(ev.source ? { source: ev.source } : {}),
  });
  const body = typeof ev.rawBody === 'string' ? Buffer.from(ev.rawBody) : ev.rawBody;
  return [Buffer.from(`${head.slice(0, -1)},"payload":`), body, EVENT_FILE_END];
}

export async function readEventFile(eventDir: string): Promise<StoredEvent> {
  return JSON.parse(await fs.readFile(path.join(eventDir, EVENT_FILE), 'utf8')) as StoredEvent;
}

export interface RepairReport {
  /** Event dirs that were complete but not in the pending-work index, and now are. */
  queued: string[];
  /** Delivery ids whose claim was never published and names no event dir; a redelivery is now stored as new. */
  released: string[];
  /** Delivery ids whose event dir was in place but whose claim was not marked published yet; now it is. */
  marked: string[];
  /** Claims or event files that storeEvent cannot have written (hand-edited?); left as they are. */
  unreadable: string[];
}

/**
 * Complete or roll back every delivery that a killed server left half-published; the server runs it
 * at start, before it listens. None of them was acknowledged, and GitHub does not redeliver on its
 * own, so each is settled here from what is on disk. For each claim (`deliveries/<id>`):
 *
 * - its event dir is in place, the poller never saw it (no state file) and it is not in the index:
 *   the dir is complete (it was moved into place whole), so it is indexed as storeEvent would have;
 * - its event dir is in place but the claim is not marked published (a kill between the two): it
 *   is marked now, before anything else;
 * - its event dir is not there and the claim was never published (a store cut short): the claim is
 *   released, so a redelivery is stored as new;
 * - its event dir is not there but the claim is published: the event was stored and moved away since
 *   (its PR closed and its dirs went to the trash, or gc). The claim stays: a redelivery or a
 *   look-back must not store a closed PR's commands again.
 *
 * Staged dirs in `.incoming/` are never acknowledged events; they go with the other temp files
 * (removeStaleTemps). Each step is one link or unlink, so an interrupted repair is finished by the next
 * start, and a repeated one changes nothing.
 */
export async function repairDeliveries(jobdirs: JobDirs): Promise<RepairReport> {
  const report: RepairReport = { queued: [], released: [], marked: [], unreadable: [] };
  let ids: string[];
  try {
    ids = (await fs.readdir(jobdirs.deliveriesDir)).filter((n) => !isTempName(n) && isValidDeliveryId(n));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return report;
    throw err;
  }
  for (const id of ids.sort()) {
    const claim = path.join(jobdirs.deliveriesDir, id);
    let eventDir: string;
    let published: boolean;
    try {
      const named = (await fs.readFile(claim, 'utf8')).trim();
      if (named === '') throw new Error('empty claim');
      eventDir = jobdirs.resolve(named);
      published = claimIsPublished((await fs.stat(claim)).mode);
    } catch {
      report.unreadable.push(claim);
      continue;
    }
    if (!(await exists(eventDir))) {
      if (published) continue; // stored, then moved to the trash (or removed by gc): stays claimed
      await fs.rm(claim, { force: true });
      report.released.push(id);
      continue;
    }
    if (!published) {
      markClaimPublished(claim);
      report.marked.push(id);
    }
    // In this order: the poller writes the state file before it drops the index entry.
    if ((await jobdirs.isQueued(eventDir)) || (await exists(path.join(eventDir, STATE_FILE)))) continue;
    const stored = await readEventFile(eventDir).catch(() => undefined);
    if (stored?.delivery !== id) {
      report.unreadable.push(path.join(eventDir, EVENT_FILE));
      continue;
    }
    await enqueueEventDir(jobdirs, claim, eventDir);
    report.queued.push(eventDir);
  }
  if (report.released.length > 0) await fsyncDir(jobdirs.deliveriesDir);
  return report;
}
