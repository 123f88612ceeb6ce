/**
 * Pull ingest: the poller lists the App's webhook deliveries on GitHub and stores the ones it does not
 * have, through the same code as the server (storeEvent: the same event dir layout, the same claim
 * `deliveries/<guid>`, the same queue entry). For sites whose login nodes accept no inbound HTTPS.
 *
 * - `pullNew` (ingest.mode pull and both, every ingest.pull_interval) lists newest first and stops at
 *   the newest delivery the last pull took in (the cursor file), or at ingest.horizon. At idle that is
 *   one call: the first page, whose first row is the one already seen.
 * - `recoverMissed` (mode both, every ingest.reconcile_interval, and `hpcbot deliveries recover`) looks
 *   back over a window and stores every delivery of a stored type that is not on disk: one the server
 *   never got (it was down, smee dropped it) or failed to answer.
 *
 * A redelivery has a new delivery id but the original GUID (`guid`, the X-GitHub-Delivery header), so
 * its claim exists and it is not stored again. The cursor moves only after everything before it is
 * stored: a pull killed midway lists the same deliveries again, and the claims make that harmless.
 */
import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import type { DeliveriesApi, DeliveryDetail, DeliverySummary } from '../adapters/github/deliveries.js';
import { crashPoint } from '../store/crashPoint.js';
import type { IngestHealth } from '../store/heartbeat.js';
import { mkdirDurable, readJsonIfExists, writeFileAtomic } from '../store/fsutil.js';
import { isValidDeliveryId, type JobDirs } from '../store/jobdirs.js';
import { STORED_EVENTS, classifyEvent, isDeliveryStored, storeEvent } from './eventStore.js';

/** The log line of every recovery (both mode, `hpcbot deliveries recover`). */
const RECOVERED_LOG = 'recovered deliveries that never reached the webhook server; stored them now';
/** Rows per listing; GitHub's maximum. */
export const PER_PAGE = 100;
/** Where the pull ingest keeps its cursor, relative to jobdirs. */
export const PULL_STATE_FILE = path.join('pull', 'cursor.json');

export interface PullState {
  /** The newest delivery id that a pull has taken in (everything up to it is stored or not ours). */
  newestId?: number;
  /** When the last look-back for missed deliveries started. */
  reconciledAt?: string;
  /** Deliveries the look-backs have stored, since this jobdirs began (the counter in the heartbeat). */
  recovered: number;
  /** Delivered at GitHub → stored here, of the last delivery stored by a pull, in ms. */
  lastLagMs?: number;
}

export interface PullDeps {
  config: Config;
  jobdirs: JobDirs;
  deliveries: DeliveriesApi;
  logger: Logger;
  now: () => Date;
}

export interface PullReport {
  /** List calls made. */
  pages: number;
  /** Deliveries newer than the cursor (or, for a look-back, in its window). */
  listed: number;
  stored: number;
  /** Of a stored type but already on disk (the server had them, or an earlier pull). */
  present: number;
  /** Fetched, but not stored: another App's check run, a comment on a plain issue, a bad payload. */
  ignored: number;
}

export async function readPullState(jobdirs: JobDirs): Promise<PullState> {
  const s = await readJsonIfExists<PullState>(jobdirs.resolve(PULL_STATE_FILE)).catch(() => undefined);
  return { recovered: 0, ...s };
}

async function writePullState(jobdirs: JobDirs, state: PullState): Promise<void> {
  const file = jobdirs.resolve(PULL_STATE_FILE);
  await mkdirDurable(path.dirname(file));
  await writeFileAtomic(file, JSON.stringify(state, null, 2) + '\n');
}

/**
 * Pages of deliveries, newest first, until `stop` says a row is one too far (it and everything after it
 * are left out) or there are no more pages.
 */
async function listUntil(
  deps: PullDeps,
  stop: (d: DeliverySummary) => boolean,
  report: PullReport,
): Promise<DeliverySummary[]> {
  const rows: DeliverySummary[] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = await deps.deliveries.list({ perPage: PER_PAGE, cursor });
    report.pages++;
    for (const d of page.deliveries) {
      if (stop(d)) return rows;
      rows.push(d);
    }
    if (!page.next || page.deliveries.length === 0) return rows;
    cursor = page.next;
  }
}

