/** The poller: advances pending work. (Being built; see issue 4.) */
import type { Logger } from 'pino';
import type { Config } from './config.js';

export interface PollerCliOptions {
  once?: boolean;
  dir?: string;
  replay?: string;
}

export async function runPollerCommand(
  _config: Config,
  logger: Logger,
  _opts: PollerCliOptions,
): Promise<number> {
  logger.info('poller: nothing to do yet');
  return 0;
}
