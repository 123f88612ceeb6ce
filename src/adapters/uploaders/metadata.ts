/**
 * The metadata JSON uploaded with each artefact as `<artefact>.meta.txt`, the same document as the one
 * EESSI's `eessi-upload-to-staging` builds with jq (whose `--arg` makes every value a string), minus the
 * uploader's public IP address (the script asked checkip.amazonaws.com for it on every upload). Its
 * arrival in the bucket is what ingestion reacts to, so it is uploaded last.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeFileAtomic } from '../../store/fsutil.js';
import { sha256File } from '../../domain/provenance.js';

export interface ArtefactMetadata {
  uploader: { username: string; hostname: string };
  payload: { filename: string; size: string; ctime: string; sha256sum: string; url: string };
  link2pr: { repo: string; pr: string; pr_comment_id: string };
}

export interface MetadataInput {
  filename: string;
  size: number;
  /** The artefact's modification time (what the script's `date -r FILE` prints). */
  mtime: Date;
  sha256: string;
  url: string;
  /** `owner/repo`. */
  repo: string;
  pr: number;
  prCommentId?: number;
  username: string;
  hostname: string;
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** `date -r FILE` in the C locale and UTC: `Tue Oct 24 09:05:01 UTC 2023` (day padded with a space). */
export function formatCtime(d: Date): string {
  const two = (n: number) => String(n).padStart(2, '0');
  return (
    `${DAYS[d.getUTCDay()]} ${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ` +
    `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} UTC ${d.getUTCFullYear()}`
  );
}

/** Build the document. Pure. */
export function buildMetadata(input: MetadataInput): ArtefactMetadata {
  return {
    uploader: { username: input.username, hostname: input.hostname },
    payload: {
      filename: input.filename,
      size: String(input.size),
      ctime: formatCtime(input.mtime),
      sha256sum: input.sha256,
      url: input.url,
    },
    link2pr: {
      repo: input.repo,
      pr: String(input.pr),
      // The script's default when no comment id is given.
      pr_comment_id: input.prCommentId === undefined ? 'none' : String(input.prCommentId),
    },
  };
}

/** The metadata file next to an artefact. */
export function metadataPath(artefact: string): string {
  return `${artefact}.meta.txt`;
}

/**
 * Write `<artefact>.meta.txt` for an artefact about to go to `url`; returns its path and content.
 * Deterministic for the same artefact and URL, so a retried upload finds identical bytes.
 */
export async function writeMetadata(
  artefact: string,
  link: { url: string; repo: string; pr: number; prCommentId?: number; sha256?: string },
): Promise<{ file: string; metadata: ArtefactMetadata }> {
  const stat = await fs.stat(artefact);
  const metadata = buildMetadata({
    filename: path.basename(artefact),
    size: stat.size,
    mtime: stat.mtime,
    sha256: link.sha256 ?? (await sha256File(artefact)),
    url: link.url,
    repo: link.repo,
    pr: link.pr,
    prCommentId: link.prCommentId,
    username: os.userInfo().username,
    hostname: os.hostname(),
  });
  const file = metadataPath(artefact);
  await writeFileAtomic(file, `${JSON.stringify(metadata, null, 2)}\n`);
  return { file, metadata };
}
