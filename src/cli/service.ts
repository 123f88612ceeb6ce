/**
 * `hpcbot service install [--user]`: the systemd units of deploy/systemd/ (server, poller, status
 * page) with this machine's paths filled in, an EnvironmentFile for the secrets, and the systemctl
 * lines to run. With --user they go to `~/.config/systemd/user/` and need no root (see README).
 */
import { readFileSync } from 'node:fs';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig, secretEnvNames, userConfigDir, type Config } from '../config/config.js';
import { createFileExclusive, fsyncDir, writeFileAtomic } from '../store/fsutil.js';
import { UsageError } from './errors.js';

const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const UNIT_TEMPLATES = path.join(PACKAGE_ROOT, 'deploy', 'systemd');
export const UNITS = ['hpcbot-server.service', 'hpcbot-poller.service', 'hpcbot-ui.service'] as const;

export interface UnitValues {
  node: string;
  /** The CLI script (bin/hpcbot.mjs of the release in use). */
  entry: string;
  config: string;
  envFile: string;
  workdir: string;
  wantedBy: 'default.target' | 'multi-user.target';
}

/**
 * Pure: a path as a systemd value. systemd splits on whitespace and expands `%` and `$`; rather than
 * quote, such paths are refused (they are rare on login nodes, and a wrong unit fails far from here).
 */
export function unitPath(what: string, p: string): string {
  if (!path.isAbsolute(p) || /[\s"'\\%$;]/.test(p))
    throw new UsageError(
      `${what} ${JSON.stringify(p)} must be an absolute path without spaces, quotes, \\, %, $ or ;`,
    );
  return p;
}

/** Pure: a unit from its template. */
export function renderUnit(template: string, v: UnitValues): string {
  const values: Record<string, string> = {
    NODE: unitPath('node', v.node),
    ENTRY: unitPath('the hpcbot entry point', v.entry),
    CONFIG: unitPath('site.yaml', v.config),
    ENVFILE: unitPath('the environment file', v.envFile),
    WORKDIR: unitPath('the working directory', v.workdir),
    WANTEDBY: v.wantedBy,
  };
  return template.replace(/@([A-Z]+)@/g, (whole, key: string) => {
    const value = values[key];
    if (value === undefined) throw new Error(`unit template: unknown placeholder ${whole}`);
    return value;
  });
}

/** Where units go: the user's systemd directory, or the system's. */
export function unitDir(user: boolean, env: NodeJS.ProcessEnv = process.env): string {
  if (!user) return '/etc/systemd/system';
  const base = env.XDG_CONFIG_HOME || path.join(env.HOME || os.homedir(), '.config');
  return path.join(path.resolve(base), 'systemd', 'user');
}

/** Pure: the commands that enable and start the units. */
export function systemctlLines(user: boolean): string[] {
  const ctl = user ? 'systemctl --user' : 'systemctl';
  const names = UNITS.map((u) => u.replace(/\.service$/, '')).join(' ');
  return [
    `${ctl} daemon-reload`,
    `${ctl} enable --now ${names}`,
    ...(user ? ['loginctl enable-linger "$USER"   # keep them running after you log out'] : []),
    `${ctl} status ${names}`,
    `journalctl ${user ? '--user ' : ''}-u hpcbot-poller -f`,
  ];
}

/** Pure: the environment file's first content: one commented line per secret variable the config names. */
export function envFileText(config: Config): string {
  return [
    '# Secrets for the hpc-build-bot units (EnvironmentFile=), NAME=value per line. Keep it mode 600.',
    ...secretEnvNames(config).map((name) => `#${name}=`),
    '',
  ].join('\n');
}

/** --entry: units that run a file that is not there fail only at `systemctl start`; refuse it here. */
async function checkEntry(entry: string): Promise<void> {
  const abs = path.resolve(entry);
  const stat = await fs.stat(abs).catch((err: NodeJS.ErrnoException) => {
    throw new UsageError(
      `--entry ${abs}: ${err.code === 'ENOENT' ? 'no such file' : (err.code ?? err.message)}`,
    );
  });
  if (!stat.isFile())
    throw new UsageError(`--entry ${abs}: not a file (give the hpcbot script, bin/hpcbot.mjs)`);
}

/**
 * Create `dir` and its missing parents, one level at a time. Not `mkdir -p` (fs.mkdir recursive),
 * which never returns on a path under /proc (Node retries ENOENT there for ever).
 */
export async function makeDir(dir: string): Promise<void> {
  const abs = path.resolve(dir);
  const missing: string[] = [];
  let d = abs;
  for (;;) {
    const stat = await fs.stat(d).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw new Error(`cannot create ${abs}: ${d}: ${err.code ?? err.message}`, { cause: err });
    });
    if (stat) {
      if (!stat.isDirectory()) throw new Error(`cannot create ${abs}: ${d} is not a directory`);
      break;
    }
    missing.unshift(d);
    const parent = path.dirname(d);
    if (parent === d) break;
    d = parent;
  }
  for (const m of missing) {
    await fs.mkdir(m).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST')
        throw new Error(`cannot create ${abs}: ${m}: ${err.code ?? err.message}`, { cause: err });
    });
    await fsyncDir(path.dirname(m)); // the new entry is on disk before anything is written in it
  }
}

export interface InstallResult {
  written: string[];
  envFile: string;
  envFileCreated: boolean;
  lines: string[];
}

export async function installUnits(opts: {
  config: string;
  user?: boolean;
  dir?: string;
  entry?: string;
  env?: NodeJS.ProcessEnv;
}): Promise<InstallResult> {
  const env = opts.env ?? process.env;
  const user = opts.user ?? false;
  const config = loadConfig(opts.config);
  if (opts.entry !== undefined) await checkEntry(opts.entry);
  const envFile = path.join(userConfigDir(env), 'env');
  const values: UnitValues = {
    node: process.execPath,
    // With self_update, the units run whatever release `current` names.
    entry:
      (opts.entry !== undefined ? path.resolve(opts.entry) : undefined) ??
      (config.self_update
        ? path.join(config.self_update.dir, 'current', 'bin', 'hpcbot.mjs')
        : path.join(PACKAGE_ROOT, 'bin', 'hpcbot.mjs')),
    config: config.source,
    envFile,
    workdir: path.dirname(config.source),
    wantedBy: user ? 'default.target' : 'multi-user.target',
  };
  const units = UNITS.map((name) => ({
    name,
    text: renderUnit(readFileSync(path.join(UNIT_TEMPLATES, name), 'utf8'), values),
  }));
  const dir = opts.dir ?? unitDir(user, env);
  await makeDir(dir);
  const written: string[] = [];
  for (const unit of units) {
    const file = path.join(dir, unit.name);
    await writeFileAtomic(file, unit.text, { mode: 0o644 });
    written.push(file);
  }
  await makeDir(path.dirname(envFile));
  const envFileCreated = await createFileExclusive(envFile, envFileText(config), { mode: 0o600 });
  await fs.chmod(envFile, 0o600); // one the admin made by hand may be readable by others
  return { written, envFile, envFileCreated, lines: systemctlLines(user) };
}

export async function serviceInstallCommand(opts: {
  config: string;
  user?: boolean;
  dir?: string;
  entry?: string;
}): Promise<void> {
  const r = await installUnits(opts);
  const out = [
    ...r.written.map((f) => `wrote ${f}`),
    `${r.envFileCreated ? 'created' : 'kept'} ${r.envFile} (mode 600): put the secrets there as NAME=value`,
    '',
    'then run:',
    ...r.lines.map((l) => `  ${l}`),
  ];
  process.stdout.write(out.join('\n') + '\n');
}
