/**
 * Logs: one line per thing that happened. Pretty, local-time lines for a person at a terminal; JSON
 * (ISO times, level names) for files, pipes and journald. `HPCBOT_LOG_FORMAT` (json | pretty) overrides
 * the choice, `HPCBOT_LOG_LEVEL` sets the level. Lines about a pull request carry `pr: owner/repo#N`.
 * Secrets are never passed to the logger; the redaction list is a second fence.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import pino, { type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import type { PrettyOptions, PrettyStream } from 'pino-pretty';
import type { JobData } from './store/job.js';
import { prOfRelativeDir } from './store/jobdirs.js';

export type { Logger };

export type LogFormat = 'json' | 'pretty';

const LEVELS = [...Object.keys(pino.levels.values), 'silent'];

/**
 * pino-pretty, loaded only for pretty output (a terminal): JSON logs (files, pipes, journald, every
 * `poll --once` run by a script) do not pay for loading it. It is a CommonJS package, so `require`
 * loads it synchronously, when the first pretty logger is made.
 */
function prettyStream(options: PrettyOptions): PrettyStream {
  const pretty = createRequire(import.meta.url)('pino-pretty') as (o: PrettyOptions) => PrettyStream;
  return pretty(options);
}

/** A log setting in the environment that cannot be used. */
export class LogSettingError extends Error {
  override readonly name = 'LogSettingError';
}

export interface LogDestination {
  /** Default: process.stdout. */
  stream?: NodeJS.WritableStream;
  /** Whether a person reads `stream` at a terminal. Default: `stream.isTTY`. */
  isTTY?: boolean;
  /** Default: process.env. */
  env?: NodeJS.ProcessEnv;
  /** Default: `HPCBOT_LOG_LEVEL`, else info. */
  level?: string;
}

/** Pure: `HPCBOT_LOG_FORMAT` when set, else pretty for a terminal and JSON for anything else. */
export function logFormat(env: NodeJS.ProcessEnv, isTTY: boolean): LogFormat {
  const chosen = env.HPCBOT_LOG_FORMAT;
  if (chosen === undefined || chosen === '') return isTTY ? 'pretty' : 'json';
  if (chosen === 'json' || chosen === 'pretty') return chosen;
  throw new LogSettingError(`HPCBOT_LOG_FORMAT is "${chosen}"; set it to json or pretty, or unset it`);
}

export function createLogger(name: string, to: LogDestination = {}): Logger {
  const env = to.env ?? process.env;
  const stream = to.stream ?? process.stdout;
  const isTTY = to.isTTY ?? (stream as { isTTY?: boolean }).isTTY === true;
  const level = to.level ?? (env.HPCBOT_LOG_LEVEL || 'info');
  if (!LEVELS.includes(level))
    throw new LogSettingError(`HPCBOT_LOG_LEVEL is "${level}"; set it to one of ${LEVELS.join(', ')}`);
  const options: LoggerOptions = {
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
  };
  if (logFormat(env, isTTY) === 'json') {
    return pino(
      {
        ...options,
        timestamp: pino.stdTimeFunctions.isoTime,
        formatters: { level: (label) => ({ level: label }) },
      },
      (to.stream ?? pino.destination({ dest: 1, sync: true })) as DestinationStream,
    );
  }
  return pino(
    options,
    prettyStream({
      destination: to.stream ?? 1,
      sync: true, // a line logged just before process.exit still comes out
      colorize: isTTY,
      singleLine: true,
      translateTime: 'SYS:yyyy-mm-dd HH:MM:ss',
      ignore: 'pid,hostname,pr',
      messageFormat: '{if pr}{pr}: {end}{msg}',
    }),
  );
}

/** `owner/repo#N` (`owner/repo` for a repository-level event), what log lines call a pull request. */
export function prName(pr: { repo: { owner: string; repo: string }; number?: number }): string {
  return `${pr.repo.owner}/${pr.repo.repo}${pr.number === undefined ? '' : `#${pr.number}`}`;
}

/** Pure: the pull request a directory under jobdirs belongs to (`<month>/<owner>/<repo>/pr_<N>/...`). */
export function prOfDir(root: string, dir: string): string | undefined {
  return prOfRelativeDir(path.relative(root, dir));
}

/** The fields that name a job in a log line: its pull request, build target and (once submitted) job id. */
export function jobFields(job: JobData): { pr: string; target: string; job_id?: string } {
  return {
    pr: prName({ repo: job.pr, number: job.pr.number }),
    target: targetName(job.target),
    ...(job.job_id ? { job_id: job.job_id } : {}),
  };
}

/** `<node type>/<repo id>`, as in the job directory's path. */
export function targetName(target: { nodeType: string; repoId: string }): string {
  return `${target.nodeType}/${target.repoId}`;
}
