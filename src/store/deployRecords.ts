/**
 * Deploy records: `<jobdirs>/uploads/<owner>/<repo>/pr_<N>/<hash of the build target>.json`, one per
 * build target of a PR that a deploy uploaded (or started to). `deploy.policy: once` refuses a target
 * that has one. `hpcbot deploy forget` removes records and appends what it removed, and who asked, to
 * `forgotten.log` in the same directory.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { readJsonIfExists } from './fsutil.js';

export const UPLOADS_DIR = 'uploads';
export const FORGOTTEN_LOG = 'forgotten.log';

export interface DeployOutcome {
  artefact: string;
  uploaded: boolean;
  text: string;
}

export interface DeployRecord {
  /** The build target key: `<for arch>|<for accel>|<repo id>`. */
  target: string;
  /** The job dir whose artefacts were uploaded, relative to jobdirs. */
  job_dir: string;
  /** The deploy that wrote the entry: `<event dir>#<generation>`. */
  deploy?: string;
  status: 'uploading' | 'uploaded';
  at: string;
  /** With `uploaded`: what that deploy reported, so a re-run of the same deploy reports it again. */
  outcomes?: DeployOutcome[];
}

export function deployRecordsDir(jobdirsRoot: string, owner: string, repo: string, pr: number): string {
  return path.join(jobdirsRoot, UPLOADS_DIR, owner, repo, `pr_${pr}`);
}

export function deployRecordFile(dir: string, targetKey: string): string {
  return path.join(dir, `${createHash('sha256').update(targetKey).digest('hex').slice(0, 32)}.json`);
}

const RECORD_NAME = /^[0-9a-f]{32}\.json$/;

/** The records in `dir` (none if it does not exist), by file name. */
export async function readDeployRecords(dir: string): Promise<Array<{ file: string; record: DeployRecord }>> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const records = [];
  for (const name of names.filter((n) => RECORD_NAME.test(n)).sort()) {
    const file = path.join(dir, name);
    const record = await readJsonIfExists<DeployRecord>(file);
    if (record) records.push({ file, record });
  }
  return records;
}