/** Store the new deliveries since the cursor, oldest first; then move the cursor to the newest. */
export async function pullNew(deps: PullDeps): Promise<PullReport> {
  const report: PullReport = { pages: 0, listed: 0, stored: 0, present: 0, ignored: 0 };
  const state = await readPullState(deps.jobdirs);
  const horizon = deps.now().getTime() - deps.config.ingest.horizon * 1000;
  const rows = await listUntil(
    deps,
    (d) => (state.newestId !== undefined && d.id <= state.newestId) || Date.parse(d.delivered_at) < horizon,
    report,
  );
  report.listed = rows.length;
  if (rows.length === 0) return report;
  let lagMs = state.lastLagMs;
  for (const d of [...rows].reverse()) {
    const outcome = await takeIn(deps, d);
    report[outcome]++;
    if (outcome === 'stored') {
      lagMs = deps.now().getTime() - Date.parse(d.delivered_at);
      crashPoint('pull-stored');
    }
  }
  const newestId = Math.max(state.newestId ?? 0, ...rows.map((d) => d.id));
  // In both, the webhook server should have had every one of them: each is a recovery.
  const recovered = deps.config.ingest.mode === 'both' ? report.stored : 0;
  const current = await readPullState(deps.jobdirs);
  await writePullState(deps.jobdirs, {
    ...current,
    newestId,
    recovered: current.recovered + recovered,
    ...(lagMs !== undefined ? { lastLagMs: lagMs } : {}),
  });
  if (recovered > 0) deps.logger.warn({ recovered, lagMs }, RECOVERED_LOG);
  else if (report.stored > 0)
    deps.logger.info({ stored: report.stored, lagMs }, 'pulled deliveries from GitHub and stored them');
  return report;
}

/**
 * Look back over `windowSeconds` (default: from one reconcile interval before the last look-back, at
 * most ingest.horizon) and store every delivery of a stored type that is not on disk.
 */
export async function recoverMissed(deps: PullDeps, windowSeconds?: number): Promise<PullReport> {
  const report: PullReport = { pages: 0, listed: 0, stored: 0, present: 0, ignored: 0 };
  const started = deps.now();
  const state = await readPullState(deps.jobdirs);
  const { horizon, reconcile_interval } = deps.config.ingest;
  const since =
    windowSeconds !== undefined
      ? started.getTime() - windowSeconds * 1000
      : Math.max(
          started.getTime() - horizon * 1000,
          state.reconciledAt ? Date.parse(state.reconciledAt) - reconcile_interval * 1000 : 0,
        );
  const rows = await listUntil(deps, (d) => Date.parse(d.delivered_at) < since, report);
  report.listed = rows.length;
  // Each event once: a redelivery shares its GUID with the original.
  const byGuid = new Map<string, DeliverySummary>();
  for (const d of [...rows].reverse()) if (!byGuid.has(d.guid)) byGuid.set(d.guid, d);
  for (const d of byGuid.values()) report[await takeIn(deps, d)]++;
  const now = await readPullState(deps.jobdirs);
  await writePullState(deps.jobdirs, {
    ...now,
    reconciledAt: started.toISOString(),
    recovered: now.recovered + report.stored,
  });
  if (report.stored > 0)
    deps.logger.warn({ recovered: report.stored, looked_at: byGuid.size }, RECOVERED_LOG);
  return report;
}

/** Fetch one listed delivery and store it, unless it is not ours to store or already stored (isDeliveryStored). */
async function takeIn(deps: PullDeps, d: DeliverySummary): Promise<'stored' | 'present' | 'ignored'> {
  if (!STORED_EVENTS.has(d.event) || !isValidDeliveryId(d.guid)) return 'ignored';
  if (isDeliveryStored(deps.jobdirs, d.guid)) return 'present';
  const detail = await deps.deliveries.get(d.id);
  const incoming = toIncoming(deps.config, detail, deps.now());
  if ('ignored' in incoming) {
    deps.logger.debug({ delivery: d.guid, reason: incoming.ignored }, 'pulled delivery not stored');
    return 'ignored';
  }
  const { duplicate } = await storeEvent(deps.jobdirs, incoming);
  return duplicate ? 'present' : 'stored';
}

