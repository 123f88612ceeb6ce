/** Structured logs (pino). Secrets are never passed to the logger; the redaction list is a second fence. */
import pino, { type Logger } from 'pino';

export type { Logger };

export function createLogger(name: string, level = process.env.HPCBOT_LOG_LEVEL ?? 'info'): Logger {
  return pino({
    name,
    level,
    redact: {
      paths: [
        'secret',
        'token',
        'privateKey',
        '*.secret',
        '*.token',
        '*.privateKey',
        'headers.authorization',
      ],
      censor: '[redacted]',
    },
  });
}
