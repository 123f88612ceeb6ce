/**
 * GitHub's real contract for the tests: requests to and answers from the fake GitHub are checked
 * against GitHub's official OpenAPI description (@octokit/openapi), and webhook payloads against the
 * webhooks description (@octokit/openapi-webhooks), with ajv.
 *
 *   checkRequest({ method, path, query, body })   → { route, problems }  (route: "POST /repos/{owner}/{repo}/check-runs")
 *   checkResponse(route, status, body)            → problems
 *   checkWebhookPayload(event, payload)           → problems
 *
 * A description is 11–13 MB of JSON (about a second to parse) and compiling the schemas of one
 * operation can take seconds, while jest gives every test file a fresh module registry, so an
 * in-memory cache alone would pay that per file. Instead each operation used is cut out once, with
 * just the components it references, and its compiled validators (ajv standalone code) are kept
 * under node_modules/.cache/openapi-contract/<hash of this file>/; a test file then reads the route
 * index and loads the code of the few operations it uses, and nothing is compiled twice.
 *
 * Request bodies are checked closed: an object schema that lists its properties and says nothing
 * about others refuses unknown keys. GitHub answers 422 "is not a permitted key" for many of them;
 * for the rest an unknown key is still a bug in the bot (a misspelt field GitHub silently ignores).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { _, Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { FormatsPlugin } from 'ajv-formats';

/** The REST descriptions requests are held to: GitHub.com, and the oldest GHES the package still describes. */
export const REST_DESCRIPTIONS = ['api.github.com', 'ghes-3.17'] as const;
export type RestDescription = (typeof REST_DESCRIPTIONS)[number];

export interface ContractRequest {
  method: string;
  /** Path without the query string, as received (percent-encoded). */
  path: string;
  query: Record<string, string>;
  /** Parsed JSON body, or undefined when none was sent. */
  body: unknown;
}

export interface RequestCheck {
  /** `METHOD /template` of the operation in api.github.com, or undefined for an unknown route. */
  route: string | undefined;
  /** Readable violations, each prefixed with the description it comes from; empty when the request conforms. */
  problems: string[];
}

type Json = Record<string, unknown>;

/** One operation with the components it references: small enough to read per test file. */
interface OperationBundle {
  route: string;
  operationId: string;
  pathSchema: Json;
  querySchema: Json;
  /** undefined: the operation takes no body. */
  body: { required: boolean; schema: Json | undefined } | undefined;
  /** Per status code; null when that answer has no JSON body. */
  responses: Record<string, Json | null>;
  /** Components referenced by the parameters and answers, and (closed) by the request body. */
  components: Json;
  bodyComponents: Json;
}

interface RouteIndexEntry {
  template: string;
  segments: string[];
  methods: string[];
}

const require = createRequire(import.meta.url);
// ajv-formats is CommonJS whose module.exports is the plugin itself.
const addFormats = require('ajv-formats') as FormatsPlugin;
const standaloneCode = (
  require('ajv/dist/standalone') as { default: (ajv: Ajv, v: ValidateFunction) => string }
).default;
/** Keyed by this file's content too: a change to how schemas are cut out or compiled starts afresh. */
const CACHE_ROOT = path.join(
  path.dirname(require.resolve('@octokit/openapi/package.json')),
  '..',
  '..',
  '.cache',
  'openapi-contract',
  createHash('sha1')
    .update(readFileSync(fileURLToPath(import.meta.url)))
    .digest('hex')
    .slice(0, 12),
);

const jsonFile = (file: string): unknown => JSON.parse(readFileSync(file, 'utf8'));

/** Write a cache file whole or not at all (sync: callers such as makeDelivery are synchronous). */
function writeCacheFile(file: string, data: unknown): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  writeFileSync(tmp, typeof data === 'string' ? data : JSON.stringify(data));
  renameSync(tmp, file);
}

const cacheName = (text: string) => createHash('sha1').update(text).digest('hex').slice(0, 16);

function readCached<T>(file: string, build: () => T): T {
  try {
    return jsonFile(file) as T;
  } catch {
    const value = build();
    writeCacheFile(file, value);
    return value;
  }
}

