/**
 * The `directory` uploader: copies into a staging directory (default `<jobdirs>/staging`) under the
 * same keys an S3 upload would use. Each file is copied to a temp name in its target directory, fsynced,
 * then renamed over the target and the directory fsynced, so a reader sees a whole file or none.
 * Temp names start with `.tmp-` (fsutil's convention); readers of the staging dir must skip them.
 * A file whose target already has identical content is left alone (a retried upload).
 */
import { constants as fsConstants, promises as fs } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { fsyncDir, mkdirDurable, tempName } from '../../store/fsutil.js';
import { sha256File } from '../../domain/provenance.js';
import { resolveDestination, type DestinationSettings, type UploadTarget } from './paths.js';
import {
  orderedFiles,
  plainFileProblem,
  type LocateResult,
  type UploadedObject,
  type Uploader,
  type UploadItem,
  type UploadResult,
} from './types.js';

/** Copy `src` to `dest` atomically (temp + fsync + rename + fsync of the dir). */
export async function copyFileAtomic(src: string, dest: string, mode = 0o644): Promise<void> {
  const dir = path.dirname(dest);
  const tmp = path.join(dir, tempName());
  try {
    await fs.copyFile(src, tmp, fsConstants.COPYFILE_EXCL);
    const handle = await fs.open(tmp, 'r+');
    try {
      await handle.chmod(mode);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(tmp, dest);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dir);
}

async function sameContent(file: string, dest: string, knownSha?: string): Promise<boolean> {
  let destStat;
  try {
    destStat = await fs.stat(dest);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  const srcStat = await fs.stat(file);
  if (!destStat.isFile() || destStat.size !== srcStat.size) return false;
  const [a, b] = await Promise.all([knownSha ?? sha256File(file), sha256File(dest)]);
  return a === b;
}

export interface DirectoryUploaderOptions extends DestinationSettings {
  directory: string;
}

export function createDirectoryUploader(opts: DirectoryUploaderOptions): Uploader {
  const root = path.resolve(opts.directory);
  const locate = (target: UploadTarget): LocateResult => {
    const r = resolveDestination(opts, target);
    if (!r.ok) return r;
    return { ok: true, dest: r.dest, url: pathToFileURL(path.join(root, r.dest.keys.artefact)).href };
  };
  return {
    kind: 'directory',
    locate,
    async upload(item: UploadItem): Promise<UploadResult> {
      const where = locate(item);
      const objects: UploadedObject[] = [];
      if (!where.ok) return { uploaded: false, reason: where.reason, retryable: false, objects };
      try {
        const files = orderedFiles(item, where.dest.keys);
        for (const { file } of files) {
          const problem = await plainFileProblem(file);
          if (problem) return { uploaded: false, reason: problem, retryable: false, objects };
        }
        for (const { file, key, role } of files) {
          const dest = path.join(root, key);
          await mkdirDurable(path.dirname(dest));
          const known = role === 'artefact' ? item.artefactSha256 : undefined;
          if (await sameContent(file, dest, known)) {
            objects.push({ file, key, action: 'unchanged' });
            continue;
          }
          await copyFileAtomic(file, dest);
          objects.push({ file, key, action: 'uploaded' });
        }
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        return {
          uploaded: false,
          reason: `copy into ${root} failed: ${e.code ?? e.message}${e.path ? ` (${e.path})` : ''}`,
          retryable: true,
          objects,
        };
      }
      return { uploaded: true, url: where.url, objects };
    },
  };
}
