/**
 * Build provenance for an artefact: an in-toto Statement v1 with a SLSA Provenance v1 predicate that
 * says which bot instance built it, from which PR and commits, on which node type, in which job.
 * It is written next to the artefact as `<artefact>.provenance.json` and signed like the artefact.
 *
 * `buildProvenance` is pure; `sha256File` streams; `parseProvenance` checks the shape of a statement
 * read back from disk (for `hpcbot verify`).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../store/fsutil.js';
import type { JobData } from '../store/job.js';

export const STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
export const SLSA_PROVENANCE_TYPE = 'https://slsa.dev/provenance/v1';
/** Our build type: a PR's merge commit built by a bot job for one node type and repository target. */
export const BUILD_TYPE = 'urn:hpcbot:build-type:pull-request-job:v1';

/** The statement's file next to an artefact. */
export function provenancePath(artefact: string): string {
  return `${artefact}.provenance.json`;
}

/** sha256 of a file, read as a stream (artefacts may be many GB). */
export function sha256File(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    const input = createReadStream(file, { highWaterMark: 1024 * 1024 });
    input.on('error', reject);
    input.on('data', (chunk) => hash.update(chunk));
    input.on('end', () => resolve(hash.digest('hex')));
  });
}

/** The parts of a job's state that provenance records. */
export type ProvenanceJob = Pick<
  JobData,
  | 'pr'
  | 'instance'
  | 'target'
  | 'exportVariables'
  | 'job_owner'
  | 'head_sha'
  | 'base_sha'
  | 'merge_sha'
  | 'backend'
  | 'submit_id'
  | 'job_id'
  | 'exit_code'
  | 'submitted_at'
  | 'started_at'
  | 'finished_at'
> & { result?: Pick<NonNullable<JobData['result']>, 'status'> };

export interface ProvenanceInput {
  artefact: { name: string; sha256: string };
  job: ProvenanceJob;
  /** Web root of the Git host, for `resolvedDependencies` (default https://github.com). */
  serverUrl?: string;
}

const digestSchema = z.record(z.string(), z.string());
const resourceSchema = z.looseObject({
  name: z.string().optional(),
  uri: z.string().optional(),
  digest: digestSchema.optional(),
  annotations: z.record(z.string(), z.unknown()).optional(),
});

const externalParametersSchema = z.looseObject({
  repository: z.string(),
  pullRequest: z.number(),
  headSha: z.string().optional(),
  baseSha: z.string().optional(),
  mergeSha: z.string().optional(),
  nodeType: z.string(),
  target: z.looseObject({
    forArch: z.string(),
    forAccel: z.string().optional(),
    repoId: z.string(),
  }),
  exportVariables: z.array(z.string()).optional(),
  jobOwner: z.string().optional(),
});

export const provenanceSchema = z.looseObject({
  _type: z.literal(STATEMENT_TYPE),
  subject: z.array(z.looseObject({ name: z.string(), digest: z.looseObject({ sha256: z.string() }) })).min(1),
  predicateType: z.literal(SLSA_PROVENANCE_TYPE),
  predicate: z.looseObject({
    buildDefinition: z.looseObject({
      buildType: z.string(),
      externalParameters: externalParametersSchema,
      internalParameters: z.record(z.string(), z.unknown()).optional(),
      resolvedDependencies: z.array(resourceSchema).optional(),
    }),
    runDetails: z.looseObject({
      builder: z.looseObject({ id: z.string() }),
      metadata: z
        .looseObject({
          invocationId: z.string().optional(),
          startedOn: z.string().optional(),
          finishedOn: z.string().optional(),
        })
        .optional(),
      byproducts: z.array(resourceSchema).optional(),
    }),
  }),
});

export type ProvenanceStatement = z.infer<typeof provenanceSchema>;

/** The builder id of an instance. */
export function builderId(instance: string): string {
  return `hpcbot:${instance}`;
}

