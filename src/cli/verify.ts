/**
 * `hpcbot verify ARTEFACT --allowed-signers FILE [--provenance FILE] [--namespace NS]`: check that an
 * artefact was signed by a key in allowed_signers, that its provenance was too, and that the provenance
 * is about this very artefact (its subject's sha256); then say who built it and from what.
 * Any failed check makes the report not ok (exit code 1), with one line per problem.
 */
import path from 'node:path';
import { exists } from '../store/fsutil.js';
import {
  provenancePath,
  readProvenance,
  sha256File,
  summarizeProvenance,
  type ProvenanceSummary,
} from '../domain/provenance.js';
import { sigPath, verifyFile } from '../adapters/signing.js';

export interface VerifyArtefactOptions {
  artefact: string;
  allowedSigners: string;
  /** Default: `<artefact>.provenance.json` when it exists. */
  provenance?: string;
  /** Default: the instance named in the provenance's builder id. */
  namespace?: string;
}

export interface VerifyReport {
  ok: boolean;
  artefact: string;
  sha256?: string;
  namespace?: string;
  /** Principal whose key signed the artefact. */
  signer?: string;
  provenanceFile?: string;
  provenanceSigner?: string;
  build?: ProvenanceSummary;
  problems: string[];
  notes: string[];
}

export async function verifyArtefact(opts: VerifyArtefactOptions): Promise<VerifyReport> {
  const report: VerifyReport = { ok: false, artefact: opts.artefact, problems: [], notes: [] };
  const { problems, notes } = report;
  if (!(await exists(opts.artefact))) {
    problems.push(`artefact ${opts.artefact} does not exist`);
    return report;
  }
  if (!(await exists(opts.allowedSigners))) {
    problems.push(`allowed signers file ${opts.allowedSigners} does not exist`);
    return report;
  }
  report.sha256 = await sha256File(opts.artefact);

  // The provenance: read it first, since it may name the namespace.
  let provenanceFile = opts.provenance;
  if (!provenanceFile && (await exists(provenancePath(opts.artefact)))) {
    provenanceFile = provenancePath(opts.artefact);
    notes.push(`using the provenance next to the artefact: ${provenanceFile}`);
  }
  report.provenanceFile = provenanceFile;
  let statement;
  if (provenanceFile) {
    try {
      statement = await readProvenance(provenanceFile);
      report.build = summarizeProvenance(statement);
    } catch (err) {
      problems.push(`provenance ${provenanceFile}: ${(err as Error).message}`);
    }
  }

  let namespace = opts.namespace;
  if (!namespace && report.build?.instance) {
    namespace = report.build.instance;
    notes.push(
      `namespace ${JSON.stringify(namespace)} taken from the provenance's builder id (pin it with --namespace, or with namespaces= in allowed_signers)`,
    );
  }
  report.namespace = namespace;
  if (!namespace) {
    problems.push('no namespace: pass --namespace (the bot instance, or deploy.signing.namespace)');
    return report;
  }

  const artefactSig = await verifyFile(opts.artefact, sigPath(opts.artefact), opts.allowedSigners, namespace);
  if (artefactSig.ok) report.signer = artefactSig.principal;
  else problems.push(`artefact signature: ${artefactSig.error}`);

  if (provenanceFile) {
    const provSig = await verifyFile(provenanceFile, sigPath(provenanceFile), opts.allowedSigners, namespace);
    if (provSig.ok) report.provenanceSigner = provSig.principal;
    else problems.push(`provenance signature: ${provSig.error}`);
    if (statement) {
      const match = statement.subject.find((s) => s.digest.sha256 === report.sha256);
      if (!match) {
        const claimed = statement.subject.map((s) => `${s.name} sha256:${s.digest.sha256}`).join(', ');
        problems.push(
          `provenance is about another file: its subject is ${claimed}, the artefact's sha256 is ${report.sha256}`,
        );
      } else if (match.name !== path.basename(opts.artefact)) {
        notes.push(`the provenance names the artefact ${JSON.stringify(match.name)} (same content, renamed)`);
      }
    }
    if (report.signer && report.provenanceSigner && report.signer !== report.provenanceSigner) {
      notes.push(`artefact and provenance were signed by different principals`);
    }
  } else {
    notes.push('no provenance given: only the artefact signature was checked');
  }
  report.ok = problems.length === 0;
  return report;
}

/** The report as text: `OK:`/`FAILED:` and the facts, then the problems and notes. */
export function formatReport(r: VerifyReport): string {
  const lines = [`${r.ok ? 'OK' : 'FAILED'}: ${r.artefact}`];
  const row = (k: string, v: string | number | undefined) => {
    if (v !== undefined && v !== '') lines.push(`  ${`${k}:`.padEnd(14)}${v}`);
  };
  row('sha256', r.sha256);
  row('signed by', r.signer && `${r.signer} (namespace ${r.namespace})`);
  row(
    'provenance',
    r.provenanceFile && `${r.provenanceFile}${r.provenanceSigner ? `, signed by ${r.provenanceSigner}` : ''}`,
  );
  const b = r.build;
  if (b) {
    if (!r.ok) lines.push('  what the provenance claims (NOT verified):');
    row(
      'built by',
      b.instance ? `hpcbot instance ${b.instance} (builder ${b.builder})` : `builder ${b.builder}`,
    );
    row('repository', b.repository);
    row('pull request', `#${b.pullRequest}`);
    row('head sha', b.headSha);
    row('base sha', b.baseSha);
    row('merge sha', b.mergeSha);
    row('node type', b.nodeType);
    row('target', `${b.forArch}${b.forAccel ? ` + ${b.forAccel}` : ''}, repo ${b.repoId}`);
    row('job', b.jobId && `${b.jobId}${b.backend ? ` (${b.backend})` : ''}`);
    row('job owner', b.jobOwner);
    row('started', b.startedOn);
    row('finished', b.finishedOn);
  }
  for (const p of r.problems) lines.push(`  problem: ${p}`);
  for (const n of r.notes) lines.push(`  note: ${n}`);
  return `${lines.join('\n')}\n`;
}

/** The CLI command: prints the report (to stderr if it failed); returns the exit code. */
export async function runVerifyCommand(opts: VerifyArtefactOptions): Promise<number> {
  const report = await verifyArtefact(opts);
  (report.ok ? process.stdout : process.stderr).write(formatReport(report));
  return report.ok ? 0 : 1;
}
