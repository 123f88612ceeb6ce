/**
 * The webhook endpoint. It only verifies a delivery and stores it as an event file; the poller does
 * everything else. No GitHub API call, no git and no Slurm ever happens in a request.
 */
import { promises as fs, constants as fsConstants } from 'node:fs';
import type { Server } from 'node:http';
import path from 'node:path';
import express, { type NextFunction, type Request, type Response } from 'express';
import { Webhooks } from '@octokit/webhooks';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from 'pino';
import type { Config } from './config/config.js';
import { LiveConfig, SERVER_RESTART_ONLY, watchConfigFile } from './config/liveConfig.js';
import { loadWebhookSecret } from './config/secrets.js';
import { writeHeartbeat } from './store/heartbeat.js';
import { classifyEvent, incomingDir, repairDeliveries } from './ingest/eventStore.js';
import { Ingest, replayJournal } from './ingest/ingest.js';
import { mkdirDurable, removeStaleTemps } from './store/fsutil.js';
import { acquireLock, LockBusyError, type Lock, type LockInfo } from './store/lock.js';
import { JobDirs, isValidDeliveryId } from './store/jobdirs.js';
import { prName } from './log.js';

/** GitHub caps webhook payloads at 25 MiB. */
export const MAX_BODY_BYTES = 25 * 1024 * 1024;

/** The metrics label of a delivery whose event name is not (yet) verified. */
const UNVERIFIED = 'unverified';

