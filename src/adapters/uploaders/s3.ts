/**
 * The `s3` uploader: @aws-sdk/client-s3 with @aws-sdk/lib-storage's `Upload`, which streams each file
 * from disk and switches to a multipart upload for files larger than one part. Credentials and (unless
 * configured) the region come from the SDK's standard chain: AWS_* environment variables, then the
 * shared config/credentials files and profile. With `endpoint_url` (MinIO, Ceph, ...) requests use
 * path-style addressing.
 *
 * Every object carries its sha256 as user metadata (`x-amz-meta-sha256`). Before uploading, a HEAD
 * asks whether the key already holds that content; if so it is skipped, so a retry after a crash does
 * not upload (and, above all, does not re-announce the metadata) a second time.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { HeadObjectCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { sha256File } from '../../domain/provenance.js';
import { objectUrl, resolveDestination, type DestinationSettings, type UploadTarget } from './paths.js';
import {
  orderedFiles,
  plainFileProblem,
  type LocateResult,
  type UploadedObject,
  type Uploader,
  type UploadItem,
  type UploadResult,
} from './types.js';

export interface S3UploaderOptions extends DestinationSettings {
  region?: string;
  /** Extra client settings (tests pass credentials here; production uses the standard chain). */
  clientConfig?: Partial<S3ClientConfig>;
  /** Multipart part size in bytes (default 16 MiB; S3's minimum is 5 MiB). */
  partSize?: number;
  /** Parts in flight at once (default 2). */
  queueSize?: number;
}

const CONTENT_TYPES: [RegExp, string][] = [
  [/\.(tar\.gz|tgz)$/, 'application/gzip'],
  [/\.tar\.zst$/, 'application/zstd'],
  [/\.tar$/, 'application/x-tar'],
  [/\.(json|meta\.txt)$/, 'application/json'],
  [/\.sig$/, 'text/plain'],
  [/\.log$/, 'text/plain; charset=utf-8'],
];

function contentType(key: string): string {
  return CONTENT_TYPES.find(([re]) => re.test(key))?.[1] ?? 'application/octet-stream';
}

function describe(err: unknown): string {
  const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const status = e.$metadata?.httpStatusCode ? ` (HTTP ${e.$metadata.httpStatusCode})` : '';
  return `${e.name ?? 'Error'}: ${(e.message ?? String(err)).split('\n')[0]}${status}`;
}

/** A client for `endpoint` (path-style) or AWS; the region falls back to the environment, then us-east-1 with an endpoint. */
export function createS3Client(
  region: string | undefined,
  endpoint: string | undefined,
  clientConfig: Partial<S3ClientConfig> = {},
): S3Client {
  const r =
    region ??
    process.env.AWS_REGION ??
    process.env.AWS_DEFAULT_REGION ??
    (endpoint ? 'us-east-1' : undefined);
  return new S3Client({
    ...(r ? { region: r } : {}),
    ...(endpoint ? { endpoint, forcePathStyle: true } : {}),
    ...clientConfig,
  });
}

export function createS3Uploader(opts: S3UploaderOptions): Uploader {
  const clients = new Map<string, S3Client>();
  const clientFor = (endpoint: string | undefined): S3Client => {
    const id = endpoint ?? '';
    let c = clients.get(id);
    if (!c) {
      c = createS3Client(opts.region, endpoint, opts.clientConfig);
      clients.set(id, c);
    }
    return c;
  };

  const locate = (target: UploadTarget): LocateResult => {
    const r = resolveDestination(opts, target);
    if (!r.ok) return r;
    if (!r.dest.bucket) return { ok: false, reason: `no bucket for ${target.repoId}` };
    return {
      ok: true,
      dest: r.dest,
      url: objectUrl(r.dest.bucket, r.dest.keys.artefact, r.dest.endpointUrl),
    };
  };

  return {
    kind: 's3',
    locate,
    async upload(item: UploadItem): Promise<UploadResult> {
      const where = locate(item);
      const objects: UploadedObject[] = [];
      if (!where.ok) return { uploaded: false, reason: where.reason, retryable: false, objects };
      const bucket = where.dest.bucket!;
      const client = clientFor(where.dest.endpointUrl);
      let current = '';
      try {
        const files = orderedFiles(item, where.dest.keys);
        for (const { file } of files) {
          const problem = await plainFileProblem(file);
          if (problem) return { uploaded: false, reason: problem, retryable: false, objects };
        }
        for (const { file, key, role } of files) {
          current = key;
          const sha256 = (role === 'artefact' ? item.artefactSha256 : undefined) ?? (await sha256File(file));
          const size = (await stat(file)).size;
          if (await alreadyThere(client, bucket, key, sha256, size)) {
            objects.push({ file, key, action: 'unchanged' });
            continue;
          }
          const upload = new Upload({
            client,
            params: {
              Bucket: bucket,
              Key: key,
              Body: createReadStream(file, { highWaterMark: 1024 * 1024 }),
              ContentType: contentType(key),
              Metadata: { sha256 },
            },
            partSize: opts.partSize ?? 16 * 1024 * 1024,
            queueSize: opts.queueSize ?? 2,
            leavePartsOnError: false,
          });
          await upload.done();
          objects.push({ file, key, action: 'uploaded' });
        }
      } catch (err) {
        return {
          uploaded: false,
          reason: `upload of s3://${bucket}/${current} failed: ${describe(err)}`,
          retryable: true,
          objects,
        };
      }
      return { uploaded: true, url: where.url, objects };
    },
  };
}

/** True if `key` exists with the same sha256 (our metadata) and size. A missing key is false. */
async function alreadyThere(
  client: S3Client,
  bucket: string,
  key: string,
  sha256: string,
  size: number,
): Promise<boolean> {
  try {
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return head.Metadata?.sha256 === sha256 && head.ContentLength === size;
  } catch (err) {
    const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (status === 404 || (err as Error).name === 'NotFound') return false;
    throw err;
  }
}
