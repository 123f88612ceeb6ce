/**
 * `backend.run_as`: the unprivileged Unix user that runs PR code. The bot reaches it only through
 * `sudo -n -u <user> -- <fixed command>` (the sudoers rule is in the README), and decides what that user
 * can read from file modes alone, so `config check` needs no privilege.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { run } from './process.js';

export interface JobUser {
  name: string;
  uid: number;
  gid: number;
  groups: number[];
}

export class JobUserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JobUserError';
  }
}

/** Uid and groups of `name`, from `id` (which asks NSS, so LDAP users work too). */
export async function lookupJobUser(name: string): Promise<JobUser> {
  const ask = async (flag: string) => {
    try {
      return (await run('id', [flag, '--', name], { timeoutMs: 10_000 })).trim();
    } catch {
      throw new JobUserError(
        `user ${JSON.stringify(name)} does not exist; create it (scripts/install-job-user.sh does on a dev machine)`,
      );
    }
  };
  const uid = Number(await ask('-u'));
  if (uid === 0) throw new JobUserError('backend.run_as must not be root');
  return {
    name,
    uid,
    gid: Number(await ask('-g')),
    groups: (await ask('-G')).split(/\s+/).map(Number),
  };
}

/** The argv that runs `command args...` as the job user, or as ourselves when there is none. */
export function asJobUser(user: string | undefined, command: string, args: string[]): [string, string[]] {
  return user === undefined ? [command, args] : ['sudo', ['-n', '-u', user, '--', command, ...args]];
}

export interface FileMode {
  mode: number;
  uid: number;
  gid: number;
}

/** Pure: may `user` use permission `bit` (4 read, 2 write, 1 search/execute) on a file with this mode? */
export function permits(st: FileMode, user: JobUser, bit: 4 | 2 | 1): boolean {
  if (user.uid === 0) return true;
  if (st.uid === user.uid) return (st.mode & (bit << 6)) !== 0;
  if (user.groups.includes(st.gid) || st.gid === user.gid) return (st.mode & (bit << 3)) !== 0;
  return (st.mode & bit) !== 0;
}

/**
 * Whether `user` can read `file`: search permission on every directory above it and read permission on
 * the file. POSIX modes only (ACLs are not consulted; a site that uses them must check by hand).
 */
export async function readableBy(file: string, user: JobUser): Promise<boolean> {
  const abs = path.resolve(file);
  let st;
  try {
    st = await fs.stat(abs);
  } catch {
    return false;
  }
  if (!permits(st, user, 4)) return false;
  return await reachableBy(path.dirname(abs), user);
}

/**
 * Whether `user` can reach (search every directory down to and including) `dir`; parts that do not exist
 * yet are skipped, since the bot creates them with mode 755.
 */
export async function reachableBy(dir: string, user: JobUser): Promise<boolean> {
  let current = path.resolve(dir);
  for (;;) {
    const st = await fs.stat(current).catch(() => undefined);
    if (st && !permits(st, user, 1)) return false;
    const parent = path.dirname(current);
    if (parent === current) return true;
    current = parent;
  }
}

/** The configured job user, looked up once on first use; `undefined` user means "jobs run as the bot". */
export class JobAccount {
  private looked: Promise<JobUser> | undefined;

  constructor(readonly name: string | undefined) {}

  async user(): Promise<JobUser | undefined> {
    if (this.name === undefined) return undefined;
    this.looked ??= lookupJobUser(this.name);
    try {
      return await this.looked;
    } catch (err) {
      this.looked = undefined; // the user may be created while we run: ask again next time
      throw err;
    }
  }

  argv(command: string, args: string[]): [string, string[]] {
    return asJobUser(this.name, command, args);
  }
}

/** Said once at start and by `config check` when `backend.run_as` is unset. */
export const NO_JOB_USER_WARNING =
  "jobs run as the bot's own user: PR code can read the bot's secrets and write its state; set backend.run_as";
