/**
 * `hpcbot config import-eessi APP_CFG [--out site.yaml]`: read an EESSI bot app.cfg and write the
 * equivalent site.yaml (to stdout without --out); what could not be mapped is listed at its end and
 * summed up on stderr. The mapping itself is in config/eessiImport.ts.
 */
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EessiImportError, importEessiAppCfg } from '../config/eessiImport.js';
import { writeFileAtomic } from '../store/fsutil.js';
import { UsageError } from './errors.js';

/** scripts/eessi-upload-to-staging of this checkout. */
export const BUNDLED_UPLOAD_SCRIPT = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'scripts',
  'eessi-upload-to-staging',
);

export async function importEessiCommand(appCfg: string, opts: { out?: string }): Promise<void> {
  let text: string;
  try {
    text = await fs.readFile(appCfg, 'utf8');
  } catch (err) {
    throw new Error(
      `cannot read ${appCfg}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      { cause: err },
    );
  }
  let result;
  try {
    result = importEessiAppCfg(text, {
      env: process.env,
      bundledUploadScript: BUNDLED_UPLOAD_SCRIPT,
      exists: (file) => existsSync(path.resolve(path.dirname(appCfg), file)),
    });
  } catch (err) {
    if (err instanceof EessiImportError) throw new UsageError(`${appCfg}: ${err.message}`);
    throw err;
  }
  if (opts.out === undefined) process.stdout.write(result.yaml);
  else {
    if (existsSync(opts.out)) throw new UsageError(`${opts.out} exists; give another --out or remove it`);
    await writeFileAtomic(opts.out, result.yaml);
    process.stderr.write(`wrote ${opts.out}\n`);
  }
  process.stderr.write(
    `${result.notMapped.length} app.cfg keys not mapped (listed at the end of the file)` +
      (result.secrets.length > 0
        ? `; put these secrets in place: ${result.secrets.map((s) => s.keyPath).join(', ')}`
        : '') +
      '; then run hpcbot config check\n',
  );
}
