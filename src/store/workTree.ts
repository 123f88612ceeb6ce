/**
 * A job dir holds two things with different owners:
 *
 *   <jobdir>/            the bot's records (state.json, job.json); only the bot writes here
 *   <jobdir>/work/       the job's working tree: the PR checkout, cfg/, _bot_job<ID>.* and slurm-<ID>.out;
 *                        the job (as `backend.run_as`) writes here and nowhere else
 *
 * The tree's life, seen from the job user (the bot itself can always enter):
 *   prepared  `work.partial/` then `work/`, mode 700: closed (a running job of another PR cannot touch it)
 *   submit    opened: mode 2770 with the job user's group, so the job can write and the bot can clean up
 *   final     sealed: mode 700 again, so nothing the job left running can change what the bot reads
 * Everything read back from `work/` is hostile input, and the bot never writes into it through a link
 * (writeTreeFile, freshTreeDir, openTreeOutputSync below; committed RESERVED_NAMEs are removed).
 */
import { closeSync, constants as fsConstants, fstatSync, openSync, promises as fs, rmSync } from 'node:fs';
import path from 'node:path';
import { fsyncDir } from './fsutil.js';
import type { JobUser } from '../adapters/jobUser.js';
import { run } from '../adapters/process.js';

export const WORK_TREE_NAME = 'work';

export function workTreeOf(jobDir: string): string {
  return path.join(jobDir, WORK_TREE_NAME);
}

/** A fresh, empty, closed directory to check out into; whatever a crashed attempt left is removed. */
export async function startWorkTree(jobDir: string, user: JobUser | undefined): Promise<string> {
  const partial = workTreeOf(jobDir) + '.partial';
  await fs.rm(partial, { recursive: true, force: true });
  await fs.rm(workTreeOf(jobDir), { recursive: true, force: true });
  await fs.mkdir(partial, { mode: 0o700 });
  if (user) {
    // New files and directories inherit the group through the setgid bit.
    await fs.chown(partial, -1, user.gid);
    await fs.chmod(partial, 0o2700);
  }
  return partial;
}

/** Move a complete checkout into place (atomic); group-writable first when a job user will write in it. */
export async function finishWorkTree(jobDir: string, partial: string, user: JobUser | undefined) {
  await clearReservedNames(partial);
  if (user) await run('chmod', ['-R', 'g+rwX,o-rwx', '--', partial], { timeoutMs: 600_000 });
  await fs.rename(partial, workTreeOf(jobDir));
  await fsyncDir(jobDir);
}

/**
 * Names at the top of a work tree that the bot or the local runner write: the job's output, the runner's
 * markers, the metadata file. Whatever the PR committed there (a link to the bot's state.json, say) is
 * removed from the checkout before the tree is used; `cfg` is replaced by writeJobCfg.
 */
export const RESERVED_NAME = /^(slurm-.*\.out|\.hpcbot-local-.*|_bot_job.*\.metadata)$/;

async function clearReservedNames(tree: string): Promise<void> {
  for (const name of await fs.readdir(tree))
    if (RESERVED_NAME.test(name)) await fs.rm(path.join(tree, name), { recursive: true, force: true });
}

export async function openWorkTree(jobDir: string, user: JobUser | undefined): Promise<void> {
  await fs.chmod(workTreeOf(jobDir), user ? 0o2770 : 0o700);
}

export async function sealWorkTree(jobDir: string): Promise<void> {
  await fs.chmod(workTreeOf(jobDir), 0o700).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err; // a job that never got a tree has nothing to seal
  });
}

// ---- writing into a work tree -----------------------------------------------------------------
//
// After checkout the tree holds whatever the PR committed, and while the job runs the job user writes
// in it too. So the bot never follows a link when it writes there: every directory on the way is
// checked with lstat, and what is not a real directory (a symbolic link, a file) is removed and
// replaced by one; the file itself is created with O_CREAT|O_EXCL|O_NOFOLLOW after whatever held its
// name was removed. The bot's file wins: it is the PR's tree, and these names are the bot's.

