/**
 * Reaction benchmark: `npm run bench:reaction` (options after `--`).
 *
 * How long a reviewer waits. It runs the real `hpcbot start` (server + poller, one child process
 * group) against an in-process FakeGitHub (so the bot's real octokit throttling applies) and a small
 * PR repository served over git smart HTTP, and sends signed `bot: build` comments (real
 * issue_comment payloads) at `--points` moments spread over the poller's schedule (for a 10 s
 * schedule and 10 points: 0, 1, ... 9 s after a tick), for 1 target and for 8 targets, one
 * measurement at a time: each on a PR of its own, the next one only once the previous is final.
 * The job is a trivial 1-second script (sleep 1, then the `_bot_job<ID>.result`/`.test` files).
 *
 * From the webhook's 2xx it measures: the reply comment created; sbatch returned (the job's
 * `submitted` entry in state.json); the job comment first showing a `running` row; the job comment
 * edit that carries the final row; and, for several targets, first to last sbatch. With several
 * targets each time is the last of the jobs. Beside it, in the same run (one before each
 * measurement), the floor: a bare `sbatch` of the same script and `sacct` polled every 100 ms until
 * COMPLETED (with `--backend local`: a bare spawn of the script until it exits).
 *
 * Options: --backend slurm|local (default local), --points N (default 10), --targets 1,8,
 * --period S (the poller's schedule: every S seconds, S divides 60; default 10), --timeout S (per
 * measurement, default 120), --keep (keep the temp directory, with the bot's log in bot.log).
 * With slurm, a dev cluster that does not answer is started (scripts/slurm-dev-cluster.sh start,
 * through `sudo -n` unless root) and left running.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { closeSync, openSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { FINAL_STAGES, readState, type DirState } from '../src/store/state.js';
import { FakeGitHub, type RecordedCall } from '../tests/support/fakeGithub.js';
import { makeDelivery, payloads, send } from '../tests/support/payloads.js';
import { createPrRepo } from '../tests/support/prRepo.js';
import { CLI, ROOT, childEnv, freePort } from '../tests/support/spawn.js';
import { sacctJob, sbatch, slurm, slurmReachable } from '../tests/support/slurm.js';

const execFileAsync = promisify(execFile);
const OWNER = 'bench-org';
const REPO = 'reaction';
const REVIEWER = 'reviewer1';
const INSTANCE = 'bench';
const JOB_NAME_PREFIX = 'reaction';
const FLOOR_JOB_NAME = 'reaction-floor';
const TIME_LIMIT = '00:05:00';
const SECRET = randomUUID();
const TOKEN = `ghp_bench${randomUUID().replace(/-/g, '')}`;
const POLL_MS = 100;

// ------------------------------------------------------------------------------------------------
// Options and small helpers.

interface Options {
  backend: 'slurm' | 'local';
  points: number;
  targets: number[];
  periodS: number;
  timeoutS: number;
  keep: boolean;
}

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

function parseOptions(): Options {
  const backend = option('backend', 'local');
  if (backend !== 'slurm' && backend !== 'local')
    throw new Error(`--backend: slurm or local, not ${backend}`);
  const points = Number(option('points', '10'));
  const targets = option('targets', '1,8').split(',').map(Number);
  const periodS = Number(option('period', '10'));
  const timeoutS = Number(option('timeout', '120'));
  if (!Number.isInteger(points) || points < 1) throw new Error('--points: a whole number >= 1');
  if (targets.some((t) => !Number.isInteger(t) || t < 1 || t > 32))
    throw new Error('--targets: whole numbers 1-32, comma-separated');
  if (!Number.isInteger(periodS) || periodS < 1 || 60 % periodS !== 0)
    throw new Error('--period: whole seconds that divide 60');
  if (!(timeoutS > 0)) throw new Error('--timeout: seconds > 0');
  return { backend, points, targets, periodS, timeoutS, keep: process.argv.includes('--keep') };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** Nearest-rank percentile of a sorted list. */
function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const seconds = (ms: number | undefined) => (ms === undefined ? '-' : (ms / 1000).toFixed(2));

// ------------------------------------------------------------------------------------------------
// Clean-up: whatever happens, the bot, the floor jobs and (unless --keep) the temp dir go.

