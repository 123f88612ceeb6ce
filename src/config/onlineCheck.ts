/**
 * `hpcbot config check --online`: what only the network can tell. GitHub accepts the credentials
 * (GET /app or GET /user), each S3 bucket the uploader names exists and answers HeadBucket, and the
 * Slurm controller answers `sinfo` (the PBS server `qstat -B`). Run after `checkSite`; one problem per service that fails.
 */
import { HeadBucketCommand } from '@aws-sdk/client-s3';
import type { Config } from './config.js';
import type { SiteProblem } from './siteCheck.js';
import { createGitHub, GitHubConfigError, GitHubError } from '../adapters/github/index.js';
import { CommandError, run } from '../adapters/process.js';
import { pickForRepo } from '../adapters/uploaders/paths.js';
import { createS3Client } from '../adapters/uploaders/s3.js';
import { createLogger } from '../log.js';

export async function checkOnline(config: Config, env = process.env): Promise<SiteProblem[]> {
  const results = await Promise.all([
    checkGitHub(config, env),
    checkBuckets(config),
    checkSinfo(config, env),
    checkPbsServer(config, env),
  ]);
  return results.flat();
}

/** Skipped only for a dry run without credentials, the one setup that never talks to GitHub as someone. */
async function checkGitHub(config: Config, env: NodeJS.ProcessEnv): Promise<SiteProblem[]> {
  const gh = config.github;
  const keyPath = gh.app_id !== undefined ? 'github.app_id' : gh.token_env ? 'github.token_env' : 'github';
  if (gh.dry_run && keyPath === 'github') return [];
  try {
    const github = createGitHub(config, createLogger('config-check', { level: 'silent', env }), env, {
      retries: 0,
    });
    await github.whoAmI();
    return [];
  } catch (err) {
    if (err instanceof GitHubError || err instanceof GitHubConfigError)
      return [{ keyPath, message: err.message }];
    throw err;
  }
}

/** Every distinct bucket (and endpoint) the per-repo settings name. */
function bucketsOf(config: Config): Array<{ bucket: string; endpoint: string | undefined }> {
  const u = config.deploy.uploader;
  if (u.kind !== 's3') return [];
  const ids = [u.bucket, u.endpoint_url].flatMap((v) => (v && typeof v !== 'string' ? Object.keys(v) : []));
  const seen = new Map<string, { bucket: string; endpoint: string | undefined }>();
  for (const repo of ids.length > 0 ? new Set(ids) : ['']) {
    const bucket = pickForRepo(u.bucket, repo);
    const endpoint = pickForRepo(u.endpoint_url, repo);
    if (bucket.found && bucket.value !== undefined && endpoint.found)
      seen.set(`${endpoint.value ?? ''} ${bucket.value}`, { bucket: bucket.value, endpoint: endpoint.value });
  }
  return [...seen.values()];
}

async function checkBuckets(config: Config): Promise<SiteProblem[]> {
  const problems: SiteProblem[] = [];
  for (const { bucket, endpoint } of bucketsOf(config)) {
    const client = createS3Client(config.deploy.uploader.region, endpoint, { maxAttempts: 1 });
    const where = `bucket ${bucket}${endpoint ? ` at ${endpoint}` : ''}`;
    try {
      await client.send(new HeadBucketCommand({ Bucket: bucket }));
    } catch (err) {
      problems.push({
        keyPath: 'deploy.uploader.bucket',
        message: `the ${where} ${whyHeadBucketFailed(err)}`,
      });
    } finally {
      client.destroy();
    }
  }
  return problems;
}

async function checkSinfo(config: Config, env: NodeJS.ProcessEnv): Promise<SiteProblem[]> {
  if (config.backend.kind !== 'slurm') return [];
  try {
    await run('sinfo', ['--noheader', '--format=%P'], { env, timeoutMs: 30_000 });
    return [];
  } catch (err) {
    const said = err instanceof CommandError ? err.stderr.trim().split('\n').pop() : firstLine(err);
    return [
      {
        keyPath: 'backend.kind',
        message: `slurm, but sinfo failed (${said || 'no output'}); is slurmctld running and reachable from this machine?`,
      },
    ];
  }
}

async function checkPbsServer(config: Config, env: NodeJS.ProcessEnv): Promise<SiteProblem[]> {
  if (config.backend.kind !== 'pbs') return [];
  try {
    await run('qstat', ['-B'], { env, timeoutMs: 30_000 });
    return [];
  } catch (err) {
    const said = err instanceof CommandError ? err.stderr.trim().split('\n').pop() : firstLine(err);
    return [
      {
        keyPath: 'backend.kind',
        message: `pbs, but qstat -B failed (${said || 'no output'}); is the PBS server running and reachable from this machine (PBS_SERVER, /etc/pbs.conf)?`,
      },
    ];
  }
}

/** Pure: what a failed HeadBucket means, and what to do. */
function whyHeadBucketFailed(err: unknown): string {
  const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  const name = (err as Error).name;
  if (name === 'CredentialsProviderError')
    return `cannot be checked: the AWS SDK found no credentials (${firstLine(err)}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`;
  if (status === 404) return 'does not exist; create it, or fix deploy.uploader.bucket';
  if (status === 403)
    return 'refuses these credentials (403); check the AWS credentials and that they may list the bucket';
  if (status === 301) return 'is in another region (301); set deploy.uploader.region to its region';
  return `cannot be reached (${status ? `HTTP ${status}` : name}: ${firstLine(err)}); check deploy.uploader.endpoint_url and the network`;
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';
}
