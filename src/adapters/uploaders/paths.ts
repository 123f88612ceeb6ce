/**
 * Where an artefact and its companion files go: pure functions shared by every uploader kind.
 *
 * Compatible with EESSI's `eessi-upload-to-staging`: the prefixes may use `${github_repository}`,
 * `${pull_request_number}` and `${legacy_aws_path}` (also written `$name`), an empty prefix means the
 * legacy path, the artefact, its signature and provenance go under the artefact prefix and
 * `<artefact>.meta.txt` (+ `.sig`) under the metadata prefix. Unlike the script's `envsubst`, other
 * variables are errors (envsubst would expand any environment variable, or silently drop it).
 *
 * The artefact name comes from the build job's result file, which the PR controls: every key is checked
 * component by component, so no name can climb out of the prefix (`..`) or smuggle odd characters.
 */

export const PREFIX_VARIABLES = ['github_repository', 'pull_request_number', 'legacy_aws_path'] as const;
export type PrefixVariable = (typeof PREFIX_VARIABLES)[number];

/** A value that is either one string for every repository or a map repo_id → string. */
export type PerRepo = string | Record<string, string>;

/** The part of `deploy.uploader` the destination depends on. */
export interface DestinationSettings {
  endpoint_url?: PerRepo;
  bucket?: PerRepo;
  artefact_prefix?: PerRepo;
  metadata_prefix?: PerRepo;
}

/** What the destination of one artefact depends on. */
export interface UploadTarget {
  /** The artefact's file name (no directory). */
  artefactName: string;
  repoId: string;
  /** `owner/repo`. */
  githubRepository: string;
  prNumber: number;
}

/** Object keys (relative paths) of one artefact's files, in upload order; the metadata is last. */
export interface DestinationKeys {
  artefact: string;
  artefactSig: string;
  provenance: string;
  provenanceSig: string;
  metadataSig: string;
  metadata: string;
}

export interface Destination {
  keys: DestinationKeys;
  /** The expanded prefixes ('' never: an empty prefix became the legacy path). */
  artefactPrefix: string;
  metadataPrefix: string;
  /** As configured (unexpanded), for the `script` kind, which expands them itself; undefined if unset. */
  rawArtefactPrefix?: string;
  rawMetadataPrefix?: string;
  bucket?: string;
  endpointUrl?: string;
}

export type DestinationResult = { ok: true; dest: Destination } | { ok: false; reason: string };

/** The artefact kinds of the 2026 job contract: zstd, gzip (two spellings) or plain tar. */
export const ARCHIVE_SUFFIX = /\.(tar\.zst|tar\.gz|tgz|tar)$/;

/**
 * The artefact name must be a plain file name: letters, digits and `._+-`, not starting with a dot.
 * Returns the problem, or undefined if the name is fine.
 */
export function artefactNameProblem(name: string): string | undefined {
  if (!/^[A-Za-z0-9_+][A-Za-z0-9._+-]*$/.test(name) || name.length > 255) {
    return `artefact name ${JSON.stringify(name.slice(0, 100))} is not a plain file name`;
  }
  return undefined;
}

/**
 * `legacy_aws_path` as `eessi-upload-to-staging` computes it: runs of `-` become one `/`, a leading
 * `eessi` plus the separator after it is dropped, and so is the archive suffix (`.tar.gz`, and here
 * also `.tar.zst`, `.tgz` and `.tar`, which the script forgot). `eessi-2023.06-software-linux-x86_64-amd-zen2-1697812345.tar.zst`
 * → `2023.06/software/linux/x86_64/amd/zen2/1697812345`.
 */
export function legacyAwsPath(artefactName: string): string {
  return artefactName
    .replace(/-+/g, '/')
    .replace(/^eessi[./]/, '')
    .replace(ARCHIVE_SUFFIX, '');
}

const VARIABLE_REF = /\$(?:\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))/g;

/** The problem with a prefix template (an unknown or malformed variable), or undefined. */
export function prefixTemplateProblem(template: string): string | undefined {
  for (const m of template.matchAll(VARIABLE_REF)) {
    const name = m[1] ?? m[2] ?? '';
    if (!(PREFIX_VARIABLES as readonly string[]).includes(name)) {
      return `unknown variable ${JSON.stringify(m[0])} (known: ${PREFIX_VARIABLES.map((v) => '${' + v + '}').join(', ')})`;
    }
  }
  if (/\$\{[^}]*$/.test(template)) return 'unterminated "${"';
  return undefined;
}

