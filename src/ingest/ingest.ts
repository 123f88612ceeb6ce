/**
 * The server's write path, from a verified delivery to an event dir the poller can see:
 *
 * 1. A redelivery is recognised: the same delivery id is in flight here, or its claim is on disk.
 * 2. The delivery is appended to the journal (src/ingest/journal.ts). `accept` resolves once the
 *    record is durable; concurrent deliveries share the write and the fdatasync (group commit).
 * 3. Its event dir and claim are built (buildEventDir) without any fsync, once no delivery has
 *    arrived for a moment: answering GitHub goes first, building catches up in the gaps (or when
 *    too many wait to be built).
 * 4. At a checkpoint the journal segment is closed, one syncfs makes every event dir built from it
 *    durable at once, the segment is deleted, and only then
 * 5. the event dirs are added to the pending-work index. So the poller only ever sees durable event
 *    dirs, and a record still in the journal was never seen by the poller.
 *
 * A crash at any point leaves each acknowledged delivery either in the journal (`replayJournal`
 * builds it at the next start, before the server listens) or built and durable, which
 * `repairDeliveries` queues if it is not queued yet.
 */
import { existsSync, promises as fs, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { crashPoint } from '../store/crashPoint.js';
import { fsyncDir, publishDirSync, syncFileSystem, tempName } from '../store/fsutil.js';
import type { JobDirs } from '../store/jobdirs.js';
import { STATE_FILE } from '../store/state.js';
import {
  EVENT_FILE,
  buildEventDir,
  contentLength,
  enqueueEventDir,
  eventRecord,
  incomingDir,
  isDeliveryStored,
  type BuiltEvent,
  type EventRecord,
  type IncomingEvent,
} from './eventStore.js';
import { Journal, JournalBrokenError, journalDir, readJournal, type Segment } from './journal.js';

export interface IngestOptions {
  logger?: Logger;
}

/** Accepted deliveries not yet in the index, beyond which `accept` waits (memory stays bounded). */
const MAX_PENDING_RECORDS = 4096;
const MAX_PENDING_BYTES = 256 * 1024 * 1024;
/**
 * Building waits while deliveries arrive (answering GitHub goes first): until none has started for
 * QUIET_MS, unless BUILD_WAITS_UP_TO are waiting to be built.
 */
const BUILD_WAITS_UP_TO = 1024;
const QUIET_MS = 10;
/**
 * Least time between the starts of two checkpoints (one syncfs each): an idle server checkpoints a
 * delivery at once, under load each checkpoint takes in more deliveries.
 */
const CHECKPOINT_EVERY_MS = 200;
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 30_000;

export class Ingest {
  private journal: Promise<Journal> | undefined;
  /** Delivery id → its store attempt: true once durable as new, false if stored before. */
  private readonly inFlight = new Map<string, Promise<boolean>>();
  private toBuild: EventRecord[] = [];
  private readonly built = new Map<EventRecord, BuiltEvent>();
  /** Rotated segments still in the journal. */
  private closed: Segment[] = [];
  /** Records whose segment is deleted, not yet in the index. */
  private toIndex: EventRecord[] = [];
  private building: Promise<void> | undefined;
  private checkpointing: Promise<void> | undefined;
  private lastCheckpointAt = 0;
  private accepted = 0;
  private indexed = 0;
  private pendingBytes = 0;
  private changeWaiters: (() => void)[] = [];
  private settleWaiters: { upTo: number; resolve: () => void }[] = [];
  private problem: string | undefined;
  private journalBroken: string | undefined;
  /** Deliveries between the start of `accept` and its answer. */
  private accepting = 0;
  /** Of those, the ones waiting for room (MAX_PENDING_*): building must not wait for them. */
  private waitingForRoom = 0;
  private lastAcceptAt = 0;
  private quietWaiters: (() => void)[] = [];

  constructor(
    private readonly jobdirs: JobDirs,
    private readonly opts: IngestOptions = {},
  ) {}

  /**
   * Store a delivery: resolves once it is durable (`duplicate: false`), or once it is known to be a
   * redelivery of one that is (`duplicate: true`). Rejects if it could not be made durable.
   */
  async accept(ev: IncomingEvent): Promise<{ duplicate: boolean }> {
    this.accepting++;
    this.lastAcceptAt = performance.now();
    try {
      return await this.acceptOnce(ev);
    } finally {
      if (--this.accepting === 0) this.wakeBuilder();
    }
  }

  private async acceptOnce(ev: IncomingEvent): Promise<{ duplicate: boolean }> {
    const record = eventRecord(this.jobdirs, ev);
    for (;;) {
      const earlier = this.inFlight.get(record.delivery);
      if (earlier) {
        const firstStored = await earlier.then(
          () => true,
          () => false,
        );
        if (firstStored) return { duplicate: true };
        if (this.inFlight.get(record.delivery) === earlier) this.inFlight.delete(record.delivery);
        continue; // the first copy could not be stored; this one tries again
      }
      const attempt = this.store(record);
      this.inFlight.set(record.delivery, attempt);
      let isNew: boolean;
      try {
        isNew = await attempt;
      } catch (err) {
        if (this.inFlight.get(record.delivery) === attempt) this.inFlight.delete(record.delivery);
        throw err;
      }
      // A new record stays in flight until its claim is on disk.
      if (!isNew) this.inFlight.delete(record.delivery);
      return { duplicate: !isNew };
    }
  }

  /** Resolves once every delivery accepted so far is in the pending-work index. */
  settled(): Promise<void> {
    const upTo = this.accepted;
    if (this.indexed >= upTo) return Promise.resolve();
    return new Promise((resolve) => this.settleWaiters.push({ upTo, resolve }));
  }

  /** Why deliveries are not reaching the index right now (retried meanwhile), if they are not. */
  get trouble(): string | undefined {
    return this.journalBroken ?? this.problem;
  }

  /** Finish what was accepted (appends, builds, the last checkpoint) and close the journal. */
  async close(): Promise<void> {
    const journal = await this.journal?.catch(() => undefined);
    if (!journal) return;
    const last = await journal.close();
    if (last) this.closed.push(last);
    this.kickCheckpoint();
    while (this.checkpointing) await this.checkpointing;
  }

  private async store(record: EventRecord): Promise<boolean> {
    // Synchronous: one cached lookup, cheaper than a threadpool round trip. A claim whose event dir
    // never appeared (an in-process store killed midway) is finished by storing the delivery again.
    if (isDeliveryStored(this.jobdirs, record.delivery)) return false;
    while (this.accepted - this.indexed >= MAX_PENDING_RECORDS || this.pendingBytes >= MAX_PENDING_BYTES) {
      this.waitingForRoom++;
      this.wakeBuilder();
      await this.changed().finally(() => this.waitingForRoom--);
    }
    const journal = await this.openJournal();
    this.pendingBytes += contentLength(record);
    try {
      await journal.append(record);
    } catch (err) {
      this.pendingBytes -= contentLength(record);
      if (err instanceof JournalBrokenError) this.journalBroken = err.message; // until a restart
      throw err;
    }
    this.accepted++;
    this.toBuild.push(record);
    this.kickBuild();
    this.kickCheckpoint();
    return true;
  }

  /** Opened at the first delivery; a failed open is tried again at the next one. */
  private openJournal(): Promise<Journal> {
    if (!this.journal) {
      const opening = Journal.open(journalDir(this.jobdirs));
      opening.catch(() => {
        if (this.journal === opening) this.journal = undefined;
      });
      this.journal = opening;
    }
    return this.journal;
  }

  private wakeBuilder(): void {
    for (const resolve of this.quietWaiters.splice(0)) resolve();
  }

  private kickBuild(): void {
    this.building ??= this.buildLoop().finally(() => {
      this.building = undefined;
      if (this.toBuild.length > 0) this.kickBuild();
    });
  }

  private kickCheckpoint(): void {
    this.checkpointing ??= this.checkpointLoop().finally(() => {
      this.checkpointing = undefined;
      if (this.checkpointDue()) this.kickCheckpoint();
    });
  }

  private checkpointDue(): boolean {
    return this.indexed < this.accepted || this.closed.length > 0 || this.toIndex.length > 0;
  }

  /**
   * Build event dirs and claims without syncs, one per turn of the event loop, so that requests that
   * are waiting go first. A failure is retried with a growing pause.
   */
  private async buildLoop(): Promise<void> {
    let retryMs = RETRY_FIRST_MS;
    while (this.toBuild.length > 0) {
      if (this.toBuild.length < BUILD_WAITS_UP_TO && this.waitingForRoom === 0) {
        if (this.accepting > 0) {
          await new Promise<void>((resolve) => this.quietWaiters.push(resolve));
          continue;
        }
        const quietFor = performance.now() - this.lastAcceptAt;
        if (quietFor < QUIET_MS) {
          await sleep(QUIET_MS - quietFor);
          continue;
        }
      }
      const record = this.toBuild[0]!;
      try {
        this.built.set(record, buildEventDir(this.jobdirs, record, { sync: false }));
      } catch (err) {
        this.report('building an event dir', err as Error);
        await pause(retryMs);
        retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
        continue;
      }
      retryMs = RETRY_FIRST_MS;
      this.toBuild.shift();
      this.inFlight.delete(record.delivery); // its claim is on disk now
      this.notifyChange();
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /**
   * Close the journal segment, wait until its records are built, syncfs, delete the segment and index
   * the new event dirs. Retried with a growing pause when a step fails; the records stay journaled.
   */
  private async checkpointLoop(): Promise<void> {
    let retryMs = RETRY_FIRST_MS;
    while (this.checkpointDue()) {
      const wait = this.lastCheckpointAt + CHECKPOINT_EVERY_MS - Date.now();
      if (wait > 0) await sleep(wait);
      this.lastCheckpointAt = Date.now();
      try {
        await this.checkpoint();
        retryMs = RETRY_FIRST_MS;
        this.problem = undefined;
      } catch (err) {
        this.report('a checkpoint', err as Error);
        await pause(retryMs);
        retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
      }
    }
  }

  private async checkpoint(): Promise<void> {
    const journal = await this.journal!;
    const segment = await journal.rotate();
    if (segment) this.closed.push(segment);
    const segments = [...this.closed]; // not one that close() adds meanwhile
    const records = segments.flatMap((s) => s.records);
    let unbuilt = records.filter((r) => !this.built.has(r));
    while (unbuilt.length > 0) {
      await this.changed();
      unbuilt = unbuilt.filter((r) => !this.built.has(r));
    }
    if (records.length > 0) await syncFileSystem(this.jobdirs.root);
    crashPoint('ingest-synced');
    for (const s of segments) await journal.remove(s);
    this.closed = this.closed.filter((s) => !segments.includes(s));
    this.toIndex.push(...records);
    crashPoint('ingest-retired');
    // From here on a crash leaves built, durable, unqueued event dirs: repairDeliveries queues them.
    const indexing = [...this.toIndex];
    await Promise.all(
      indexing.map(async (r) => {
        const b = this.built.get(r)!;
        if (b.published) await enqueueEventDir(this.jobdirs, b.claim, b.eventDir);
      }),
    );
    crashPoint('store-queued');
    for (const r of indexing) {
      this.built.delete(r);
      this.pendingBytes -= contentLength(r);
    }
    this.toIndex = this.toIndex.slice(indexing.length);
    this.indexed += indexing.length;
    this.settleWaiters = this.settleWaiters.filter((w) => {
      if (w.upTo > this.indexed) return true;
      w.resolve();
      return false;
    });
    this.notifyChange();
  }

  private report(what: string, err: Error): void {
    this.problem = `${what} failed: ${err.message}`;
    this.opts.logger?.error(
      { err: err.message },
      `ingest: ${what} failed; the deliveries are safe in the journal and it is retried`,
    );
  }

  private changed(): Promise<void> {
    return new Promise((resolve) => this.changeWaiters.push(resolve));
  }

  private notifyChange(): void {
    for (const resolve of this.changeWaiters.splice(0)) resolve();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A pause before a retry, which alone does not keep the process alive (the journal keeps the work). */
function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** The server cannot make event dirs durable in batches without syncfs; it refuses to start. */
export class SyncFsError extends Error {
  constructor(cause: Error) {
    super(
      `the webhook server makes event dirs durable with \`sync -f\` (syncfs), which failed here: ` +
        `${cause.message}. Install GNU coreutils 8.24 or later (or BusyBox) so that \`sync -f DIR\` works`,
    );
    this.name = 'SyncFsError';
  }
}

export interface ReplayReport {
  /** Deliveries whose event dir was built now. */
  built: string[];
  /** Deliveries whose event dir was already in place (a crash after building, before indexing). */
  present: string[];
  /** Deliveries whose claim names another event dir: stored by someone else, left alone. */
  claimedElsewhere: string[];
  /** Segments with bytes after their last good record (a torn tail: never acknowledged). */
  tornTails: { file: string; bytes: number }[];
}

/**
 * Build every delivery left in the journal by a server that stopped or was killed, make the result
 * durable, and empty the journal. Runs at start, before the server listens and before
 * repairDeliveries (which then queues these event dirs). None of these records was ever seen by the
 * poller (step 5 above), so an event dir that does not match its record is rebuilt from it. Throws
 * SyncFsError first if syncfs does not work here, so a server that could not checkpoint never starts.
 */
export async function replayJournal(jobdirs: JobDirs): Promise<ReplayReport> {
  const report: ReplayReport = { built: [], present: [], claimedElsewhere: [], tornTails: [] };
  await syncFileSystem(jobdirs.root).catch((err: Error) => {
    throw new SyncFsError(err);
  });
  const dir = journalDir(jobdirs);
  const segments = await readJournal(dir);
  if (segments.length === 0) return report;
  const seen = new Set<string>();
  for (const seg of segments) {
    if (seg.droppedBytes > 0) report.tornTails.push({ file: seg.file, bytes: seg.droppedBytes });
    for (const record of seg.records) {
      if (seen.has(record.delivery)) continue;
      seen.add(record.delivery);
      report[await restoreRecord(jobdirs, record)].push(record.delivery);
    }
  }
  await syncFileSystem(jobdirs.root);
  for (const seg of segments) await fs.rm(seg.file, { force: true });
  await fsyncDir(dir);
  return report;
}

async function restoreRecord(
  jobdirs: JobDirs,
  record: EventRecord,
): Promise<'built' | 'present' | 'claimedElsewhere'> {
  const claim = path.join(jobdirs.deliveriesDir, record.delivery);
  const claimed = await fs.readFile(claim, 'utf8').then(
    (text) => text.trim(),
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    },
  );
  if (claimed !== undefined && claimed !== record.eventDir) {
    if (claimed !== '') return 'claimedElsewhere';
    await fs.rm(claim, { force: true }); // ours, cut short by a power loss
  }
  // Never seen by the poller, so a claim marked published with no event dir is a power loss: rebuilt.
  const built = buildEventDir(jobdirs, record, { sync: false, republish: true });
  if (built.published) return 'built';
  rebuildIfDifferent(jobdirs, record, built.eventDir);
  return 'present';
}

/** An event dir of a journaled record whose event.json is not the record's (a power loss) is rebuilt. */
function rebuildIfDifferent(jobdirs: JobDirs, record: EventRecord, eventDir: string): void {
  if (existsSync(path.join(eventDir, STATE_FILE))) return; // the poller has it: never touched
  let current: Buffer | undefined;
  try {
    current = readFileSync(path.join(eventDir, EVENT_FILE));
  } catch {
    current = undefined;
  }
  if (current?.equals(Buffer.concat(record.content))) return;
  const aside = path.join(incomingDir(jobdirs), tempName());
  renameSync(eventDir, aside);
  if (!buildEventDir(jobdirs, record, { sync: false, republish: true }).published)
    publishDirSync(aside, eventDir, { sync: false });
  rmSync(aside, { recursive: true, force: true });
}
