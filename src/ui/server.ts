/**
 * `hpcbot ui`: the status page, its own process (the webhook server only stores events). Read-only:
 * it answers GET and HEAD from what is on disk and writes nothing. Without `ui.token_file` it listens
 * on loopback only; with it every request needs the token, as `Authorization: Bearer <token>` or the
 * cookie that `?token=<token>` sets.
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { isIP } from 'node:net';
import type { Located } from '../cli/status.js';
import { configErrorAt, type Config } from '../config/config.js';
import type { Logger } from '../log.js';
import { renderJobDetail, renderNotFound, renderOverview } from './html.js';
import { renderMetrics } from './metrics.js';
import { collectJobDetail, collectOverview } from './model.js';
import { STYLESHEET } from './style.js';

export const TOKEN_COOKIE = 'hpcbot_ui_token';

/** Pure: whether `host` can only be reached from this machine. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

/** The token in `ui.token_file`, or undefined without one; refuses a non-loopback host without one. */
export function uiToken(config: Config): string | undefined {
  const { host, token_file } = config.ui;
  if (!token_file) {
    if (!isLoopback(host))
      throw configErrorAt(config, [
        {
          keyPath: 'ui.host',
          message: `${host} is not a loopback address: set ui.token_file, or use 127.0.0.1 and an SSH tunnel`,
        },
      ]);
    return undefined;
  }
  const token = readFileSync(token_file, 'utf8').trim();
  if (token.length < 16)
    throw configErrorAt(config, [
      { keyPath: 'ui.token_file', message: `${token_file} must hold a token of at least 16 characters` },
    ]);
  return token;
}

const digest = (s: string) => createHash('sha256').update(s).digest();
/** Constant-time comparison (of the hashes, so that lengths do not leak either). */
function sameToken(given: string | undefined, token: string): boolean {
  return given !== undefined && timingSafeEqual(digest(given), digest(token));
}

function cookie(req: http.IncomingMessage, name: string): string | undefined {
  for (const pair of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = pair.trim().split('=');
    if (k === name) return decodeURIComponent(v.join('='));
  }
  return undefined;
}

const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

export interface UiOptions {
  located: Located;
  host: string;
  port: number;
  token?: string;
  logger: Pick<Logger, 'warn'>;
  now?: () => Date;
}

export function createUiServer(opts: UiOptions): http.Server {
  const now = opts.now ?? (() => new Date());
  const send = (res: http.ServerResponse, status: number, type: string, body: string, extra = {}) => {
    res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': type, ...extra });
    res.end(res.req.method === 'HEAD' ? undefined : body);
  };
  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return send(res, 405, 'text/plain; charset=utf-8', 'read-only\n', { allow: 'GET, HEAD' });
    const url = new URL(req.url ?? '/', 'http://ui.invalid');
    if (opts.token) {
      const fromQuery = url.searchParams.get('token') ?? undefined;
      if (sameToken(fromQuery, opts.token)) {
        url.searchParams.delete('token');
        return send(res, 303, 'text/plain; charset=utf-8', 'signed in\n', {
          location: `${url.pathname.replace(/^\/+/, '/')}${url.search}`,
          'set-cookie': `${TOKEN_COOKIE}=${encodeURIComponent(opts.token)}; HttpOnly; SameSite=Strict; Path=/`,
        });
      }
      const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      if (!sameToken(bearer, opts.token) && !sameToken(cookie(req, TOKEN_COOKIE), opts.token))
        return send(
          res,
          401,
          'text/plain; charset=utf-8',
          'a token is needed: ?token=<token> or Authorization: Bearer\n',
          {
            'www-authenticate': 'Bearer',
          },
        );
    }
    switch (url.pathname) {
      case '/':
        return send(
          res,
          200,
          'text/html; charset=utf-8',
          renderOverview(await collectOverview(opts.located, now()), now()),
        );
      case '/job': {
        const dir = url.searchParams.get('dir') ?? '';
        const detail = await collectJobDetail(opts.located.jobdirs, dir);
        if (!detail)
          return send(res, 404, 'text/html; charset=utf-8', renderNotFound(`no job directory ${dir}`));
        return send(res, 200, 'text/html; charset=utf-8', renderJobDetail(detail, now()));
      }
      case '/style.css':
        return send(res, 200, 'text/css; charset=utf-8', STYLESHEET);
      case '/metrics':
        return send(
          res,
          200,
          'text/plain; version=0.0.4; charset=utf-8',
          await renderMetrics(opts.located, now()),
        );
      case '/healthz':
        return send(res, 200, 'text/plain; charset=utf-8', 'ok\n');
      default:
        return send(res, 404, 'text/html; charset=utf-8', renderNotFound(url.pathname));
    }
  };
  return http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      opts.logger.warn({ err: (err as Error).message, url: req.url }, 'status page request failed');
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', 'internal error (see the ui log)\n');
      else res.end();
    });
  });
}

export async function startUi(opts: UiOptions): Promise<http.Server> {
  const server = createUiServer(opts);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}
