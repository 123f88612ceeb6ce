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
  link2pr: { repo: string; pr: string; pr_comment_id: string; job_owner?: string };
  /** EESSI ingestion's task (deploy.task_metadata); all strings, as the script's jq writes them. */
  task?: { action: string; order: string; mode: string };
}

/** deploy.task_metadata as site.yaml gives it. */
export interface TaskSettings {
  action: 'add' | 'update' | 'delete' | 'start' | 'end';
  order?: number | string;
  mode?: 'order' | 'timestamp';
}

/** The high bits EESSI's upload script puts in a default order, per action. */
const ORDER_BITS: Record<TaskSettings['action'], bigint> = {
  start: 0x2000000000000000n,
  delete: 0x4000000000000000n,
  add: 0x7000000000000000n,
  update: 0xb000000000000000n,
  end: 0xd000000000000000n,
};

/**
 * The `task:` block as the upload script builds it: mode `order` when an order is given, else
 * `timestamp`; mode `order` without an order gets the action's bits ORed with the artefact's mtime.
 */
export function taskBlock(task: TaskSettings, mtime: Date): NonNullable<ArtefactMetadata['task']> {
  const order = task.order === undefined ? '' : String(task.order);
  const mode = task.mode ?? (order ? 'order' : 'timestamp');
  const seconds = BigInt(Math.floor(mtime.getTime() / 1000));
  return {
    action: task.action,
    order: order || (mode === 'order' ? String(ORDER_BITS[task.action] | seconds) : ''),
    mode,
  };
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
  jobOwner?: string;
  task?: TaskSettings;
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
      ...(input.jobOwner ? { job_owner: input.jobOwner } : {}),
    },
    ...(input.task ? { task: taskBlock(input.task, input.mtime) } : {}),
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
  link: {
    url: string;
    repo: string;
    pr: number;
    prCommentId?: number;
    sha256?: string;
    jobOwner?: string;
    task?: TaskSettings;
  },
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
    jobOwner: link.jobOwner,
    task: link.task,
    username: os.userInfo().username,
    hostname: os.hostname(),
  });
  const file = metadataPath(artefact);
  await writeFileAtomic(file, `${JSON.stringify(metadata, null, 2)}\n`);
  return { file, metadata };
}
