/**
 * Durable file writes. Every file the bot writes goes through here: temp file, fsync, rename (or link
 * for exclusive creation), fsync of the directory. A crash leaves either the old file or the new one.
 *
 * Directory fsyncs are group-committed: callers that ask for an fsync of a directory while one is
 * already running share the next one, which starts after the running one ends (so it covers every
 * change its callers made before asking). Under load this turns N fsyncs of `queue/` into about two.
 *
 * The `*Sync` helpers are for the server's ingest, which builds event dirs on its main thread in
 * short slices: a synchronous call costs a fraction of the CPU of a threadpool round trip (measured:
 * bench/ingest.ts). With `sync: false` they skip every fsync; the caller then makes a whole batch
 * durable at once with `syncFileSystem` (the ingest journal holds the data meanwhile).
 */
import { randomBytes } from 'node:crypto';
import fsCallback, { promises as fs, constants as fsConstants } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { pidAlive, run } from '../adapters/process.js';

// The callback API costs less per call than FileHandle objects; it matters on the ingest path.
const writeCb = (fd: number, buf: Uint8Array, off: number, len: number) =>
  new Promise<number>((resolve, reject) =>
    fsCallback.write(fd, buf, off, len, null, (err, n) => (err ? reject(err) : resolve(n))),
  );
const openCb = promisify(fsCallback.open);
const fsyncCb = promisify(fsCallback.fsync);
const fdatasyncCb = promisify(fsCallback.fdatasync);
const closeCb = promisify(fsCallback.close);

export interface WriteOptions {
  mode?: number;
  /**
   * Directory for the temp file, on the same filesystem as the target (default: the target's own
   * directory). Lets a caller keep temp files out of directories that readers list.
   */
  tmpDir?: string;
}

/** Temp files start with this prefix; readers ignore them. */
export const TEMP_PREFIX = '.tmp-';

export function isTempName(name: string): boolean {
  return name.startsWith(TEMP_PREFIX);
}

/** A fresh temp name for this process: `.tmp-<pid>-<random>`. */
export function tempName(): string {
  return `${TEMP_PREFIX}${process.pid}-${randomBytes(6).toString('hex')}`;
}

/** O_DSYNC makes each write durable before it returns (data and the metadata needed to read it back). */
const O_DSYNC: number = fsConstants.O_DSYNC ?? 0;

async function createSyncedFile(file: string, data: string | Uint8Array, mode: number): Promise<void> {
  const buf = typeof data === 'string' ? Buffer.from(data) : data;
  const flags = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | O_DSYNC;
  const fd = await openCb(file, flags, mode);
  try {
    let off = 0;
    while (off < buf.length) off += await writeCb(fd, buf, off, buf.length - off);
    if (!O_DSYNC) await fdatasyncCb(fd);
  } finally {
    await closeCb(fd);
  }
}

async function writeTemp(dir: string, data: string | Uint8Array, mode: number): Promise<string> {
  const tmp = path.join(dir, tempName());
  try {
    await createSyncedFile(tmp, data, mode);
  } catch (err) {
    await removeFile(tmp);
    throw err;
  }
  return tmp;
}