/**
 * A fetched delivery as the server would have received it. The payload is hostile input like any
 * webhook: the same classification, the same name checks. Its bytes are GitHub's JSON re-serialised
 * (the API returns it parsed), so there is no signature to check: the App's TLS connection is the trust.
 */
export function toIncoming(
  config: Config,
  d: DeliveryDetail,
  receivedAt: Date,
): Parameters<typeof storeEvent>[1] | { ignored: string } {
  const payload = d.request?.payload;
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload))
    return { ignored: 'the delivery has no JSON object payload' };
  if (!/^[a-z_]{1,64}$/.test(d.event)) return { ignored: 'not an event name' };
  if (!isValidDeliveryId(d.guid)) return { ignored: 'not a delivery GUID' };
  const where = classifyEvent(d.event, payload, { appId: config.github.app_id });
  if ('invalid' in where) return { ignored: where.invalid };
  if (!where.store) return { ignored: where.reason };
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(d.request.headers ?? {})) {
    const lower = name.toLowerCase();
    if (lower.startsWith('x-github-') && typeof value === 'string') headers[lower] = value;
  }
  headers['x-github-delivery'] = d.guid;
  headers['x-github-event'] = d.event;
  const p = payload as { action?: unknown; installation?: { id?: unknown } };
  return {
    delivery: d.guid,
    event: d.event,
    rawBody: JSON.stringify(payload),
    action: typeof p.action === 'string' ? p.action : null,
    installationId: typeof p.installation?.id === 'number' ? p.installation.id : null,
    headers,
    owner: where.owner,
    repo: where.repo,
    scope: where.scope,
    receivedAt,
    source: 'pull',
  };
}

export interface PullLoopOptions {
  jobdirs: JobDirs;
  logger: Logger;
  /** The config in use now (site.yaml is followed: a new mode or interval applies at the next pass). */
  config: () => Config;
  makeDeliveries: (config: Config) => DeliveriesApi;
  /** Called with what the heartbeat should say after each pass. */
  onHealth: (health: IngestHealth) => Promise<void>;
  now?: () => Date;
}

/**
 * The poller's pull timer: a pass every ingest.pull_interval (nothing at all in webhook mode), a
 * look-back every ingest.reconcile_interval in both. Returns a function that stops it after the pass
 * in progress.
 */
export function startPullLoop(opts: PullLoopOptions): () => Promise<void> {
  const now = opts.now ?? (() => new Date());
  let client: { config: Config; api: DeliveriesApi } | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let pass: Promise<void> = Promise.resolve();

  const once = async (config: Config): Promise<void> => {
    const { mode } = config.ingest;
    if (mode === 'webhook') return;
    if (client?.config !== config) client = { config, api: opts.makeDeliveries(config) };
    const deps: PullDeps = {
      config,
      jobdirs: opts.jobdirs,
      deliveries: client.api,
      logger: opts.logger,
      now,
    };
    const at = now().toISOString();
    try {
      await pullNew(deps);
      const state = await readPullState(opts.jobdirs);
      const due =
        !state.reconciledAt ||
        now().getTime() - Date.parse(state.reconciledAt) >= config.ingest.reconcile_interval * 1000;
      if (mode === 'both' && due) await recoverMissed(deps);
      const after = await readPullState(opts.jobdirs);
      await opts.onHealth({ mode, lastPullAt: at, lagMs: after.lastLagMs, recovered: after.recovered });
    } catch (err) {
      const message = (err as Error).message;
      opts.logger.warn({ err: message }, 'pulling deliveries from GitHub failed; trying again next interval');
      await opts.onHealth({ mode, lastPullError: { at, message } }).catch(() => undefined);
    }
  };

  const schedule = () => {
    if (stopped) return;
    const config = opts.config();
    timer = setTimeout(() => {
      pass = once(opts.config()).finally(schedule);
    }, config.ingest.pull_interval * 1000);
  };
  pass = once(opts.config()).finally(schedule);
  return async () => {
    stopped = true;
    clearTimeout(timer);
    await pass.catch(() => undefined);
  };
}
