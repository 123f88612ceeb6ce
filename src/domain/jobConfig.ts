/**
 * The job's `cfg/` directory, exactly what EESSI's bot/build.sh reads: `cfg/job.cfg` with the
 * `[site_config]`, `[repository]` and `[architecture]` sections, a copy of repos_cfg_dir, and
 * `cfg/export_vars.sh` for the allowed export variables.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { SiteConfig } from '../config/config.js';
import type { ExportVariable } from './commands.js';
import { freshTreeDir, treeDir, writeTreeFile } from '../store/workTree.js';
import { parseIni, renderIni, type IniSections } from './ini.js';
import type { BuildTarget } from './targets.js';

/** Repo ids that need no repos.cfg section: the repository inside the build container. */
export const BUILTIN_REPOS: ReadonlySet<string> = new Set(['EESSI', 'EESSI-pilot']);

export class JobConfigError extends Error {}

export function renderJobCfg(
  site: SiteConfig['build']['site_config'],
  target: BuildTarget,
  jobCfgDir: string,
  repo: Record<string, string>,
): string {
  const siteConfig: Record<string, string> = {};
  for (const [k, v] of Object.entries(site)) if (v !== undefined) siteConfig[k] = oneLine(v);
  const sections: IniSections = {
    site_config: siteConfig,
    repository: {
      repos_cfg_dir: jobCfgDir,
      repo_id: target.repoId,
      container: oneLine(repo.container ?? ''),
      repo_name: oneLine(repo.repo_name ?? ''),
      repo_version: oneLine(repo.repo_version ?? ''),
    },
    architecture: {
      node_type: target.nodeType,
      software_subdir: oneLine(target.forArch),
      os_type: target.os,
      accelerator: oneLine(target.forAccel ?? ''),
    },
  };
  return renderIni(sections);
}

function oneLine(s: string): string {
  return s.replace(/[\r\n]+/g, ' ');
}

/** `export NAME='value'` lines; values are single-quoted so the shell takes them literally. */
export function renderExportVars(vars: ExportVariable[]): string {
  return vars.map((v) => `export ${v.name}='${v.value.replace(/'/g, `'\\''`)}'\n`).join('');
}

/**
 * Writes `cfg/` into `dir` (the checkout); `finalDir` is where the tree will be when the job runs
 * (job.cfg names it). Whatever the PR committed at `cfg` (a directory, a file, a symbolic link to a
 * directory outside the tree) is removed first: `cfg/` is the bot's, and no write here follows a link
 * (see writeTreeFile).
 */
export async function writeJobCfg(
  dir: string,
  finalDir: string,
  build: SiteConfig['build'],
  target: BuildTarget,
  vars: ExportVariable[],
) {
  let repo: Record<string, string> = {};
  if (build.repos_cfg_dir) {
    const reposCfg = await fs.readFile(path.join(build.repos_cfg_dir, 'repos.cfg'), 'utf8').catch(() => '');
    repo = parseIni(reposCfg)[target.repoId] ?? {};
  }
  if (Object.keys(repo).length === 0 && !BUILTIN_REPOS.has(target.repoId)) {
    throw new JobConfigError(
      `repository ${target.repoId} has no section in ${build.repos_cfg_dir ?? '(build.repos_cfg_dir is not set)'}/repos.cfg`,
    );
  }
  await freshTreeDir(dir, 'cfg');
  if (build.repos_cfg_dir) await copySiteDir(build.repos_cfg_dir, dir, 'cfg');
  await writeTreeFile(
    dir,
    'cfg/job.cfg',
    renderJobCfg(build.site_config, target, path.join(finalDir, 'cfg'), repo),
  );
  if (vars.length > 0) await writeTreeFile(dir, 'cfg/export_vars.sh', renderExportVars(vars));
}

/** Copy the site's directory `from` (trusted) to `name` in the tree, file by file through writeTreeFile. */
async function copySiteDir(from: string, tree: string, name: string): Promise<void> {
  for (const entry of await fs.readdir(from)) {
    const source = path.join(from, entry);
    const st = await fs.stat(source);
    if (st.isDirectory()) {
      await treeDir(tree, `${name}/${entry}`, st.mode & 0o777);
      await copySiteDir(source, tree, `${name}/${entry}`);
    } else if (st.isFile()) {
      await writeTreeFile(tree, `${name}/${entry}`, await fs.readFile(source), st.mode & 0o777);
    }
  }
}
