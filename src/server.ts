/**
 * The webhook endpoint. It only verifies a delivery and stores it as an event file; the poller does
 * everything else. No GitHub API call, no git and no Slurm ever happens in a request.
 */
import { promises as fs, constants as fsConstants } from 'node:fs';
import type { Server } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import { Webhooks } from '@octokit/webhooks';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from 'pino';
import type { Config } from './config/config.js';
import { classifyEvent, incomingDir, repairDeliveries, storeEvent } from './ingest/eventStore.js';
import { mkdirDurable, removeStaleTemps } from './store/fsutil.js';
import { JobDirs, isValidDeliveryId } from './store/jobdirs.js';

/** GitHub caps webhook payloads at 25 MiB. */
export const MAX_BODY_BYTES = 25 * 1024 * 1024;

/** The metrics label of a delivery whose event name is not (yet) verified. */
const UNVERIFIED = 'unverified';

export interface ServerOptions {
  config: Config;
  logger: Logger;
  /** The webhook secret; undefined only with insecureSkipSignature. */
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

export function createApp({ config, logger, secret, insecureSkipSignature }: ServerOptions): express.Express {
  if (!secret && !insecureSkipSignature) {
    throw new Error(
      'refusing to start without a webhook secret (use --insecure-skip-signature for development)',
    );
  }
  const jobdirs = new JobDirs(config.jobdirs);
  const webhooks = secret ? new Webhooks({ secret }) : undefined;

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
    help: 'Time to store an event durably (write, fsync, rename, index)',
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });

  const app = express();
  app.disable('x-powered-by');

  app.get('/healthz', async (_req, res) => {
    try {
      await fs.access(jobdirs.root, fsConstants.W_OK);
      res.status(200).json({ ok: true });
    } catch {
      res.status(503).json({ ok: false, error: 'jobdirs is not writable' });
    }
  });

  app.get('/metrics', async (_req, res) => {
    res.type(registry.contentType).send(await registry.metrics());
  });

  app.post(
    config.server.webhook_path,
    // No inflate: the signature covers the bytes GitHub sent, and a compressed body could be a bomb.
    express.raw({ type: () => true, limit: MAX_BODY_BYTES, inflate: false }),
    async (req: Request, res: Response) => {
      // The event label is only taken from verified deliveries: unverified requests must not be able
      // to create metric series (memory) by inventing event names.
      const labels = { event: UNVERIFIED, outcome: 'error' };
      try {
        const body = await handleDelivery(req, labels);
        labels.outcome = body.outcome;
        res.status(body.status).json(body.json);
      } catch (err) {
        if (err instanceof HttpError) {
          labels.outcome = `rejected_${err.status}`;
          res.status(err.status).json({ error: err.message });
        } else {
          logger.error({ err, event: labels.event }, 'storing a delivery failed');
          res.status(500).json({ error: 'could not store the event; GitHub will let you redeliver it' });
        }
      } finally {
        deliveries.inc(labels);
      }
    },
  );

  async function handleDelivery(req: Request, labels: { event: string }) {
    const raw: Buffer = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    const rawBody = raw.toString('utf8');
    // Verify before looking at anything else in the request.
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

    const where = classifyEvent(event, payload);
    if ('invalid' in where) throw new HttpError(400, where.invalid);
    if (!where.store)
      return { status: 202, outcome: 'ignored', json: { delivery, stored: false, reason: where.reason } };

    const p = payload as { action?: unknown; installation?: { id?: unknown } };
    const started = process.hrtime.bigint();
    const { duplicate } = await storeEvent(jobdirs, {
      delivery,
      event,
      rawBody,
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
    return { status: 202, outcome: 'stored', json: { delivery, stored: true } };
  }

  // Body-parser errors (oversize, aborted) and anything else thrown outside the handler.
  app.use(
    (err: Error & { status?: number; type?: string }, req: Request, res: Response, _next: NextFunction) => {
      const status = err.status && err.status >= 400 && err.status < 500 ? err.status : 500;
      if (req.method === 'POST' && req.path === config.server.webhook_path) {
        deliveries.inc({ event: UNVERIFIED, outcome: `rejected_${status}` });
      }
      if (err.type === 'entity.too.large') {
        res.status(413).json({ error: `body larger than ${MAX_BODY_BYTES} bytes (GitHub's limit)` });
        return;
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
  const incoming = incomingDir(jobdirs);
  await mkdirDurable(incoming);
  // Temp files and staged event dirs of a server that was killed mid-write: never events, just litter.
  // Only in the dirs the server alone writes to (queue/ is shared with the poller, which skips them).
  let stale = 0;
  for (const dir of [incoming, jobdirs.deliveriesDir]) stale += await removeStaleTemps(dir);
  if (stale > 0) opts.logger.info({ removed: stale }, 'removed temp files left by a killed server');
  // Deliveries a killed server left half-published: never acknowledged, and GitHub will not resend them.
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
  });
}
