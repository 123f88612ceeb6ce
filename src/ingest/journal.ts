/**
 * The server's journal: its durability record of accepted deliveries. Each delivery is appended as one
 * record; the records of concurrent deliveries share one write and one fdatasync (group commit), and
 * a delivery is acknowledged once its record is durable. The event dirs are built from the records
 * afterwards (src/ingest/ingest.ts), and a segment file is deleted once every record in it is durably
 * in place. The poller never reads the journal.
 *
 * Layout: `jobdirs/journal/<16-digit sequence>.jnl`, one segment being appended at a time, in
 * sequence order. A record is
 *
 *   "HBJ1" | body length (u32 LE) | CRC-32 of the body (u32 LE) | body
 *
 * and its body is `<delivery id>\n<event dir, relative to jobdirs>\n<event.json>`. A record cut short
 * by a crash (a torn tail) or whose checksum does not match ends its segment when it is read back:
 * it was never acknowledged, since a failed batch is cut off the file before anything else is added.
 */
import fsCallback, { promises as fs, constants as fsConstants } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { crc32 } from 'node:zlib';
import { crashPoint } from '../store/crashPoint.js';
import { contentLength, type EventRecord } from './eventStore.js';
import { fsyncDir, mkdirDurable, unwritten } from '../store/fsutil.js';
import { isValidDeliveryId, type JobDirs } from '../store/jobdirs.js';

export const JOURNAL_DIR = 'journal';

export function journalDir(jobdirs: JobDirs): string {
  return path.join(jobdirs.root, JOURNAL_DIR);
}

const MAGIC = Buffer.from('HBJ1', 'latin1');
const HEADER_BYTES = 12;
const SEGMENT_RE = /^(\d{16})\.jnl$/;

/** The record as the buffers to write: header, then the body (the names, then the event's own parts). */
export function encodeRecord(r: EventRecord): Buffer[] {
  const names = Buffer.from(`${r.delivery}\n${r.eventDir}\n`);
  const head = Buffer.allocUnsafe(HEADER_BYTES);
  MAGIC.copy(head, 0);
  head.writeUInt32LE(names.length + contentLength(r), 4);
  head.writeUInt32LE(
    r.content.reduce((crc, part) => crc32(part, crc), crc32(names)),
    8,
  );
  return [head, names, ...r.content];
}

/** Records from the start of a segment's bytes, up to the first one that is incomplete or damaged. */
export function decodeRecords(buf: Buffer): { records: EventRecord[]; droppedBytes: number } {
  const records: EventRecord[] = [];
  let off = 0;
  while (off < buf.length) {
    const record = decodeAt(buf, off);
    if (!record) break;
    records.push(record.record);
    off = record.end;
  }
  return { records, droppedBytes: buf.length - off };
}

function decodeAt(buf: Buffer, off: number): { record: EventRecord; end: number } | undefined {
  if (buf.length - off < HEADER_BYTES || !buf.subarray(off, off + 4).equals(MAGIC)) return undefined;
  const length = buf.readUInt32LE(off + 4);
  const end = off + HEADER_BYTES + length;
  if (end > buf.length) return undefined;
  const body = buf.subarray(off + HEADER_BYTES, end);
  if (crc32(body) !== buf.readUInt32LE(off + 8)) return undefined;
  const nl1 = body.indexOf(10);
  const nl2 = nl1 < 0 ? -1 : body.indexOf(10, nl1 + 1);
  if (nl2 < 0) return undefined;
  const delivery = body.toString('utf8', 0, nl1);
  const eventDir = body.toString('utf8', nl1 + 1, nl2);
  if (!isValidDeliveryId(delivery) || eventDir === '') return undefined;
  return { record: { delivery, eventDir, content: [Buffer.from(body.subarray(nl2 + 1))] }, end };
}

export interface SegmentContents {
  file: string;
  records: EventRecord[];
  /** Bytes after the last good record: a torn tail (or damage), never acknowledged. */
  droppedBytes: number;
}

/** Every segment in the journal dir, oldest first, with its readable records. */
export async function readJournal(dir: string): Promise<SegmentContents[]> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: SegmentContents[] = [];
  for (const name of names.filter((n) => SEGMENT_RE.test(n)).sort()) {
    const file = path.join(dir, name);
    out.push({ file, ...decodeRecords(await fs.readFile(file)) });
  }
  return out;
}

export class JournalBrokenError extends Error {
  constructor(cause: Error) {
    super(
      `the ingest journal cannot be written (${cause.message}); fix the disk, then restart the server: ` +
        `it replays the journal before it listens`,
    );
    this.name = 'JournalBrokenError';
  }
}

/** A segment file; `records` are those whose batch is durable. */
export interface Segment {
  file: string;
  records: EventRecord[];
}

interface OpenSegment extends Segment {
  fd: number;
  size: number;
  /** Settles when the batch being written to this segment (if any) is done. */
  idle: Promise<void>;
}

interface Waiting {
  record: EventRecord;
  buffers: Buffer[];
  resolve: (segment: Segment) => void;
  reject: (err: Error) => void;
}

const openCb = promisify(fsCallback.open);
const closeCb = promisify(fsCallback.close);
const fdatasyncCb = promisify(fsCallback.fdatasync);
const ftruncateCb = promisify(fsCallback.ftruncate);
const writevCb = (fd: number, buffers: Uint8Array[]) =>
  new Promise<number>((resolve, reject) =>
    fsCallback.writev(fd, buffers, null, (err, n) => (err ? reject(err) : resolve(n))),
  );

