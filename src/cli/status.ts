/**
 * `hpcbot status [--json]`: what the bot is doing, on one screen, from jobdirs alone (no GitHub, no
 * scheduler, no git): the config in use, whether the server and the poller are alive (their heartbeat
 * files, src/store/heartbeat.ts), the last tick, the scheduler's health, the queue depth, jobs and
 * events by stage, the directories parked with an error and the last deliveries.
 *
 * Only state.json files are read (never event.json, no git; src/store/stateScan.ts), so that it stays
 * fast with tens of thousands of job dirs.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pidAlive } from '../adapters/process.js';
import {
  readHeartbeat,
  type BackendHealth,
  type ConfigHealth,
  type Heartbeat,
  type ProcessName,
  type TickSummary,
} from '../store/heartbeat.js';
import { ACTIVE_JOB_STAGES } from '../store/job.js';
import { JobDirs, prOfRelativeDir } from '../store/jobdirs.js';
import { countEntries, newestClaims, scanStates } from '../store/stateScan.js';
import { FINAL_STAGES, type DirState } from '../store/state.js';

/** A heartbeat older than this, from a process that still exists, means the process is stuck. */
export const HEARTBEAT_STALE_MS = 5 * 60_000;
const LAST_DELIVERIES = 10;

export type Liveness = 'alive' | 'stale' | 'stopped' | 'never ran' | 'other host';

export interface ProcessStatus {
  liveness: Liveness;
  pid?: number;
  host?: string;
  startedAt?: string;
  updatedAt?: string;
  config?: ConfigHealth;
  extra?: Record<string, unknown>;
}

export interface DirSummary {
  /** Relative to jobdirs. */
  dir: string;
  kind: DirState['kind'];
  stage: string;
  /** When it entered this stage. */
  since?: string;
  error?: { message: string; at: string };
}

export interface DeliveryStatus {
  id: string;
  /** When the claim was written (its mtime). */
  at: string;
  /** The event dir, relative to jobdirs. */
  dir: string;
  pr?: string;
  event?: string;
  action?: string | null;
  /** The event's stage; undefined while the poller has not taken it up. */
  stage?: string;
}

export interface StatusReport {
  instance: string;
  jobdirs: string;
  config: {
    source: string;
    digest: string;
    /**
     * From the running processes' heartbeats; when none of them has read this file, from a process
     * that accepted exactly this text before, else from validating the file now.
     */
    valid?: boolean;
    problem?: string;
    /** Since when a running process has been rejecting the file. */
    invalidSince?: string;
    /** Whether a running process uses this file (false: the verdict is not a running process's). */
    inUse?: boolean;
  };
  processes: Record<ProcessName, ProcessStatus>;
  lastTick?: TickSummary;
  backend?: BackendHealth;
  queue: number;
  jobs: { total: number; byStage: Record<string, number>; oldestActive?: DirSummary };
  events: { total: number; byStage: Record<string, number> };
  /** Given up on: stage `failed`, or final with an error that is no longer retried. */
  parked: DirSummary[];
  /** Not final, with an error, waiting for a retry. */
  retrying: DirSummary[];
  deliveries: DeliveryStatus[];
}

export interface Located {
  source: string;
  instance: string;
  jobdirs: string;
  /** sha256 of the file's text, as the heartbeats record the config in use. */
  digest: string;
}

/**
 * The instance and jobdirs that site.yaml names, without validating the rest: status must work while
 * the file on disk is broken (a running bot keeps its last good config, and status is how one finds
 * out), and it reads the verdict of the running processes from their heartbeats. A file that cannot
 * be read or names no jobdirs gets the full check, for its error.
 */
export async function locate(file: string): Promise<Located> {
  const source = path.resolve(file);
  try {
    const text = readFileSync(source, 'utf8');
    const raw = simpleTopLevel(text) ?? (await parseYaml(text));
    if (typeof raw?.jobdirs === 'string')
      return {
        source,
        instance: typeof raw.instance === 'string' ? raw.instance : '?',
        jobdirs: path.resolve(path.dirname(source), raw.jobdirs),
        digest: createHash('sha256').update(text).digest('hex'), // configDigest, without loading zod
      };
  } catch {
    /* fall through to the full check */
  }
  const { loadConfig } = await import('../config/config.js');
  const cfg = loadConfig(file); // throws the ConfigError that says what is wrong
  return { source, instance: cfg.instance, jobdirs: cfg.jobdirs, digest: cfg.digest ?? '' };
}