/** Expand the known variables in a prefix template; throws on an unknown one. */
export function expandPrefix(template: string, vars: Record<PrefixVariable, string>): string {
  const problem = prefixTemplateProblem(template);
  if (problem) throw new Error(`prefix ${JSON.stringify(template)}: ${problem}`);
  return template.replace(VARIABLE_REF, (_all, braced: string | undefined, bare: string | undefined) => {
    return vars[(braced ?? bare) as PrefixVariable];
  });
}

/**
 * The value for one repo_id: a plain string applies to all, a map must have an entry.
 * `{ found: false }` only for a map without the entry; an unset setting is `{ found: true, value: undefined }`.
 */
export function pickForRepo(
  setting: PerRepo | undefined,
  repoId: string,
): { found: true; value: string | undefined } | { found: false } {
  if (setting === undefined || typeof setting === 'string') return { found: true, value: setting };
  return Object.hasOwn(setting, repoId) ? { found: true, value: setting[repoId] } : { found: false };
}

const KEY_COMPONENT = /^[A-Za-z0-9_+=@,~][A-Za-z0-9._+=@,~-]*$/;

/**
 * Normalize a relative object key: empty components (`a//b`, a leading or trailing `/`) are dropped;
 * `.`, `..` and components with other characters than `[A-Za-z0-9._+=@,~-]` are refused.
 */
export function normalizeKey(key: string): { ok: true; key: string } | { ok: false; reason: string } {
  const parts = key.split('/').filter((p) => p !== '');
  if (parts.length === 0) return { ok: false, reason: `empty path ${JSON.stringify(key)}` };
  for (const p of parts) {
    if (p === '.' || p === '..' || !KEY_COMPONENT.test(p) || p.length > 255) {
      return {
        ok: false,
        reason: `unsafe path component ${JSON.stringify(p.slice(0, 100))} in ${JSON.stringify(key.slice(0, 200))}`,
      };
    }
  }
  return { ok: true, key: parts.join('/') };
}

/** Compute where one artefact's files go. Pure. */
export function resolveDestination(settings: DestinationSettings, target: UploadTarget): DestinationResult {
  const nameProblem = artefactNameProblem(target.artefactName);
  if (nameProblem) return { ok: false, reason: nameProblem };
  const picked: Partial<Record<keyof DestinationSettings, string>> = {};
  for (const name of ['bucket', 'endpoint_url', 'artefact_prefix', 'metadata_prefix'] as const) {
    const p = pickForRepo(settings[name], target.repoId);
    if (!p.found) return { ok: false, reason: `no ${name.replace('_', ' ')} for ${target.repoId}` };
    picked[name] = p.value;
  }
  const legacy = legacyAwsPath(target.artefactName);
  const vars: Record<PrefixVariable, string> = {
    github_repository: target.githubRepository,
    pull_request_number: String(target.prNumber),
    legacy_aws_path: legacy,
  };
  let artefactPrefix: string;
  let metadataPrefix: string;
  try {
    artefactPrefix = picked.artefact_prefix ? expandPrefix(picked.artefact_prefix, vars) : legacy;
    metadataPrefix = picked.metadata_prefix ? expandPrefix(picked.metadata_prefix, vars) : legacy;
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
  const name = target.artefactName;
  const raw: DestinationKeys = {
    artefact: `${artefactPrefix}/${name}`,
    artefactSig: `${artefactPrefix}/${name}.sig`,
    provenance: `${artefactPrefix}/${name}.provenance.json`,
    provenanceSig: `${artefactPrefix}/${name}.provenance.json.sig`,
    metadataSig: `${metadataPrefix}/${name}.meta.txt.sig`,
    metadata: `${metadataPrefix}/${name}.meta.txt`,
  };
  const keys = {} as DestinationKeys;
  for (const [k, v] of Object.entries(raw) as [keyof DestinationKeys, string][]) {
    const n = normalizeKey(v);
    if (!n.ok) return { ok: false, reason: n.reason };
    keys[k] = n.key;
  }
  return {
    ok: true,
    dest: {
      keys,
      artefactPrefix,
      metadataPrefix,
      rawArtefactPrefix: picked.artefact_prefix,
      rawMetadataPrefix: picked.metadata_prefix,
      bucket: picked.bucket,
      endpointUrl: picked.endpoint_url,
    },
  };
}

/**
 * The public URL of an object, as `eessi-upload-to-staging` writes it into the metadata:
 * `<endpoint>/<bucket>/<key>` with an endpoint, else `https://<bucket>.s3.amazonaws.com/<key>`.
 */
export function objectUrl(bucket: string, key: string, endpointUrl?: string): string {
  const encoded = key.split('/').map(encodeURIComponent).join('/');
  return endpointUrl
    ? `${endpointUrl.replace(/\/+$/, '')}/${bucket}/${encoded}`
    : `https://${bucket}.s3.amazonaws.com/${encoded}`;
}
