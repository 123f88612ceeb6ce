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
 * Everything read back from `work/` is hostile input.
 */
import { promises as fs } from 'node:fs';
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
  if (user) await run('chmod', ['-R', 'g+rwX,o-rwx', '--', partial], { timeoutMs: 600_000 });
  await fs.rename(partial, workTreeOf(jobDir));
  await fsyncDir(jobDir);
}

export async function openWorkTree(jobDir: string, user: JobUser | undefined): Promise<void> {
  await fs.chmod(workTreeOf(jobDir), user ? 0o2770 : 0o700);
}

export async function sealWorkTree(jobDir: string): Promise<void> {
  await fs.chmod(workTreeOf(jobDir), 0o700).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err; // a job that never got a tree has nothing to seal
  });
}
