/**
 * The `script` uploader: runs an EESSI-compatible `eessi-upload-to-staging` (its path comes from
 * site.yaml, never from the PR tree) with the flags the EESSI bot passes, minus `--sign-key` and
 * `--sign-script`: signing is done by the bot's own code, the script never gets the key.
 *
 * The script uploads the artefact and builds and uploads its own metadata file; it does not know our
 * `.sig` and provenance files, which therefore stay in the job directory with this kind. The prefixes
 * are passed unexpanded, as the EESSI bot does: the script expands them itself.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import type { TaskSettings } from './metadata.js';
import { objectUrl, resolveDestination, type DestinationSettings, type UploadTarget } from './paths.js';
import {
  plainFileProblem,
  type LocateResult,
  type Uploader,
  type UploadItem,
  type UploadResult,
} from './types.js';

/** The script's own default bucket. */
export const SCRIPT_DEFAULT_BUCKET = 'eessi-staging';

export interface ScriptUploaderOptions extends DestinationSettings {
  script: string;
  /** `--bot-instance`. */
  instance: string;
  /** deploy.task_metadata: `--action`, `--order`, `--mode`. */
  task?: TaskSettings;
  timeoutMs?: number;
}

/** The argument list for one artefact (pure; exported for tests and logs). */
export function scriptArgs(
  opts: Pick<ScriptUploaderOptions, 'instance' | 'task'>,
  dest: { rawArtefactPrefix?: string; rawMetadataPrefix?: string; bucket?: string; endpointUrl?: string },
  item: Pick<UploadItem, 'artefact' | 'githubRepository' | 'prNumber' | 'prCommentId'>,
): string[] {
  const args: string[] = [];
  if (dest.rawArtefactPrefix) args.push('--artefact-prefix', dest.rawArtefactPrefix);
  if (dest.bucket) args.push('--bucket-name', dest.bucket);
  if (dest.endpointUrl) args.push('--endpoint-url', dest.endpointUrl);
  if (dest.rawMetadataPrefix) args.push('--metadata-prefix', dest.rawMetadataPrefix);
  args.push(
    '--pr-comment-id',
    item.prCommentId === undefined ? 'none' : String(item.prCommentId),
    '--pull-request-number',
    String(item.prNumber),
    '--repository',
    item.githubRepository,
    '--bot-instance',
    opts.instance,
  );
  if (opts.task) {
    args.push('--action', opts.task.action);
    if (opts.task.order !== undefined) args.push('--order', String(opts.task.order));
    if (opts.task.mode) args.push('--mode', opts.task.mode);
  }
  args.push(item.artefact);
  return args;
}

function tail(text: string, n = 3): string {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .slice(-n)
    .join(' | ')
    .slice(0, 500);
}

export function createScriptUploader(opts: ScriptUploaderOptions): Uploader {
  const locate = (target: UploadTarget): LocateResult => {
    const r = resolveDestination(opts, target);
    if (!r.ok) return r;
    const bucket = r.dest.bucket ?? SCRIPT_DEFAULT_BUCKET;
    return { ok: true, dest: r.dest, url: objectUrl(bucket, r.dest.keys.artefact, r.dest.endpointUrl) };
  };
  return {
    kind: 'script',
    locate,
    async upload(item: UploadItem): Promise<UploadResult> {
      const where = locate(item);
      if (!where.ok) return { uploaded: false, reason: where.reason, retryable: false, objects: [] };
      const problem = await plainFileProblem(item.artefact);
      if (problem) return { uploaded: false, reason: problem, retryable: false, objects: [] };
      const args = scriptArgs(opts, where.dest, item);
      const outcome = await new Promise<{ code: number | string | null; output: string }>((resolve) => {
        execFile(
          opts.script,
          args,
          {
            cwd: path.dirname(item.artefact),
            env: process.env,
            timeout: opts.timeoutMs ?? 6 * 3600_000,
            maxBuffer: 16 * 1024 * 1024,
          },
          (err, stdout, stderr) => {
            const e = err as (NodeJS.ErrnoException & { code?: number | string; signal?: string }) | null;
            resolve({
              code: e ? (e.signal ?? e.code ?? 'error') : 0,
              output: `${stdout}\n${stderr}${e && !stderr ? e.message : ''}`,
            });
          },
        );
      });
      if (outcome.code !== 0) {
        return {
          uploaded: false,
          reason: `${path.basename(opts.script)} failed (${typeof outcome.code === 'number' ? `exit ${outcome.code}` : outcome.code}): ${tail(outcome.output)}`,
          retryable: true,
          objects: [],
        };
      }
      return {
        uploaded: true,
        url: where.url,
        objects: [{ file: item.artefact, key: where.dest.keys.artefact, action: 'uploaded' }],
        note: `uploaded by ${path.basename(opts.script)}, which also wrote its own metadata; signatures and provenance stayed in the job directory`,
      };
    },
  };
}