/** A top-level `key: value` line whose value is a plain or quoted scalar without escapes. */
const SIMPLE_LINE = (key: string) =>
  new RegExp(
    `^${key}:[ \\t]+(?:'([^'\\n]*)'|"([^"\\\\\\n]*)"|([^\\s'"#{}\\[\\]&*!|>%@\`,?:-][^#\\n]*?))[ \\t]*(?:[ \\t]#[^\\n]*)?$`,
    'gm',
  );

/**
 * Pure: `instance` and `jobdirs` read from lines of the simple form site.yaml files have (a plain or
 * quoted scalar after the key at the top level), without loading the YAML parser (a tenth of a
 * second of `status`). Undefined for anything else (a key given twice, a flow mapping, a block
 * scalar, a value with `: ` in it, several documents): then the YAML parser decides.
 */
export function simpleTopLevel(text: string): { instance?: string; jobdirs?: string } | undefined {
  if (/^(?:---|\.\.\.|%)/m.test(text.replace(/^---[ \t]*\n/, ''))) return undefined;
  const out: { instance?: string; jobdirs?: string } = {};
  for (const key of ['instance', 'jobdirs'] as const) {
    const matches = [...text.matchAll(SIMPLE_LINE(key))];
    const anyLine = text.match(new RegExp(`^${key}\\s*:`, 'gm')) ?? [];
    if (matches.length !== anyLine.length || matches.length > 1) return undefined;
    const m = matches[0];
    if (!m) continue;
    const value = m[1] ?? m[2] ?? m[3]!;
    if (m[3] !== undefined && (/:\s/.test(value) || /^(?:null|~|true|false|[-+.\d])/i.test(value)))
      return undefined; // a mapping, or a scalar YAML reads as something other than a string
    out[key] = value;
  }
  return out.jobdirs === undefined ? undefined : out;
}

async function parseYaml(text: string): Promise<{ instance?: unknown; jobdirs?: unknown } | null> {
  const YAML = (await import('yaml')).default;
  return YAML.parse(text) as { instance?: unknown; jobdirs?: unknown } | null;
}

/**
 * The verdict on site.yaml when no running process has one: valid if a process (stopped by now)
 * accepted exactly this text, else what validating it now says. Never "not known": an admin who
 * edits site.yaml while the bot is down learns here that the next start would refuse it.
 */
export async function checkedNow(
  located: Located,
  heartbeats: Array<Heartbeat | undefined>,
): Promise<{ valid: boolean; problem?: string }> {
  if (heartbeats.some((hb) => hb?.config?.digest === located.digest && located.digest !== ''))
    return { valid: true };
  const { ConfigError, loadConfig } = await import('../config/config.js');
  try {
    loadConfig(located.source);
    return { valid: true };
  } catch (err) {
    if (err instanceof ConfigError) return { valid: false, problem: err.message };
    throw err;
  }
}

/**
 * Pure: the config's verdict from the running processes. Invalid once one of them rejected the file
 * (it keeps its last good one); valid once one of them uses exactly this file; else unknown.
 */
export function configVerdict(located: Located, running: Heartbeat[]): StatusReport['config'] {
  const base = { source: located.source, digest: located.digest };
  const rejected = running
    .map((hb) => hb.config?.error)
    .filter((e): e is { message: string; since: string } => e !== undefined)
    .sort((a, b) => a.since.localeCompare(b.since))[0];
  if (rejected)
    return { ...base, valid: false, problem: rejected.message, invalidSince: rejected.since, inUse: true };
  if (running.some((hb) => hb.config?.digest === located.digest))
    return { ...base, valid: true, inUse: true };
  return base;
}

/** Pure: what a heartbeat says about its process, seen from this host at `now`. */
export function liveness(
  hb: Heartbeat | undefined,
  now: Date,
  host = os.hostname(),
  alive: (pid: number) => boolean = pidAlive,
): Liveness {
  if (!hb) return 'never ran';
  if (hb.host !== host) return 'other host';
  if (!alive(hb.pid)) return 'stopped';
  return now.getTime() - Date.parse(hb.updatedAt) > HEARTBEAT_STALE_MS ? 'stale' : 'alive';
}