// ---- descriptions --------------------------------------------------------------------------------

interface Source {
  /** Cache key: package, version and description name. */
  key: string;
  load: () => Json;
}

const loaded = new Map<string, Json>();

function source(pkg: '@octokit/openapi' | '@octokit/openapi-webhooks', name: string): Source {
  const pkgDir = path.dirname(require.resolve(`${pkg}/package.json`));
  const { version } = jsonFile(path.join(pkgDir, 'package.json')) as { version: string };
  const key = `${pkg.replace('@octokit/', '')}-${version}-${name}`;
  return {
    key,
    load: () => {
      let doc = loaded.get(key);
      if (!doc) {
        doc = jsonFile(path.join(pkgDir, 'generated', `${name}.json`)) as Json;
        loaded.set(key, doc);
      }
      return doc;
    },
  };
}

function resolvePointer(doc: Json, ref: string): Json {
  if (!ref.startsWith('#/')) throw new Error(`unsupported $ref ${ref}`);
  let node: unknown = doc;
  for (const part of ref.slice(2).split('/'))
    node = (node as Json)[part.replace(/~1/g, '/').replace(/~0/g, '~')];
  if (node === undefined) throw new Error(`dangling $ref ${ref}`);
  return node as Json;
}

/** Follow a top-level `$ref` (parameters and responses are often references). */
function deref(doc: Json, node: Json): Json {
  let n = node;
  while (typeof n.$ref === 'string') n = resolvePointer(doc, n.$ref);
  return n;
}

/** Every component transitively referenced from `roots`, copied into a components object of its own. */
function componentsFor(doc: Json, roots: unknown[]): Json {
  const out: Record<string, Json> = {};
  const seen = new Set<string>();
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(walk);
    if (!node || typeof node !== 'object') return;
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string' && !seen.has(v)) {
        seen.add(v);
        const [, , kind, name] = v.split('/') as [string, string, string, string];
        const target = resolvePointer(doc, v);
        (out[kind] ??= {})[name.replace(/~1/g, '/').replace(/~0/g, '~')] = target;
        walk(target);
      } else if (k !== 'examples' && k !== 'example') walk(v);
    }
  };
  walk(roots);
  return out;
}

/** Objects that list their properties and do not mention others refuse unknown keys. */
function closeObjects(schema: unknown, inCombinator = false): unknown {
  if (Array.isArray(schema)) return schema.map((s) => closeObjects(s, inCombinator));
  if (!schema || typeof schema !== 'object') return schema;
  const out: Json = {};
  for (const [k, v] of Object.entries(schema)) {
    const combinator = k === 'allOf' || k === 'anyOf' || k === 'oneOf';
    out[k] = k === 'enum' || k === 'default' || k === 'example' ? v : closeObjects(v, combinator);
  }
  if (!inCombinator && out.properties && out.additionalProperties === undefined && !('$ref' in out))
    out.additionalProperties = false;
  return out;
}

function paramsSchema(params: Json[], where: 'path' | 'query'): Json {
  const chosen = params.filter((p) => p.in === where);
  return {
    type: 'object',
    properties: Object.fromEntries(chosen.map((p) => [p.name, p.schema ?? {}])),
    required: chosen.filter((p) => p.required).map((p) => p.name),
    additionalProperties: false,
  };
}

function bundleOperation(doc: Json, template: string, method: string): OperationBundle {
  const item = (doc.paths as Record<string, Json>)[template]!;
  const op = item[method.toLowerCase()] as Json;
  const params = [...((item.parameters as Json[]) ?? []), ...((op.parameters as Json[]) ?? [])].map((p) =>
    deref(doc, p),
  );
  const pathSchema = paramsSchema(params, 'path');
  const querySchema = paramsSchema(params, 'query');
  let body: OperationBundle['body'];
  if (op.requestBody) {
    const rb = deref(doc, op.requestBody as Json);
    const content = rb.content as Record<string, { schema?: Json }> | undefined;
    const schema = content?.['application/json']?.schema;
    body = { required: rb.required === true, schema: schema && (closeObjects(schema) as Json) };
  }
  const responses: Record<string, Json | null> = {};
  for (const [status, r] of Object.entries((op.responses as Record<string, Json>) ?? {})) {
    const resolved = deref(doc, r);
    const content = resolved.content as Record<string, { schema?: Json }> | undefined;
    responses[status] = content?.['application/json']?.schema ?? null;
  }
  return {
    route: `${method.toUpperCase()} ${template}`,
    operationId: String(op.operationId),
    pathSchema,
    querySchema,
    body,
    responses,
    components: componentsFor(doc, [pathSchema, querySchema, responses]),
    bodyComponents: closeComponents(componentsFor(doc, [body?.schema])),
  };
}

