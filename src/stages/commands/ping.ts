/** `bot: ping`: one line from every instance that gets it: version, uptime, queue depth, backend state. */
import { readFileSync } from 'node:fs';
import { renderPingLine, type InstanceHealthInput } from '../../domain/health.js';
import { readHeartbeat } from '../../store/heartbeat.js';
import { readSelfUpdateLog } from '../../selfUpdate/log.js';
import type { StageDeps } from '../context.js';
import type { CommandHandler } from './types.js';

/** package.json is three levels above this file, in src/ and in dist/ alike. */
export const BOT_VERSION = (
  JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

/** What renderPingLine and renderInstanceHealth need, from this instance's poller heartbeat. */
export async function instanceHealthInput(deps: StageDeps): Promise<InstanceHealthInput> {
  const lastSelfUpdate = (await readSelfUpdateLog(deps.jobdirs.root))
    .filter((e) => e.action === 'updated' || e.action === 'rolled back')
    .at(-1);
  return {
    instance: deps.config.instance,
    version: BOT_VERSION,
    heartbeat: await readHeartbeat(deps.jobdirs.root, 'poller'),
    queueDepth: (await deps.jobdirs.pending()).length,
    alertAfter: deps.config.health.alert_after,
    now: deps.now(),
    ...(lastSelfUpdate ? { lastSelfUpdate } : {}),
  };
}

export const ping: CommandHandler = async (ctx) => renderPingLine(await instanceHealthInput(ctx.work.deps));
