/**
 * Deploying one artefact: copy it out of the job's work tree through a verified handle, sign the copy,
 * write and sign its provenance, write and sign its metadata, then hand everything to the configured
 * uploader (the metadata last). `createUploader` picks the kind from
 * `deploy.uploader`; `deployArtefact` is the whole sequence for one artefact, safe to repeat after a
 * crash (signatures are rewritten with identical bytes, uploads skip objects that are already there).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Config } from '../../config/config.js';
import { crashPoint } from '../../store/crashPoint.js';
import { mkdirDurable, writeFileAtomic } from '../../store/fsutil.js';
import { copyJobFile, openJobFile, readEndOf } from '../../store/jobFile.js';
import { scrub } from '../../domain/logTail.js';
import { buildProvenance, writeProvenance, type ProvenanceJob } from '../../domain/provenance.js';
import { signFile } from '../signing.js';
import { createDirectoryUploader } from './directory.js';
import { writeMetadata } from './metadata.js';
import { ARCHIVE_SUFFIX, artefactNameProblem } from './paths.js';
import type { S3UploaderOptions } from './s3.js';
import { createScriptUploader } from './script.js';
import type { Uploader, UploadItem, UploadResult } from './types.js';

export type {
  Uploader,
  UploadItem,
  UploadResult,
  UploadedObject,
  UploaderKind,
  LocateResult,
} from './types.js';
export { plainFileProblem } from './types.js';
export { createDirectoryUploader, copyFileAtomic } from './directory.js';
export { createScriptUploader, scriptArgs, SCRIPT_DEFAULT_BUCKET } from './script.js';
export {
  buildMetadata,
  writeMetadata,
  metadataPath,
  formatCtime,
  taskBlock,
  type ArtefactMetadata,
  type TaskSettings,
} from './metadata.js';
export {
  legacyAwsPath,
  expandPrefix,
  prefixTemplateProblem,
  resolveDestination,
  objectUrl,
  pickForRepo,
  normalizeKey,
  artefactNameProblem,
  PREFIX_VARIABLES,
  type Destination,
  type DestinationKeys,
  type DestinationSettings,
  type UploadTarget,
  type PerRepo,
} from './paths.js';

export type DeployConfig = Pick<Config, 'instance' | 'jobdirs' | 'deploy'>;

/**
 * The uploader `deploy.uploader` describes. `s3` may take extra client settings (tests). The AWS SDK
 * is loaded only for `s3`: it takes a third of a second to import.
 */
export async function createUploader(
  config: DeployConfig,
  extra: { s3?: Pick<S3UploaderOptions, 'clientConfig' | 'partSize' | 'queueSize'> } = {},
): Promise<Uploader> {
  const u = config.deploy.uploader;
  const settings = {
    endpoint_url: u.endpoint_url,
    bucket: u.bucket,
    artefact_prefix: u.artefact_prefix,
    metadata_prefix: u.metadata_prefix,
  };
  switch (u.kind) {
    case 'directory':
      return createDirectoryUploader({
        ...settings,
        directory: u.directory ?? path.join(config.jobdirs, 'staging'),
      });
    case 's3': {
      const { createS3Uploader } = await import('./s3.js');
      return createS3Uploader({ ...settings, region: u.region, ...extra.s3 });
    }
    case 'script':
      if (!u.script) throw new Error('deploy.uploader.script is not set');
      return createScriptUploader({
        ...settings,
        script: u.script,
        instance: config.instance,
        task: config.deploy.task_metadata,
      });
  }
}

export interface DeployArtefactInput {
  /** The artefact's file name, as the job's result file gives it (hostile: checked here). */
  name: string;
  /** The job's work tree, written by PR code: the artefact must be a plain file directly in it. */
  workTree: string;
  /**
   * A directory only the bot writes. The artefact is copied here through one verified handle, and the
   * copy is what gets hashed, signed and uploaded (then removed); its signature, provenance and
   * metadata stay here.
   */
  outDir: string;
  /** The build job's state (for the provenance). */
  job: ProvenanceJob;
  repoId: string;
  prCommentId?: number;
  /** Web root of the Git host for the provenance (default https://github.com). */
  serverUrl?: string;
  /**
   * `deploy.upload_logs`: the job's Slurm output in the work tree (hostile, like the artefact), uploaded
   * as `<artefact>.log` with these secret values (and token shapes) scrubbed.
   */
  log?: { name: string; secrets: readonly string[] };
}