function closeComponents(components: Json): Json {
  return Object.fromEntries(
    Object.entries(components).map(([kind, byName]) => [
      kind,
      Object.fromEntries(Object.entries(byName as Json).map(([name, s]) => [name, closeObjects(s)])),
    ]),
  );
}

/** Where GitHub's description is known to be wrong: these values are null in GitHub's real answers. */
const ERRATA: { route: string; at: string; why: string }[] = [
  {
    route: 'GET /repos/{owner}/{repo}/pulls/{pull_number}',
    at: '/head/repo',
    why: "a pull request from a fork that was deleted has head.repo null; the description says it's a repository",
  },
];

function valueAt(data: unknown, pointer: string): unknown {
  return pointer
    .split('/')
    .slice(1)
    .reduce<unknown>((node, key) => (node as Json | null)?.[key], data);
}

// ---- validators ------------------------------------------------------------------------------------

function newAjv(coerceTypes: boolean): Ajv {
  // strict: false — the descriptions carry OpenAPI keywords (example, x-github, discriminator) and
  // formats of their own (repo.nwo, …) that JSON Schema does not know; those are not checked.
  const ajv = new Ajv({
    strict: false,
    allErrors: true,
    logger: false,
    validateSchema: false,
    coerceTypes,
    code: { source: true, formats: _`require("ajv-formats/dist/formats").fullFormats` },
  });
  addFormats(ajv);
  return ajv;
}

let bodyAjv: Ajv | undefined;
let paramAjv: Ajv | undefined;

/**
 * Compile `schema` as part of a bundle so that its `#/components/...` references resolve. Compiling
 * is the slow part (seconds for a pull request's schemas), so the generated code is kept in `cacheFile`
 * and later test files load that instead.
 */
function compile(components: Json, schema: Json, coerce: boolean, cacheFile: string): ValidateFunction {
  try {
    return require(cacheFile) as ValidateFunction;
  } catch {
    // Not compiled yet.
  }
  const ajv = coerce ? (paramAjv ??= newAjv(true)) : (bodyAjv ??= newAjv(false));
  const validate = ajv.compile(nullableAsJsonSchema({ ...schema, components }) as Json);
  writeCacheFile(cacheFile, standaloneCode(ajv, validate));
  return validate;
}

/**
 * OpenAPI 3.0's `nullable` as JSON Schema: ajv knows it only beside a `type`, and GitHub's
 * description also puts it beside `anyOf`/`allOf` (e.g. an installation's account) and on enums that
 * do not list null (e.g. a check run's conclusion). Either way it means null is allowed too.
 */
function nullableAsJsonSchema(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(nullableAsJsonSchema);
  if (!schema || typeof schema !== 'object') return schema;
  const out: Json = {};
  for (const [k, v] of Object.entries(schema))
    out[k] = k === 'enum' || k === 'default' || k === 'example' ? v : nullableAsJsonSchema(v);
  if (out.nullable !== true) return out;
  if (Array.isArray(out.enum) && !out.enum.includes(null)) out.enum = [...(out.enum as unknown[]), null];
  if (out.type !== undefined) return out;
  const { nullable: _nullable, components, ...rest } = out;
  return { anyOf: [rest, { type: 'null' }], ...(components ? { components } : {}) };
}

