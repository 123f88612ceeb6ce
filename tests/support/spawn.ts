/**
 * Running the real `hpcbot` command as a child process (argument arrays, never a shell), plus temp
 * site.yaml files, free loopback ports and a tree walker for jobdirs. Every child started here is
 * tracked; `killAll()` (call it in afterEach/afterAll) SIGKILLs whatever is still running.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = path.join(ROOT, 'src', 'cli', 'main.ts');
export const BIN = path.join(ROOT, 'bin', 'hpcbot.mjs');

const running = new Set<ChildProcess>();

/** The environment for a child: ours minus every HPCBOT_* variable, plus `extra`. */
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('HPCBOT_')) env[k] = v;
  return { ...env, ...extra };
}

export interface Child {
  proc: ChildProcess;
  /** Everything written to stdout and stderr so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves when the output (stdout + stderr) matches, rejects on exit or timeout. */
  waitForOutput(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Start `node --import tsx src/cli/main.ts <args>` (or another entry point given as `entry`). */
export function spawnCli(
  args: string[],
  opts: { env?: Record<string, string>; entry?: string[] } = {},
): Child {
  const entry = opts.entry ?? ['--import', 'tsx', CLI];
  const proc = spawn(process.execPath, [...entry, ...args], {
    cwd: ROOT,
    env: childEnv(opts.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(proc);
  let out = '';
  let err = '';
  const listeners = new Set<() => void>();
  proc.stdout!.on('data', (c: Buffer) => {
    out += c.toString();
    listeners.forEach((l) => l());
  });
  proc.stderr!.on('data', (c: Buffer) => {
    err += c.toString();
    listeners.forEach((l) => l());
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.on('close', (code, signal) => {
      running.delete(proc);
      listeners.forEach((l) => l());
      resolve({ code, signal });
    });
  });
  const waitForOutput = (re: RegExp, timeoutMs = 20000) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const check = () => {
        const m = (out + err).match(re);
        if (m) {
          done();
          resolve(m);
        } else if (proc.exitCode !== null || proc.signalCode !== null) {
          done();
          reject(new Error(`child exited before printing ${re}:\n${out}\n${err}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out waiting for ${re}:\n${out}\n${err}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        listeners.delete(check);
      };
      listeners.add(check);
      check();
    });
  return { proc, stdout: () => out, stderr: () => err, waitForOutput, exited };
}

/** Run the CLI to completion. */
export async function runCli(
  args: string[],
  opts: { env?: Record<string, string> } = {},
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  const child = spawnCli(args, opts);
  const { code, signal } = await child.exited;
  return { code, signal, stdout: child.stdout(), stderr: child.stderr() };
}

/** SIGKILL every child started here that is still running. */
export async function killAll(): Promise<void> {
  const waits = [...running].map(
    (p) =>
      new Promise<void>((resolve) =>
        p.exitCode !== null ? resolve() : (p.once('close', () => resolve()), p.kill('SIGKILL')),
      ),
  );
  await Promise.all(waits);
}

/** A loopback port that was free a moment ago (for children, which do not print an ephemeral port). */
export async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export async function tempDir(prefix = 'hpcbot-test-'): Promise<string> {
  return await fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

/** Write a site.yaml into `dir` whose jobdirs is `<dir>/jobdirs`; `extra` is appended verbatim. */
export async function writeSiteYaml(dir: string, port: number, extra = ''): Promise<string> {
  const file = path.join(dir, 'site.yaml');
  await fs.writeFile(
    file,
    [
      'instance: test',
      'jobdirs: jobdirs',
      'server:',
      '  host: 127.0.0.1',
      `  port: ${port}`,
      '  webhook_path: /webhook',
      'ui:',
      '  port: 0',
      'github:',
      '  dry_run: true',
      '  webhook_secret_env: HPCBOT_TEST_WEBHOOK_SECRET',
      extra,
    ].join('\n') + '\n',
  );
  return file;
}

/** Poll GET url until it answers (any status) or the timeout passes. */
export async function waitForHttp(url: string, timeoutMs = 20000): Promise<number> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(url);
      await res.arrayBuffer();
      return res.status;
    } catch (err) {
      if (Date.now() > until) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** All files under `root` (relative paths, sorted); directories are not listed. */
export async function listFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string) => {
    let entries;
    try {
      entries = await fs.readdir(dir, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else out.push(path.relative(root, p));
    }
  };
  await walk(root);
  return out.sort();
}

/** Event directories (`<YYYY.MM>/<owner>/<repo>/<pr_N|_repo>/event_<id>`) under a jobdirs root. */
export async function eventDirs(jobdirsRoot: string): Promise<string[]> {
  const subdirs = async (dir: string) => {
    try {
      return (await fs.readdir(dir, { withFileTypes: true }))
        .filter((e) => e.isDirectory())
        .map((e) => path.join(dir, e.name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  };
  let level = (await subdirs(jobdirsRoot)).filter((d) => /^\d{4}\.\d{2}$/.test(path.basename(d)));
  for (let depth = 0; depth < 4; depth++) {
    const next: string[] = [];
    for (const d of level) next.push(...(await subdirs(d)));
    level = next;
  }
  return level.filter((d) => path.basename(d).startsWith('event_')).sort();
}