/**
 * Appends records with group commit. One batch is written at a time: the records that arrive while
 * a batch is written and synced form the next batch, so under load each fdatasync covers many
 * deliveries, and with a single delivery it costs one write and one fdatasync.
 */
export class Journal {
  private active: OpenSegment | undefined;
  private waiting: Waiting[] = [];
  /** The batch loop while it runs. */
  private writer: Promise<void> | undefined;
  private broken: JournalBrokenError | undefined;
  private closed: Error | undefined;
  /** The last rotation: rotations run one after the other. */
  private rotation: Promise<unknown> = Promise.resolve();
  private nextSeq = 0;

  private constructor(readonly dir: string) {}

  /** Segments already in `dir` are left alone (replay them first); new ones get later numbers. */
  static async open(dir: string): Promise<Journal> {
    await mkdirDurable(dir);
    const journal = new Journal(dir);
    for (const name of await fs.readdir(dir)) {
      const seq = SEGMENT_RE.exec(name)?.[1];
      if (seq) journal.nextSeq = Math.max(journal.nextSeq, Number(seq) + 1);
    }
    return journal;
  }

  /** Resolves with the record's segment once the record is durable. */
  append(record: EventRecord): Promise<Segment> {
    const refused = this.broken ?? this.closed;
    if (refused) return Promise.reject(refused);
    return new Promise((resolve, reject) => {
      this.waiting.push({ record, buffers: encodeRecord(record), resolve, reject });
      this.kick();
    });
  }

  private kick(): void {
    this.writer ??= this.writeBatches().finally(() => {
      this.writer = undefined;
      if (this.waiting.length > 0 && !this.broken) this.kick(); // arrived as the loop ended
    });
  }

  /**
   * Close the segment being appended to; the next batch goes to a new one, created here so that no
   * append waits for it. Resolves with the closed segment once its last batch is done (undefined if
   * there was none).
   */
  rotate(): Promise<Segment | undefined> {
    const rotated = this.rotation.then(() => this.rotateNow());
    this.rotation = rotated.catch(() => undefined);
    return rotated;
  }

  private async rotateNow(): Promise<Segment | undefined> {
    if (!this.active) return undefined;
    const next = this.closed || this.broken ? undefined : await this.createSegment();
    const seg = this.active;
    this.active = next;
    await seg.idle;
    await closeCb(seg.fd);
    return { file: seg.file, records: seg.records };
  }

  /** Delete a closed segment whose records are all durably elsewhere. */
  async remove(segment: Segment): Promise<void> {
    await fs.rm(segment.file, { force: true });
    await fsyncDir(this.dir);
  }

  /** Finish the appends already asked for, then close the open segment; later appends fail. */
  async close(): Promise<Segment | undefined> {
    this.closed ??= new Error('the ingest journal is closed: the server is stopping');
    await this.writer;
    return await this.rotate();
  }

  private async writeBatches(): Promise<void> {
    while (this.waiting.length > 0 && !this.broken) {
      let seg = this.active;
      if (!seg) {
        try {
          seg = this.active = await this.createSegment();
        } catch (err) {
          this.fail(new JournalBrokenError(err as Error));
          break;
        }
      }
      const batch = this.waiting;
      this.waiting = [];
      const written = this.writeBatch(seg, batch);
      seg.idle = written;
      await written;
    }
  }

  /** Never rejects: the batch's waiters get the outcome. */
  private async writeBatch(seg: OpenSegment, batch: Waiting[]): Promise<void> {
    const start = seg.size;
    const buffers = batch.flatMap((w) => w.buffers);
    const total = buffers.reduce((n, b) => n + b.length, 0);
    try {
      crashPoint('journal-writing');
      await writeAll(seg.fd, buffers);
      await fdatasyncCb(seg.fd);
    } catch (err) {
      // Cut the batch off, so that later records follow the last good one and none of this batch
      // (answered with an error) is replayed. If even that fails, nothing more is appended.
      try {
        await ftruncateCb(seg.fd, start);
        await fdatasyncCb(seg.fd);
      } catch (cutErr) {
        this.fail(new JournalBrokenError(cutErr as Error));
      }
      for (const w of batch) w.reject(err as Error);
      return;
    }
    crashPoint('journal-committed');
    seg.size = start + total;
    for (const w of batch) seg.records.push(w.record);
    for (const w of batch) w.resolve(seg);
  }

  private async createSegment(): Promise<OpenSegment> {
    const flags = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_APPEND;
    for (;;) {
      const file = path.join(this.dir, `${String(this.nextSeq++).padStart(16, '0')}.jnl`);
      let fd: number;
      try {
        fd = await openCb(file, flags, 0o600);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
        throw err;
      }
      // The segment's name must be durable before any record in it is acknowledged.
      await fsyncDir(this.dir);
      return { file, fd, size: 0, records: [], idle: Promise.resolve() };
    }
  }

  private fail(err: JournalBrokenError): void {
    this.broken = err;
    for (const w of this.waiting.splice(0)) w.reject(err);
  }
}

async function writeAll(fd: number, buffers: Uint8Array[]): Promise<void> {
  let rest = buffers;
  while (rest.length > 0) rest = unwritten(rest, await writevCb(fd, rest));
}
