/**
 * Pure: how an instance's health reads to reviewers, from its poller heartbeat. `bot: ping` gets one
 * line, `bot: status` the lines of renderInstanceHealth, and an active job the rows of jobHealthRows
 * (a partition that is down or drained, a scheduler that has not answered for health.alert_after).
 */
import type { JobRow } from '../store/job.js';
import type { BackendHealth, Heartbeat, IngestHealth, PartitionHealth } from '../store/heartbeat.js';
import type { SelfUpdateEntry } from '../selfUpdate/log.js';
import { formatRowDate } from './jobComment.js';
import { codeSpan } from './markdown.js';

export interface InstanceHealthInput {
  instance: string;
  version: string;
  /** The poller's heartbeat; undefined if it never wrote one. */
  heartbeat: Heartbeat | undefined;
  /** Entries of the pending-work index. */
  queueDepth: number;
  /** health.alert_after, in seconds. */
  alertAfter: number;
  now: Date;
  /** The newest self-update or rollback (src/selfUpdate/log.ts), if any. */
  lastSelfUpdate?: SelfUpdateEntry;
}

/** `95` → `1m 35s`; `7384` → `2h 3m`; `200000` → `2d 7h`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`;
}

const ago = (iso: string, now: Date) => `${formatDuration((now.getTime() - Date.parse(iso)) / 1000)} ago`;

/** Partition states in which no job starts. */
const BLOCKING = /^(down|drain|drained|draining|inact|inactive)/;

export function isBlocking(p: PartitionHealth): boolean {
  return BLOCKING.test(p.state);
}

/** The scheduler part: answering, or unreachable since when (flagged once past alert_after). */
export function describeBackend(backend: BackendHealth | undefined, alertAfter: number, now: Date): string {
  if (!backend || (!backend.lastOk && !backend.lastError)) return 'scheduler not asked yet';
  if (backend.unreachableSince) {
    const down = (now.getTime() - Date.parse(backend.unreachableSince)) / 1000;
    const mark = down >= alertAfter ? ':warning: ' : '';
    return `${mark}scheduler unreachable since ${backend.unreachableSince} (${backend.lastError?.message ?? 'no answer'})`;
  }
  return `scheduler answered ${ago(backend.lastOk!, now)}`;
}

export function describePartitions(partitions: PartitionHealth[] | undefined): string | undefined {
  if (!partitions || partitions.length === 0) return undefined;
  return partitions
    .map((p) =>
      isBlocking(p)
        ? `:warning: partition ${codeSpan(p.partition)} ${p.state} since ${p.since}`
        : `partition ${codeSpan(p.partition)} ${p.state}`,
    )
    .join(', ');
}

export function describeIngest(ingest: IngestHealth | undefined, now: Date): string {
  if (!ingest || ingest.mode === 'webhook') return 'ingest webhook';
  const parts = [`ingest ${ingest.mode}`];
  if (ingest.lastPullError) parts.push(`:warning: last pull failed ${ago(ingest.lastPullError.at, now)}`);
  else if (ingest.lastPullAt) parts.push(`last pull ${ago(ingest.lastPullAt, now)}`);
  if (ingest.lagMs !== undefined) parts.push(`lag ${(ingest.lagMs / 1000).toFixed(1)}s`);
  if (ingest.recovered) parts.push(`${ingest.recovered} recovered`);
  return parts.join(', ');
}

/** The last self-update or rollback: what it switched to (from), when, and for a rollback why. */
export function describeSelfUpdate(e: SelfUpdateEntry, now: Date): string {
  const sha = (s: string | undefined) => codeSpan((s ?? '?').slice(0, 12));
  const what =
    e.action === 'rolled back'
      ? `:warning: rolled back from ${sha(e.from)} to ${sha(e.to)}`
      : `updated${e.from ? ` from ${sha(e.from)}` : ''} to ${sha(e.to)}`;
  const why = e.action === 'rolled back' && e.reason ? ` (${codeSpan(e.reason, 120)})` : '';
  return `last self-update: ${what} at ${e.at}, ${ago(e.at, now)}${why}`;
}