const cleanups: Array<() => Promise<void>> = [];
let cleaned = false;

async function cleanUp(): Promise<void> {
  if (cleaned) return;
  cleaned = true;
  for (const c of cleanups.reverse()) {
    await c().catch((err: unknown) => process.stderr.write(`clean-up: ${(err as Error).message}\n`));
  }
}

for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const) {
  process.once(signal, () => {
    process.stderr.write(`\n${signal}: cleaning up\n`);
    void cleanUp().finally(() => process.exit(code));
  });
}

// ------------------------------------------------------------------------------------------------
// The site: job script, repos.cfg, site.yaml, the PRs on the fake GitHub.

/** The 1-second job, for the bot and for the floor alike. */
const JOB_SCRIPT = [
  '#!/bin/bash',
  'sleep 1',
  'printf "[RESULT]\\ncomment_description = :grin: SUCCESS (bench)\\nstatus = SUCCESS\\nartefacts =\\n" > "_bot_job${SLURM_JOB_ID}.result"',
  'printf "[TEST]\\ncomment_description = :grin: SUCCESS (bench)\\nstatus = SUCCESS\\n" > "_bot_job${SLURM_JOB_ID}.test"',
  '',
].join('\n');

const repoIds = (n: number) => Array.from({ length: n }, (_, i) => `r${i + 1}`);
/** One node type per series size, so that `for:arch=x86_64/bench/t<N>` selects exactly N jobs. */
const archOf = (targets: number) => `x86_64/bench/t${targets}`;

function siteYaml(opts: Options, apiUrl: string, port: number, jobScript: string): string {
  const nodeTypes = opts.targets.flatMap((n) => [
    `    t${n}:`,
    '      os: linux',
    `      cpu_subdir: ${archOf(n)}`,
    `      repo_targets: [${repoIds(n).join(', ')}]`,
  ]);
  return [
    `instance: ${INSTANCE}`,
    'jobdirs: jobdirs',
    'server:',
    '  host: 127.0.0.1',
    `  port: ${port}`,
    'github:',
    `  api_url: ${apiUrl}`,
    '  token_env: BENCH_GITHUB_TOKEN',
    '  webhook_secret_env: BENCH_WEBHOOK_SECRET',
    'poller:',
    `  schedule: '*/${opts.periodS} * * * * *'`,
    'chatlevel: basic',
    'permissions:',
    `  command: [${REVIEWER}]`,
    `  build: [${REVIEWER}]`,
    'backend:',
    `  kind: ${opts.backend}`,
    '  local:',
    `    max_parallel: ${Math.max(...opts.targets)}`,
    '  slurm:',
    `    job_name_prefix: ${JOB_NAME_PREFIX}`,
    `    default_time: '${TIME_LIMIT}'`,
    'build:',
    '  repos_cfg_dir: repos_cfg',
    `  job_script: ${jobScript}`,
    '  node_types:',
    ...nodeTypes,
    '',
  ].join('\n');
}

async function writeSite(tmp: string, opts: Options, apiUrl: string, port: number): Promise<string> {
  const jobScript = path.join(tmp, 'job.sh');
  await fs.writeFile(jobScript, JOB_SCRIPT, { mode: 0o755 });
  await fs.mkdir(path.join(tmp, 'repos_cfg'));
  const sections = repoIds(Math.max(...opts.targets)).map(
    (id) => `[${id}]\nrepo_name = ${id}.bench.invalid\nrepo_version = 2023.06\n`,
  );
  await fs.writeFile(path.join(tmp, 'repos_cfg', 'repos.cfg'), sections.join('\n'));
  const file = path.join(tmp, 'site.yaml');
  await fs.writeFile(file, siteYaml(opts, apiUrl, port, jobScript));
  return file;
}

/** PRs 1..count of one small repository, all at the same head (`refs/pull/<N>/head`). */
async function openPrs(fake: FakeGitHub, gitRoot: string, count: number): Promise<void> {
  const files = { 'README.md': 'a small PR\n', 'bot/build.sh': '#!/bin/bash\necho unused\n' };
  const repo = createPrRepo(gitRoot, OWNER, REPO, 1, files);
  for (let n = 1; n <= count; n++) {
    if (n > 1)
      await execFileAsync('git', ['-C', repo.bare, 'update-ref', `refs/pull/${n}/head`, repo.headSha]);
    fake.addPullRequest(OWNER, REPO, { number: n, headSha: repo.headSha, baseSha: repo.baseSha });
  }
}

