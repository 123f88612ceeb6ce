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
import { mkdirDurable } from '../../store/fsutil.js';
import { copyJobFile } from '../../store/jobFile.js';
import { buildProvenance, writeProvenance, type ProvenanceJob } from '../../domain/provenance.js';
import { signFile } from '../signing.js';
import { createDirectoryUploader } from './directory.js';
import { writeMetadata } from './metadata.js';
import { artefactNameProblem } from './paths.js';
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
  type ArtefactMetadata,
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
      return createScriptUploader({ ...settings, script: u.script, instance: config.instance });
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
}

export type DeployArtefactResult = UploadResult & {
  /** `unsigned` when no `deploy.signing.key_file` is configured. */
  signing: 'signed' | 'unsigned';
  /** The local companion files that were written. */
  files: Partial<
    Pick<UploadItem, 'artefactSig' | 'provenance' | 'provenanceSig' | 'metadata' | 'metadataSig'>
  >;
  sha256?: string;
};

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
    });
    const metadataSig = await sign(metadata);
    const files = { artefactSig, provenance, provenanceSig, metadata, metadataSig };
    const result = await uploader.upload({
      ...target,
      artefact,
      artefactSha256: copy.sha256,
      prCommentId: input.prCommentId,
      ...files,
    });
    return { ...result, signing: keyFile ? 'signed' : 'unsigned', files, sha256: copy.sha256 };
  } finally {
    await fs.rm(artefact, { force: true });
  }
}
