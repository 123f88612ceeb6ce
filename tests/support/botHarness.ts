/**
 * An in-process bot for stage tests: a temp jobdirs, a site.yaml, the real GitHub adapter pointed at a
 * FakeGitHub (with git over HTTP), a chosen backend, and helpers to store events and run ticks.
 */
import { existsSync, mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { createBackend } from '../../src/adapters/schedulers/index.js';
import { parseConfig, type Config } from '../../src/config/config.js';
import { storePayload } from '../../src/ingest/eventStore.js';
import { createGitHub } from '../../src/adapters/github/index.js';
import { JobDirs } from '../../src/store/jobdirs.js';
import { JobAccount } from '../../src/adapters/jobUser.js';
import { runTick } from '../../src/poller.js';
import type { StageDeps } from '../../src/stages/context.js';
import { readState, type DirState } from '../../src/store/state.js';
import { workTreeOf } from '../../src/store/workTree.js';
import { FakeGitHub } from './fakeGithub.js';
import { assertWebhookPayload, payloads } from './payloads.js';
import { createPrRepo, type PrRepo } from './prRepo.js';

export const OWNER = 'hpc-org';
export const REPO = 'software-layer';
export const PR = 7;
export const REVIEWER = 'reviewer1';
export const INSTALLATION = 4242;

export interface Harness {
  root: string;
  config: Config;
  fake: FakeGitHub;
  gitRoot: string;
  deps: StageDeps;
  stop(): Promise<void>;
}

export const REPOS_CFG =
  '[eessi-test]\nrepo_name = software.eessi.io\nrepo_version = 2023.06\ncontainer = docker://ghcr.io/eessi/build-node:debian12\n';

/** Start a fake GitHub and build deps; `yaml` is appended to a base site.yaml (local backend, zen4 node). */
export async function startHarness(
  yaml = '',
  backendYaml = 'backend:\n  kind: local\n  local:\n    max_parallel: 2\n',
): Promise<Harness> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'hpcbot-harness-'));
  const gitRoot = path.join(root, 'git');
  mkdirSync(path.join(root, 'repos_cfg'), { recursive: true });
  writeFileSync(path.join(root, 'repos_cfg', 'repos.cfg'), REPOS_CFG);
  const fake = new FakeGitHub({ gitRoot });
  const url = await fake.start();
  const text = [
    'instance: test',
    'jobdirs: jobdirs',
    'github:',
    `  api_url: ${url}`,
    '  token_env: HARNESS_GITHUB_TOKEN',
    'poller:',
    '  max_attempts: 3',
    ...(/^chatlevel:/m.test(yaml) ? [] : ['chatlevel: basic']),
    'permissions:',
    `  command: [${REVIEWER}]`,
    `  build: [${REVIEWER}]`,
    `  deploy: [${REVIEWER}]`,
    backendYaml.trimEnd(),
    'build:',
    '  repos_cfg_dir: repos_cfg',
    '  allowed_exportvars: ["SKIP_TESTS=yes"]',
    '  node_types:',
    '    zen4:',
    '      os: linux',
    '      cpu_subdir: x86_64/amd/zen4',
    '      repo_targets: [eessi-test]',
    yaml,
  ].join('\n');
  const file = path.join(root, 'site.yaml');
  writeFileSync(file, text);
  const config = parseConfig(text, file);
  const logger = pino({ level: process.env.HPCBOT_TEST_LOG ?? 'silent' });
  const jobdirs = new JobDirs(config.jobdirs);
  await jobdirs.ensureBaseDirs();
  const github = createGitHub(
    config,
    logger,
    { HARNESS_GITHUB_TOKEN: 'ghp_harness' },
    { retryBaseMs: 1, retries: 1, throttle: false },
  );
  const account = new JobAccount(config.backend.run_as);
  const deps: StageDeps = {
    config,
    logger,
    jobdirs,
    github,
    backend: createBackend(config, logger, jobdirs, account),
    account,
    now: () => new Date(),
  };
  return { root, config, fake, gitRoot, deps, stop: () => fake.stop() };
}

let deliverySeq = 0;
/** Delivery ids that sort in creation order, so event (and job) directories list oldest first. */
export function nextDelivery(): string {
  return `d-${Date.now()}-${String(deliverySeq++).padStart(4, '0')}`;
}

/** Store an issue_comment.created event on PR #7 of hpc-org/software-layer, as the server would. */
export async function storeComment(h: Harness, body: string, sender = REVIEWER, delivery = nextDelivery()) {
  const p = payloads.commentOnPr();
  p.repository!.owner.login = OWNER;
  p.repository!.name = REPO;
  p.issue!.number = PR;
  p.installation = { id: INSTALLATION, node_id: `I_fake${INSTALLATION}` };
  (p.comment as { body: string; user: { login: string } }).body = body;
  (p.comment as { body: string; user: { login: string } }).user.login = sender;
  (p.sender as { login: string }).login = sender;
  return await storeRaw(h, 'issue_comment', p, delivery);
}

/** Store `payload` as the server would; it must be a payload GitHub could send (its webhooks description). */
export async function storeRaw(
  h: Harness,
  event: string,
  payload: Record<string, unknown>,
  delivery: string,
) {
  assertWebhookPayload(event, payload);
  return await storePayload(h.deps.jobdirs, event, payload, delivery, INSTALLATION);
}

/** Run ticks until `done` holds (or fail after `timeoutMs`), pausing between ticks like cron would. */
export async function tickUntil(
  h: Harness,
  done: () => Promise<boolean>,
  timeoutMs = 60_000,
  pauseMs = 300,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let ticks = 0;
  for (;;) {
    await runTick(h.deps);
    ticks++;
    if (await done()) return ticks;
    if (Date.now() > deadline) throw new Error(`condition not reached after ${ticks} ticks`);
    await new Promise((r) => setTimeout(r, pauseMs));
  }
}

export async function jobDirsOf(h: Harness): Promise<string[]> {
  return await h.deps.jobdirs.prJobDirs(OWNER, REPO, PR);
}

/** Let every job waiting for its `go` file (WAITING_BOT) end. */
export async function releaseWaitingJobs(h: Harness): Promise<void> {
  for (const dir of await jobDirsOf(h)) letGo(dir);
}

export function letGo(jobDir: string): void {
  if (existsSync(workTreeOf(jobDir))) writeFileSync(path.join(workTreeOf(jobDir), 'go'), '');
}

export async function stageOf(dir: string): Promise<string | undefined> {
  return (await readState(dir))?.stage;
}

export async function stateOf<T>(dir: string): Promise<DirState<T>> {
  const s = await readState<T>(dir);
  if (!s) throw new Error(`no state in ${dir}`);
  return s;
}

/** Create PR #7's git repository (base `main` + `refs/pull/7/head` adding `files`) and tell the fake about it. */
export function openPr(h: Harness, files: Record<string, string>): PrRepo {
  const repo = createPrRepo(h.gitRoot, OWNER, REPO, PR, files);
  h.fake.addPullRequest(OWNER, REPO, {
    number: PR,
    headSha: repo.headSha,
    baseSha: repo.baseSha,
    baseRef: 'main',
  });
  return repo;
}