// ------------------------------------------------------------------------------------------------
// The bot: `hpcbot start` in a process group of its own, logging to a file.

interface Bot {
  webhookUrl: string;
  proc: ChildProcess;
  log: string;
}

async function startBot(tmp: string, siteFile: string, port: number): Promise<Bot> {
  const log = path.join(tmp, 'bot.log');
  const fd = openSync(log, 'a');
  const proc = spawn(process.execPath, ['--import', 'tsx', CLI, 'start', '--config', siteFile], {
    cwd: ROOT,
    env: childEnv({
      BENCH_GITHUB_TOKEN: TOKEN,
      BENCH_WEBHOOK_SECRET: SECRET,
      HPCBOT_LOG_FORMAT: 'json',
    }),
    stdio: ['ignore', fd, fd],
    detached: true,
  });
  closeSync(fd);
  cleanups.push(() => stopGroup(proc));
  const bot = { webhookUrl: `http://127.0.0.1:${port}/webhook`, proc, log };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null || Date.now() > deadline)
      throw new Error(`hpcbot start did not come up:\n${await tail(log)}`);
    const text = await fs.readFile(log, 'utf8');
    if (text.includes('poller started') && (await healthy(port))) return bot;
    await sleep(200);
  }
}

async function healthy(port: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/healthz`);
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

async function stopGroup(proc: ChildProcess): Promise<void> {
  const signal = (s: NodeJS.Signals) => {
    try {
      process.kill(-proc.pid!, s);
    } catch {
      // the group is gone
    }
  };
  if (proc.exitCode !== null || proc.signalCode !== null) return signal('SIGKILL'); // stray members
  const exited = new Promise((r) => proc.once('exit', r));
  signal('SIGTERM');
  await Promise.race([exited, sleep(5000)]);
  signal('SIGKILL');
}

async function tail(file: string, lines = 30): Promise<string> {
  const text = await fs.readFile(file, 'utf8').catch(() => '');
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

// ------------------------------------------------------------------------------------------------
// One measurement: what the bot did for one delivery, read from the fake's calls and the job dirs.

interface JobView {
  /** The job dir relative to its event dir, `run_NNN/<node type>/<repo id>`. */
  key: string;
  stage: string;
  error?: string;
  submittedAt?: number;
  runningRowAt?: number;
  finalRowAt?: number;
}

interface Sample {
  /** Milliseconds from the webhook's 2xx; undefined when not seen. */
  reply?: number;
  sbatch?: number;
  running?: number;
  final?: number;
  spread?: number;
  problem?: string;
}

const JOB_DIR_LINE = /^Job dir: `([^`]+)`/m;
const RUNNING_ROW = /^\|[^|\n]*\|running\|/m;
const FINAL_ROW = /^\|[^|\n]*\|(?:finished|cancelled|timed out|out of memory|node failure|ended|lost)\|/m;

/** The event dir of a delivery, wherever (which month) the server put it. */
async function findEventDir(jobdirs: string, pr: number, delivery: string): Promise<string | undefined> {
  const months = (await fs.readdir(jobdirs).catch(() => [])).filter((m) => /^\d{4}\.\d{2}$/.test(m));
  for (const month of months) {
    const dir = path.join(jobdirs, month, OWNER, REPO, `pr_${pr}`, `event_${delivery}`);
    if (
      await fs.stat(dir).then(
        () => true,
        () => false,
      )
    )
      return dir;
  }
  return undefined;
}

async function subdirs(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isDirectory()).map((e) => e.name);
}

/** The job states under an event dir: `run_*\/<node type>/<repo id>/state.json`. */
async function jobStates(eventDir: string): Promise<Map<string, DirState>> {
  const states = new Map<string, DirState>();
  for (const run of (await subdirs(eventDir)).filter((d) => d.startsWith('run_')))
    for (const node of await subdirs(path.join(eventDir, run)))
      for (const repo of await subdirs(path.join(eventDir, run, node))) {
        const state = await readState(path.join(eventDir, run, node, repo));
        if (state?.kind === 'job') states.set(`${run}/${node}/${repo}`, state);
      }
  return states;
}

/** Pure: the reply and each job comment's first running row and first final row, from the fake's calls. */
function commentTimes(
  calls: readonly RecordedCall[],
  pr: number,
  delivery: string,
): { replyAt?: number; rows: Map<string, { runningAt?: number; finalAt?: number }> } {
  const rows = new Map<string, { runningAt?: number; finalAt?: number }>();
  let replyAt: number | undefined;
  const postPath = `/repos/${OWNER}/${REPO}/issues/${pr}/comments`;
  const patchPath = new RegExp(`^/repos/${OWNER}/${REPO}/issues/comments/\\d+$`);
  for (const c of calls) {
    const ok = c.status >= 200 && c.status < 300;
    const isPost = c.method === 'POST' && c.path === postPath;
    if (!ok || !(isPost || (c.method === 'PATCH' && patchPath.test(c.path)))) continue;
    const body = (c.body as { body?: unknown } | undefined)?.body;
    if (typeof body !== 'string') continue;
    const jobDir = JOB_DIR_LINE.exec(body)?.[1];
    if (jobDir === undefined) {
      if (isPost) replyAt ??= c.at;
      continue;
    }
    const marker = `event_${delivery}/`;
    const at = jobDir.indexOf(marker);
    if (at < 0) continue;
    const key = jobDir.slice(at + marker.length);
    const r = rows.get(key) ?? {};
    if (RUNNING_ROW.test(body)) r.runningAt ??= c.at;
    if (FINAL_ROW.test(body)) r.finalAt ??= c.at;
    rows.set(key, r);
  }
  return { replyAt, rows };
}

function jobViews(states: Map<string, DirState>, rows: ReturnType<typeof commentTimes>['rows']): JobView[] {
  return [...states].map(([key, s]) => {
    const submitted = s.history.find((h) => h.stage === 'submitted')?.at;
    return {
      key,
      stage: s.stage,
      error: s.last_error?.message,
      submittedAt: submitted === undefined ? undefined : Date.parse(submitted),
      runningRowAt: rows.get(key)?.runningAt,
      finalRowAt: rows.get(key)?.finalAt,
    };
  });
}

const BROKEN_END = new Set(['failed', 'lost']);

/** Pure: whether nothing more is to come for this measurement. */
function isComplete(replyAt: number | undefined, jobs: JobView[], targets: number): boolean {
  if (replyAt === undefined || jobs.length < targets) return false;
  return jobs.every((j) => j.finalRowAt !== undefined || BROKEN_END.has(j.stage));
}

/** Pure: the times of one measurement, each the last of its jobs, from the 2xx at `t0`. */
function summarize(t0: number, replyAt: number | undefined, jobs: JobView[], targets: number): Sample {
  const lastOf = (pick: (j: JobView) => number | undefined) => {
    const ts = jobs.map(pick);
    if (jobs.length < targets || ts.some((t) => t === undefined)) return undefined;
    return Math.max(...(ts as number[])) - t0;
  };
  const submitted = jobs.map((j) => j.submittedAt).filter((t): t is number => t !== undefined);
  return {
    reply: replyAt === undefined ? undefined : replyAt - t0,
    sbatch: lastOf((j) => j.submittedAt),
    running: lastOf((j) => j.runningRowAt),
    final: lastOf((j) => j.finalRowAt),
    spread:
      targets > 1 && submitted.length === targets
        ? Math.max(...submitted) - Math.min(...submitted)
        : undefined,
  };
}

/** Pure: what a measurement that ended early still lacked. */
function whatIsMissing(replyAt: number | undefined, jobs: JobView[], targets: number): string {
  const missing: string[] = [];
  if (replyAt === undefined) missing.push('the reply');
  if (jobs.length < targets) missing.push(`${targets - jobs.length} of ${targets} job dirs`);
  const broken = jobs.filter((j) => BROKEN_END.has(j.stage));
  for (const j of broken) missing.push(`${j.key} ended ${j.stage}${j.error ? `: ${j.error}` : ''}`);
  const open = jobs.filter((j) => j.finalRowAt === undefined && !BROKEN_END.has(j.stage));
  if (open.length > 0)
    missing.push(`the final edit of ${open.length} job(s) (stages: ${open.map((j) => j.stage).join(', ')})`);
  return missing.join('; ');
}

/** Pure: undefined while more is to come; else '' when all went well, or what went wrong. */
function outcome(
  replyAt: number | undefined,
  jobs: JobView[],
  targets: number,
  event: DirState | undefined,
  timedOut: string | undefined,
): string | undefined {
  if (event?.stage === 'failed') return `the event failed: ${event.last_error?.message ?? '?'}`;
  if (isComplete(replyAt, jobs, targets))
    return jobs.some((j) => BROKEN_END.has(j.stage)) ? whatIsMissing(replyAt, jobs, targets) : '';
  if (replyAt !== undefined && jobs.length === 0 && FINAL_STAGES.has(event?.stage ?? ''))
    return 'the event ended without jobs';
  return timedOut && `${timedOut}, missing ${whatIsMissing(replyAt, jobs, targets)}`;
}

interface Context {
  opts: Options;
  fake: FakeGitHub;
  bot: Bot;
  jobdirs: string;
}

/** The next moment `offsetMs` after a tick of an every-`periodMs` schedule, at least 100 ms ahead. */
function nextSendTime(now: number, periodMs: number, offsetMs: number): number {
  const at = Math.floor(now / periodMs) * periodMs + offsetMs;
  return at >= now + 100 ? at : at + periodMs;
}

function buildComment(pr: number, targets: number) {
  const p = payloads.commentOnPr();
  p.repository!.owner.login = OWNER;
  p.repository!.name = REPO;
  p.issue!.number = pr;
  p.installation = { id: 4242, node_id: 'I_fake4242' };
  const comment = p.comment as { id: number; body: string; user: { login: string } };
  comment.id = 900_000 + pr;
  comment.body = `bot: build for:arch=${archOf(targets)}`;
  comment.user.login = REVIEWER;
  (p.sender as { login: string }).login = REVIEWER;
  return makeDelivery('issue_comment', p, { secret: SECRET });
}

async function measure(ctx: Context, pr: number, targets: number, offsetMs: number): Promise<Sample> {
  const delivery = buildComment(pr, targets);
  const firstCall = ctx.fake.calls.length;
  await sleep(nextSendTime(Date.now(), ctx.opts.periodS * 1000, offsetMs) - Date.now());
  const answer = await send(ctx.bot.webhookUrl, delivery);
  const t0 = Date.now();
  if (answer.status < 200 || answer.status > 299)
    return { problem: `webhook answered ${answer.status}: ${answer.text}` };
  const deadline = t0 + ctx.opts.timeoutS * 1000;
  for (;;) {
    if (ctx.bot.proc.exitCode !== null || ctx.bot.proc.signalCode !== null)
      throw new Error(`hpcbot start exited during the measurement:\n${await tail(ctx.bot.log)}`);
    const { replyAt, rows } = commentTimes(ctx.fake.calls.slice(firstCall), pr, delivery.delivery);
    const eventDir = await findEventDir(ctx.jobdirs, pr, delivery.delivery);
    const jobs = eventDir ? jobViews(await jobStates(eventDir), rows) : [];
    const event = eventDir ? await readState(eventDir) : undefined;
    const timedOut = Date.now() > deadline ? `timed out after ${ctx.opts.timeoutS} s` : undefined;
    const problem = outcome(replyAt, jobs, targets, event, timedOut);
    if (problem !== undefined)
      return { ...summarize(t0, replyAt, jobs, targets), ...(problem ? { problem } : {}) };
    await sleep(POLL_MS * 2);
  }
}

// ------------------------------------------------------------------------------------------------
// The floor: the same script without the bot.

interface Floor {
  /** sbatch returned (local: the process spawned), ms after the call. */
  submit: number;
  /** COMPLETED in sacct (local: the process exited 0), ms after the call. */
  done: number;
}

async function floorSlurm(dir: string, script: string): Promise<Floor> {
  const t0 = Date.now();
  const id = await sbatch([
    `--job-name=${FLOOR_JOB_NAME}`,
    `--time=${TIME_LIMIT}`,
    `--chdir=${dir}`,
    '--output=/dev/null',
    script,
  ]);
  const submit = Date.now() - t0;
  const deadline = t0 + 120_000;
  for (;;) {
    const state = (await sacctJob(id))?.State ?? '';
    if (state === 'COMPLETED') return { submit, done: Date.now() - t0 };
    if (/^(FAILED|CANCELLED|TIMEOUT|OUT_OF_MEMORY|NODE_FAIL)/.test(state))
      throw new Error(`floor job ${id} ended ${state}`);
    if (Date.now() > deadline) throw new Error(`floor job ${id} not COMPLETED after 120 s (${state})`);
    await sleep(POLL_MS);
  }
}

function floorLocal(dir: string, script: string, n: number): Promise<Floor> {
  const t0 = Date.now();
  let submit = NaN;
  return new Promise((resolve, reject) => {
    const proc = spawn('bash', [script], {
      cwd: dir,
      env: { ...process.env, SLURM_JOB_ID: `9${n}` },
      stdio: 'ignore',
    });
    proc.on('spawn', () => (submit = Date.now() - t0));
    proc.on('error', reject);
    proc.on('exit', (code) =>
      code === 0
        ? resolve({ submit, done: Date.now() - t0 })
        : reject(new Error(`floor script exited ${code}`)),
    );
  });
}

async function floor(opts: Options, tmp: string, n: number): Promise<Floor> {
  const dir = path.join(tmp, 'floor', String(n));
  await fs.mkdir(dir, { recursive: true });
  const script = path.join(tmp, 'job.sh');
  return opts.backend === 'slurm' ? await floorSlurm(dir, script) : await floorLocal(dir, script, n);
}

// ------------------------------------------------------------------------------------------------
// The run and the table.

interface Series {
  targets: number;
  samples: Sample[];
}

async function uptime(): Promise<string> {
  try {
    return (await execFileAsync('uptime')).stdout.trim();
  } catch {
    return `load average ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(', ')}`;
  }
}

async function ensureSlurm(): Promise<void> {
  if (slurmReachable()) return;
  const script = path.join(ROOT, 'scripts', 'slurm-dev-cluster.sh');
  const argv = process.getuid?.() === 0 ? [script, 'start'] : ['sudo', '-n', script, 'start'];
  process.stderr.write(`Slurm does not answer; running ${argv.join(' ')} (it is left running)\n`);
  await new Promise<void>((resolve, reject) => {
    const p = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'inherit', 'inherit'] });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${argv.join(' ')} exited ${code}`))));
  });
}

function oneLine(s: Sample): string {
  return `reply ${seconds(s.reply)} s, sbatch ${seconds(s.sbatch)} s, running row ${seconds(s.running)} s, final edit ${seconds(s.final)} s${s.spread === undefined ? '' : `, first-to-last sbatch ${seconds(s.spread)} s`}`;
}

async function run(
  opts: Options,
  tmp: string,
): Promise<{ series: Series[]; floors: Floor[]; problems: string[] }> {
  if (opts.backend === 'slurm') {
    await ensureSlurm();
    cleanups.push(async () => {
      for (const name of [`${JOB_NAME_PREFIX}-${INSTANCE}`, FLOOR_JOB_NAME])
        await slurm('scancel', [`--user=${os.userInfo().username}`, `--name=${name}`]).catch(() => undefined);
    });
  }
  const gitRoot = path.join(tmp, 'git');
  const fake = new FakeGitHub({ gitRoot });
  const apiUrl = await fake.start();
  cleanups.push(() => fake.stop());
  await openPrs(fake, gitRoot, 1 + opts.points * opts.targets.length);
  const port = await freePort();
  const siteFile = await writeSite(tmp, opts, apiUrl, port);
  const bot = await startBot(tmp, siteFile, port);
  const ctx: Context = { opts, fake, bot, jobdirs: path.join(tmp, 'jobdirs') };

  const problems: string[] = [];
  const floors: Floor[] = [];
  let pr = 1;
  process.stderr.write('warm-up (not counted): 1 target ... ');
  const warm = await measure(ctx, pr++, 1, 0);
  process.stderr.write(`${warm.problem ?? oneLine(warm)}\n`);
  if (warm.problem) problems.push(`warm-up, PR #1: ${warm.problem}`);

  const series: Series[] = [];
  for (const targets of opts.targets) {
    const samples: Sample[] = [];
    for (let i = 0; i < opts.points; i++) {
      const offsetMs = Math.round((i * opts.periodS * 1000) / opts.points);
      try {
        floors.push(await floor(opts, tmp, floors.length));
      } catch (err) {
        problems.push(`floor ${floors.length + 1}: ${(err as Error).message}`);
      }
      const where = `${targets} target(s), offset ${(offsetMs / 1000).toFixed(1)} s, PR #${pr}`;
      process.stderr.write(`${where} ... `);
      const s = await measure(ctx, pr++, targets, offsetMs);
      process.stderr.write(`${oneLine(s)}${s.problem ? ` !! ${s.problem}` : ''}\n`);
      if (s.problem) problems.push(`${where}: ${s.problem}`);
      samples.push(s);
    }
    series.push({ targets, samples });
  }
  return { series, floors, problems };
}

/** `p50 / p99` in seconds, with `(k/N)` when only k of N measurements gave a value. */
function cell(values: Array<number | undefined>): string {
  const got = values.filter((v): v is number => v !== undefined).sort((a, b) => a - b);
  if (got.length === 0) return values.length === 0 ? '' : `- (0/${values.length})`;
  const seen = got.length < values.length ? ` (${got.length}/${values.length})` : '';
  return `${seconds(percentile(got, 50))} / ${seconds(percentile(got, 99))}${seen}`;
}

function table(series: Series[], floors: Floor[], backend: Options['backend']): string {
  const metrics: Array<[string, keyof Sample, ((f: Floor) => number) | undefined, string]> = [
    ['reply comment created', 'reply', undefined, ''],
    [
      'sbatch returned',
      'sbatch',
      (f) => f.submit,
      backend === 'slurm' ? 'bare sbatch returned' : 'bare spawn',
    ],
    ['job comment shows a running row', 'running', undefined, ''],
    [
      'final comment edit',
      'final',
      (f) => f.done,
      backend === 'slurm' ? 'bare sbatch → COMPLETED in sacct' : 'bare spawn → exit',
    ],
    ['first → last sbatch', 'spread', undefined, ''],
  ];
  const head = [
    'from the 2xx to',
    ...series.map((s) => `${s.targets} target${s.targets > 1 ? 's' : ''}`),
    'floor',
  ];
  const rows = metrics.map(([label, key, pick, what]) => [
    label,
    ...series.map((s) =>
      key === 'spread' && s.targets === 1 ? '' : cell(s.samples.map((x) => x[key] as number | undefined)),
    ),
    pick ? `${cell(floors.map(pick))} (${what})` : '',
  ]);
  return [head, head.map(() => '---'), ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n');
}

async function main(): Promise<void> {
  const opts = parseOptions();
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'hpcbot-bench-reaction-'));
  cleanups.push(async () => {
    if (opts.keep) process.stderr.write(`kept ${tmp} (the bot's log: ${path.join(tmp, 'bot.log')})\n`);
    else await fs.rm(tmp, { recursive: true, force: true });
  });
  const before = await uptime();
  try {
    const { series, floors, problems } = await run(opts, tmp);
    const after = await uptime();
    process.stdout.write(
      [
        `reaction benchmark: backend ${opts.backend}, poller schedule every ${opts.periodS} s, ` +
          `${opts.points} point(s) per series at offsets spread over it, a 1-second job`,
        `${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), node ${process.version}`,
        '',
        table(series, floors, opts.backend),
        '',
        'p50 / p99 in seconds over the points (nearest rank: with 10 points p99 is the maximum); (k/N): only k of N',
        'measurements showed it. With several targets each time is the last of the jobs. Floor: one run before each measurement.',
        ...(problems.length ? ['', 'problems:', ...problems.map((p) => `- ${p}`)] : []),
        '',
        `uptime before: ${before}`,
        `uptime after:  ${after}`,
        '',
      ].join('\n'),
    );
    if (problems.length) process.exitCode = 1;
  } finally {
    await cleanUp();
  }
}

await main();
