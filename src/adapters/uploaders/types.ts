/** The uploader interface shared by the `directory`, `s3` and `script` kinds. */
import path from 'node:path';
import { openJobFile } from '../../store/jobFile.js';
import type { Destination, DestinationKeys, UploadTarget } from './paths.js';

export type UploaderKind = 'directory' | 's3' | 'script';

/** One artefact and its companion files, all local paths (absolute). */
export interface UploadItem extends UploadTarget {
  artefact: string;
  /** sha256 of the artefact if already known (saves reading a big file again). */
  artefactSha256?: string;
  artefactSig?: string;
  provenance?: string;
  provenanceSig?: string;
  /** The job's Slurm output, secrets scrubbed (`deploy.upload_logs`); uploaded as `<artefact>.log`. */
  log?: string;
  /** The metadata JSON (`<artefact>.meta.txt`); uploaded LAST, since its arrival triggers ingestion. */
  metadata: string;
  metadataSig?: string;
  prCommentId?: number;
}

/** One file the uploader handled, in the order it was handled. */
export interface UploadedObject {
  file: string;
  /** Object key or relative path at the destination. */
  key: string;
  /** `unchanged`: the destination already had identical content (a retry), so nothing was written. */
  action: 'uploaded' | 'unchanged';
}

export type UploadResult =
  | { uploaded: true; url: string; objects: UploadedObject[]; note?: string }
  | {
      uploaded: false;
      reason: string;
      /** True for failures a later attempt may not see (network, server, a failed script). */
      retryable: boolean;
      /** What was uploaded before the failure (never the metadata). */
      objects: UploadedObject[];
    };

export type LocateResult = { ok: true; url: string; dest: Destination } | { ok: false; reason: string };

export interface Uploader {
  readonly kind: UploaderKind;
  /** Where the item would go and its URL, without uploading anything (pure; for the metadata's `url`). */
  locate(target: UploadTarget): LocateResult;
  /** Upload the artefact and its companions; the metadata JSON last. Never throws for upload failures. */
  upload(item: UploadItem): Promise<UploadResult>;
}

type FileRole = keyof DestinationKeys | 'log';

/**
 * The files of an item in upload order, paired with their keys; absent companions are skipped. The log
 * goes next to the artefact, like its signature and provenance.
 */
export function orderedFiles(
  item: UploadItem,
  keys: DestinationKeys,
): { file: string; key: string; role: FileRole }[] {
  const all: { file: string | undefined; key: string; role: FileRole }[] = [
    { file: item.artefactSig, key: keys.artefactSig, role: 'artefactSig' },
    { file: item.artefact, key: keys.artefact, role: 'artefact' },
    { file: item.provenance, key: keys.provenance, role: 'provenance' },
    { file: item.provenanceSig, key: keys.provenanceSig, role: 'provenanceSig' },
    { file: item.log, key: `${keys.artefact}.log`, role: 'log' },
    { file: item.metadataSig, key: keys.metadataSig, role: 'metadataSig' },
    { file: item.metadata, key: keys.metadata, role: 'metadata' },
  ];
  return all.filter((f): f is { file: string; key: string; role: FileRole } => f.file !== undefined);
}

/**
 * Refuse anything but a plain regular file with one link: a symlink or hard link could point at one of
 * the bot's own files (its signing key, say). Returns the problem, or undefined.
 */
export async function plainFileProblem(file: string): Promise<string | undefined> {
  const opened = await openJobFile(path.dirname(file), path.basename(file));
  if (!opened.ok) return opened.problem;
  await opened.handle.close();
  return undefined;
}
