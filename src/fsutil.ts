/**
 * Durable file writes. Every file the bot writes goes through here: temp file, fsync, rename (or link
 * for exclusive creation), fsync of the directory. A crash leaves either the old file or the new one.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs, constants as fsConstants } from 'node:fs';
import path from 'node:path';

export interface WriteOptions {
  mode?: number;
}

/** Temp files start with this prefix; readers ignore them. */
export const TEMP_PREFIX = '.tmp-';

export function isTempName(name: string): boolean {
  return name.startsWith(TEMP_PREFIX);
}

async function writeTemp(dir: string, data: string | Uint8Array, mode: number): Promise<string> {
  const tmp = path.join(dir, `${TEMP_PREFIX}${process.pid}-${randomBytes(6).toString('hex')}`);
  const handle = await fs.open(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, mode);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return tmp;
}

export async function fsyncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, fsConstants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Replace `file` atomically with `data`. */
export async function writeFileAtomic(
  file: string,
  data: string | Uint8Array,
  opts: WriteOptions = {},
): Promise<void> {
  const dir = path.dirname(file);
  const tmp = await writeTemp(dir, data, opts.mode ?? 0o644);
  try {
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dir);
}

/**
 * Create `file` with `data` only if it does not exist yet, atomically: the content is complete
 * before the name appears (link(2) of a fsynced temp file). Returns false if the file already existed.
 */
export async function createFileExclusive(
  file: string,
  data: string | Uint8Array,
  opts: WriteOptions = {},
): Promise<boolean> {
  const dir = path.dirname(file);
  const tmp = await writeTemp(dir, data, opts.mode ?? 0o644);
  try {
    await fs.link(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await fs.rm(tmp, { force: true });
  }
  await fsyncDir(dir);
  return true;
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