/** unlink, ignoring a file that is already gone. */
async function removeFile(file: string): Promise<void> {
  try {
    await fs.unlink(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

async function fsyncDirNow(dir: string): Promise<void> {
  const fd = await openCb(dir, fsConstants.O_RDONLY);
  try {
    await fsyncCb(fd);
  } finally {
    await closeCb(fd);
  }
}

interface DirSync {
  /** The fsync in flight, if any (never rejects; its callers got the error). */
  running?: Promise<void>;
  /** The next fsync, not started yet: later callers join it. */
  next?: Promise<void>;
}

const dirSyncs = new Map<string, DirSync>();

/** fsync a directory, so that entries created, renamed or removed in it before the call are durable. */
export function fsyncDir(dir: string): Promise<void> {
  const key = path.resolve(dir);
  let s = dirSyncs.get(key);
  if (!s) {
    s = {};
    dirSyncs.set(key, s);
  }
  if (s.next) return s.next;
  const state = s;
  const start = (): Promise<void> => {
    state.next = undefined; // whoever asks from now on may have changed the dir after this fsync began
    const run = fsyncDirNow(key);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    state.running = settled;
    void settled.then(() => {
      if (state.running === settled) state.running = undefined;
      if (!state.running && !state.next && dirSyncs.get(key) === state) dirSyncs.delete(key);
    });
    return run;
  };
  if (!state.running) return start();
  state.next = state.running.then(start);
  return state.next;
}

/** Replace `file` atomically with `data`. */
export async function writeFileAtomic(
  file: string,
  data: string | Uint8Array,
  opts: WriteOptions = {},
): Promise<void> {
  const dir = path.dirname(file);
  const tmp = await writeTemp(opts.tmpDir ?? dir, data, opts.mode ?? 0o644);
  try {
    await fs.rename(tmp, file);
  } catch (err) {
    await removeFile(tmp);
    throw err;
  }
  await fsyncDir(dir);
}

/**
 * Create `file` with `data` only if it does not exist yet, atomically: the content is complete
 * before the name appears (link(2) of a synced temp file). Returns false if the file already existed.
 * Either way the entry is durable when this returns (an existing one may have just been created by
 * a concurrent caller that has not synced its directory yet).
 */
export async function createFileExclusive(
  file: string,
  data: string | Uint8Array,
  opts: WriteOptions = {},
): Promise<boolean> {
  const dir = path.dirname(file);
  const tmp = await writeTemp(opts.tmpDir ?? dir, data, opts.mode ?? 0o644);
  let created = true;
  try {
    await fs.link(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    created = false;
  } finally {
    await removeFile(tmp);
  }
  await fsyncDir(dir);
  return created;
}

/** mkdir -p that also fsyncs every directory it created and the parent of the topmost one. */
export async function mkdirDurable(dir: string): Promise<void> {
  const first = await fs.mkdir(dir, { recursive: true });
  if (first === undefined) return;
  let d = dir;
  while (d.length >= first.length) {
    await fsyncDir(d);
    d = path.dirname(d);
  }
  await fsyncDir(d);
}

/** Pure: what is left of `parts` after a writev that wrote `written` bytes. */
export function unwritten(parts: readonly Uint8Array[], written: number): Uint8Array[] {
  let i = 0;
  let n = written;
  while (i < parts.length && n >= parts[i]!.length) n -= parts[i++]!.length;
  return i < parts.length ? [parts[i]!.subarray(n), ...parts.slice(i + 1)] : [];
}

export interface SyncOption {
  /** false: no fsync at all; the caller makes the result durable later (syncFileSystem). Default true. */
  sync?: boolean;
}

/** SyncOption plus the mode a new file is created with (default 0644, less the umask). */
export interface CreateOption extends SyncOption {
  mode?: number;
}

/**
 * Create `file` (it must not exist) holding `data` (or its parts, in order); not atomic, so only for
 * names nobody reads yet.
 */
export function createNewFileSync(
  file: string,
  data: string | Uint8Array | Uint8Array[],
  opts: CreateOption = {},
): void {
  const fd = fsCallback.openSync(
    file,
    fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL,
    opts.mode ?? 0o644,
  );
  try {
    let parts = Array.isArray(data) ? data : [typeof data === 'string' ? Buffer.from(data) : data];
    while (parts.length > 0) parts = unwritten(parts, fsCallback.writevSync(fd, parts));
    if (opts.sync !== false) fsCallback.fdatasyncSync(fd);
  } finally {
    fsCallback.closeSync(fd);
  }
}

/** createFileExclusive, synchronously. */
export function createFileExclusiveSync(
  file: string,
  data: string | Uint8Array,
  opts: CreateOption = {},
): boolean {
  const tmp = path.join(path.dirname(file), tempName());
  let created = true;
  try {
    createNewFileSync(tmp, data, opts);
    try {
      fsCallback.linkSync(tmp, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      created = false;
    }
  } finally {
    removeFileSync(tmp);
  }
  if (opts.sync !== false) fsyncDirSync(path.dirname(file));
  return created;
}

/** unlinkSync, ignoring a file that is already gone. */
function removeFileSync(file: string): void {
  try {
    fsCallback.unlinkSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/**
 * Move a directory that is complete (`staged`) to `dest`, unless `dest` already exists with content.
 * Returns false (and leaves `staged` alone) if it does. Either way `dest`'s entry is durable on return
 * unless `sync: false`. Both must be on one filesystem; missing parents of `dest` are created.
 */
export function publishDirSync(staged: string, dest: string, opts: SyncOption = {}): boolean {
  let moved = true;
  for (let attempt = 1; ; attempt++) {
    try {
      fsCallback.renameSync(staged, dest);
      break;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' && attempt === 1 && fsCallback.existsSync(staged)) {
        // The parent of dest does not exist yet (first event of a PR or a month): create it, once.
        mkdirDurableSync(path.dirname(dest), opts);
        continue;
      }
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
      moved = false;
      break;
    }
  }
  if (opts.sync !== false) fsyncDirSync(path.dirname(dest));
  return moved;
}

/** mkdirDurable, synchronously; with `sync: false` a plain mkdir -p. */
export function mkdirDurableSync(dir: string, opts: SyncOption = {}): void {
  const first = fsCallback.mkdirSync(dir, { recursive: true });
  if (first === undefined || opts.sync === false) return;
  for (let d = dir; d.length >= first.length; d = path.dirname(d)) fsyncDirSync(d);
  fsyncDirSync(path.dirname(first));
}

/**
 * chmod a file, durably unless `sync: false` (fsync of the file: the mode is inode metadata). A file
 * that is not there (ENOENT) is left alone; returns whether it was there.
 */
export function chmodDurableSync(file: string, mode: number, opts: SyncOption = {}): boolean {
  try {
    fsCallback.chmodSync(file, mode);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  if (opts.sync !== false) {
    const fd = fsCallback.openSync(file, fsConstants.O_RDONLY);
    try {
      fsCallback.fsyncSync(fd);
    } finally {
      fsCallback.closeSync(fd);
    }
  }
  return true;
}

export function fsyncDirSync(dir: string): void {
  const fd = fsCallback.openSync(dir, fsConstants.O_RDONLY);
  try {
    fsCallback.fsyncSync(fd);
  } finally {
    fsCallback.closeSync(fd);
  }
}

/**
 * Make everything written so far on the filesystem that holds `dir` durable: syncfs(2), through
 * `sync -f` (GNU coreutils 8.24 or later, BusyBox), as Node has no binding for it. One call covers any
 * number of files and directories written without an fsync of their own; it also flushes whatever
 * else on that filesystem is dirty, so it takes longer while other work writes there.
 */
export async function syncFileSystem(dir: string): Promise<void> {
  await run('sync', ['-f', dir], { timeoutMs: 10 * 60_000 });
}

/**
 * Remove the temp files and dirs (`.tmp-<pid>-*`) in `dir` that were left by processes that are no
 * longer running (a crash between writing a temp file and renaming or removing it).
 */
export async function removeStaleTemps(dir: string): Promise<number> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
  let removed = 0;
  for (const name of names) {
    const pid = Number(/^\.tmp-(\d+)-/.exec(name)?.[1]);
    if (!pid || pid === process.pid || pidAlive(pid)) continue;
    await fs.rm(path.join(dir, name), { recursive: true, force: true });
    removed++;
  }
  return removed;
}

export async function readJsonIfExists<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export async function exists(p: string): Promise<boolean> {
  try {
    await fs.lstat(p);
    return true;
  } catch {
    return false;
  }
}
