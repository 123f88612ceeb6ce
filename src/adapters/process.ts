/** Small process helpers shared by the lock and the local backend. */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';

/** True if a process with this pid exists (zombies count as gone only once reaped). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Who a running process is, as the kernel says: its real uid, its process group and when it started. */
export interface ProcessIdentity {
  uid: number;
  pgid: number;
  startedAtMs: number;
}

/** Linux reports process start times in USER_HZ ticks, 100 a second on every architecture it runs on. */
const USER_HZ = 100;
let bootTimeMs: number | undefined;

/** The identity of process `pid` from /proc, or undefined if there is no such process (or no /proc). */
export async function processIdentity(pid: number): Promise<ProcessIdentity | undefined> {
  try {
    const [stat, status] = await Promise.all([
      fs.readFile(`/proc/${pid}/stat`, 'utf8'),
      fs.readFile(`/proc/${pid}/status`, 'utf8'),
    ]);
    if (bootTimeMs === undefined) {
      const btime = /^btime (\d+)$/m.exec(await fs.readFile('/proc/stat', 'utf8'));
      if (!btime) return undefined;
      bootTimeMs = Number(btime[1]) * 1000;
    }
    // The command name (field 2) may hold spaces and parentheses: the fields after it follow the last ')'.
    const after = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const uid = /^Uid:\s+(\d+)/m.exec(status);
    if (!uid || after.length < 20) return undefined;
    return {
      uid: Number(uid[1]),
      pgid: Number(after[2]),
      startedAtMs: bootTimeMs + (Number(after[19]) * 1000) / USER_HZ,
    };
  } catch {
    return undefined;
  }
}

export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly code: number | string | undefined,
    readonly stderr: string,
  ) {
    super(`${command} failed (exit ${code ?? '?'}): ${stderr.trim().split('\n').slice(-2).join(' | ')}`);
    this.name = 'CommandError';
  }
}

/** execFile with an argument array (never a shell), resolving to stdout. */
export function run(
  command: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      {
        cwd: opts.cwd,
        env: opts.env ?? process.env,
        timeout: opts.timeoutMs ?? 60_000,
        maxBuffer: 16 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        if (err)
          reject(
            new CommandError(
              command,
              (err as NodeJS.ErrnoException).code ?? undefined,
              stderr || err.message,
            ),
          );
        else resolve(stdout);
      },
    );
  });
}