export interface ServerOptions {
  config: Config;
  logger: Logger;
  /**
   * The webhook secret; undefined only with insecureSkipSignature. Read at every delivery, so that a
   * reload of site.yaml (followSiteYaml) can replace it.
   */
  secret: string | undefined;
  insecureSkipSignature?: boolean;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export function createApp(opts: ServerOptions): express.Express {
  const { config, logger, insecureSkipSignature } = opts;
  if (!opts.secret && !insecureSkipSignature) {
    throw new Error(
      'refusing to start without a webhook secret (use --insecure-skip-signature for development)',
    );
  }
  const jobdirs = new JobDirs(config.jobdirs);
  const ingest = new Ingest(jobdirs, { logger });
  let verifier: { secret: string; webhooks: Webhooks } | undefined;
  const currentVerifier = (): Webhooks | undefined => {
    if (!opts.secret) return undefined;
    const secret = opts.secret;
    if (verifier?.secret !== secret) verifier = { secret, webhooks: new Webhooks({ secret }) };
    return verifier.webhooks;
  };

  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const deliveries = new Counter({
    name: 'hpcbot_webhook_deliveries_total',
    help: 'Webhook deliveries by event and outcome',
    labelNames: ['event', 'outcome'],
    registers: [registry],
  });
  const writeSeconds = new Histogram({
    name: 'hpcbot_event_write_seconds',
    help: 'Time to make a delivery durable (its journal record written and synced)',
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  ingests.set(app, ingest);

  app.get('/healthz', async (_req, res) => {
    try {
      await fs.access(jobdirs.root, fsConstants.W_OK);
      if (ingest.trouble) {
        res.status(503).json({ ok: false, error: ingest.trouble });
        return;
      }
      res.status(200).json({ ok: true });
    } catch {
      res.status(503).json({ ok: false, error: 'jobdirs is not writable' });
    }
  });

  app.get('/metrics', async (_req, res) => {
    res.type(registry.contentType).send(await registry.metrics());
  });

  app.post(config.server.webhook_path, async (req: Request, res: Response) => {
    // The event label is only taken from verified deliveries: unverified requests must not be able
    // to create metric series (memory) by inventing event names.
    const labels = { event: UNVERIFIED, outcome: 'error' };
    try {
      const body = await handleDelivery(req, await readBody(req), labels);
      labels.outcome = body.outcome;
      sendJson(res, body.status, body.json);
    } catch (err) {
      if (err instanceof HttpError) {
        labels.outcome = `rejected_${err.status}`;
        sendJson(res, err.status, { error: err.message });
      } else {
        logger.error({ err, event: labels.event }, 'storing a delivery failed');
        sendJson(res, 500, { error: 'could not store the event; GitHub will let you redeliver it' });
      }
    } finally {
      deliveries.inc(labels);
    }
  });

  async function handleDelivery(req: Request, raw: Buffer, labels: { event: string }) {
    const rawBody = raw.toString('utf8');
    // Verify before looking at anything else in the request.
    const webhooks = currentVerifier();
    if (webhooks) {
      const signature = req.header('x-hub-signature-256');
      if (!signature) throw new HttpError(401, 'missing X-Hub-Signature-256 header');
      if (!/^sha256=[0-9a-f]{64}$/.test(signature)) {
        throw new HttpError(401, 'signature does not match the webhook secret');
      }
      if (raw.length === 0) throw new HttpError(400, 'empty body');
      if (!(await webhooks.verify(rawBody, signature))) {
        throw new HttpError(401, 'signature does not match the webhook secret');
      }
    } else if (raw.length === 0) {
      throw new HttpError(400, 'empty body');
    }
    const event = req.header('x-github-event');
    const delivery = req.header('x-github-delivery');
    if (!event) throw new HttpError(400, 'missing X-GitHub-Event header');
    if (!delivery) throw new HttpError(400, 'missing X-GitHub-Delivery header');
    if (!/^[a-z_]{1,64}$/.test(event)) throw new HttpError(400, 'X-GitHub-Event is not an event name');
    labels.event = event;
    if (!isValidDeliveryId(delivery)) throw new HttpError(400, 'X-GitHub-Delivery is not a delivery id');
    if (/x-www-form-urlencoded/.test(req.header('content-type') ?? '')) {
      throw new HttpError(415, 'set the webhook content type to application/json');
    }
    let payload: unknown;
    try {
      payload = JSON.parse(rawBody);
    } catch {
      throw new HttpError(400, 'body is not valid JSON');
    }
    if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
      throw new HttpError(400, 'body is not a JSON object');
    }
    if (event === 'ping') return { status: 200, outcome: 'ping', json: { pong: true } };

    const where = classifyEvent(event, payload, { appId: config.github.app_id });
    if ('invalid' in where) throw new HttpError(400, where.invalid);
    if (!where.store)
      return { status: 202, outcome: 'ignored', json: { delivery, stored: false, reason: where.reason } };

    const p = payload as { action?: unknown; installation?: { id?: unknown } };
    const started = process.hrtime.bigint();
    const { duplicate } = await ingest.accept({
      delivery,
      event,
      rawBody: raw,
      action: typeof p.action === 'string' ? p.action : null,
      installationId: typeof p.installation?.id === 'number' ? p.installation.id : null,
      headers: githubHeaders(req),
      owner: where.owner,
      repo: where.repo,
      scope: where.scope,
      receivedAt: new Date(),
    });
    writeSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
    if (duplicate) return { status: 200, outcome: 'duplicate', json: { delivery, duplicate: true } };
    logger.info(
      {
        pr: prName({ repo: where, ...(where.scope.kind === 'pr' ? { number: where.scope.number } : {}) }),
        event,
        action: p.action,
        delivery,
      },
      'delivery stored',
    );
    return { status: 202, outcome: 'stored', json: { delivery, stored: true } };
  }

  // Anything thrown outside the handler.
  app.use(
    (err: Error & { status?: number; type?: string }, req: Request, res: Response, _next: NextFunction) => {
      const status = err.status && err.status >= 400 && err.status < 500 ? err.status : 500;
      if (req.method === 'POST' && req.path === config.server.webhook_path) {
        deliveries.inc({ event: UNVERIFIED, outcome: `rejected_${status}` });
      }
      if (status === 500) logger.error({ err }, 'request failed');
      res.status(status).json({ error: status === 500 ? 'internal error' : err.message });
    },
  );

  app.use((_req, res) => {
    res.status(404).json({ error: `not found; webhooks go to POST ${config.server.webhook_path}` });
  });

  return app;
}

/**
 * The body as sent, read to its end like body-parser does: no decoding and no inflating, since the
 * signature covers the bytes GitHub sent and a compressed body could be a bomb. Read by hand rather
 * than with express.raw, which cost more CPU per delivery than the rest of the handler.
 */
function readBody(req: Request): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
      else chunks.length = 0; // read on to the end, keep nothing
    });
    req.on('end', () => {
      done = true;
      const encoding = req.headers['content-encoding'];
      if (encoding !== undefined && encoding !== 'identity') {
        reject(new HttpError(415, `content encoding "${encoding}" is not accepted: send the JSON as it is`));
      } else if (size > MAX_BODY_BYTES) {
        reject(new HttpError(413, `body larger than ${MAX_BODY_BYTES} bytes (GitHub's limit)`));
      } else {
        resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
      }
    });
    req.on('error', (err) => {
      done = true;
      reject(err);
    });
    req.on('close', () => {
      if (!done) reject(new HttpError(400, 'request aborted'));
    });
  });
}