/** Drop undefined members, so the JSON has no `null`s and no absent-but-present keys. */
function defined<T extends Record<string, unknown>>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** Build the statement. Pure. */
export function buildProvenance(input: ProvenanceInput): ProvenanceStatement {
  const { job, artefact } = input;
  const repository = `${job.pr.owner}/${job.pr.repo}`;
  const serverUrl = (input.serverUrl ?? 'https://github.com').replace(/\/+$/, '');
  const resolvedDependencies = job.merge_sha
    ? [
        {
          uri: `git+${serverUrl}/${repository}@refs/pull/${job.pr.number}/merge`,
          digest: { gitCommit: job.merge_sha },
        },
      ]
    : [];
  return {
    _type: STATEMENT_TYPE,
    subject: [{ name: artefact.name, digest: { sha256: artefact.sha256 } }],
    predicateType: SLSA_PROVENANCE_TYPE,
    predicate: {
      buildDefinition: {
        buildType: BUILD_TYPE,
        externalParameters: defined({
          repository,
          pullRequest: job.pr.number,
          headSha: job.head_sha,
          baseSha: job.base_sha,
          mergeSha: job.merge_sha,
          nodeType: job.target.nodeType,
          target: defined({
            forArch: job.target.forArch,
            forAccel: job.target.forAccel,
            repoId: job.target.repoId,
          }),
          exportVariables: job.exportVariables.map((e) => `${e.name}=${e.value}`),
          jobOwner: job.job_owner,
        }),
        internalParameters: defined({
          onArch: job.target.onArch,
          onAccel: job.target.onAccel,
          os: job.target.os,
        }),
        resolvedDependencies,
      },
      runDetails: {
        builder: { id: builderId(job.instance) },
        metadata: defined({
          invocationId: job.job_id ?? job.submit_id,
          startedOn: job.started_at ?? job.submitted_at,
          finishedOn: job.finished_at,
        }),
        byproducts: [
          {
            name: 'scheduler-job',
            annotations: defined({
              backend: job.backend,
              jobId: job.job_id,
              submitId: job.submit_id,
              exitCode: job.exit_code,
              resultStatus: job.result?.status,
            }),
          },
        ],
      },
    },
  };
}

/** Write the statement next to the artefact (atomically); returns its path. */
export async function writeProvenance(artefact: string, statement: ProvenanceStatement): Promise<string> {
  const file = provenancePath(artefact);
  await writeFileAtomic(file, `${JSON.stringify(statement, null, 2)}\n`);
  return file;
}

/** Parse and check a statement; throws an Error naming the first problem. */
export function parseProvenance(text: string, source = 'provenance'): ProvenanceStatement {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${source}: not JSON (${(err as Error).message})`, { cause: err });
  }
  const parsed = provenanceSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`${source}: ${issue.path.join('.') || '(top level)'}: ${issue.message}`);
  }
  return parsed.data;
}

export async function readProvenance(file: string): Promise<ProvenanceStatement> {
  return parseProvenance(await readFile(file, 'utf8'), path.basename(file));
}

/** What `hpcbot verify` prints about a build. */
export interface ProvenanceSummary {
  builder: string;
  instance?: string;
  repository: string;
  pullRequest: number;
  headSha?: string;
  baseSha?: string;
  mergeSha?: string;
  nodeType: string;
  forArch: string;
  forAccel?: string;
  repoId: string;
  jobOwner?: string;
  jobId?: string;
  backend?: string;
  startedOn?: string;
  finishedOn?: string;
}

export function summarizeProvenance(s: ProvenanceStatement): ProvenanceSummary {
  const ext = s.predicate.buildDefinition.externalParameters;
  const run = s.predicate.runDetails;
  const job = run.byproducts?.find((b) => b.name === 'scheduler-job')?.annotations;
  const builder = run.builder.id;
  return defined({
    builder,
    instance: builder.startsWith('hpcbot:') ? builder.slice('hpcbot:'.length) : undefined,
    repository: ext.repository,
    pullRequest: ext.pullRequest,
    headSha: ext.headSha,
    baseSha: ext.baseSha,
    mergeSha: ext.mergeSha,
    nodeType: ext.nodeType,
    forArch: ext.target.forArch,
    forAccel: ext.target.forAccel,
    repoId: ext.target.repoId,
    jobOwner: ext.jobOwner,
    jobId: run.metadata?.invocationId,
    backend: typeof job?.backend === 'string' ? job.backend : undefined,
    startedOn: run.metadata?.startedOn,
    finishedOn: run.metadata?.finishedOn,
  });
}
