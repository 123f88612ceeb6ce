/**
 * site.yaml while a process runs. The poller re-reads it at the start of every tick, the server on
 * SIGHUP and when the file changes. A new file is used only if it passes the checks of a start (parse
 * and `checkSite`) and what the process needs from it can be prepared (`accept`, e.g. loading the
 * webhook secret). Otherwise the last good config stays, the error is logged once per version of the
 * file and kept in `health` for the heartbeat (`hpcbot status`). Settings a process binds at start
 * (`restartOnly`) keep their old value, with a log line saying that they need a restart.
 */
import { promises as fs, watch } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { ConfigError, configDigest, configErrorAt, parseConfig, type Config } from './config.js';
import { checkSite } from './siteCheck.js';
import type { ConfigHealth } from '../store/heartbeat.js';

/** What the server binds at start: its socket, its route and the jobdirs it writes to. */
export const SERVER_RESTART_ONLY = ['jobdirs', 'server.host', 'server.port', 'server.webhook_path'] as const;
/** What the poller binds at start: the jobdirs it locks and watches, and its cron task. */
export const POLLER_RESTART_ONLY = ['jobdirs', 'poller.schedule'] as const;

export interface RestartOnlyChange {
  key: string;
  /** The value that stays in use until a restart. */
  kept: unknown;
  /** The value in the file. */
  wanted: unknown;
}

/** Pure: `next` with the restart-only `keys` (dotted paths) taken from `current`, and which of them differ. */
export function keepRestartOnly(
  current: Config,
  next: Config,
  keys: readonly string[],
): { config: Config; changes: RestartOnlyChange[] } {
  let config = next;
  const changes: RestartOnlyChange[] = [];
  for (const key of keys) {
    const kept = valueAt(current, key);
    const wanted = valueAt(next, key);
    if (JSON.stringify(kept) === JSON.stringify(wanted)) continue;
    changes.push({ key, kept, wanted });
    config = withValueAt(config, key.split('.'), kept);
  }
  return { config, changes };
}

function valueAt(obj: unknown, key: string): unknown {
  return key.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], obj);
}

function withValueAt<T>(obj: T, [head, ...rest]: string[], value: unknown): T {
  const o = obj as Record<string, unknown>;
  return { ...o, [head!]: rest.length === 0 ? value : withValueAt(o[head!], rest, value) } as T;
}

export interface LiveConfigOptions {
  logger: Logger;
  /** Dotted key paths this process cannot change without a restart. */
  restartOnly: readonly string[];
  /** The environment the secrets are checked in (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** `checkSite` warnings already printed at start (each warning is printed once per process). */
  warnings?: string[];
  /**
   * Prepare what the process needs from a new config; a throw rejects the config like a failed check.
   * It runs last: once it returns, the config is in use.
   */
  accept?: (next: Config) => Promise<void>;
}

export class LiveConfig {
  private current: Config;
  /** The version (stat) of the file last read, so an unchanged file is not read again. */
  private seenVersion: string | undefined;
  private error: ConfigHealth['error'];
  private readonly warned: Set<string>;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    initial: Config,
    private readonly opts: LiveConfigOptions,
  ) {
    this.current = initial;
    this.warned = new Set(opts.warnings);
  }

  /** The config in use: the last one that validated. */
  get config(): Config {
    return this.current;
  }

  get health(): ConfigHealth {
    return {
      source: this.current.source,
      digest: this.current.digest ?? '',
      ...(this.error ? { error: this.error } : {}),
    };
  }

  /**
   * Read the file again if it changed since the last look (or always, with `force`), and use it if it is
   * valid. Returns true when a new config is in use. Calls run one after another; never throws.
   * `force` also prepares an unchanged file again (`accept`), e.g. after the webhook secret file changed.
   */
  refresh(opts: { force?: boolean; now?: Date } = {}): Promise<boolean> {
    const run = this.queue.then(() => this.reload(opts.force === true, opts.now ?? new Date()));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async reload(force: boolean, now: Date): Promise<boolean> {
    const file = this.current.source;
    let text: string;
    try {
      const st = await fs.stat(file);
      const version = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
      if (version === this.seenVersion && !force) return false;
      this.seenVersion = version;
      text = await fs.readFile(file, 'utf8');
    } catch (err) {
      const version = `unreadable:${(err as NodeJS.ErrnoException).code ?? ''}`;
      if (version === this.seenVersion && !force) return false;
      this.seenVersion = version;
      const problem = { line: undefined, keyPath: '', message: `cannot read: ${(err as Error).message}` };
      this.reject(new ConfigError(file, [problem]), now);
      return false;
    }
    const digest = configDigest(text);
    if (digest === this.current.digest && !force) {
      if (this.error) this.opts.logger.info({ config: file }, 'site.yaml is back to the config in use');
      this.error = undefined;
      return false;
    }
    let next: Config;
    let changes: RestartOnlyChange[];
    let warnings: string[];
    try {
      const parsed = parseConfig(text, file);
      const checked = await checkSite(parsed, this.opts.env);
      if (checked.errors.length > 0) throw configErrorAt(parsed, checked.errors);
      ({ config: next, changes } = keepRestartOnly(this.current, parsed, this.opts.restartOnly));
      await this.opts.accept?.(next);
      warnings = checked.warnings;
    } catch (err) {
      this.reject(err as Error, now);
      return false;
    }
    const { logger } = this.opts;
    for (const c of changes) {
      logger.warn(
        { config: file, key: c.key, in_use: c.kept, in_file: c.wanted },
        `${c.key} changed in site.yaml; it needs a restart, until then it stays ${JSON.stringify(c.kept)}`,
      );
    }
    for (const w of warnings.filter((w) => !this.warned.has(w))) {
      this.warned.add(w);
      logger.warn(w);
    }
    this.current = next;
    this.error = undefined;
    logger.info({ config: file, digest }, 'site.yaml reloaded');
    return true;
  }

  /** Keep the config in use; log the problem unless it is the one already reported. */
  private reject(err: Error, at: Date): void {
    if (this.error?.message !== err.message) {
      this.opts.logger.error(
        { config: this.current.source, err: err.message },
        'site.yaml is not valid; the last good config stays in use',
      );
    }
    this.error = { message: err.message, since: this.error?.since ?? at.toISOString() };
  }
}

/**
 * Refresh when an entry in the file's directory changes (debounced; editors replace the file), and
 * on SIGHUP, which also re-reads an unchanged file. `onRefresh` runs after each refresh. Returns a function that stops both.
 */
export function watchConfigFile(
  live: LiveConfig,
  onRefresh: (changed: boolean) => unknown,
  debounceMs = 200,
): () => void {
  const file = live.config.source;
  const refresh = (force: boolean) => {
    void live
      .refresh({ force })
      .then(onRefresh)
      .catch(() => undefined);
  };
  const onSignal = () => refresh(true);
  let timer: NodeJS.Timeout | undefined;
  const watcher = watch(path.dirname(file), (_event, name) => {
    if (name !== null && name !== path.basename(file)) return;
    clearTimeout(timer);
    timer = setTimeout(() => refresh(false), debounceMs);
  });
  watcher.unref();
  process.on('SIGHUP', onSignal);
  return () => {
    clearTimeout(timer);
    watcher.close();
    process.off('SIGHUP', onSignal);
  };
}