/** res.status().json() without Express's extras (content negotiation, ETag), which cost per delivery. */
function sendJson(res: Response, status: number, json: unknown): void {
  const body = JSON.stringify(json);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

const ingests = new WeakMap<object, Ingest>();

/**
 * The write path of an app from createApp or a server from startServer: `settled()` resolves once
 * every delivery it acknowledged so far is in the pending-work index.
 */
export function ingestOf(appOrServer: express.Express | Server): Ingest {
  const ingest = ingests.get(appOrServer);
  if (!ingest) throw new Error('not an app from createApp or a server from startServer');
  return ingest;
}

function githubHeaders(req: Request): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (name.startsWith('x-github-') && typeof value === 'string') out[name] = value;
  }
  return out;
}

export async function startServer(opts: ServerOptions): Promise<Server> {
  const jobdirs = new JobDirs(opts.config.jobdirs);
  await jobdirs.ensureBaseDirs();
  const lock = await lockJobdirs(jobdirs);
  try {
    const server = await settleAndListen(opts, jobdirs);
    locks.set(server, lock);
    return server;
  } catch (err) {
    await lock.release();
    throw err;
  }
}

const locks = new WeakMap<Server, Lock>();

export class ServerLockError extends Error {
  constructor(file: string, holder: LockInfo) {
    super(
      `another webhook server uses this jobdirs (pid ${holder.pid} on ${holder.host} since ` +
        `${holder.started_at}): stop it first, or remove ${file} if that process is gone`,
    );
    this.name = 'ServerLockError';
  }
}

/** One server per jobdirs: a second one would replay, and delete, the journal the first appends to. */
async function lockJobdirs(jobdirs: JobDirs): Promise<Lock> {
  const file = path.join(jobdirs.locksDir, 'server.lock');
  try {
    // Never stale by age: a server runs for months. A dead one on this host is noticed by its pid.
    return await acquireLock(file, Number.POSITIVE_INFINITY);
  } catch (err) {
    if (err instanceof LockBusyError) throw new ServerLockError(file, err.holder);
    throw err;
  }
}

