/** `hpcbot sample-event`: send a signed sample `bot: build` comment to a running dry-run server. */
import path from 'node:path';
import { loadConfig } from '../config/config.js';
import { SAMPLE, sendSampleEvent } from '../ingest/sampleEvent.js';

/** Returns the exit code: 1 when the server did not accept the event. */
export async function sampleEventCommand(opts: { config: string; comment: string }): Promise<number> {
  const config = loadConfig(opts.config);
  const { status, body } = await sendSampleEvent(config, opts.comment);
  process.stdout.write(`server answered ${status} ${body}\n`);
  const store = path.join(config.jobdirs, 'dry-run', SAMPLE.owner, SAMPLE.repo, `issue_${SAMPLE.pr}`);
  process.stdout.write(`the bot's comments appear in ${store}/ within a few seconds\n`);
  process.stdout.write(
    `job directories: ${path.join(config.jobdirs, '<YYYY.MM>', SAMPLE.owner, SAMPLE.repo, `pr_${SAMPLE.pr}`)}/\n`,
  );
  return status >= 300 ? 1 : 0;
}