export async function collectStatus(located: Located, now = new Date()): Promise<StatusReport> {
  const jobdirs = new JobDirs(located.jobdirs);
  const [server, poller] = await Promise.all([
    readHeartbeat(jobdirs.root, 'server'),
    readHeartbeat(jobdirs.root, 'poller'),
  ]);
  const processStatus = (hb: Heartbeat | undefined): ProcessStatus => ({
    liveness: liveness(hb, now),
    ...(hb && {
      pid: hb.pid,
      host: hb.host,
      startedAt: hb.startedAt,
      updatedAt: hb.updatedAt,
      config: hb.config,
      extra: hb.extra,
    }),
  });
  const running = [server, poller].filter(
    (hb): hb is Heartbeat => hb !== undefined && liveness(hb, now) === 'alive',
  );

  let config = configVerdict(located, running);
  if (config.valid === undefined)
    config = { ...config, ...(await checkedNow(located, [server, poller])), inUse: false };

  const states = scanStates(jobdirs.root, brief);
  const queue = countEntries(jobdirs.queueDir);
  const claims = newestClaims(jobdirs.deliveriesDir, LAST_DELIVERIES);

  const jobs = {
    total: 0,
    byStage: {} as Record<string, number>,
    oldestActive: undefined as DirSummary | undefined,
  };
  const events = { total: 0, byStage: {} as Record<string, number> };
  let oldestCreated = '';
  const parked: DirSummary[] = [];
  const retrying: DirSummary[] = [];
  for (const [dir, state] of states) {
    const counts = state.kind === 'job' ? jobs : events;
    counts.total++;
    counts.byStage[state.stage] = (counts.byStage[state.stage] ?? 0) + 1;
    const summary = (): DirSummary => ({
      dir: jobdirs.relative(dir),
      kind: state.kind,
      stage: state.stage,
      since: state.since,
      ...(state.last_error && { error: state.last_error }),
    });
    if (state.kind === 'job' && ACTIVE_JOB_STAGES.has(state.stage)) {
      if (!jobs.oldestActive || state.created < oldestCreated) {
        jobs.oldestActive = summary();
        oldestCreated = state.created;
      }
    }
    if (
      state.stage === 'failed' ||
      (state.last_error && FINAL_STAGES.has(state.stage) && !state.next_retry_at)
    )
      parked.push(summary());
    else if (state.last_error) retrying.push(summary());
  }
  const newestErrorFirst = (a: DirSummary, b: DirSummary) =>
    (b.error?.at ?? '').localeCompare(a.error?.at ?? '');
  parked.sort(newestErrorFirst);
  retrying.sort(newestErrorFirst);

  const deliveries = claims.map(({ id, at, rel }): DeliveryStatus => {
    const state = states.get(path.join(jobdirs.root, rel));
    const pr = prOfRelativeDir(rel);
    return {
      id,
      at,
      dir: rel,
      ...(pr && { pr }),
      ...(state && { event: state.event, action: state.action, stage: state.stage }),
    };
  });

  return {
    instance: located.instance,
    jobdirs: jobdirs.root,
    config,
    processes: { server: processStatus(server), poller: processStatus(poller) },
    lastTick: poller?.lastTick,
    backend: poller?.backend,
    queue,
    jobs,
    events,
    parked,
    retrying,
    deliveries,
  };
}

/** What status needs of a state file; kept instead of the whole state, which would cost memory and GC. */
export interface StateBrief {
  kind: DirState['kind'];
  stage: string;
  /** When the directory got its first stage. */
  created: string;
  /** When it entered its current stage. */
  since?: string;
  last_error?: { message: string; at: string };
  next_retry_at?: string;
  /** An event's name and action. */
  event?: string;
  action?: string | null;
}

/** Pure. */
export function brief(state: DirState): StateBrief {
  const data = state.data as { event?: unknown; action?: unknown };
  return {
    kind: state.kind,
    stage: state.stage,
    created: state.history[0]?.at ?? '',
    since: state.history.at(-1)?.at,
    ...(state.last_error && { last_error: state.last_error }),
    ...(state.next_retry_at && { next_retry_at: state.next_retry_at }),
    ...(state.kind === 'event' &&
      typeof data.event === 'string' && {
        event: data.event,
        action: (data.action as string | null) ?? null,
      }),
  };
}

// ---- text --------------------------------------------------------------------------------------