const O_NOFOLLOW = fsConstants.O_NOFOLLOW;

/** `name` relative to `tree`, split into parts; refuses absolute names and `..`. */
function treeParts(name: string): string[] {
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (path.isAbsolute(name) || parts.length === 0 || parts.includes('..'))
    throw new Error(`${name} is not a name inside a work tree`);
  return parts;
}

/** Remove whatever is at `p` (a link itself, never its target). */
async function removeEntry(p: string): Promise<void> {
  await fs.rm(p, { recursive: true, force: true });
}

/**
 * Make `name` (relative to `tree`) a real directory, every part of it: a part that is a symbolic link,
 * a file or anything else but a directory is removed and created anew. Returns its path.
 */
export async function treeDir(tree: string, name: string, mode = 0o755): Promise<string> {
  let current = tree;
  for (const part of treeParts(name)) {
    current = path.join(current, part);
    const st = await fs.lstat(current).catch(() => undefined);
    if (st?.isDirectory()) continue;
    if (st) await removeEntry(current);
    await fs.mkdir(current, { mode });
  }
  return current;
}

/** Remove whatever is at `name` in `tree` (a committed link, file or directory), then make it a fresh, empty directory. */
export async function freshTreeDir(tree: string, name: string, mode = 0o755): Promise<string> {
  const parts = treeParts(name);
  const parent = parts.length > 1 ? await treeDir(tree, parts.slice(0, -1).join('/')) : tree;
  const dir = path.join(parent, parts.at(-1)!);
  await removeEntry(dir);
  await fs.mkdir(dir, { mode }); // fails if something appeared in between: never a link followed
  return dir;
}

/**
 * Write `data` to `name` in `tree` as a new file of the bot's: directories on the way are made real
 * (treeDir), whatever held the name is removed, and the file is created exclusively without following
 * a link (a link or file planted in between makes the create fail, it is never written through).
 */
export async function writeTreeFile(
  tree: string,
  name: string,
  data: string | Uint8Array,
  mode = 0o644,
): Promise<string> {
  const parts = treeParts(name);
  const parent = parts.length > 1 ? await treeDir(tree, parts.slice(0, -1).join('/')) : tree;
  const file = path.join(parent, parts.at(-1)!);
  await removeEntry(file);
  const handle = await fs.open(
    file,
    fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | O_NOFOLLOW,
    mode,
  );
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fsyncDir(parent);
  return file;
}

/**
 * Open `name` at the top of `tree` for appending (the job's output file), as a regular file with one
 * link that the bot created or that is already a plain file of the tree. A symbolic link, fifo,
 * directory or hard link there is removed first and the file created exclusively, so the descriptor
 * never points outside the tree. Synchronous: the descriptor goes straight to spawn.
 */
export function openTreeOutputSync(tree: string, name: string, mode = 0o660): number {
  const parts = treeParts(name);
  if (parts.length !== 1) throw new Error(`${name} is not a name at the top of a work tree`);
  const file = path.join(tree, parts[0]!);
  const append = fsConstants.O_WRONLY | fsConstants.O_APPEND | O_NOFOLLOW;
  for (let attempt = 0; attempt < 5; attempt++) {
    let fd: number | undefined;
    try {
      fd = openSync(file, append | fsConstants.O_NONBLOCK);
      const st = fstatSync(fd);
      if (st.isFile() && st.nlink === 1) return fd;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ELOOP' && code !== 'ENXIO' && code !== 'EISDIR') throw err;
    }
    if (fd !== undefined) closeSync(fd);
    rmSync(file, { recursive: true, force: true });
    try {
      return openSync(file, append | fsConstants.O_CREAT | fsConstants.O_EXCL, mode);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err; // planted again in between: retry
    }
  }
  throw new Error(`${name} in the work tree keeps being replaced; not opened`);
}
