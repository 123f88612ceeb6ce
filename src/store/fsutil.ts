/**
 * Durable file writes. Every file the bot writes goes through here: temp file, fsync, rename (or link
 * for exclusive creation), fsync of the directory. A crash leaves either the old file or the new one.
 *
 * Directory fsyncs are group-committed: callers that ask for an fsync of a directory while one is
 * already running share the next one, which starts after the running one ends (so it covers every
 * change its callers made before asking). Under load this turns N fsyncs of `queue/` into about two.
 */
import { randomBytes } from 'node:crypto';
import fsCallback, { promises as fs, constants as fsConstants } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { pidAlive } from '../adapters/process.js';

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

/**
 * Create `file` (it must not exist), write `data` and make the content durable before returning.
 * Not atomic: use it for names nobody reads yet (a temp file, a file in a private staging dir).
 */
export async function createSyncedFile(file: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
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

/**
 * Move a directory that is complete and synced (`staged`) to `dest`, unless `dest` already exists
 * with content. Returns false (and leaves `staged` alone) if it does. Either way `dest`'s entry is
 * durable when this returns. Both must be on one filesystem; missing parents of `dest` are created.
 */
export async function publishDir(staged: string, dest: string): Promise<boolean> {
  let moved = true;
  for (let attempt = 1; ; attempt++) {
    try {
      await fs.rename(staged, dest);
      break;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' && attempt === 1 && (await exists(staged))) {
        // The parent of dest does not exist yet (first event of a PR or a month): create it, once.
        await mkdirDurable(path.dirname(dest));
        continue;
      }
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
      moved = false;
      break;
    }
  }
  await fsyncDir(path.dirname(dest));
  return moved;
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