/** Pure: "12s", "5m", "3h 20m", "4d" between `iso` and `now`. */
export function age(iso: string | undefined, now: Date): string {
  if (!iso) return '?';
  const s = Math.max(0, Math.round((now.getTime() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 48 * 3600) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d`;
}

function stages(byStage: Record<string, number>): string {
  const entries = Object.entries(byStage).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  return entries.map(([stage, n]) => `${n} ${stage}`).join(', ');
}

function tickReport(report: Record<string, unknown>): string {
  const parts = Object.entries(report).map(
    ([k, v]) => `${k} ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`,
  );
  return parts.join(', ') || 'nothing';
}

const MAX_LISTED = 10;

/** Pure: the status as text for a terminal (one screen). */
export function formatStatus(r: StatusReport, now: Date): string {
  const out: string[] = [];
  const c = r.config;
  const config =
    c.valid === undefined
      ? `${c.source}: not in use by a running process (hpcbot config check validates it)`
      : c.inUse === false
        ? c.valid
          ? `${c.source}: valid, not in use by a running process`
          : `${c.source}: INVALID, not in use by a running process (a start would refuse it): ${c.problem}`
        : c.valid
          ? `${c.source}: valid, in use`
          : `${c.source}: INVALID since ${c.invalidSince} (${age(c.invalidSince, now)} ago), the last good one stays in use: ${c.problem}`;
  out.push(`instance  ${r.instance}`, `config    ${config}`, `jobdirs   ${r.jobdirs}`);

  for (const name of ['server', 'poller'] as const) {
    const p = r.processes[name];
    const facts: string[] = [];
    if (p.pid !== undefined) facts.push(`pid ${p.pid}${p.liveness === 'other host' ? ` on ${p.host}` : ''}`);
    if (p.startedAt && p.liveness === 'alive') facts.push(`up ${age(p.startedAt, now)}`);
    if (p.updatedAt) facts.push(`heartbeat ${age(p.updatedAt, now)} ago`);
    if (p.config?.digest && c.digest && p.config.digest !== c.digest) facts.push('uses an earlier site.yaml');
    if (p.config?.error)
      facts.push(`site.yaml rejected since ${p.config.error.since}: ${p.config.error.message}`);
    if (typeof p.extra?.url === 'string') facts.push(p.extra.url);
    out.push(`${name.padEnd(10)}${p.liveness}${facts.length ? `: ${facts.join(', ')}` : ''}`);
  }
  const t = r.lastTick;
  out.push(
    `last tick ${t ? `${age(t.at, now)} ago, took ${t.ms} ms: ${tickReport(t.report)}` : 'none recorded'}`,
  );
  const b = r.backend;
  const backend = [
    b?.lastOk ? `last answer ${age(b.lastOk, now)} ago` : 'no answer recorded',
    ...(b?.lastError ? [`last error ${age(b.lastError.at, now)} ago: ${b.lastError.message}`] : []),
  ];
  out.push(`scheduler ${backend.join('; ')}`);
  out.push(`queue     ${r.queue} pending`);

  const oldest = r.jobs.oldestActive;
  out.push(
    `jobs      ${r.jobs.total}${r.jobs.total ? `: ${stages(r.jobs.byStage)}` : ''}`,
    ...(oldest
      ? [`          oldest active: ${oldest.dir} (${oldest.stage} for ${age(oldest.since, now)})`]
      : []),
    `events    ${r.events.total}${r.events.total ? `: ${stages(r.events.byStage)}` : ''}`,
  );
  const listErrors = (title: string, dirs: DirSummary[]) => {
    out.push(`${title.padEnd(10)}${dirs.length}`);
    for (const d of dirs.slice(0, MAX_LISTED))
      out.push(
        `  ${d.dir} (${d.kind}, ${d.stage}, ${age(d.error?.at, now)} ago): ${d.error?.message ?? 'no error recorded'}`,
      );
    if (dirs.length > MAX_LISTED) out.push(`  ... and ${dirs.length - MAX_LISTED} more (--json lists all)`);
  };
  listErrors('parked', r.parked);
  if (r.retrying.length > 0) listErrors('retrying', r.retrying);

  out.push(`deliveries (last ${LAST_DELIVERIES})`);
  if (r.deliveries.length === 0) out.push('  none');
  for (const d of r.deliveries) {
    const what = d.event ? `${d.event}${d.action ? `.${d.action}` : ''}` : '';
    out.push(
      `  ${d.at}  ${d.id}  ${d.pr ?? d.dir}  ${what ? `${what}, ` : ''}${d.stage ?? 'not taken up yet'}`,
    );
  }
  return out.join('\n') + '\n';
}

export async function statusCommand(opts: { config: string; json?: boolean }): Promise<void> {
  const now = new Date();
  const report = await collectStatus(await locate(opts.config), now);
  process.stdout.write(opts.json ? JSON.stringify(report, null, 2) + '\n' : formatStatus(report, now));
}