/** `bot: ping`: one line, so that a reviewer sees at once which instances are alive. */
export function renderPingLine(i: InstanceHealthInput): string {
  const hb = i.heartbeat;
  const head = `pong from instance ${codeSpan(i.instance)} (hpc-build-bot ${i.version})`;
  const update = i.lastSelfUpdate ? `, ${describeSelfUpdate(i.lastSelfUpdate, i.now)}` : '';
  if (!hb) return `${head}: no poller heartbeat yet, ${i.queueDepth} in queue${update}`;
  const backend = [
    describeBackend(hb.backend, i.alertAfter, i.now),
    describePartitions(hb.backend?.partitions),
  ]
    .filter((s) => s !== undefined)
    .join(', ');
  return `${head}: up ${formatDuration((i.now.getTime() - Date.parse(hb.startedAt)) / 1000)}, ${i.queueDepth} in queue, ${describeIngest(hb.ingest, i.now)}, ${backend}${update}`;
}

/** `bot: status`: the instance's health, from its heartbeat, as a few list lines. */
export function renderInstanceHealth(i: InstanceHealthInput): string[] {
  const hb = i.heartbeat;
  const head = `- instance ${codeSpan(i.instance)} (hpc-build-bot ${i.version})`;
  if (!hb) return [`${head}: no poller heartbeat yet`];
  const tick = hb.lastTick ? `last tick ${ago(hb.lastTick.at, i.now)}` : 'no tick yet';
  const lines = [
    `${head}: ${tick}, ${i.queueDepth} in queue`,
    `  - ${describeIngest(hb.ingest, i.now)}`,
    `  - ${describeBackend(hb.backend, i.alertAfter, i.now)}`,
  ];
  const partitions = describePartitions(hb.backend?.partitions);
  if (partitions) lines.push(`  - ${partitions}`);
  return lines;
}

/** The partition a node type's jobs go to: `-p X`, `-pX`, `--partition=X` or `--partition X`. */
export function partitionOf(params: string[]): string | undefined {
  let found: string | undefined;
  params.forEach((p, i) => {
    const m = /^(?:--partition=|-p)(.+)$/.exec(p);
    if (m) found = m[1];
    else if ((p === '-p' || p === '--partition') && params[i + 1] !== undefined) found = params[i + 1];
  });
  return found;
}

/** Keys of the rows this module adds, each present only while its condition lasts. */
export const UNREACHABLE_ROW = 'health:scheduler-unreachable';
const PARTITION_ROW = 'health:partition';
const HEALTH_ROWS = new Set([UNREACHABLE_ROW, PARTITION_ROW]);

export interface JobHealthInput {
  instance: string;
  /** The job's stage: the partition row is for jobs that wait (submitted, released). */
  stage: string;
  /** Its partition's state, if known. */
  partition: PartitionHealth | undefined;
  unreachableSince: string | undefined;
  alertAfter: number;
  now: Date;
}

const WAITING = new Set(['submitted', 'released']);

export function healthRowsOf(rows: JobRow[]): JobRow[] {
  return rows.filter((r) => HEALTH_ROWS.has(r.key));
}

/**
 * The job's rows with its health rows brought up to date: while its partition is down or drained and
 * the job waits, one row says so; while the scheduler has not answered for alert_after, one row says
 * that. Each is added once and removed when its condition ends. The same array if nothing changes.
 */
export function jobHealthRows(rows: JobRow[], i: JobHealthInput): JobRow[] {
  const at = formatRowDate(i.now);
  const wanted: JobRow[] = [];
  if (i.partition && isBlocking(i.partition) && WAITING.has(i.stage))
    wanted.push({
      key: PARTITION_ROW,
      at,
      status: 'waiting',
      comment: `partition ${codeSpan(i.partition.partition)} is ${i.partition.state} since ${i.partition.since}: the job starts once it is up again`,
    });
  if (
    i.unreachableSince !== undefined &&
    i.now.getTime() - Date.parse(i.unreachableSince) >= i.alertAfter * 1000
  )
    wanted.push({
      key: UNREACHABLE_ROW,
      at,
      status: 'scheduler',
      comment: `instance ${codeSpan(i.instance)}: scheduler unreachable since ${i.unreachableSince}`,
    });
  const kept = rows.filter((r) => !HEALTH_ROWS.has(r.key) || wanted.some((w) => w.key === r.key));
  const added = wanted.filter((w) => !rows.some((r) => r.key === w.key));
  return kept.length === rows.length && added.length === 0 ? rows : [...kept, ...added];
}
