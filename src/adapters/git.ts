/** Running git: always execFile with an argument array, never a shell; credentials only via the environment. */
import { execFile } from 'node:child_process';

export class GitError extends Error {
  constructor(
    readonly args: string[],
    readonly code: number | string | undefined,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    super(`git ${args[0] ?? ''} failed (exit ${code}): ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
    this.name = 'GitError';
  }
}

export interface GitOptions {
  cwd?: string;
  /** Extra environment, e.g. an Authorization header through GIT_CONFIG_* (not visible in `ps`). */
  env?: Record<string, string>;
  timeoutMs?: number;
}

export function git(args: string[], opts: GitOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'git',
      args,
      {
        cwd: opts.cwd,
        env: { ...process.env, GIT_TERMINAL_PROMPT: '0', LC_ALL: 'C', ...opts.env },
        timeout: opts.timeoutMs ?? 600_000,
        maxBuffer: 64 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        if (err) reject(new GitError(args, (err as NodeJS.ErrnoException).code ?? undefined, stdout, stderr));
        else resolve(stdout);
      },
    );
  });
}

/** GIT_CONFIG_* variables that add an HTTP Basic Authorization header for one git call. */
export function authEnv(creds: { username: string; password: string } | undefined): Record<string, string> {
  if (!creds) return {};
  const basic = Buffer.from(`${creds.username}:${creds.password}`).toString('base64');
  return {
    GIT_CONFIG_COUNT: '1',
    GIT_CONFIG_KEY_0: 'http.extraHeader',
    GIT_CONFIG_VALUE_0: `Authorization: Basic ${basic}`,
  };
}
