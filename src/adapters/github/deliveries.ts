/**
 * The App's webhook deliveries as GitHub keeps them (about 3 days): list, fetch one with its request
 * headers and payload, ask for a redelivery. GitHub answers these only to the App itself, so every call
 * carries the App's JWT (never an installation token).
 */
import type { Config } from '../../config/config.js';
import type { Logger } from '../../log.js';
import { createClients, GitHubConfigError, resolveAuth } from './auth.js';
import { octokitFactory, type GitHubOptions } from './client.js';
import { checkNumber } from './errors.js';

/** One row of GET /app/hook/deliveries (newest first). */
export interface DeliverySummary {
  /** GitHub's id of this delivery attempt; a redelivery gets a new one. */
  id: number;
  /** The X-GitHub-Delivery GUID, the same for every redelivery of one event. */
  guid: string;
  delivered_at: string;
  redelivery: boolean;
  event: string;
  action: string | null;
  status_code: number;
}

/** GET /app/hook/deliveries/{id}: the summary plus what was sent. */
export interface DeliveryDetail extends DeliverySummary {
  request: { headers: Record<string, unknown> | null; payload: Record<string, unknown> | null };
}

export interface DeliveryPage {
  deliveries: DeliverySummary[];
  /** The cursor of the next (older) page, from the Link header; undefined on the last page. */
  next?: string;
}

export interface DeliveriesApi {
  list(opts: { perPage: number; cursor?: string }): Promise<DeliveryPage>;
  get(id: number): Promise<DeliveryDetail>;
  redeliver(id: number): Promise<void>;
}

/** The cursor GitHub puts in the `rel="next"` link. */
export function nextCursor(link: string | undefined): string | undefined {
  for (const part of (link ?? '').split(',')) {
    const m = /<([^>]+)>\s*;\s*rel="next"/.exec(part);
    if (!m) continue;
    const cursor = new URL(m[1]!).searchParams.get('cursor');
    if (cursor) return cursor;
  }
  return undefined;
}

export function createDeliveries(
  config: Config,
  logger: Logger,
  env: NodeJS.ProcessEnv = process.env,
  options: GitHubOptions = {},
): DeliveriesApi {
  const auth = resolveAuth(config, env);
  if (auth.kind !== 'app')
    throw new GitHubConfigError(
      `ingest.mode: ${config.ingest.mode} pulls deliveries from GitHub, which lists them only to the App: ` +
        'set github.app_id and github.private_key_file (a token cannot list them)',
    );
  const apiUrl = config.github.api_url.replace(/\/+$/, '');
  const log = logger.child({ component: 'github' });
  const clients = createClients(auth, apiUrl, octokitFactory(apiUrl, log, options), log);
  return {
    list: ({ perPage, cursor }) =>
      clients.callUnscoped('list the App webhook deliveries', async (c) => {
        const res = await c.rest.apps.listWebhookDeliveries({
          per_page: perPage,
          ...(cursor ? { cursor } : {}),
        });
        return { deliveries: res.data as DeliverySummary[], next: nextCursor(res.headers.link) };
      }),
    get: (id) => {
      checkNumber(id, 'delivery id');
      return clients.callUnscoped(`get webhook delivery ${id}`, async (c) => {
        const res = await c.rest.apps.getWebhookDelivery({ delivery_id: id });
        return res.data as DeliveryDetail;
      });
    },
    redeliver: (id) => {
      checkNumber(id, 'delivery id');
      return clients.callUnscoped(`redeliver webhook delivery ${id}`, async (c) => {
        await c.rest.apps.redeliverWebhookDelivery({ delivery_id: id });
      });
    },
  };
}