function explain(errors: ErrorObject[] | null | undefined, what: string, limit = 6): string[] {
  const list = (errors ?? []).slice(0, limit).map((e) => {
    const where = `${what}${e.instancePath}`;
    if (e.keyword === 'additionalProperties')
      return `${where}: unknown key "${String(e.params.additionalProperty)}"`;
    if (e.keyword === 'enum') return `${where} ${e.message}: ${JSON.stringify(e.params.allowedValues)}`;
    return `${where} ${e.message ?? e.keyword}`;
  });
  if ((errors?.length ?? 0) > limit) list.push(`… and ${errors!.length - limit} more`);
  return list;
}

class RestContract {
  private index: RouteIndexEntry[] | undefined;
  private readonly bundles = new Map<string, OperationBundle>();
  private readonly validators = new Map<string, ValidateFunction>();

  constructor(readonly source: Source) {}

  private routes(): RouteIndexEntry[] {
    this.index ??= readCached(path.join(CACHE_ROOT, `${this.source.key}.routes.json`), () =>
      Object.entries(this.source.load().paths as Record<string, Json>).map(([template, item]) => ({
        template,
        segments: template.split('/'),
        methods: Object.keys(item)
          .filter((m) => ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'].includes(m))
          .map((m) => m.toUpperCase()),
      })),
    );
    return this.index;
  }

  /** The operation's template and its path parameters, preferring literal segments over parameters. */
  match(
    method: string,
    requestPath: string,
  ): { template: string; params: Record<string, string> } | undefined {
    const parts = requestPath.split('/');
    let best: { template: string; params: Record<string, string>; literals: number } | undefined;
    for (const r of this.routes()) {
      if (r.segments.length !== parts.length || !r.methods.includes(method)) continue;
      const params: Record<string, string> = {};
      let literals = 0;
      let ok = true;
      for (let i = 0; i < parts.length && ok; i++) {
        const seg = r.segments[i]!;
        const param = /^\{(.+)\}$/.exec(seg)?.[1];
        if (param === undefined) {
          ok = seg === parts[i];
          literals++;
        } else if (parts[i] === '') ok = false;
        else params[param] = decodeURIComponent(parts[i]!);
      }
      if (ok && (!best || literals > best.literals)) best = { template: r.template, params, literals };
    }
    return best && { template: best.template, params: best.params };
  }

  bundle(route: string): OperationBundle {
    let b = this.bundles.get(route);
    if (!b) {
      const [method, template] = route.split(' ') as [string, string];
      const file = path.join(CACHE_ROOT, this.source.key, `${cacheName(route)}.json`);
      b = readCached(file, () => bundleOperation(this.source.load(), template, method));
      this.bundles.set(route, b);
    }
    return b;
  }

  validator(
    route: string,
    part: string,
    schema: () => Json | undefined,
    coerce = false,
  ): ValidateFunction | undefined {
    const key = `${route}#${part}`;
    let v = this.validators.get(key);
    if (!v) {
      const s = schema();
      if (!s) return undefined;
      const b = this.bundle(route);
      const file = path.join(CACHE_ROOT, this.source.key, `${cacheName(key)}.cjs`);
      v = compile(part === 'body' ? b.bodyComponents : b.components, s, coerce, file);
      this.validators.set(key, v);
    }
    return v;
  }

  checkRequest(req: ContractRequest): RequestCheck {
    const method = req.method.toUpperCase();
    const m = this.match(method, req.path);
    if (!m) return { route: undefined, problems: [`no operation ${method} ${req.path}`] };
    const route = `${method} ${m.template}`;
    const b = this.bundle(route);
    const problems: string[] = [];
    const pathOk = this.validator(route, 'path', () => b.pathSchema, true)!;
    if (!pathOk({ ...m.params })) problems.push(...explain(pathOk.errors, 'path parameter '));
    const queryOk = this.validator(route, 'query', () => b.querySchema, true)!;
    if (!queryOk({ ...req.query })) problems.push(...explain(queryOk.errors, 'query'));
    if (req.body !== undefined && !b.body) problems.push(`the operation takes no body`);
    else if (req.body === undefined && b.body?.required) problems.push('the request body is required');
    else if (req.body !== undefined && b.body?.schema) {
      const bodyOk = this.validator(route, 'body', () => b.body?.schema)!;
      if (!bodyOk(req.body)) problems.push(...explain(bodyOk.errors, 'body'));
    }
    return { route, problems };
  }

  checkResponse(route: string, status: number, body: unknown): string[] {
    const b = this.bundle(route);
    if (!(String(status) in b.responses))
      return status < 400
        ? [`status ${status} is not a documented answer (${Object.keys(b.responses).join(', ')})`]
        : [];
    const schema = b.responses[String(status)];
    // GitHub's errors carry {message, documentation_url} even where the description lists no body.
    if (!schema)
      return body === undefined || body === '' || status >= 400
        ? []
        : [`status ${status} has no body, got one`];
    const ok = this.validator(route, `response ${status}`, () => schema)!;
    if (ok(body)) return [];
    const errors = (ok.errors ?? []).filter(
      (e) =>
        !ERRATA.some((x) => x.route === route && x.at === e.instancePath && valueAt(body, x.at) === null),
    );
    return explain(errors, `response ${status} body`);
  }
}

const restContracts = new Map<RestDescription, RestContract>();

function rest(name: RestDescription): RestContract {
  let c = restContracts.get(name);
  if (!c) {
    c = new RestContract(source('@octokit/openapi', name));
    restContracts.set(name, c);
  }
  return c;
}

/** Check a request against every description in REST_DESCRIPTIONS (GitHub.com first). */
export function checkRequest(req: ContractRequest): RequestCheck {
  const problems: string[] = [];
  let route: string | undefined;
  for (const name of REST_DESCRIPTIONS) {
    const check = rest(name).checkRequest(req);
    if (name === 'api.github.com') route = check.route;
    problems.push(...check.problems.map((p) => `${name}: ${p}`));
  }
  return { route, problems };
}

/** Check an answer of the operation `route` (from checkRequest) against GitHub.com's description. */
export function checkResponse(route: string, status: number, body: unknown): string[] {
  return rest('api.github.com').checkResponse(route, status, body);
}

// ---- webhooks ------------------------------------------------------------------------------------

let webhookSource: Source | undefined;
const webhookValidators = new Map<string, ValidateFunction | null>();

/** The webhooks description names each payload `<event>-<action>` (or `<event>`), with hyphens. */
function webhookValidator(event: string, action: unknown): ValidateFunction | null {
  const key = typeof action === 'string' ? `${event}-${action}` : event;
  let v = webhookValidators.get(key);
  if (v !== undefined) return v;
  webhookSource ??= source('@octokit/openapi-webhooks', 'api.github.com');
  const src = webhookSource;
  const file = path.join(CACHE_ROOT, src.key, `${key.replace(/[^A-Za-z0-9_-]/g, '_')}.json`);
  const bundle = readCached<{ schema: Json | null; components: Json }>(file, () => {
    const doc = src.load();
    const hooks = doc.webhooks as Record<string, { post: Json }>;
    const name = [key, event].map((k) => k.replace(/_/g, '-')).find((k) => hooks[k]);
    const rb = name ? (hooks[name]!.post.requestBody as Json) : undefined;
    const schema = (rb?.content as Record<string, { schema: Json }> | undefined)?.['application/json']
      ?.schema;
    return { schema: schema ?? null, components: schema ? componentsFor(doc, [schema]) : {} };
  });
  v = bundle.schema
    ? compile(bundle.components, bundle.schema, false, file.replace(/\.json$/, '.cjs'))
    : null;
  webhookValidators.set(key, v);
  return v;
}

/**
 * Every problem of a webhook payload against GitHub's webhooks description for its event and action;
 * undefined when the description has no such event (so nothing can be said).
 */
export function checkWebhookPayload(event: string, payload: unknown): string[] | undefined {
  const action = (payload as { action?: unknown } | null)?.action;
  const v = webhookValidator(event, action);
  if (!v) return undefined;
  return v(payload)
    ? []
    : explain(v.errors, `${event}${typeof action === 'string' ? `.${action}` : ''} payload`, Infinity);
}
