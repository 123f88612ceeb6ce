/**
 * The job's `cfg/` directory, exactly what EESSI's bot/build.sh reads: `cfg/job.cfg` with the
 * `[site_config]`, `[repository]` and `[architecture]` sections, a copy of repos_cfg_dir, and
 * `cfg/export_vars.sh` for the allowed export variables.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { SiteConfig } from '../config/config.js';
import type { ExportVariable } from './commands.js';
import { writeFileAtomic } from '../store/fsutil.js';
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

/** Writes `cfg/` into `dir`; `finalDir` is where the tree will be when the job runs (job.cfg names it). */
export async function writeJobCfg(
  dir: string,
  finalDir: string,
  build: SiteConfig['build'],
  target: BuildTarget,
  vars: ExportVariable[],
) {
  const cfgDir = path.join(dir, 'cfg');
  await fs.mkdir(cfgDir, { recursive: true });
  let repo: Record<string, string> = {};
  if (build.repos_cfg_dir) {
    await fs.cp(build.repos_cfg_dir, cfgDir, { recursive: true });
    const reposCfg = await fs.readFile(path.join(build.repos_cfg_dir, 'repos.cfg'), 'utf8').catch(() => '');
    repo = parseIni(reposCfg)[target.repoId] ?? {};
  }
  if (Object.keys(repo).length === 0 && !BUILTIN_REPOS.has(target.repoId)) {
    throw new JobConfigError(
      `repository ${target.repoId} has no section in ${build.repos_cfg_dir ?? '(build.repos_cfg_dir is not set)'}/repos.cfg`,
    );
  }
  await writeFileAtomic(
    path.join(cfgDir, 'job.cfg'),
    renderJobCfg(build.site_config, target, path.join(finalDir, 'cfg'), repo),
  );
  if (vars.length > 0) await writeFileAtomic(path.join(cfgDir, 'export_vars.sh'), renderExportVars(vars));
}
