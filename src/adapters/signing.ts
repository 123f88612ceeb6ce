/**
 * SSH signatures (`ssh-keygen -Y`), compatible with EESSI's `sign_verify_file_ssh.sh`: a file F is
 * signed into `F.sig` with a namespace (by default the bot instance), and checked against an
 * `allowed_signers` file.
 *
 * Only the bot's own code runs here, with the key file named in site.yaml; nothing from a PR tree.
 * ssh-keygen runs without a shell and without a controlling terminal (a passphrase-protected key fails
 * instead of prompting), and it never sees the artefact's real name: it signs a link in a private temp
 * dir, so the finished `.sig` can be moved into place atomically (ssh-keygen itself would write `F.sig`
 * in place, and would silently keep an existing one when it cannot ask whether to overwrite it).
 * The key's content never reaches a log or an error message; only its path may.
 */
import { spawn } from 'node:child_process';
import { createReadStream, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { exists, writeFileAtomic } from '../store/fsutil.js';

export class SigningError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SigningError';
  }
}

/** The signature file of `file`. */
export function sigPath(file: string): string {
  return `${file}.sig`;
}

export interface SignOptions {
  /** Replace an existing `.sig` (ed25519 signatures are deterministic, so a retry writes the same bytes). */
  overwrite?: boolean;
  timeoutMs?: number;
}

interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run ssh-keygen (argument array, no shell, new session: no terminal to prompt on). */
function sshKeygen(args: string[], opts: { stdinFile?: string; timeoutMs?: number } = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn('ssh-keygen', args, {
      stdio: [opts.stdinFile ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      detached: true, // setsid(): no controlling terminal, so no passphrase prompt can hang us
      env: { ...process.env, SSH_ASKPASS: '', DISPLAY: '' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr!.on('data', (c: Buffer) => {
      if (stderr.length < 64 * 1024) stderr += c.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    if (opts.stdinFile && child.stdin) {
      const input = createReadStream(opts.stdinFile);
      // ssh-keygen may exit before reading everything (a bad signature file): that is not our error.
      child.stdin.on('error', () => undefined);
      input.on('error', (err) => {
        stderr += `cannot read ${opts.stdinFile}: ${err.message}\n`;
        child.stdin!.destroy();
      });
      input.pipe(child.stdin);
    }
  });
}

function lastLines(text: string, n = 3): string {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .slice(-n)
    .join(' | ');
}

/**
 * Sign `file` with the OpenSSH private key `keyFile` (or a `.pub` whose private half is in ssh-agent)
 * under `namespace`, writing `<file>.sig` atomically. Returns the `.sig` path.
 * Refuses when the `.sig` exists, unless `overwrite` is set.
 */
export async function signFile(
  file: string,
  keyFile: string,
  namespace: string,
  opts: SignOptions = {},
): Promise<string> {
  if (!namespace) throw new SigningError('signing needs a namespace');
  const sig = sigPath(file);
  if (!opts.overwrite && (await exists(sig))) {
    throw new SigningError(`${sig} already exists (pass overwrite to replace it)`);
  }
  const abs = path.resolve(file);
  const stat = await fs.stat(abs).catch((err: NodeJS.ErrnoException) => {
    throw new SigningError(`cannot sign ${file}: ${err.code ?? err.message}`);
  });
  if (!stat.isFile()) throw new SigningError(`cannot sign ${file}: not a regular file`);
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'hpcbot-sign-'));
  try {
    const link = path.join(tmp, 'data');
    await fs.symlink(abs, link);
    const ran = await sshKeygen(['-Y', 'sign', '-f', path.resolve(keyFile), '-n', namespace, link], {
      timeoutMs: opts.timeoutMs,
    });
    const made = `${link}.sig`;
    if (ran.code !== 0 || !(await exists(made))) {
      throw new SigningError(
        `ssh-keygen -Y sign of ${path.basename(file)} failed (${ran.signal ?? `exit ${ran.code}`}): ${lastLines(ran.stderr) || 'no signature written'}`,
      );
    }
    await writeFileAtomic(sig, await fs.readFile(made));
    return sig;
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

export interface VerifyResult {
  ok: boolean;
  /** The allowed_signers principal whose key made the signature (when ok). */
  principal?: string;
  error?: string;
}

/**
 * Check `sigFile` over `file` against `allowedSignersFile` and `namespace`: find the principals whose
 * key made the signature (`-Y find-principals`), then `-Y verify -I <principal>` for each until one passes.
 */
export async function verifyFile(
  file: string,
  sigFile: string,
  allowedSignersFile: string,
  namespace: string,
  opts: { timeoutMs?: number } = {},
): Promise<VerifyResult> {
  for (const [what, p] of [
    ['file', file],
    ['signature', sigFile],
    ['allowed signers file', allowedSignersFile],
  ] as const) {
    if (!(await exists(p))) return { ok: false, error: `${what} ${p} does not exist` };
  }
  const found = await sshKeygen(['-Y', 'find-principals', '-s', sigFile, '-f', allowedSignersFile], opts);
  const principals = [
    ...new Set(
      found.stdout
        .split('\n')
        .flatMap((l) => l.split(','))
        .map((p) => p.trim())
        .filter((p) => p !== ''),
    ),
  ];
  if (found.code !== 0 || principals.length === 0) {
    const why = lastLines(found.stderr);
    return {
      ok: false,
      error: `the key that made ${path.basename(sigFile)} is not in ${allowedSignersFile}${why ? ` (${why})` : ''}`,
    };
  }
  let lastError = '';
  for (const principal of principals) {
    const ran = await sshKeygen(
      ['-Y', 'verify', '-f', allowedSignersFile, '-I', principal, '-n', namespace, '-s', sigFile],
      { stdinFile: file, timeoutMs: opts.timeoutMs },
    );
    if (ran.code === 0) return { ok: true, principal };
    lastError = lastLines(ran.stderr) || lastLines(ran.stdout) || `exit ${ran.code}`;
  }
  return {
    ok: false,
    error: `${path.basename(sigFile)} does not verify ${path.basename(file)} in namespace ${JSON.stringify(namespace)}: ${lastError}`,
  };
}
