/**
 * `hpcbot self-update --check | --now | --rollback` (src/selfUpdate/release.ts). --now and --rollback
 * take the poller lock, so that they never run in the middle of a tick; the running processes notice
 * the switch of `current` and restart (exit 75).
 */
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../config/config.js';
import { createLogger } from '../log.js';
import { readSelfUpdateState } from '../selfUpdate/log.js';
import { currentRelease, findTarget, rollback, selfUpdate } from '../selfUpdate/release.js';
import { JobDirs } from '../store/jobdirs.js';
import { waitForLock } from '../store/lock.js';
import { UsageError } from './errors.js';

const short = (sha: string | undefined) => sha?.slice(0, 12) ?? 'none';

export async function selfUpdateCommand(opts: {
  config: string;
  check?: boolean;
  now?: boolean;
  rollback?: boolean;
}): Promise<number> {
  const chosen = [opts.check, opts.now, opts.rollback].filter(Boolean).length;
  if (chosen !== 1) throw new UsageError('give one of --check, --now and --rollback');
  const config = loadConfig(opts.config);
  const u = config.self_update;
  if (!u) throw new UsageError(`${config.source}: self_update is not set; see README "Self-update"`);
  const out = (line: string) => process.stdout.write(line + '\n');

  if (opts.check) {
    const state = await readSelfUpdateState(config.jobdirs);
    const current = currentRelease(u);
    const target = await findTarget(u);
    out(`current   ${short(current)}`);
    out(`remote    ${short(target.sha)} (${target.ref})`);
    if (target.sha === current) out('up to date');
    else if (state.refused[target.sha]) out(`refused earlier: ${state.refused[target.sha]}`);
    else out('an update is available: hpcbot self-update --now');
    for (const e of state.log.slice(-5))
      out(`  ${e.at}  ${e.action} ${short(e.from)} -> ${short(e.to)}${e.reason ? `: ${e.reason}` : ''}`);
    return 0;
  }

  const lock = await waitForLock(path.join(new JobDirs(config.jobdirs).locksDir, 'poller.lock'), 600_000);
  try {
    if (opts.rollback) {
      const r = await rollback(
        config,
        `asked for by ${os.userInfo().username} (hpcbot self-update --rollback)`,
      );
      out(`rolled back from ${short(r.from)} to ${short(r.to)}; the processes restart`);
      return 0;
    }
    const r = await selfUpdate(config, { logger: createLogger('self-update') });
    if (r.action === 'updated') out(`updated from ${short(r.from)} to ${short(r.to)}; the processes restart`);
    else if (r.action === 'refused') out(`refused ${short(r.to)}: ${r.reason}`);
    else out(`nothing to do: ${r.reason}`);
    return r.action === 'refused' ? 1 : 0;
  } finally {
    await lock.release();
  }
}
