/**
 * Pull-ingest lag: `node --import tsx bench/pull-lag.ts [-- --deliveries N --seconds S --interval I]`.
 *
 * Runs the poller's pull loop (src/ingest/pull.ts startPullLoop, the real GitHub adapter with App JWT
 * auth) against the fake GitHub on loopback, at ingest.pull_interval I (default 15 s, the default of
 * site.yaml). N deliveries (default 40) of a real issue_comment payload appear at random moments over
 * S seconds (default 300); for each, the time from its `delivered_at` to the moment its event dir is
 * on disk is measured (the dir is polled every 20 ms). Prints median, p90 and worst, and the number of
 * API calls per pass.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { createDeliveries } from '../src/adapters/github/deliveries.js';
import { loadConfig } from '../src/config/config.js';
import { startPullLoop } from '../src/ingest/pull.js';
import { JobDirs } from '../src/store/jobdirs.js';
import { commentPayload, startAppSite } from '../tests/support/appSite.js';

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

const count = option('deliveries', 40);
const seconds = option('seconds', 300);
const interval = option('interval', 15);

const site = await startAppSite(`ingest:\n  mode: pull\n  pull_interval: ${interval}\n`);
const config = loadConfig(site.siteYaml);
const jobdirs = new JobDirs(config.jobdirs);
await jobdirs.ensureBaseDirs();
const logger = pino({ level: 'silent' });
const stop = startPullLoop({
  jobdirs,
  logger,
  config: () => config,
  makeDeliveries: (c) => createDeliveries(c, logger, {}, { throttle: false }),
  onHealth: async () => undefined,
});

const start = Date.now();
const plan = Array.from({ length: count }, () => Math.random() * seconds * 1000).sort((a, b) => a - b);
const delivered = new Map<string, number>();
const stored = new Map<string, number>();
const timer = setInterval(() => {
  void fs.readdir(jobdirs.deliveriesDir).then((names) => {
    for (const n of names) if (delivered.has(n) && !stored.has(n)) stored.set(n, Date.now());
  });
}, 20);
for (const at of plan) {
  await new Promise((r) => setTimeout(r, Math.max(0, start + at - Date.now())));
  const d = site.fake.addDelivery('issue_comment', commentPayload('bench comment, no command'));
  delivered.set(d.guid, Date.parse(d.delivered_at));
}
while (stored.size < count) await new Promise((r) => setTimeout(r, 100));
clearInterval(timer);
await stop();

const lags = [...delivered].map(([guid, at]) => (stored.get(guid)! - at) / 1000).sort((a, b) => a - b);
const q = (p: number) => lags[Math.min(lags.length - 1, Math.floor(p * lags.length))]!;
const lists = site.fake.callsTo('GET', '/app/hook/deliveries').length;
const gets = site.fake.callsTo('GET', /^\/app\/hook\/deliveries\/\d+$/).length;
console.log(`pull_interval ${interval}s, ${count} deliveries over ${seconds}s`);
console.log(
  `delivered → stored: median ${q(0.5).toFixed(1)}s, p90 ${q(0.9).toFixed(1)}s, worst ${lags.at(-1)!.toFixed(1)}s`,
);
console.log(`API calls: ${lists} listings (one per pass), ${gets} fetches (one per delivery)`);
await site.stop();
console.log(path.basename(import.meta.url), 'done');
