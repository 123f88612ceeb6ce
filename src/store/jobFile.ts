/**
 * Reading a file that a build job left in its work tree. The job runs PR code, so such a file may be a
 * symbolic link or a hard link to one of the bot's own files (its signing key, say), a fifo that blocks
 * a reader forever, or a name that walks out of the tree. A file is only ever read through a handle that
 * was opened with O_NOFOLLOW and checked with fstat: a regular file with exactly one link, inside the
 * tree, and the same inode that lstat saw. So nothing can be swapped in between the check and the read.
 */
import { createHash } from 'node:crypto';
import { constants as fsConstants, promises as fs, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { fsyncDir, tempName } from './fsutil.js';

export type OpenedJobFile =
  | { ok: true; handle: FileHandle; stat: Stats }
  /** `reason` completes a sentence about the file ("is a symbolic link"); `problem` names the file. */
  | { ok: false; missing: boolean; reason: string; problem: string };

function refuse(name: string, reason: string, missing = false) {
  return { ok: false as const, missing, reason, problem: `${name} ${reason}` };
}

function errorReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? (err as Error).message})`;
}

/** Why a file with these stats is not read, or undefined. */
function statReason(st: Stats): string | undefined {
  if (st.isSymbolicLink()) return 'is a symbolic link';
  if (!st.isFile()) return 'is not a regular file';
  if (st.nlink !== 1) return `has ${st.nlink} hard links`;
  return undefined;
}

function inside(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

/**
 * The last `maxBytes` of an opened job file as it was when opened (the job may still append), and
 * whether its beginning was cut off. Closes the handle.
 */
export async function readEndOf(
  opened: Extract<OpenedJobFile, { ok: true }>,
  maxBytes: number,
): Promise<{ text: string; cut: boolean }> {
  const start = Math.max(0, opened.stat.size - maxBytes);
  try {
    const buf = Buffer.alloc(opened.stat.size - start);
    let n = 0;
    while (n < buf.length) {
      const { bytesRead } = await opened.handle.read(buf, n, buf.length - n, start + n);
      if (bytesRead === 0) break;
      n += bytesRead;
    }
    return { text: buf.subarray(0, n).toString('utf8'), cut: start > 0 };
  } finally {
    await opened.handle.close();
  }
}

/**
 * Open `name` (relative to `root`) for reading, or say why not. Problems name the file relative to
 * `root`, never the bot's own paths. The caller closes the handle.
 */
export async function openJobFile(root: string, name: string): Promise<OpenedJobFile> {
  const file = path.resolve(root, name);
  const outside = "is not inside the job's work tree";
  if (!inside(root, file)) return refuse(name, outside);
  let before: Stats;
  try {
    const realRoot = await fs.realpath(root);
    if (!inside(realRoot, path.join(await fs.realpath(path.dirname(file)), path.basename(file))))
      return refuse(name, outside);
    before = await fs.lstat(file);
  } catch (err) {
    return refuse(name, errorReason(err), (err as NodeJS.ErrnoException).code === 'ENOENT');
  }
  const early = statReason(before);
  if (early) return refuse(name, early);
  let handle: FileHandle;
  try {
    // O_NONBLOCK: a fifo swapped in after the lstat must not block the open.
    handle = await fs.open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') return refuse(name, 'is a symbolic link');
    return refuse(name, errorReason(err), code === 'ENOENT');
  }
  const st = await handle.stat();
  const reason =
    statReason(st) ??
    (st.dev !== before.dev || st.ino !== before.ino ? 'was replaced while it was being opened' : undefined);
  if (reason) {
    await handle.close();
    return refuse(name, reason);
  }
  return { ok: true, handle, stat: st };
}

/** Read at most `limit` bytes from the start of an opened file. */
export async function readHead(handle: FileHandle, limit: number): Promise<Buffer> {
  const buf = Buffer.alloc(limit);
  let n = 0;
  while (n < limit) {
    const { bytesRead } = await handle.read(buf, n, limit - n, n);
    if (bytesRead === 0) break;
    n += bytesRead;
  }
  return buf.subarray(0, n);
}

export type CopiedJobFile =
  { ok: true; file: string; sha256: string; size: number } | { ok: false; problem: string };

const CHUNK = 1024 * 1024;

/**
 * Copy `name` from the job's work tree `root` to `dest` (a place only the bot writes) through one
 * verified handle, hashing on the way; the copy is what gets signed and uploaded, so the job cannot
 * change the bytes afterwards. Atomic (temp, fsync, rename, fsync of the dir); keeps the mtime.
 */
export async function copyJobFile(root: string, name: string, dest: string): Promise<CopiedJobFile> {
  const opened = await openJobFile(root, name);
  if (!opened.ok) return { ok: false, problem: opened.problem };
  const tmp = path.join(path.dirname(dest), tempName());
  const hash = createHash('sha256');
  let size = 0;
  try {
    const out = await fs.open(tmp, 'wx', 0o644);
    try {
      const buf = Buffer.alloc(CHUNK);
      for (;;) {
        const { bytesRead } = await opened.handle.read(buf, 0, CHUNK, size);
        if (bytesRead === 0) break;
        hash.update(buf.subarray(0, bytesRead));
        await out.write(buf, 0, bytesRead);
        size += bytesRead;
      }
      await out.utimes(opened.stat.atime, opened.stat.mtime);
      await out.sync();
    } finally {
      await out.close();
    }
    await fs.rename(tmp, dest);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  } finally {
    await opened.handle.close();
  }
  await fsyncDir(path.dirname(dest));
  return { ok: true, file: dest, sha256: hash.digest('hex'), size };
}