export type DeployArtefactResult = UploadResult & {
  /** `unsigned` when no `deploy.signing.key_file` is configured. */
  signing: 'signed' | 'unsigned';
  /** The local companion files that were written. */
  files: Partial<
    Pick<UploadItem, 'artefactSig' | 'provenance' | 'provenanceSig' | 'log' | 'metadata' | 'metadataSig'>
  >;
  sha256?: string;
  /** Why the requested log was not uploaded (the artefact still was). */
  logProblem?: string;
};

/** At most this much of a job's log (its end) is uploaded: the job decides how much it writes. */
export const MAX_UPLOADED_LOG_BYTES = 64 * 1024 * 1024;

/**
 * Write the job's log `name` from `workTree`, secrets scrubbed, to `dest` (atomically). Read through a
 * checked handle (a plain file, no link). A log over the cap keeps its end, from its first whole line,
 * so no partial secret survives at the cut.
 */
export async function writeScrubbedLog(
  workTree: string,
  name: string,
  dest: string,
  secrets: readonly string[],
): Promise<{ ok: true } | { ok: false; problem: string }> {
  const opened = await openJobFile(workTree, name);
  if (!opened.ok) return { ok: false, problem: opened.problem };
  const { text, cut } = await readEndOf(opened, MAX_UPLOADED_LOG_BYTES);
  const newline = text.indexOf('\n');
  const kept = cut
    ? `[log cut to its last ${MAX_UPLOADED_LOG_BYTES / 1024 / 1024} MiB]\n${newline >= 0 ? text.slice(newline + 1) : ''}`
    : text;
  await writeFileAtomic(dest, scrub(kept, secrets));
  return { ok: true };
}

/**
 * Sign, describe and upload one artefact. Never throws for an upload failure or a refused artefact
 * (see `uploaded`/`reason`); throws for a local failure (signing, disk), which the caller should retry
 * or report.
 */
export async function deployArtefact(
  config: DeployConfig,
  uploader: Uploader,
  input: DeployArtefactInput,
): Promise<DeployArtefactResult> {
  const { name } = input;
  const githubRepository = `${input.job.pr.owner}/${input.job.pr.repo}`;
  const target = {
    artefactName: name,
    repoId: input.repoId,
    githubRepository,
    prNumber: input.job.pr.number,
  };
  const refused = (reason: string): DeployArtefactResult => ({
    uploaded: false,
    reason,
    retryable: false,
    objects: [],
    signing: 'unsigned',
    files: {},
  });
  const problem = artefactNameProblem(name);
  if (problem) return refused(problem);
  if (!ARCHIVE_SUFFIX.test(name))
    return refused(`${name} is not an artefact of the job contract (.tar.zst, .tar.gz, .tgz or .tar)`);
  const where = uploader.locate(target);
  if (!where.ok) return refused(where.reason);

  await mkdirDurable(input.outDir);
  const artefact = path.join(input.outDir, name);
  const copy = await copyJobFile(input.workTree, name, artefact);
  if (!copy.ok) return refused(copy.problem);
  try {
    const { key_file: keyFile } = config.deploy.signing;
    const namespace = config.deploy.signing.namespace ?? config.instance;
    const sign = async (file: string) =>
      keyFile ? await signFile(file, keyFile, namespace, { overwrite: true }) : undefined;

    crashPoint(`deploy-signing:${name}`);
    const artefactSig = await sign(artefact);
    const provenance = await writeProvenance(
      artefact,
      buildProvenance({
        artefact: { name, sha256: copy.sha256 },
        job: input.job,
        serverUrl: input.serverUrl,
      }),
    );
    const provenanceSig = await sign(provenance);
    const { file: metadata } = await writeMetadata(artefact, {
      url: where.url,
      repo: githubRepository,
      pr: input.job.pr.number,
      prCommentId: input.prCommentId,
      sha256: copy.sha256,
      jobOwner: input.job.job_owner,
      task: config.deploy.task_metadata,
    });
    const metadataSig = await sign(metadata);
    let log: string | undefined;
    let logProblem: string | undefined;
    if (input.log) {
      const written = await writeScrubbedLog(
        input.workTree,
        input.log.name,
        `${artefact}.log`,
        input.log.secrets,
      );
      if (written.ok) log = `${artefact}.log`;
      else logProblem = written.problem;
    }
    const files = { artefactSig, provenance, provenanceSig, log, metadata, metadataSig };
    const result = await uploader.upload({
      ...target,
      artefact,
      artefactSha256: copy.sha256,
      prCommentId: input.prCommentId,
      ...files,
    });
    return {
      ...result,
      signing: keyFile ? 'signed' : 'unsigned',
      files,
      sha256: copy.sha256,
      ...(logProblem ? { logProblem } : {}),
    };
  } finally {
    await fs.rm(artefact, { force: true });
  }
}
