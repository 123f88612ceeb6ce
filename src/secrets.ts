/**
 * Secrets come from the environment or from files, never from site.yaml, and are never logged.
 * The webhook secret falls back to a file that is generated (mode 600) on first start, so that the
 * shipped config runs on a fresh machine without ever skipping signature verification.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { webhookSecretFile, type Config } from './config.js';
import { createFileExclusive, mkdirDurable } from './fsutil.js';

export interface WebhookSecret {
  secret: string;
  /** Where it came from, safe to print. */
  source: string;
  generated: boolean;
}

export async function loadWebhookSecret(cfg: Config, env = process.env): Promise<WebhookSecret> {
  const fromEnv = env[cfg.github.webhook_secret_env];
  if (fromEnv) return { secret: fromEnv, source: `env ${cfg.github.webhook_secret_env}`, generated: false };

  const file = webhookSecretFile(cfg);
  await mkdirDurable(path.dirname(file));
  await fs.chmod(path.dirname(file), 0o700).catch(() => undefined);
  const generated = await createFileExclusive(file, randomBytes(32).toString('hex') + '\n', { mode: 0o600 });
  const secret = (await fs.readFile(file, 'utf8')).trim();
  if (!secret) throw new Error(`webhook secret file ${file} is empty; delete it to generate a new one`);
  return { secret, source: `file ${file}`, generated };
}
