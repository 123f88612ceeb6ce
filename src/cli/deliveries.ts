/**
 * `hpcbot deliveries recover [--since <age>]`: look through the App's deliveries on GitHub once and store
 * every one of a stored type that is not on disk (what the `both` mode does every
 * ingest.reconcile_interval). For a server that was down, or a relay that dropped deliveries.
 */
import { loadConfig } from '../config/config.js';
import { createDeliveries } from '../adapters/github/deliveries.js';
import { recoverMissed } from '../ingest/pull.js';
import { createLogger } from '../log.js';
import { JobDirs } from '../store/jobdirs.js';
import { UsageError } from './errors.js';

const UNIT_SECONDS: Record<string, number> = { m: 60, h: 3600, d: 86_400 };

/** `90m`, `12h`, `3d` → seconds. */
export function parseSince(text: string): number {
  const m = /^([1-9][0-9]*)([mhd])$/.exec(text);
  if (!m) throw new UsageError(`--since ${JSON.stringify(text)}: expected an age such as 90m, 12h or 3d`);
  return Number(m[1]) * UNIT_SECONDS[m[2]!]!;
}

export async function deliveriesRecoverCommand(opts: { config: string; since?: string }): Promise<void> {
  const config = loadConfig(opts.config);
  const windowSeconds = Math.min(
    opts.since !== undefined ? parseSince(opts.since) : config.ingest.horizon,
    config.ingest.horizon,
  );
  const logger = createLogger('deliveries');
  const jobdirs = new JobDirs(config.jobdirs);
  await jobdirs.ensureBaseDirs();
  const report = await recoverMissed(
    { config, jobdirs, deliveries: createDeliveries(config, logger), logger, now: () => new Date() },
    windowSeconds,
  );
  process.stdout.write(
    `looked at ${report.listed} deliveries (${report.pages} pages): ${report.stored} recovered and stored, ` +
      `${report.present} already stored, ${report.ignored} not for the bot\n`,
  );
}
