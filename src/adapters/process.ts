/** Small process helpers shared by the lock and the local backend. */
import { execFile } from 'node:child_process';

/** True if a process with this pid exists (zombies count as gone only once reaped). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
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
