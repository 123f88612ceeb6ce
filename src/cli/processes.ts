/**
 * `hpcbot server`, `hpcbot poll` and `hpcbot start`: the two processes and the pair of them. Each
 * checks site.yaml against the machine before it starts anything (exit 2 on a problem) and prints one
 * startup summary; the server then says "ready" once it listens (when /healthz answers).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { configErrorAt, loadConfig, type Config } from '../config/config.js';
import { checkSite } from '../config/siteCheck.js';
import { createLogger } from '../log.js';

/** Load site.yaml and check it against this machine (secrets out of the jobs' reach, the job user). */
export async function loadChecked(opts: { config: string }): Promise<{ config: Config; warnings: string[] }> {
  const config = loadConfig(opts.config);
  const { errors, warnings } = await checkSite(config);
  if (errors.length > 0) throw configErrorAt(config, errors);
  return { config, warnings };
}

/** Pure: how the bot talks to GitHub, as the startup summary says it. */
export function githubMode(config: Config): string {
  const gh = config.github;
  if (gh.dry_run) return 'GitHub dry-run (comments go to jobdirs/dry-run)';
  if (gh.app_id !== undefined) return `GitHub App ${gh.app_id} (key ${gh.private_key_file ?? 'not set'})`;
  if (gh.token_env) return `GitHub token from env ${gh.token_env}`;
  return 'GitHub without credentials';
}

export function serverUrl(config: Config, urlPath: string, port = config.server.port): string {
  return `http://${config.server.host}:${port}${urlPath}`;
}

/**
 * Pure: the one line a process prints at start. `secretSource` ("env NAME" or "file PATH", never the
 * value) is given by the server, which is the one that uses the secret and serves the URLs.
 */
export function startupSummary(config: Config, server?: { secretSource: string }): string {
  const backend = config.backend.run_as
    ? `backend ${config.backend.kind} (jobs run as ${config.backend.run_as})`
    : `backend ${config.backend.kind}`;
  const parts = [
    `config ${config.source}`,
    `instance ${config.instance}`,
    backend,
    githubMode(config),
    `jobdirs ${config.jobdirs}`,
  ];
  if (server)
    parts.push(
      `webhook secret from ${server.secretSource}`,
      `webhook ${serverUrl(config, config.server.webhook_path)}`,
      `healthz ${serverUrl(config, '/healthz')}`,
    );
  return parts.join('; ');
}

/**
 * A child of `start` ends with its parent, even with one killed by SIGKILL (which cannot pass the
 * signal on): the IPC channel to the parent closes, and the child stops as on SIGTERM. Otherwise the
 * orphans would keep the port and the poller lock, and the supervisor's restart would fail.
 */
function stopWithParent(): void {
  if (typeof process.send !== 'function') return; // not started by `start`
  // A parent killed while this child was still loading: the channel closed before anyone listened.
  if (!process.connected) return void process.kill(process.pid, 'SIGTERM');
  process.channel?.unref(); // the channel alone must not keep this process running
  process.once('disconnect', () => process.kill(process.pid, 'SIGTERM'));
}