async function settleAndListen(opts: ServerOptions, jobdirs: JobDirs): Promise<Server> {
  const incoming = incomingDir(jobdirs);
  await mkdirDurable(incoming);
  // Temp files and staged event dirs of a server that was killed mid-write: never events, just litter.
  // Only in the dirs the server alone writes to (queue/ is shared with the poller, which skips them).
  let stale = 0;
  for (const dir of [incoming, jobdirs.deliveriesDir]) stale += await removeStaleTemps(dir);
  if (stale > 0) opts.logger.info({ removed: stale }, 'removed temp files left by a killed server');
  // Acknowledged deliveries a stopped or killed server had only journaled: built before anything else.
  const replayed = await replayJournal(jobdirs);
  if (replayed.built.length + replayed.present.length > 0) {
    opts.logger.info(
      { built: replayed.built.length, present: replayed.present.length },
      'built the deliveries left in the ingest journal',
    );
  }
  if (replayed.claimedElsewhere.length > 0) {
    opts.logger.warn(
      { deliveries: replayed.claimedElsewhere },
      'journaled deliveries whose claim names another event dir were left alone',
    );
  }
  if (replayed.tornTails.length > 0) {
    opts.logger.warn(
      { segments: replayed.tornTails },
      'dropped the torn tail of ingest journal segments (records cut short by a crash, never acknowledged)',
    );
  }
  // Event dirs built but not queued yet (acknowledged), and claims without an event dir (never
  // acknowledged: an in-process storeEvent killed midway). GitHub does not resend either on its own.
  const repaired = await repairDeliveries(jobdirs);
  if (repaired.queued.length > 0 || repaired.released.length > 0) {
    opts.logger.warn(
      { queued: repaired.queued.map((d) => jobdirs.relative(d)), released: repaired.released },
      'completed or released deliveries that a killed server left half-published',
    );
  }
  if (repaired.unreadable.length > 0) {
    opts.logger.error(
      { files: repaired.unreadable },
      'the server did not write these; they are left as they are',
    );
  }
  const app = createApp(opts);
  return await new Promise((resolve, reject) => {
    const server = app.listen(opts.config.server.port, opts.config.server.host, (err?: Error) => {
      if (err) reject(err);
      else resolve(server);
    });
    ingests.set(server, ingestOf(app));
  });
}

/**
 * Stop a server from startServer: no new connections, the requests in progress answered, and every
 * delivery it acknowledged taken through to the pending-work index, so that the poller sees it while
 * the server is down. (A server killed instead leaves them to the journal replay at its next start.)
 */
export async function stopServer(server: Server): Promise<void> {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await ingests.get(server)?.close();
  await locks.get(server)?.release();
}

/** How often the server rewrites its heartbeat, so that `hpcbot status` can tell it is alive. */
const HEARTBEAT_EVERY_MS = 30_000;

/**
 * Follow site.yaml while the server runs (SIGHUP and file changes, see LiveConfig): a new source of the
 * webhook secret takes effect at once (`opts.secret` is replaced); the heartbeat (`status/server.json`)
 * says which config is in use, whether the file on disk is valid, and where the server answers.
 * Returns a function that stops following.
 */
export async function followSiteYaml(opts: ServerOptions, server: Server, warnings: string[] = []) {
  const { logger } = opts;
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.config.server.port;
  const base = `http://${opts.config.server.host}:${port}`;
  const extra = { url: `${base}${opts.config.server.webhook_path}`, healthz: `${base}/healthz` };
  const live = new LiveConfig(opts.config, {
    logger,
    restartOnly: SERVER_RESTART_ONLY,
    warnings,
    accept: async (next) => {
      if (opts.insecureSkipSignature) return;
      const loaded = await loadWebhookSecret(next);
      if (loaded.secret !== opts.secret)
        logger.info({ source: loaded.source }, `the webhook secret now comes from ${loaded.source}`);
      opts.secret = loaded.secret;
    },
  });
  const beat = () =>
    writeHeartbeat(opts.config.jobdirs, 'server', { config: live.health, extra }).catch((err: unknown) =>
      logger.warn({ err: (err as Error).message }, 'cannot write the heartbeat'),
    );
  await beat();
  const timer = setInterval(() => void beat(), HEARTBEAT_EVERY_MS).unref();
  const unwatch = watchConfigFile(live, beat);
  return () => {
    clearInterval(timer);
    unwatch();
  };
}
