/**
 * Secrets come from the environment or from files, never from site.yaml, and are never logged.
 * The webhook secret falls back to a file that is generated (mode 600) on first start, so that the
 * shipped config runs on a fresh machine without ever skipping signature verification.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { webhookSecretFile, type Config } from './config.js';
import { createFileExclusive, mkdirDurable } from '../store/fsutil.js';

export interface WebhookSecret {
  secret: string;
  /** Where it came from, safe to print. */
  source: string;
  generated: boolean;
}

export async function loadWebhookSecret(cfg: Config, env = process.env): Promise<WebhookSecret> {
  const fromEnv = env[cfg.github.webhook_secret_env];
  if (fromEnv) return { secret: fromEnv, source: `env ${cfg.github.webhook_secret_env}`, generated: false };

  const file = webhookSecretFile(cfg, env);
  // An existing file is only read: it may live in a read-only place (a mounted secret).
  let generated = false;
  let text = await readIfExists(file);
  if (text === undefined) {
    const dir = path.dirname(file);
    await mkdirDurable(dir);
    // Tighten only our own default directory, never one the operator named.
    if (cfg.github.webhook_secret_file === undefined) await fs.chmod(dir, 0o700).catch(() => undefined);
    generated = await createFileExclusive(file, randomBytes(32).toString('hex') + '\n', { mode: 0o600 });
    text = await fs.readFile(file, 'utf8');
  }
  const secret = text.trim();
  if (!secret) throw new Error(`webhook secret file ${file} is empty; delete it to generate a new one`);
  return { secret, source: `file ${file}`, generated };
}

async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