export async function serverCommand(opts: {
  config: string;
  insecureSkipSignature?: boolean;
}): Promise<void> {
  stopWithParent();
  const { config, warnings } = await loadChecked(opts);
  const logger = createLogger('server');
  let secret: string | undefined;
  let secretSource = 'nowhere: --insecure-skip-signature';
  if (opts.insecureSkipSignature) {
    logger.warn(
      '!!! --insecure-skip-signature: webhook signatures are NOT verified; never expose this port !!!',
    );
  } else {
    const { loadWebhookSecret } = await import('../config/secrets.js');
    const loaded = await loadWebhookSecret(config);
    secret = loaded.secret;
    secretSource = loaded.source;
    if (loaded.generated)
      logger.warn(
        `generated a new webhook secret in ${loaded.source.replace(/^file /, '')}; enter it in the GitHub App settings`,
      );
  }
  logger.info(startupSummary(config, { secretSource }));
  const { followSiteYaml, startServer, stopServer } = await import('../server.js');
  const serverOpts = { config, logger, secret, insecureSkipSignature: opts.insecureSkipSignature };
  const server = await startServer(serverOpts);
  const unfollow = await followSiteYaml(serverOpts, server, warnings);
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.server.port;
  logger.info(`ready: listening on ${serverUrl(config, config.server.webhook_path, port)}`);
  const stop = () => {
    unfollow();
    void stopServer(server).finally(() => process.exit(process.exitCode ?? 0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  await restartOnNewRelease(config, stop);
}

export async function pollCommand(opts: {
  config: string;
  once?: boolean;
  dir?: string;
  replay?: string;
  summary?: boolean;
}): Promise<number> {
  stopWithParent();
  // Loaded while site.yaml is checked (the check waits on the file system): the poller's modules are
  // most of a `poll --once`. A config that fails the check ends the process before this is used.
  const poller = import('../poller.js');
  poller.catch(() => {}); // reported where it is awaited
  const { config, warnings } = await loadChecked(opts);
  if (opts.dir !== undefined) await checkWorkDir(opts.dir);
  const logger = createLogger('poller');
  for (const w of warnings) logger.warn(w);
  const longRunning = !opts.once && !opts.dir && !opts.replay;
  if (longRunning && opts.summary !== false) logger.info(startupSummary(config));
  const { runPollerCommand } = await poller;
  return await runPollerCommand(config, logger, opts, warnings);
}

/**
 * `poll --dir`: a path that is no event or job directory is the operator's mistake, said in one line
 * before the poller starts (and logs), not a tick that fails on it.
 */
export async function checkWorkDir(dir: string): Promise<void> {
  const abs = path.resolve(dir);
  const stat = await fs.stat(abs).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
    throw new Error(`--dir ${abs}: cannot read it: ${err.code ?? err.message}`, { cause: err });
  });
  if (!stat) throw new Error(`--dir ${abs}: no such directory`);
  if (!stat.isDirectory()) throw new Error(`--dir ${abs}: not a directory`);
  const names = await fs.readdir(abs).catch((err: NodeJS.ErrnoException) => {
    throw new Error(`--dir ${abs}: cannot read it: ${err.code ?? err.message}`, { cause: err });
  });
  // The names of ingest/eventStore.ts (EVENT_FILE) and store/state.ts (STATE_FILE), not imported
  // so that this check loads nothing.
  if (!names.includes('event.json') && !names.includes('state.json'))
    throw new Error(`--dir ${abs}: not an event or job directory (it has neither event.json nor state.json)`);
}

/** After a self-update switched `current`, stop with EXIT_RESTART so that the unit starts the new code. */
async function restartOnNewRelease(config: Config, stop: () => void): Promise<void> {
  if (!config.self_update) return;
  const { EXIT_RESTART, followRelease } = await import('../selfUpdate/release.js');
  followRelease(config.self_update, () => {
    process.exitCode = EXIT_RESTART;
    stop();
  });
}

export async function uiCommand(opts: { config: string }): Promise<void> {
  stopWithParent();
  const config = loadConfig(opts.config);
  const logger = createLogger('ui');
  const { startUi, uiToken } = await import('../ui/server.js');
  const { locate } = await import('./status.js');
  const server = await startUi({
    located: await locate(opts.config),
    host: config.ui.host,
    port: config.ui.port,
    token: uiToken(config),
    logger,
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.ui.port;
  logger.info(
    `status page on http://${config.ui.host}:${port}/${config.ui.token_file ? ' (token required)' : ''}`,
  );
  const stop = () => {
    server.close(() => process.exit(process.exitCode ?? 0));
    server.closeAllConnections(); // browsers keep connections open
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGHUP', () => {}); // `start` passes SIGHUP on; the page has nothing to reload
  await restartOnNewRelease(config, stop);
}

/**
 * `start`: the server (not in pull mode), the poller and the status page as child processes of this one, run through `entry` (this
 * CLI as it was started: compiled JavaScript, or the sources through tsx). The server prints the
 * startup summary; the poller does not repeat it.
 */
export async function startCommand(opts: { config: string }, entry: string[]): Promise<void> {
  const { config } = await loadChecked(opts); // fail fast, with exit code 2, before starting anything
  const extra = opts.config ? ['--config', opts.config] : [];
  // In pull mode nothing listens for webhooks: the poller pulls deliveries and prints the summary.
  const commands =
    config.ingest.mode === 'pull' ? [['poll'], ['ui']] : [['server'], ['poll', '--no-summary'], ['ui']];
  let stopping = false;
  const children: ChildProcess[] = commands.map((cmd) =>
    spawn(process.execPath, [...entry, ...cmd, ...extra], {
      stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    }),
  );
  const stopAll = () => {
    stopping = true;
    children.forEach((c) => c.exitCode === null && c.signalCode === null && c.kill('SIGTERM'));
  };
  process.on('SIGTERM', stopAll);
  process.on('SIGINT', stopAll);
  // The server and the poller read site.yaml again on SIGHUP (the status page ignores it).
  process.on('SIGHUP', () => children.forEach((c) => c.exitCode === null && c.kill('SIGHUP')));
  for (const [i, child] of children.entries()) {
    child.on('exit', (code, signal) => {
      // A child that finished its work (exit 0) leaves the other running; one that failed or was
      // killed takes the other down too, so that a supervisor restarts the pair.
      if (code === 0 || stopping) return;
      process.exitCode = code ?? 1;
      stopAll();
      if (signal) process.stderr.write(`hpcbot start: ${commands[i]![0]} killed by ${signal}\n`);
    });
  }
}
